"""The workspace without Gradio: uploads (safe names, limits, per-file errors), delete, overview,
conversation state, citation context, source views, exports and HTML escaping.

A real Chroma index in a temp folder with the deterministic fake embedder: fast, and exact enough
for the logic here (answer quality on the real model is tested in test_answers.py and tests/ui).
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from workspace.ui import render
from chatbot.service import AskOptions, QAService
from chatbot.types import Answer, Citation, Claim, QAError
from workspace.library import safe_filename
from workspace.overview import derived_question, example_questions
from workspace.session import Session, Turn, cite_key
from workspace.settings import UploadLimits
from workspace.sources import quote_context
from workspace.workspace import Workspace
from ingest.pipeline import Ingestor
from ingest.settings import Settings
from ingest.store import DocRecord
from tests.ingest.helpers import FakeEmbedder

XSS_TITLE = '<script>window.__xss=1</script> Harbour notes <img src=x onerror="window.__xss=1">'

LIGHTHOUSE = """---
title: The Brelloway lighthouse ledger
source: Coastal Gazette
published: 2031-03-04
questions:
  - Who keeps the Brelloway lighthouse?
  - When was the lamp replaced?
---
The Brelloway lighthouse is kept by Oriel Fenwick, who has tended the lamp for nine winters.

The lamp was replaced in March 2031 after a storm cracked the lens. Fenwick logged every ship that passed.
"""

ORCHARD = """---
source: Valley Courier
published: 2029-09-01
---
# Quillmere orchard cooperative

The Quillmere Orchard Cooperative harvested eleven tonnes of pears this season. Its chair, Tamsin Rook, credited the new irrigation canal.
"""


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "lighthouse.md").write_text(LIGHTHOUSE, encoding="utf-8")
    (folder / "orchard.md").write_text(ORCHARD, encoding="utf-8")
    return folder


@pytest.fixture
def ws(tmp_path, corpus) -> Workspace:
    settings = Settings(index_dir=tmp_path / "index")
    embedder = FakeEmbedder()
    report = Ingestor(settings, embedder=embedder, progress=False).run([corpus])
    assert report.added == 2 and not report.failed
    service = QAService(settings, embedder=embedder).open()
    return Workspace(service, upload_dir=tmp_path / "uploads", limits=UploadLimits(max_bytes=4096, max_files=5))


def titles(ws: Workspace) -> set[str]:
    return {d.title for d in ws.summaries()}


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


# ------------------------------------------------------------------------------ overview
def test_overview_describes_the_corpus(ws):
    ov = ws.overview()
    assert sorted(d.title for d in ov.documents) == ["Quillmere orchard cooperative", "The Brelloway lighthouse ledger"]
    assert ov.chunks == sum(d.n_chunks for d in ov.documents) > 0
    assert dict(ov.sources) == {"Coastal Gazette": 1, "Valley Courier": 1}
    assert (ov.first_date, ov.last_date, ov.undated) == ("2029-09-01", "2031-03-04", 0)
    # declared questions first, then one derived for the document that declares none
    assert ov.examples[:2] == ["Who keeps the Brelloway lighthouse?", "When was the lamp replaced?"]
    assert ov.examples[2] == "What do the sources say about Quillmere Orchard Cooperative?"


def test_example_questions_interleave_documents_and_respect_the_limit():
    def rec(doc_id, questions):
        return DocRecord(doc_id, doc_id.upper(), {"questions": questions}, [], [], "complete", 1)

    records = [rec("a", ["A1?", "A2?", "A3?"]), rec("b", ["B1?"]), rec("c", ["C1?", "C2?"])]
    assert example_questions(records, lambda _: "", limit=4) == ["A1?", "B1?", "C1?", "A2?"]


def test_derived_question():
    assert derived_question("Is the canal finished?", "") == "Is the canal finished?"
    assert derived_question("Notes", "Yesterday the Port Authority of Dunmere met. The Port Authority of Dunmere "
                            "voted.") == "What do the sources say about Port Authority of Dunmere?"
    assert derived_question("Harbour report", "nothing capitalised here.") == "What does “Harbour report” report?"


# -------------------------------------------------------------------------- conversation
def test_ask_appends_turns_and_passes_history_for_follow_ups(ws, monkeypatch):
    seen = []
    real = ws.service.answer

    def spy(question, history=(), options=None):
        seen.append(list(history))
        return real(question, history, options)

    monkeypatch.setattr(ws.service, "answer", spy)
    session = Session()
    first = ws.ask(session, "Who keeps the Brelloway lighthouse?")
    ws.ask(session, "When was it replaced?", ws.options("extractive", 4))
    assert len(session.turns) == 2 and session.current.question == "When was it replaced?"
    assert seen[0] == [] and seen[1] == [("Who keeps the Brelloway lighthouse?", first.answer.text)]
    assert session.turns[1].options.top_k == 4
    assert Session().id != session.id  # every browser session gets its own conversation


def test_options_validate_settings_panel_values(ws):
    opts = ws.options("extractive", 5.0, ["Coastal Gazette"], ["abc"], "2030", "2031-03")
    assert opts.top_k == 5 and opts.filters.sources == ("Coastal Gazette",) and opts.filters.doc_ids == ("abc",)
    assert (opts.filters.published_from, opts.filters.published_to) == ("2030-01-01", "2031-03-31")
    with pytest.raises(QAError, match="From date"):
        ws.options("extractive", 5, date_from="March 2030")
    with pytest.raises(QAError, match="after To date"):
        ws.options("extractive", 5, date_from="2031-01-01", date_to="2030-01-01")
    with pytest.raises(QAError, match="between 1 and 100"):
        ws.options("extractive", 0)


def test_filters_reach_the_service(ws):
    session = Session()
    turn = ws.ask(session, "Who keeps the Brelloway lighthouse?", ws.options("extractive", 8, ["Valley Courier"]))
    quoted = {c.doc_id for c in turn.answer.citations + turn.answer.evidence}
    orchard = next(d.doc_id for d in ws.summaries() if d.source == "Valley Courier")
    assert quoted <= {orchard}


# ----------------------------------------------------------------------- evidence views
def test_quote_context_is_the_paragraph_around_the_quote():
    text = "First paragraph.\n\nAlpha beta. Gamma delta epsilon. Zeta.\n\nLast one."
    start = text.index("Gamma")
    end = start + len("Gamma delta epsilon.")
    ctx = quote_context(text, start, end, "Gamma delta epsilon.")
    assert (ctx.before, ctx.quote, ctx.after, ctx.verified) == ("Alpha beta. ", "Gamma delta epsilon.", " Zeta.", True)
    assert not quote_context(text, start, end, "something else").verified
    long = "word " * 400 + "QUOTE." + " tail" * 400
    ctx = quote_context(long, long.index("QUOTE"), long.index("QUOTE") + 6, "QUOTE.", limit=50)
    assert ctx.clipped_before and ctx.clipped_after and len(ctx.before) <= 50 and len(ctx.after) <= 50
    assert not ctx.before.startswith("ord")  # cut at a word boundary


def _turn_with_citations(ws: Workspace) -> tuple[Session, Turn]:
    session = Session()
    turn = ws.ask(session, "Who keeps the Brelloway lighthouse?")
    assert turn.answer.supported, turn.answer.text
    return session, turn


def test_source_view_marks_the_clicked_quote(ws):
    session, turn = _turn_with_citations(ws)
    c = turn.answer.citations[0]
    view = ws.source_view(session, cite_key(0, c))
    primary = [s for s in view.spans if s.primary]
    assert len(primary) == 1 and (primary[0].start, primary[0].end) == (c.start, c.end)
    assert view.text[c.start - view.offset:c.end - view.offset] == c.quote
    assert ws.source_view(session, "7:c:1") is None and ws.source_view(session, "junk") is None
    html = render.render_source(view)
    assert 'id="qa-hit"' in html and render.esc(c.quote) in html


def test_source_view_of_a_long_document_is_a_window_around_the_quote(ws):
    ws.source_window = 40
    session, turn = _turn_with_citations(ws)
    c = turn.answer.citations[0]
    view = ws.source_view(session, cite_key(0, c))
    assert view.offset <= c.start and c.end <= view.offset + len(view.text) < view.length
    assert [s.primary for s in view.spans].count(True) == 1
    assert "characters after" in render.render_source(view)


# ---------------------------------------------------------------------------- exports
def test_exports_carry_quotes_offsets_and_versions(ws, tmp_path):
    session, turn = _turn_with_citations(ws)
    ws.ask(session, "When will the Brelloway lighthouse be demolished by the navy?")
    data = ws.export_data(session, "conversation")
    assert data["scope"] == "conversation" and len(data["turns"]) == 2 and data["generated_at"].endswith("Z")
    first = data["turns"][0]
    assert first["question"] == "Who keeps the Brelloway lighthouse?" and first["answer"] == turn.answer.text
    assert first["support_level"] == turn.answer.level == "answered"  # answered / partial / none (issue 10)
    q = first["citations"][0]
    c = turn.answer.citations[0]
    assert (q["quote"], q["doc_id"], q["title"], q["start"], q["end"]) == (c.quote, c.doc_id, c.title, c.start, c.end)
    assert q["source"] == "Coastal Gazette" and q["verified"] is True and "support" in q and "page" in q
    v = data["versions"]
    assert v["embedding_model"] == "test/fake-hash-embedder"
    assert v["index"]["embedding_model"] == "test/fake-hash-embedder" and v["index"]["chunk_size"] == 600
    assert v["index"]["state"] and v["packages"]["gradio"] and v["packages"]["chromadb"]
    assert len(ws.export_data(session, "answer")["turns"]) == 1

    md = ws.export_markdown(session, "answer")
    assert "When will the Brelloway lighthouse be demolished" in md and "Q2" not in md
    md = ws.export_markdown(session, "conversation")
    assert f"> {c.quote}" in md and f"characters {c.start}–{c.end}" in md and "Embedding model" in md

    files = ws.write_exports(session, tmp_path / "exports")
    assert set(files) == {"answer.md", "answer.json", "conversation.md", "conversation.json"}
    assert json.loads(files["conversation.json"].read_text())["turns"][0]["citations"][0]["quote"] == c.quote
    with pytest.raises(QAError, match="Nothing to export"):
        ws.export_data(Session(), "answer")


def test_exports_are_built_once_per_turn_and_safe_to_write_concurrently(ws, tmp_path):
    session, turn = _turn_with_citations(ws)
    folder = tmp_path / "exports"
    ws.write_exports(session, folder)
    entry = turn.export_entry
    ws.ask(session, "When will the Brelloway lighthouse be demolished by the navy?")
    ws.write_exports(session, folder)
    assert turn.export_entry is entry  # the first turn was not rebuilt for the second answer

    errors: list[BaseException] = []
    results: list[dict] = []

    def write():
        try:
            files = ws.write_exports(session, folder)
            results.append({k: p.read_text(encoding="utf-8") for k, p in files.items()})
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 8
    assert all(json.loads(r["conversation.json"])["turns"][1]["question"].startswith("When will") for r in results)
    assert len(list(folder.iterdir())) == 3 * 4  # only the latest three sets are kept


# --------------------------------------------------------------------------- escaping
def _hostile_turn() -> Turn:
    quote = 'He wrote <img src=x onerror="window.__xss=1"> in the log.'
    c = Citation(1, "d1", XSS_TITLE, 10, 10 + len(quote), quote, 0.7)
    answer = Answer(question="<b>q</b>", text=f"{quote} [1]", supported=True, citations=[c],
                    claims=[Claim(quote, (1,), 0.7, True)])
    return Turn("<script>alert(1)</script>?", answer, "2031-01-01T00:00:00Z", AskOptions())


def assert_inert(html: str) -> None:
    lowered = html.lower()
    for raw in ("<script", "<img", "<b>q</b>", "<i>src</i>"):
        assert raw not in lowered, raw
    assert "&lt;" in html


def test_rendering_escapes_every_document_string(ws):
    session = Session(turns=[_hostile_turn()])
    transcript = render.render_transcript(session)
    assert_inert(transcript)
    assert 'data-cite="0:c:1"' in transcript  # the marker itself is still a real button
    assert "&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;" in transcript

    ctx = quote_context("0123456789" + session.turns[0].answer.citations[0].quote, 10,
                        10 + len(session.turns[0].answer.citations[0].quote),
                        session.turns[0].answer.citations[0].quote)
    assert_inert(render.render_evidence(session, lambda c: ctx))

    from workspace.library import FileOutcome, UploadResult
    from workspace.overview import DocSummary, Overview
    from workspace.sources import SourceView, Span

    doc = DocSummary("d1", XSS_TITLE, "<i>src</i>", "2031", "", "javascript:alert(1)", 2, 0, "<img src=x>.md", True)
    assert_inert(render.render_library([doc]))
    assert_inert(render.render_start(Overview([doc], 2, [("<i>src</i>", 1)], None, None, 1, [XSS_TITLE])))
    assert_inert(render.render_upload_result(UploadResult([FileOutcome("<img src=x>.md", False, "<script>")])))
    c = session.turns[0].answer.citations[0]
    text = "<script>x</script>" + c.quote
    view = SourceView(doc, XSS_TITLE, text, 0, len(text), [Span(18, 18 + len(c.quote), "[1]", True)], c)
    source = render.render_source(view)
    assert_inert(source)
    assert "javascript:" not in source  # only http(s) links are made clickable
    assert_inert(render.render_filters_line(["<script>"], ["<img src=x>"], "", ""))


def test_only_real_citations_become_buttons_and_the_text_is_not_parsed():
    turn = _hostile_turn()
    turn.answer.claims = [Claim(turn.answer.claims[0].text + " [9]", (1, 7), 0.7, True)]
    html = render.answer_html(0, turn)
    assert html.count('class="qa-cite"') == 1 and 'data-cite="0:c:1"' in html
    assert "[7]" not in html and "[9]" in html  # a marker-like string in a sentence stays text


def test_ask_stream_yields_the_growing_draft_then_the_turn(ws, monkeypatch):
    final = Answer(question="q", text="Done [1]", supported=True)

    def answer_stream(question, history, options):
        assert options.mode == "llm"
        yield "Oriel"
        yield " Fenwick"
        yield final

    monkeypatch.setattr(ws.service, "answer_stream", answer_stream, raising=False)
    session = Session()
    items = list(ws.ask_stream(session, "Who keeps it?", AskOptions(mode="llm")))
    assert items[:2] == ["Oriel", "Oriel Fenwick"]
    assert isinstance(items[2], Turn) and items[2].answer is final and session.turns == [items[2]]
    # extractive answers do not stream
    items = list(ws.ask_stream(session, "Who keeps the Brelloway lighthouse?", AskOptions()))
    assert len(items) == 1 and isinstance(items[0], Turn) and len(session.turns) == 2


def test_unsupported_llm_sentences_are_flagged_and_refusals_kept_as_written():
    turn = _hostile_turn()
    turn.answer.claims = [Claim("A claim the sources do not back.", (), 0.3, False), *turn.answer.claims,
                          Claim("The sources don't say when.", (), 0.0, False, refusal=True)]
    html = render.answer_html(0, turn)
    assert html.count('<span class="qa-unsupported"') == 1
    assert html.index("A claim the sources do not back. <span") < html.index('data-cite="0:c:1"')
    assert html.endswith("The sources don&#x27;t say when.")


def test_a_partial_answer_renders_its_lead_and_cited_quotes():
    turn = _hostile_turn()
    turn.answer.lead = "The sources don't say exactly that. What they say:"
    html = render.answer_html(0, turn)
    assert html.startswith("The sources don&#x27;t say exactly that. What they say: He wrote &lt;img")
    assert 'data-cite="0:c:1"' in html


def test_llm_sentence_checks_are_listed_and_escaped():
    turn = _hostile_turn()
    turn.answer.mode = "llm:llamacpp"
    turn.answer.claims = [Claim("<img src=x> Rahmon did it.", (1,), 0.81, True), Claim("Nobody else.", (), 0.2, False)]
    html = render.render_turn(0, turn)
    assert "Sentence checks (1 of 2 supported)" in html and "support 0.81" in html and "no citation" in html
    assert_inert(html)


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


def test_questions_are_stored_and_exported_without_control_characters(ws):
    session = Session()
    turn = ws.ask(session, "Who keeps\u202e the Brelloway\x1b[2J lighthouse?\x00")
    assert turn.question == "Who keeps the Brelloway lighthouse?" == turn.answer.question
    data = ws.export_data(session, "answer")
    assert data["turns"][0]["question"] == turn.question
    assert "\u202e" not in ws.export_markdown(session) and "\x1b" not in ws.export_markdown(session)


def test_markdown_export_escapes_html_and_links_json_stays_exact(ws):
    session = Session(turns=[_hostile_turn()])
    turn = session.turns[0]
    c = turn.answer.citations[0]
    link = Citation(2, "d1", "[click](javascript:alert(1))", 0, 5, "See [here](javascript:alert(2)) \\<b>", 0.5)
    turn.answer.citations.append(link)
    md = ws.export_markdown(session, "answer")
    for raw in ("<script", "<img", "<b>", "](javascript"):
        assert raw not in md, raw
    assert "&lt;img src=x onerror=\"window.__xss=1\"&gt;" in md and "&lt;script&gt;alert(1)&lt;/script&gt;" in md
    assert "[click]\\(javascript" in md and "\\\\&lt;b&gt;" in md
    data = ws.export_data(session, "answer")
    assert data["turns"][0]["citations"][0]["quote"] == c.quote  # exact, for checking
    assert data["turns"][0]["citations"][1]["quote"] == link.quote
