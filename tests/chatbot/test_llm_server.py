"""Crash isolation for QA_LLM=llamacpp (chatbot/llm_server.py), for real: SmolLM2 in llama.cpp's
server as a supervised child process. A crash mid-answer, a failed start, a SIGKILLed parent, the
CLI, concurrent questions, and the portable build (no AVX-512/AMX code, which crashed on Intel).
The app keeping its users through a kill: tests/ui/test_llm_crash.py."""
from __future__ import annotations

import glob
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from chatbot.generative import llm_from_settings
from chatbot.llm_client import ChatClient, LLMUnavailable
from chatbot.settings import LLMConfig, QASettings
from chatbot.service import AskOptions, QAService
from chatbot.types import Answer
from tests.chatbot.helpers import assert_citation_invariants
from tests.chatbot.llm_helpers import (
    LLM_ENV,
    QUESTION,
    alive,
    assert_generative_invariants,
    gguf_path,
    llamacpp_settings,
    llm_server_pids,
    parent_of,
    wait_until,
)

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
LLM = AskOptions(mode="llm", top_k=2)


@pytest.fixture(scope="module")
def llm_service(seed_index, real_embedder, tmp_path_factory):
    """A service with its own llama.cpp child (this module kills it)."""
    log = tmp_path_factory.mktemp("llm-crash") / "llm-server.log"
    llm = llm_from_settings(llamacpp_settings(seed_index, log), embedder=real_embedder)
    service = QAService(seed_index, embedder=real_embedder, llm=llm).open()
    service.warm_up()  # starts the child and waits until it answers
    assert llm.client.server.pid is not None
    yield service
    llm.close()


def test_concurrent_questions_queue_for_the_model_and_all_get_llm_answers(llm_service):
    answers: dict[int, Answer] = {}

    def ask(i: int) -> None:
        answers[i] = llm_service.answer(QUESTION, options=LLM)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert sorted(answers) == [0, 1, 2]
    for answer in answers.values():  # none was cut off by another (the server never interrupts)
        assert_generative_invariants(answer, llm_service, "llm:llamacpp")
    # Temperature 0 and seed 0: the same question gives the same answer, queued or not.
    assert len({a.text for a in answers.values()}) == 1


def crash_mid_answer(service: QAService, sig: int) -> tuple[int, Answer]:
    """Ask in LLM mode and send ``sig`` to the model's process as soon as the first piece of text
    arrives; (pid, answer). Tried again (3 times at most) in the rare case where the model had
    already written its whole answer when the signal landed (the answer is then the LLM's)."""
    server = service.llm.client.server
    for _ in range(3):
        server.endpoint()  # running (restarted after the previous try)
        pid = server.pid
        items: list = []
        for item in service.answer_stream(QUESTION, options=LLM):
            items.append(item)
            if len(items) == 1:
                assert isinstance(item, str)  # the model is writing: now it crashes
                os.kill(pid, sig)
        if items[-1].mode != "llm:llamacpp":
            return pid, items[-1]
    pytest.fail("the model finished every answer before the signal landed")


def test_a_crash_mid_answer_falls_back_and_the_next_answer_restarts_the_model(llm_service):
    server = llm_service.llm.client.server
    old_pid, answer = crash_mid_answer(llm_service, signal.SIGSEGV)  # as llama.cpp did on Intel AVX-512
    assert answer.mode == "extractive" and answer.supported
    assert answer.notice == ("The LLM could not answer (the llama.cpp server process crashed (SIGSEGV); "
                             "restarting it); showing the extractive answer.")
    assert_citation_invariants(answer, llm_service.doc_text)
    # The crash is in the log, with the Python traceback faulthandler wrote in the child.
    log = server.log_path.read_text(errors="replace")
    assert "Segmentation fault" in log
    # This process carries on: extractive answers, then LLM answers from a new child.
    assert llm_service.answer(QUESTION).mode == "extractive"
    again = llm_service.answer(QUESTION, options=LLM)
    assert_generative_invariants(again, llm_service, "llm:llamacpp")
    assert again.notice is None
    assert server.pid not in (None, old_pid) and server.starts >= 2  # restarted by the supervisor
    assert not alive(old_pid)
    assert "llama_cpp" not in sys.modules


class SlowModel:
    """A chat model writing one piece every 0.1 s for ever (pure logic: the deadline of a call)."""

    closed = False

    def stream(self, messages):
        try:
            while True:
                time.sleep(0.1)
                yield "word "
        finally:
            SlowModel.closed = True


def test_an_answer_is_cut_at_the_deadline_and_its_stream_closed():
    client = ChatClient(LLMConfig(provider="llamacpp", model="fake.gguf", timeout=0.5), chat_model=SlowModel())
    pieces = []
    with pytest.raises(LLMUnavailable, match=r"^llamacpp \(fake.gguf\) timed out after 0.5 s$"):
        for piece in client.stream([("user", "hello")]):
            pieces.append(piece)
    assert 1 <= len(pieces) <= 8  # the pieces before the deadline were passed on
    assert SlowModel.closed  # a local server sees the disconnect and stops generating


def test_a_model_that_cannot_start_falls_back_and_is_not_restarted_in_a_loop(seed_index, real_embedder, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(4096))
    log = tmp_path / "llm-server.log"
    settings = QASettings.from_env({"QA_LLM": "llamacpp", "QA_LLM_MODEL": str(broken), "QA_LLM_LOG": str(log),
                                    **LLM_ENV}, index=seed_index)
    service = QAService.from_settings(settings, embedder=real_embedder).open()
    first = service.answer(QUESTION, options=LLM)
    assert first.mode == "extractive" and first.supported
    assert first.notice.startswith("The LLM could not answer (the llama.cpp server could not start: it exited "
                                   "with status 1 (")
    assert "\n" not in first.notice
    # Right after a failure the next question does not wait for another failing start.
    second = service.answer(QUESTION, options=LLM)
    assert second.mode == "extractive"
    assert re.search(r"; the next start is in \d+ s\); showing the extractive answer\.$", second.notice)
    assert log.read_text(errors="replace").count("=== ") == 1  # one start, logged once
    assert llm_server_pids(str(log)) == []


def test_the_server_process_exits_when_its_parent_is_killed(tmp_path):
    log = tmp_path / "llm-server.log"
    script = ("import sys, time\nfrom pathlib import Path\nfrom chatbot.llm_server import LlamaServer\n"
              f"server = LlamaServer(Path({str(gguf_path())!r}), n_ctx=512, log_path=Path({str(log)!r}))\n"
              "server.endpoint()\nprint(server.pid, flush=True)\ntime.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "QA_TEST_MARKER": str(log)})
    try:
        pid = int(parent.stdout.readline())
        assert alive(pid) and parent_of(pid) == parent.pid and llm_server_pids(str(log)) == [pid]
        parent.kill()  # SIGKILL: no atexit, no finalizer runs in the parent
        parent.wait()
        wait_until(lambda: not alive(pid), 30, "the llama.cpp server outlived its SIGKILLed parent")
    finally:
        parent.kill()
        parent.wait()
        for pid in llm_server_pids(str(log)):
            os.kill(pid, signal.SIGKILL)
    assert "the parent has gone" in log.read_text(errors="replace")


def test_cli_ask_json_with_llamacpp_answers_without_loading_llama_cpp(seed_index, tmp_path):
    log = tmp_path / "llm-server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update(QA_LLM="llamacpp", QA_LLM_MODEL=str(gguf_path()), QA_LLM_LOG=str(log),
               QA_INDEX_DIR=str(seed_index.index_dir), **LLM_ENV)
    # -X importtime lists every module this process imports (on stderr; not inherited by the child).
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "chatbot", "ask", "--json", QUESTION],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    answers = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(answers) == 1 and answers[0]["question"] == QUESTION
    assert answers[0]["mode"] == "llm:llamacpp", answers[0]["notice"]
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "import time:" in line]
    assert "chatbot.llm_client" in imported and "langchain_openai" in imported
    assert not [m for m in imported if m.startswith("llama_cpp")], "llama_cpp was imported in the CLI's process"
    log_text = log.read_text(errors="replace")
    assert "system_info" in log_text or "AVX" in log_text  # llama.cpp's load report is in the log
    wait_until(lambda: not llm_server_pids(str(log)), 30, "the llama.cpp server outlived the CLI")


# ----------------------------------------------------------------------------- the portable build
_INSTRUCTION = re.compile(r"^[ \t]*[0-9a-f]+:\t(\S+)[ \t]*([^#<\n]*)", re.M)
# AVX-512 needs EVEX: zmm registers, opmask registers k0-k7, xmm/ymm 16-31, or EVEX-only mnemonics.
_AVX512_OPERAND = re.compile(r"%(zmm\d+|k[0-7]\b|[xy]mm(1[6-9]|2\d|3[01])\b)")
_AVX512_MNEMONIC = re.compile(r"^(vpternlog[dq]|vmovdq[au](8|16|32|64)|kmov[bwdq]|vpcompress|vpexpand|vpermt2|"
                              r"vpermi2|vcvtne2ps2bf16|vdpbf16ps|vpdpbusds?|vpdpwssds?)\b")
_AMX_MNEMONIC = re.compile(r"^(ldtilecfg|sttilecfg|tileload|tilestore|tilerelease|tilezero|tdp)")


def test_llama_cpp_is_built_without_avx512_or_amx_code():
    """requirements-llm.txt builds a portable x86-64 baseline: a native build on an Intel AVX-512/AMX
    machine crashed in decode. This fails if pip reused or made a native build (e.g. on Intel CI)."""
    if shutil.which("objdump") is None:
        pytest.skip("objdump (binutils) is not installed")
    if os.uname().machine != "x86_64":
        pytest.skip("the build flags are about x86-64")
    spec = importlib.util.find_spec("llama_cpp")  # locates the package without importing it
    assert spec is not None and spec.submodule_search_locations
    libs = sorted(glob.glob(os.path.join(spec.submodule_search_locations[0], "lib", "libggml*.so")))
    assert any(lib.endswith("libggml-cpu.so") for lib in libs), libs
    found: dict[str, list[str]] = {}
    ymm = 0
    for lib in libs:
        code = subprocess.run(["objdump", "-d", "--no-show-raw-insn", lib], capture_output=True, text=True,
                              check=True).stdout
        for m in _INSTRUCTION.finditer(code):
            mnemonic, operands = m.group(1), m.group(2)
            if _AVX512_OPERAND.search(operands) or _AVX512_MNEMONIC.match(mnemonic) or _AMX_MNEMONIC.match(mnemonic):
                found.setdefault(Path(lib).name, []).append(f"{mnemonic} {operands.strip()}")
            elif "%ymm" in operands:
                ymm += 1
    assert not found, {lib: insns[:5] for lib, insns in found.items()}
    assert ymm > 1000  # ...and it does use AVX2 (ymm registers), as the flags ask
