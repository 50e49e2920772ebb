"""`python -m chatbot` as scripts use it (real model, real index)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from chatbot.provenance import QuoteRecord
from chatbot.verify import OK, FolderTexts, check
from tests.conftest import REPO_ROOT, SHARED

pytestmark = pytest.mark.slow


def _run(*args, env=None, cwd=REPO_ROOT):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "chatbot", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=600)


def test_ask_json_contract(seed_index, tmp_path):
    questions = tmp_path / "q.txt"
    questions.write_text("Which river forms much of Afghanistan's northern border?\n\n"
                         "When will the TAPI gas pipeline through Afghanistan be finished?\n")
    r = _run("ask", "--index", str(seed_index.index_dir), "--json", "--file", str(questions),
             "Who offered sanctuary to Ahmad Massoud?")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.strip().splitlines()]
    assert [o["question"] for o in lines] == ["Who offered sanctuary to Ahmad Massoud?",
                                             "Which river forms much of Afghanistan's northern border?",
                                             "When will the TAPI gas pipeline through Afghanistan be finished?"]
    assert [o["supported"] for o in lines] == [True, True, False]
    assert [o["support_level"] for o in lines][:2] == ["answered", "answered"]
    assert lines[2]["support_level"] in ("partial", "none")
    # Each quote is the source file's text (re-read and cleaned as ingest cleans it: a no-break
    # space reads as a space) at the quote's offsets, not merely somewhere in the raw file.
    sources = FolderTexts(REPO_ROOT / "corpus")
    for o in lines:
        assert set(o) >= {"question", "answer", "supported", "citations"}
        for c in o["citations"]:
            assert set(c) >= {"n", "doc_id", "title", "start", "end", "quote"}
            assert f"[{c['n']}]" in o["answer"]
            record = QuoteRecord.from_json(c)
            assert check(record, sources.text(record)).status == OK, c
    assert "Amu Darya" in lines[1]["answer"]


def test_ask_text_lists_quotes(seed_index):
    r = _run("ask", "--index", str(seed_index.index_dir), "Who offered sanctuary to Ahmad Massoud?")
    assert r.returncode == 0, r.stderr
    assert "[1]" in r.stdout and "“Rahmon has offered sanctuary" in r.stdout


def test_missing_index_says_to_run_ingest(tmp_path):
    r = _run("ask", "--index", str(tmp_path / "nowhere"), "anything?")
    assert r.returncode == 2
    assert "python -m ingest" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "nowhere").exists(), "asking must not create an index"


def test_empty_question_is_rejected(seed_index):
    r = _run("ask", "--index", str(seed_index.index_dir), "  ")
    assert r.returncode == 2 and "empty" in r.stderr and "Traceback" not in r.stderr


def test_eval_prints_table_and_json(seed_index, tmp_path):
    dev = SHARED / "eval" / "dev_qa.jsonl"
    if not dev.exists():
        pytest.skip("dev set not available")
    r = _run("eval", str(dev), "--index", str(seed_index.index_dir), "--json", "--out", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["verbatim"] == 1.0 and result["evidence"] >= 0.9
    assert json.loads((tmp_path / "r.json").read_text())["answers"]
