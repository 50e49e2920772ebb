"""The workspace without Gradio: overview, conversation state, options, citation context, source
views and exports."""
from __future__ import annotations

import json
import os
import threading
import time

import pytest

from chatbot.service import AskOptions
from chatbot.types import Answer, Citation, QAError
from ingest.store import DocRecord
from workspace.overview import derived_question, example_questions
from workspace.session import Session, Turn, cite_key
from workspace.sources import quote_context
from workspace.ui import render
from workspace.workspace import Workspace
from tests.workspace.conftest import hostile_turn


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
    assert len(list(folder.iterdir())) == 10 * 4  # nothing written in the last ten minutes is deleted

    an_hour_ago = time.time() - 3600
    for p in folder.iterdir():
        os.utime(p, (an_hour_ago, an_hour_ago))
    latest = ws.write_exports(session, folder)
    assert len(list(folder.iterdir())) == 3 * 4  # then only the latest three sets are kept
    assert all(p.exists() for p in latest.values())


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


def test_questions_are_stored_and_exported_without_control_characters(ws):
    session = Session()
    turn = ws.ask(session, "Who keeps\u202e the Brelloway\x1b[2J lighthouse?\x00")
    assert turn.question == "Who keeps the Brelloway lighthouse?" == turn.answer.question
    data = ws.export_data(session, "answer")
    assert data["turns"][0]["question"] == turn.question
    assert "\u202e" not in ws.export_markdown(session) and "\x1b" not in ws.export_markdown(session)


def test_markdown_export_escapes_html_and_links_json_stays_exact(ws):
    session = Session(turns=[hostile_turn()])
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
