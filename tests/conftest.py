"""Fixtures shared by every test package: the real model and a real index of corpus/, built once."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
# Libraries that read the process environment when they load (OpenMP: OMP_WAIT_POLICY).
NATIVE = ("torch", "onnxruntime", "sentence_transformers", "transformers", "gradio")
NATIVE_AT_CONFIGURE = pytest.StashKey[list]()


def pytest_configure(config):
    """The session's environment (offline, no telemetry, passive OpenMP), set like an entry point
    sets it: before collection imports any test module, so before torch or ONNX Runtime loads."""
    from ingest.environment import prepare_process

    config.stash[NATIVE_AT_CONFIGURE] = [name for name in NATIVE if name in sys.modules]
    prepare_process()


def pytest_sessionstart(session):
    """Say which machine runs the suite, also under -q (CI logs): the native code here (llama.cpp,
    ONNX Runtime, torch) behaves differently on AVX-512/AMX CPUs, so say whether this one has them."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown CPU":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    wide = sorted(f for f in flags if f.startswith(("avx512", "amx")))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"cpu: {model}; AVX-512/AMX: {' '.join(wide) if wide else 'none'}")


@pytest.fixture(scope="session")
def real_embedder():
    """The real packaged model, loaded once per test session."""
    from ingest.embed import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="session")
def seed_settings(tmp_path_factory):
    """A real Chroma index of the project's corpus/ folder (real model), built once per session."""
    from ingest.settings import Settings

    return Settings(index_dir=tmp_path_factory.mktemp("seed-index"))


@pytest.fixture(scope="session")
def seed_index(seed_settings, real_embedder):
    from ingest.pipeline import Ingestor

    report = Ingestor(seed_settings, embedder=real_embedder, progress=False).run([REPO_ROOT / "corpus"])
    assert report.added >= 1 and not report.failed
    return seed_settings


@pytest.fixture(scope="session")
def seed_service(seed_index, real_embedder):
    from chatbot.service import QAService

    return QAService(seed_index, embedder=real_embedder).open()
