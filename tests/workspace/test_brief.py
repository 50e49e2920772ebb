"""The Brief view: built off the request path (one build at a time, again when the index changes),
rendered escaped with every line cited, clicks resolved against the brief the page shows, and
downloads that are inert (Markdown) and verifiable (JSON)."""
from __future__ import annotations

import json
import re
import threading
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest

from chatbot.provenance import text_hash
from workspace.access import COOKIE, FileAccess
from workspace.brief import BUILDING, FAILED, READY, BriefStatus, Briefs, brief_key, parse_key, write_brief_exports
from workspace.session import Session
from workspace.ui import render_brief
from workspace.ui.app import WorkspaceUI
from tests.chatbot.llm_helpers import wait_until
from tests.workspace.conftest import XSS_TITLE, assert_inert

EVIL = '<img src=x onerror="window.__xss=1">'
DOC = f"Intro. The Vorland council {EVIL} met in Ostra on 3 May 2030. About 40 per cent agreed. Only a quarter agreed."


def hostile_brief() -> dict:
    """A brief in the format of chatbot/brief/build.py with markup in every document string."""
    def q(n, part):
        start = DOC.index(part)
        quote = DOC[start:start + len(part)]
        return {"n": n, "doc_id": "d1", "title": XSS_TITLE, "start": start, "end": start + len(quote), "quote": quote,
                "doc_hash": text_hash(DOC), "quote_hash": text_hash(quote), "file": "<b>f</b>.md", "page": None}

    version = {"kind": "share", "value": 0.4, "qualifier": "approximate", "measure": f"agreed {EVIL}", "change": False}
    return {
        "format": "qa-brief/1", "generated_at": "2031-01-01T00:00:00+00:00", "models": {},
        "documents": [{"doc_id": "d1", "title": XSS_TITLE, "file": "f.md", "published": None, "doc_hash": text_hash(DOC)}],
        "themes": [{"name": "<i>src</i>", "description": EVIL}, {"name": "water", "description": "Water."}],
        "actors": [{"name": f"Vorland {EVIL}", "kind": "state", "mentions": 2, "aliases": {"<b>q</b>": 1},
                    "documents": ["d1"], "affiliation": None, "citations": [1],
                    "linked": [{"name": "<script>x</script>", "kind": "person", "role": EVIL, "citations": [2]}]}],
        "positions": [{"actor": f"Vorland {EVIL}", "cells": {"<i>src</i>": [{"citations": [1], "score": 0.3},
                                                                          {"citations": [2], "score": 0.2}]}}],
        "timeline": [{"date": "2030-05-03", "label": "3 May 2030", "as_written": EVIL, "precision": "day",
                      "resolved": True, "basis": EVIL, "year_stated": True, "placed": None, "citations": [2]}],
        "figures": [{**version, "text": "About 40 per cent", "claim": None, "citations": [3]}],
        "conflicts": [{"measure": f"agreed {EVIL}", "kind": "share", "scope": "within a document", "versions": [
            {**version, "text": "About 40 per cent", "claim": None, "citations": [3]},
            {**version, "text": "a quarter", "value": 0.25, "claim": {"verb": "claims", "by": EVIL}, "citations": [4]}]}],
        "quotes": [q(1, "Intro."), q(2, f"The Vorland council {EVIL} met in Ostra on 3 May 2030."),
                   q(3, "About 40 per cent agreed."), q(4, "Only a quarter agreed.")],
        "timings_s": {"total": 1.0},
    }


class Lines(HTMLParser):
    """Each element of class qa-brief-line and the data-cite keys of the buttons inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, int | None]] = []
        self.lines: list[list[str]] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        line = None
        if "qa-brief-line" in (a.get("class") or "").split():
            self.lines.append([])
            line = len(self.lines) - 1
        if tag == "button" and "qa-cite" in (a.get("class") or ""):
            for _, open_line in self.stack:
                if open_line is not None:
                    self.lines[open_line].append(a["data-cite"])
        if tag not in ("br", "img"):
            self.stack.append((tag, line))

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break


def test_brief_view_escapes_everything_and_every_line_has_its_citations():
    html = render_brief.render_brief(hostile_brief(), {"brief.md": "qa/exports/x/a.md"})
    assert_inert(html)
    assert "&lt;img src=x onerror=&quot;window.__xss=1&quot;&gt;" in html
    parser = Lines()
    parser.feed(html)
    # actor, matrix cell, timeline event, figure, conflict: each with its [n] buttons
    assert len(parser.lines) == 5 and all(parser.lines), parser.lines
    assert [k for line in parser.lines for k in line].count("b:3:3,4") == 1  # a conflict's versions open together
    cell = re.search(r'<td class="qa-brief-cell qa-brief-line" data-cite="([^"]+)"', html).group(1)
    assert parse_key(cell) == (1, [1, 2])
    assert "claim: " in html and "resolved from" in html and "qa-export-brief-md" in html


def test_building_and_failed_states_are_shown():
    building = render_brief.render_brief_status(BriefStatus(BUILDING, None, False, "parsing 3 documents…", 4.2))
    assert "Building the brief: parsing 3 documents… · 4 s" in building and "qa-spinner" in building
    rebuilding = render_brief.render_brief_status(BriefStatus(BUILDING, hostile_brief(), False, "", 1))
    assert "documents changed: rebuilding" in rebuilding and "Shown below until it is ready" in rebuilding
    assert render_brief.render_brief_status(BriefStatus(READY, hostile_brief(), True)) == ""
    failed = render_brief.render_brief_status(BriefStatus(FAILED, None, False, "The index has no documents <b>."))
    assert "could not be built: The index has no documents &lt;b&gt;." in failed


def test_keys_name_the_quote_and_its_line():
    assert parse_key(brief_key(17, [23, 17, 23])) == (17, [23, 17])
    assert parse_key("b:5") == (5, [5]) and parse_key("b:5:1,2") == (5, [5, 1, 2])
    for bad in ("", None, "0:c:1", "b:x", "b:1:", "b:1:2;3"):
        assert parse_key(bad) is None


def test_one_build_at_a_time_and_again_when_the_index_changes():
    state = {"token": "s1", "builds": 0}
    release = threading.Event()

    def build(progress):
        state["builds"] += 1
        progress("parsing…")
        assert release.wait(10)
        if state["token"] == "broken":
            raise ValueError("bug")
        return {"built_for": state["token"]}

    briefs = Briefs(build, lambda: state["token"])
    first = briefs.ensure()
    assert first.state == BUILDING and first.brief is None
    wait_until(lambda: briefs.status().step == "parsing…", 60, "the build thread's first step")
    assert briefs.ensure().state == BUILDING and state["builds"] == 1  # a second page does not start another
    release.set()
    ready = briefs.wait(10)
    assert ready.state == READY and ready.current and ready.brief == {"built_for": "s1"}
    assert briefs.ensure().brief is ready.brief and state["builds"] == 1  # nothing to do

    release.clear()
    state["token"] = "s2"  # an upload or a deletion
    again = briefs.ensure()
    assert again.state == BUILDING and again.brief == {"built_for": "s1"} and not again.current
    wait_until(lambda: briefs.status().step == "parsing…", 60, "the rebuild's first step")
    release.set()
    assert briefs.wait(10).brief == {"built_for": "s2"}

    state["token"] = "broken"
    briefs.ensure()
    failed = briefs.wait(10)
    assert failed.state == FAILED and "ValueError: bug" in failed.step and failed.brief == {"built_for": "s2"}
    assert briefs.ensure().state == FAILED and state["builds"] == 3  # not retried on every poll
    assert briefs.retry().state == BUILDING
    briefs.wait(10)
    assert state["builds"] == 4


def test_downloads_markdown_inert_json_exact(tmp_path):
    brief = hostile_brief()
    links = write_brief_exports(brief, tmp_path)
    md = links["brief.md"].read_text(encoding="utf-8")
    assert "<img" not in md and "<script" not in md.lower() and "&lt;img src=x" in md
    assert "[4]" in md and "Only a quarter agreed." in md
    assert json.loads(links["brief.json"].read_text(encoding="utf-8")) == brief
    assert write_brief_exports(brief, tmp_path).keys() == links.keys()
    assert len(list(tmp_path.iterdir())) == 2  # the earlier pair is replaced


# ------------------------------------------------- handlers, on a real index (spaCy in its child process)
@pytest.fixture
def ui(ws, tmp_path):
    ui = WorkspaceUI(ws, export_dir=tmp_path / "exports")
    yield ui
    ui.writer.close()


def test_brief_tab_builds_in_the_background_and_its_citations_open_exact_quotes(ui, tmp_path):
    import gradio as gr

    from chatbot.verify import OK, load_records, verify

    sid = FileAccess.new_sid()
    request = SimpleNamespace(cookies={COOKIE: sid})
    session = Session()
    view = ui.open_brief(session, request)  # returns at once: the build runs on its own thread
    assert "Building the brief" in view[ui.c.brief_status] and view[ui.c.brief_timer].active
    assert "qa-brief-line" not in view[ui.c.brief]
    assert ui.ws.briefs.wait(300).state == READY
    view = ui.poll_brief(session, request)
    html = view[ui.c.brief]
    assert not view[ui.c.brief_timer].active and session.brief is not None and view[ui.c.brief_status] == ""
    again = ui.poll_brief(session, request)  # the same brief: the banner only, the page keeps its brief
    assert ui.c.brief not in again and again[ui.c.brief_status] == ""
    assert ui.open_brief(session, request)[ui.c.brief] == html  # opening the tab sends it whole
    assert "Oriel Fenwick" in html and "qa-brief-timeline" in html

    parser = Lines()
    parser.feed(html)
    assert parser.lines and all(parser.lines)
    for key in {k for line in parser.lines for k in line}:
        out = ui.open_brief_quote(session, gr.EventData(None, {"cite": key}))
        n = parse_key(key)[0]
        hit = re.search(r'<mark class="qa-hit" id="qa-hit" data-label="\[(\d+)\]">(.*?)</mark>',
                        out[ui.c.brief_source], re.S)
        quote = next(q for q in session.brief["quotes"] if q["n"] == n)
        assert int(hit.group(1)) == n and hit.group(2) == render_brief.esc(quote["quote"])
        assert ui.ws.text(quote["doc_id"])[quote["start"]:quote["end"]] == quote["quote"]
        assert 'qa-ev-item qa-active" data-cite="' + key in out[ui.c.brief_quotes]
    assert ui.open_brief_quote(session, gr.EventData(None, {"cite": "b:9999"})) == {}
    assert ui.open_brief_quote(Session(), gr.EventData(None, {"cite": key})) == {}  # a page without a brief

    # the downloads are served to this browser only, and the JSON verifies against the index
    folder = ui.access.export_folder(sid, re.search(r"qa/exports/([0-9a-f]{16})/", html).group(1))
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2 and all(ui.access.export_file(sid, folder.name, n) for n in names)
    assert ui.access.export_file(FileAccess.new_sid(), folder.name, names[0]) is None
    stored = SimpleNamespace(text=lambda record: ui.ws.text(record.doc_id))  # the index's texts (a fake-model index)
    checks = verify(load_records(folder / names[0]), stored)
    assert checks and all(c.status == OK for c in checks)

    # an upload changes the index: the page's brief is rebuilt, and shows the new document
    note = tmp_path / "harbour.md"
    note.write_text("# Harbour note\n\nOn 4 June 2031 the Quorvane harbour master Ilsabet Vorn opened the new "
                    "ferry berth.\n", encoding="utf-8")
    assert ui.ws.upload([("harbour.md", note)]).ok
    assert ui._refreshed(session)[ui.c.brief_timer].active
    old = session.brief
    assert ui.ws.briefs.wait(300).state == READY
    view = ui.poll_brief(session, request)
    assert session.brief is not old and "4 June 2031" in view[ui.c.brief]
    assert "qa-empty" in view[ui.c.brief_quotes]  # the quote panels start afresh with the new brief
    ui._session_closed(session)
    assert not folder.exists()


def test_a_failed_build_is_one_sentence_and_opening_the_tab_tries_again(ui, monkeypatch):
    from chatbot.types import QAError

    calls = []

    def broken(refresh=False, progress=None):
        calls.append(refresh)
        raise QAError("The index has no documents <b>now</b>.")

    monkeypatch.setattr(ui.ws.service, "brief", broken)
    request = SimpleNamespace(cookies={COOKIE: FileAccess.new_sid()})
    session = Session()
    ui.open_brief(session, request)
    ui.ws.briefs.wait(10)
    view = ui.poll_brief(session, request)
    assert "could not be built: The index has no documents &lt;b&gt;now&lt;/b&gt;." in view[ui.c.brief_status]
    assert not view[ui.c.brief_timer].active and len(calls) == 1  # the timer stops; polling does not retry
    ui.open_brief(session, request)
    ui.ws.briefs.wait(10)
    assert len(calls) == 2
