"""`python -m chatbot verify` with real tampering: real index, real files, the CLI as a subprocess.

The export is a real brief (``brief --json``) of the fixture corpus. Each test ingests its own
copy of the sources (the same texts give the same document ids), verifies the untouched export,
then tampers with one thing and checks that exactly the affected quotes fail, by name.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.chatbot.brief_helpers import brief_json, fixture_copy_index, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def export(tmp_path_factory, real_embedder) -> Path:
    """A real brief export of the fixture corpus, made from its own index."""
    root = tmp_path_factory.mktemp("export")
    settings = fixture_copy_index(root, real_embedder)[1]
    path = root / "brief.json"
    path.write_text(json.dumps(brief_json(settings.index_dir), ensure_ascii=False), encoding="utf-8")
    return path


@pytest.fixture
def workspace(tmp_path, real_embedder):
    """Fresh copies of the sources and an index of them; ``ingest()`` re-runs ingest on the folder."""
    sources, settings, ingest = fixture_copy_index(tmp_path, real_embedder)
    return sources, settings.index_dir, ingest


def verify(export: Path, *where) -> tuple[int, dict, str]:
    r = run_cli("verify", str(export), *where, "--json")
    assert "Traceback" not in r.stderr, r.stderr
    data = json.loads(r.stdout) if r.stdout.strip() else {}
    return r.returncode, data, r.stderr


def statuses(data: dict) -> dict[int, str]:
    return {q["n"]: q["status"] for q in data["quotes"]}


def records(export: Path) -> list[dict]:
    return json.loads(export.read_text(encoding="utf-8"))["quotes"]


def test_untouched_export_passes(export, workspace):
    sources, index, _ = workspace
    for where in (("--index", str(index)), ("--sources", str(sources))):
        code, data, _ = verify(export, *where)
        assert code == 0 and data["ok"] and set(statuses(data).values()) == {"ok"}
        assert len(data["quotes"]) == len(records(export)) > 20
    r = run_cli("verify", str(export), "--index", str(index))
    assert r.returncode == 0 and r.stdout.strip().endswith("0 changed, 0 missing")


def test_edited_quote_in_the_export_fails_by_name(export, workspace, tmp_path):
    _, index, _ = workspace
    data = json.loads(export.read_text(encoding="utf-8"))
    target = next(q for q in data["quotes"] if "420 million" in q["quote"])
    target["quote"] = target["quote"].replace("420 million", "400 million")
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    code, result, _ = verify(tampered, "--index", str(index))
    assert code == 1 and not result["ok"]
    bad = {n: s for n, s in statuses(result).items() if s != "ok"}
    assert bad == {target["n"]: "changed"}
    r = run_cli("verify", str(tampered), "--index", str(index))
    assert r.returncode == 1
    line = next(x for x in r.stdout.splitlines() if x.startswith("changed"))
    assert f"[{target['n']}]" in line and "400 million" in line


def test_edited_source_file_fails_the_quotes_it_holds(export, workspace):
    sources, index, ingest = workspace
    path = sources / "fixture-b-reservoir.md"
    path.write_text(path.read_text(encoding="utf-8").replace("About 300,000 farmers", "About 350,000 farmers"),
                    encoding="utf-8")
    affected = {q["n"] for q in records(export) if q["file"] == path.name and "About 300,000" in q["quote"]}
    later = {q["n"] for q in records(export) if q["file"] == path.name
             and q["start"] > next(r["start"] for r in records(export) if r["n"] in affected)}
    assert affected and later
    code, result, _ = verify(export, "--sources", str(sources))  # the edited file, before any re-ingest
    bad = {n for n, s in statuses(result).items() if s != "ok"}
    assert code == 1 and bad == affected  # same length edit: later offsets still hold
    ingest()  # the index now holds the edited document under a new id
    code, result, _ = verify(export, "--index", str(index))
    assert code == 1 and {n for n, s in statuses(result).items() if s == "changed"} == affected
    assert all(s == "ok" for n, s in statuses(result).items() if n not in affected)


def test_deleted_document_is_missing(export, workspace):
    sources, index, ingest = workspace
    (sources / "fixture-c-border.md").unlink()
    gone = {q["n"] for q in records(export) if q["file"] == "fixture-c-border.md"}
    assert gone
    code, result, _ = verify(export, "--sources", str(sources))
    assert code == 1 and {n for n, s in statuses(result).items() if s == "missing"} == gone
    ingest()
    code, result, _ = verify(export, "--index", str(index))
    assert code == 1 and {n for n, s in statuses(result).items() if s == "missing"} == gone
    assert all(s == "ok" for n, s in statuses(result).items() if n not in gone)


def test_bad_export_files_get_one_clear_error(tmp_path, workspace):
    _, index, _ = workspace
    not_json = tmp_path / "x.json"
    not_json.write_text("{oops", encoding="utf-8")
    no_quotes = tmp_path / "y.json"
    no_quotes.write_text(json.dumps({"turns": []}), encoding="utf-8")
    for path, words in ((not_json, "not JSON"), (no_quotes, "records no quotes"), (tmp_path / "none.json", "cannot read")):
        r = run_cli("verify", str(path), "--index", str(index))
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr
