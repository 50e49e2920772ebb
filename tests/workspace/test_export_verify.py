"""Workspace exports anyone can verify: `python -m chatbot verify` on real answer and conversation
exports (real model, real index of the fixture corpus, the CLI as a subprocess), untouched and with
real tampering — an edited quote, an edited and re-ingested source file, a deleted document.

The export is made once; each test ingests its own copy of the sources (same texts, same document
ids) and tampers with that copy.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.chatbot.brief_helpers import fixture_copy_index, run_cli

pytestmark = pytest.mark.slow

QUESTIONS = ("How much water will the new Chu reservoir hold?", "How many farmers depend on the Chu river?")


@pytest.fixture(scope="module")
def exports(tmp_path_factory, real_embedder) -> dict[str, Path]:
    from chatbot.service import QAService
    from workspace.session import Session
    from workspace.settings import UploadLimits
    from workspace.workspace import Workspace

    root = tmp_path_factory.mktemp("ws-export")
    settings = fixture_copy_index(root, real_embedder)[1]
    service = QAService(settings, embedder=real_embedder).open()
    ws = Workspace(service, upload_dir=root / "uploads", limits=UploadLimits())
    session = Session()
    for question in QUESTIONS:
        assert ws.ask(session, question).answer.citations
    service.conflicts.close()
    return ws.write_exports(session, root / "exports")


@pytest.fixture
def sources_and_index(tmp_path, real_embedder):
    sources, settings, ingest = fixture_copy_index(tmp_path, real_embedder)
    return sources, settings.index_dir, ingest


def verify(export: Path, *where) -> tuple[int, list[dict], str]:
    r = run_cli("verify", str(export), *where, "--json")
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout)["quotes"] if r.stdout.strip() else [], r.stdout + r.stderr


def quotes(export: Path) -> list[dict]:
    data = json.loads(export.read_text(encoding="utf-8"))
    return [q for t in data["turns"] for q in t["citations"] + t["evidence"]]


def key(q: dict) -> tuple:
    return q["doc_id"], q["start"], q["end"], q["n"]


def test_exports_record_hashes_provenance_and_conflicts(exports):
    data = json.loads(exports["conversation.json"].read_text(encoding="utf-8"))
    assert data["provenance"]["index"]["state"] and data["provenance"]["models"]["embedding"]
    for q in quotes(exports["conversation.json"]):
        assert q["doc_hash"].startswith("sha256:") and q["quote_hash"].startswith("sha256:") and q["file"]
    [reservoir] = [c for c in data["turns"][0]["conflicts"] if c["kind"] == "volume"]
    assert {v["text"] for v in reservoir["versions"]} == {"420 million cubic metres", "510 million cubic metres"}
    md = exports["conversation.md"].read_text(encoding="utf-8")
    first = quotes(exports["conversation.json"])[0]
    assert f"quote `{first['quote_hash']}`" in md and f"document `{first['doc_hash']}`" in md
    assert f"python -m chatbot verify {exports['conversation.json'].name}" in md
    assert "The sources differ on " in md


def test_untouched_exports_verify_ok(exports, sources_and_index):
    sources, index, _ = sources_and_index
    for name in ("answer.json", "conversation.json"):
        for where in (("--index", str(index)), ("--sources", str(sources))):
            code, checked, out = verify(exports[name], *where)
            assert code == 0, out
            assert {q["status"] for q in checked} == {"ok"}
            assert len(checked) == len({key(q) for q in quotes(exports[name])}) > 0
    r = run_cli("verify", str(exports["conversation.json"]), "--index", str(index))
    assert r.returncode == 0 and r.stdout.strip().endswith("0 changed, 0 missing")


def test_an_edited_quote_fails_by_name(exports, sources_and_index, tmp_path):
    _, index, _ = sources_and_index
    data = json.loads(exports["conversation.json"].read_text(encoding="utf-8"))
    target = next(q for t in data["turns"] for q in t["citations"] if "420 million" in q["quote"])
    target["quote"] = target["quote"].replace("420 million", "400 million")
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    code, checked, _ = verify(tampered, "--index", str(index))
    assert code == 1
    assert [q["quote"] for q in checked if q["status"] != "ok"] == [target["quote"]]
    assert next(q for q in checked if q["status"] != "ok")["status"] == "changed"
    r = run_cli("verify", str(tampered), "--index", str(index))
    line = next(x for x in r.stdout.splitlines() if x.startswith("changed"))
    assert r.returncode == 1 and f"[{target['n']}]" in line and "400 million" in line


def test_an_edited_and_reingested_source_file_fails_its_quotes(exports, sources_and_index):
    sources, index, ingest = sources_and_index
    export = exports["conversation.json"]
    target = next(q for q in quotes(export) if q["file"] == "fixture-b-reservoir.md" and "510 million" in q["quote"])
    path = sources / target["file"]
    path.write_text(path.read_text(encoding="utf-8").replace("510 million", "610 million"), encoding="utf-8")
    ingest()  # the index now holds the edited document under a new id
    code, checked, _ = verify(export, "--index", str(index))
    changed = {key(q) for q in checked if q["status"] == "changed"}
    assert code == 1 and key(target) in changed
    assert all("510 million" in q["quote"] for q in checked if q["status"] != "ok")
    assert any(q["status"] == "ok" for q in checked)  # quotes of the untouched documents still hold


def test_a_deleted_document_is_missing(exports, sources_and_index):
    sources, index, ingest = sources_and_index
    export = exports["conversation.json"]
    gone = {key(q) for q in quotes(export) if q["file"] == "fixture-a-chu-accord.md"}
    assert gone
    (sources / "fixture-a-chu-accord.md").unlink()
    ingest()
    code, checked, _ = verify(export, "--index", str(index))
    assert code == 1 and {key(q) for q in checked if q["status"] == "missing"} == gone
    assert all(q["status"] == "ok" for q in checked if key(q) not in gone)
