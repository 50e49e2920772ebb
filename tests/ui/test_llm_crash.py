"""The app with QA_LLM=llamacpp when the llama.cpp process dies mid-answer: the answer falls back with
a notice, the app keeps serving, the next LLM answer comes from a restarted process."""
from __future__ import annotations

import os
import signal
import urllib.request

import pytest

from tests.chatbot.llm_helpers import LLM_ENV, QUESTION, gguf_path, llm_server_pids, wait_until
from tests.ui.conftest import running_app

pytestmark = pytest.mark.slow


def final_answer(outputs) -> dict | None:
    """The answer JSON among one update's outputs of /respond (None for a draft update)."""
    return next((x for x in outputs if isinstance(x, dict) and "citations" in x), None)


def the_server(log: str) -> int:
    wait_until(lambda: len(llm_server_pids(log)) == 1, 600, "one llama.cpp server runs for the app")
    return llm_server_pids(log)[0]


def test_the_app_keeps_serving_when_the_llm_process_is_killed_mid_answer(tmp_path_factory):
    from gradio_client import Client

    root = tmp_path_factory.mktemp("llm-app")
    log = str(root / "llm-server.log")
    with running_app(root, QA_LLM="llamacpp", QA_LLM_MODEL=str(gguf_path()), QA_LLM_LOG=log, **LLM_ENV) as url:
        the_server(log)  # started by the app's warm-up, before any question
        client = Client(url, verbose=False, download_files=False)
        for _ in range(3):  # again only if the model had finished its answer when the signal landed
            pid = the_server(log)
            job = client.submit(QUESTION, "llm", 2, [], [], "", "", api_name="/respond")
            killed = False
            for outputs in job:
                if not killed and final_answer(outputs) is None:  # a draft: the model is writing
                    os.kill(pid, signal.SIGKILL)
                    killed = True
            answer = final_answer(job.outputs()[-1])
            if answer["mode"] != "llm:llamacpp":
                break
        assert killed
        assert answer["mode"] == "extractive" and answer["supported"] and answer["citations"]
        assert answer["notice"] == ("The LLM could not answer (the llama.cpp server process was killed by SIGKILL; "
                                    "restarting it); showing the extractive answer.")
        # The app kept serving: its page, extractive answers, and LLM answers from a new process.
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.status == 200
        extractive = final_answer(client.predict(QUESTION, "extractive", 8, [], [], "", "", api_name="/respond"))
        assert extractive["mode"] == "extractive" and extractive["supported"] and not extractive["notice"]
        again = final_answer(client.predict(QUESTION, "llm", 2, [], [], "", "", api_name="/respond"))
        assert again["mode"] == "llm:llamacpp" and again["notice"] is None
        assert the_server(log) != pid
    # Stopping the app stops its llama.cpp server too.
    wait_until(lambda: not llm_server_pids(log), 30, "the llama.cpp server outlived the app")
    assert "was killed by SIGKILL; see" in (root / "app.log").read_text(errors="replace")
