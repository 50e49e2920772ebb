"""The library without Gradio: uploads (safe names, limits, per-file errors), staging and ingest, delete,
the uploaded originals."""
from __future__ import annotations

import json

import pytest

from chatbot.types import QAError
from workspace.library import safe_filename
from workspace.session import Session, cite_key
from workspace.settings import UploadLimits
from workspace.ui import render
from tests.workspace.conftest import titles


# ------------------------------------------------------------------------------- uploads
@pytest.mark.parametrize("original, expected", [
    ("../../x.md", "x.md"),
    ("..\\..\\windows\\evil.MD", "evil.md"),
    ("/etc/passwd.txt", "passwd.txt"),
    (".hidden.md", "hidden.md"),
    ("Annual report 2030 (final).pdf", "Annual-report-2030-final.pdf"),
    ("Ré­sumé été.docx", "Resume-ete.docx"),
    ("<img src=x onerror=alert(1)>.md", "img-src-x-onerror-alert-1.md"),
    ("....md", "upload.md"),
    ("a" * 300 + ".txt", "a" * 60 + ".txt"),
])
def test_safe_filename_keeps_only_a_plain_base_name(original, expected):
    assert safe_filename(original) == expected


def test_upload_is_stored_under_a_generated_name_inside_the_upload_folder(ws, tmp_path):
    result = ws.upload([("../../x.md", b"# Escape attempt\n\nThe Vantorine bridge opened in 2032.\n")])
    (outcome,) = result.outcomes
    assert outcome.ok, outcome.message
    assert outcome.name == "x.md"  # the original name, for display only
    stored = (ws.upload_dir / outcome.stored_as).resolve()
    assert stored.is_file() and stored.is_relative_to(ws.upload_dir)
    assert stored.parent != ws.upload_dir and len(stored.parent.name) == 16  # generated folder
    assert not (tmp_path / "x.md").exists() and not (tmp_path.parent / "x.md").exists()
    assert "Escape attempt" in titles(ws)
    manifest = json.loads((ws.upload_dir / ".manifest.json").read_text())
    assert manifest[outcome.stored_as]["original"] == "x.md"
    library = {d.title: d for d in ws.summaries()}
    assert library["Escape attempt"].filename == "x.md" and library["Escape attempt"].uploaded


def test_upload_limits_and_per_file_errors(ws):
    result = ws.upload([
        ("big.md", b"# Big\n\n" + b"word " * 2000),  # over the 4 KB limit
        ("tool.exe", b"MZ binary"),
        ("empty.md", b""),
        ("good.txt", b"The Harrowgate ferry carries forty cars across the Lune estuary."),
    ])
    by_name = {o.name: o for o in result.outcomes}
    assert [o.name for o in result.outcomes] == ["big.md", "tool.exe", "empty.md", "good.txt"]
    assert not by_name["big.md"].ok and "limit is 0.00390625 MB" in by_name["big.md"].message
    assert not by_name["tool.exe"].ok and "unsupported file type '.exe'" in by_name["tool.exe"].message
    assert not by_name["empty.md"].ok and "empty" in by_name["empty.md"].message
    assert by_name["good.txt"].ok, by_name["good.txt"].message
    assert by_name["good.txt"].title == "Good"
    stored = [p for p in ws.upload_dir.rglob("*") if p.is_file() and p.name != ".manifest.json"]
    assert len(stored) == 1 and stored[0].name == "good.txt"  # rejected and failed files are not kept


def test_upload_max_files(ws):
    files = [(f"f{i}.md", f"# Note {i}\n\nThe note number {i} mentions the Orvane quarry.".encode()) for i in range(7)]
    result = ws.upload(files)
    assert len(result.ok) == 5
    assert [o.name for o in result.failed] == ["f5.md", "f6.md"]
    assert all("at most 5 files" in o.message for o in result.failed)


def test_duplicate_upload_is_reported_not_indexed_twice(ws):
    ws.upload([("one.md", b"# Twin\n\nThe Sellick mill grinds rye on Thursdays.")])
    before = len(ws.documents())
    result = ws.upload([("two.md", b"# Twin\n\nThe Sellick mill grinds rye on Thursdays.")])
    assert result.ok and "same text" in result.ok[0].message
    assert len(ws.documents()) == before


def test_upload_limits_from_env():
    assert UploadLimits.from_env({}).max_bytes == 20 * 1024 * 1024
    limits = UploadLimits.from_env({"QA_MAX_UPLOAD_MB": "1.5", "QA_UPLOAD_TYPES": "md, .PDF"})
    assert limits.max_bytes == int(1.5 * 1024 * 1024) and limits.extensions == (".md", ".pdf")
    with pytest.raises(QAError, match="QA_MAX_UPLOAD_MB"):
        UploadLimits.from_env({"QA_MAX_UPLOAD_MB": "lots"})
    with pytest.raises(QAError, match="QA_UPLOAD_TYPES"):
        UploadLimits.from_env({"QA_UPLOAD_TYPES": ".md,.exe"})


def test_delete_removes_document_chunks_and_uploaded_file(ws):
    (outcome,) = ws.upload([("note.md", b"# Delete me\n\nThe Carrow tram depot closes at midnight.")]).outcomes
    stored = ws.upload_dir / outcome.stored_as
    chunks_before = ws.service.store.count_chunks()
    message = ws.delete(outcome.doc_id)
    assert "Deleted “Delete me”" in message
    assert "Delete me" not in titles(ws)
    assert ws.service.store.count_chunks() < chunks_before
    assert not stored.exists()
    assert outcome.stored_as not in json.loads((ws.upload_dir / ".manifest.json").read_text())
    with pytest.raises(QAError, match="not in the index"):
        ws.delete(outcome.doc_id)


def test_asking_after_every_document_was_deleted_says_the_index_is_empty(ws):
    session = Session()
    ws.ask(session, "Who keeps the Brelloway lighthouse?")
    for doc in ws.summaries():
        ws.delete(doc.doc_id)
    with pytest.raises(QAError, match="is empty. Run `python -m ingest`"):
        ws.ask(session, "Who keeps the Brelloway lighthouse?")
    assert len(session.turns) == 1  # the answer already given is kept


def test_deleting_a_corpus_document_warns_that_its_file_remains(ws):
    doc = next(d for d in ws.summaries() if d.title == "The Brelloway lighthouse ledger")
    message = ws.delete(doc.doc_id)
    assert "still on disk" in message and "lighthouse.md" in message


def test_pdf_upload_cites_its_page(ws):
    from tests.ingest.helpers import make_pdf

    pdf = make_pdf([["The Ostrava ledger opens with a list of mills."],
                    ["On the second page the Ostrava ledger records that the Kelmscott mill burned in 1911."]],
                   title="Ostrava ledger")
    (outcome,) = ws.upload([("ledger.pdf", pdf)]).outcomes
    assert outcome.ok, outcome.message
    session = Session()
    turn = ws.ask(session, "When did the Kelmscott mill burn?")
    c = next(c for c in turn.answer.citations + turn.answer.evidence if "Kelmscott" in c.quote)
    assert c.page == 2
    key = cite_key(0, c, evidence=not turn.answer.supported)
    assert "page 2" in render.render_evidence(session, ws.context)
    assert "page 2" in render.render_source(ws.source_view(session, key))
    assert next(d for d in ws.summaries() if d.doc_id == c.doc_id).n_pages == 2


# ------------------------------------------------------------- staged uploads, file access
def test_staging_is_quick_and_ingest_reports_every_file(ws):
    staged = ws.stage([("a.md", b"# Staged one\n\nThe Pellow lock opens at dawn."), ("b.exe", b"x"),
                       ("c.md", b"# Staged two\n\nThe Dunmere weir was raised in 2030.")])
    assert sorted(staged.saved) == [0, 2] and staged.rejected[1].message.startswith("unsupported file type")
    assert all(dest.is_file() for _, dest in staged.saved.values())
    assert "Staged one" not in titles(ws)  # stored, not indexed yet
    result = ws.ingest(staged)
    assert [o.ok for o in result.outcomes] == [True, False, True]
    assert {"Staged one", "Staged two"} <= titles(ws)


def test_a_failing_ingest_removes_the_stored_files(ws, monkeypatch):
    staged = ws.stage([("a.md", b"# Doomed\n\nThe Pellow lock opens at dawn.")])
    (dest,) = [d for _, d in staged.saved.values()]

    def broken(paths, progress=False, on_wait=None):
        raise TypeError("a bug deep in ingest")

    monkeypatch.setattr(ws.service, "ingest", broken)
    with pytest.raises(TypeError):  # a bug is not swallowed here (the writer thread reports it)
        ws.ingest(staged)
    assert not dest.exists() and not dest.parent.exists()

    staged = ws.stage([("a.md", b"# Doomed\n\nThe Pellow lock opens at dawn.")])
    (dest,) = [d for _, d in staged.saved.values()]

    def refused(paths, progress=False, on_wait=None):
        from ingest.types import IngestError
        raise IngestError("the index is locked by another writer")

    monkeypatch.setattr(ws.service, "ingest", refused)
    (outcome,) = ws.ingest(staged).outcomes
    assert not outcome.ok and outcome.message == "not ingested: the index is locked by another writer"
    assert not dest.exists()


def test_upload_file_is_the_original_while_the_document_exists(ws):
    (outcome,) = ws.upload([("Field notes.md", b"# Kept file\n\nThe Arlow beacon burns whale oil.")]).outcomes
    path, name = ws.upload_file(outcome.doc_id)
    assert name == "Field notes.md" and path == (ws.upload_dir / outcome.stored_as).resolve()
    corpus_doc = next(d for d in ws.summaries() if not d.uploaded)
    assert ws.upload_file(corpus_doc.doc_id) is None  # corpus files are not served
    assert ws.upload_file("../../etc/passwd") is None and ws.upload_file("") is None
    ws.delete(outcome.doc_id)
    assert ws.upload_file(outcome.doc_id) is None
