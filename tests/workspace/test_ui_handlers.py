"""The Gradio layer's event functions called directly (no server): errors become sentences,
uploads return at once and are reported by the timer, exports live in the browser's folder."""
from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from workspace.access import COOKIE, FileAccess
from workspace.session import Session
from workspace.ui.app import WorkspaceUI
from tests.workspace.conftest import titles

SID = FileAccess.new_sid()


@pytest.fixture
def ui(ws, tmp_path):
    ui = WorkspaceUI(ws, export_dir=tmp_path / "exports")
    yield ui
    ui.writer.close()


def request(sid: str = SID):
    return SimpleNamespace(cookies={COOKIE: sid})


def test_a_bug_while_answering_is_a_sentence_not_a_bare_error(ui, monkeypatch):
    def broken(*args, **kwargs):
        raise TypeError("NoneType is not iterable")
        yield

    monkeypatch.setattr(ui.ws, "ask_stream", broken)
    (view,) = list(ui.respond("Who keeps the lighthouse?", None, "extractive", 8, [], [], "", "", request()))
    assert "Something went wrong while answering (TypeError: NoneType is not iterable)" in view[ui.c.ask_error]
    assert ui.c.question not in view  # the question stays in the box to try again


def test_upload_returns_at_once_and_the_timer_reports_and_refreshes(ui, tmp_path):
    note = tmp_path / "note.md"
    note.write_text("# Timer note\n\nThe Farrow signal box opens at six.", encoding="utf-8")
    session = Session()
    out = ui.on_upload([str(note)], session, request())
    status, cleared, timer, session = (out[x] for x in (ui.c.upload_result, ui.c.upload, ui.c.timer, ui.c.session))
    assert session.owner == SID and cleared is None and timer.active
    assert "qa-job-pending" in status or "qa-upload-result" in status
    deadline = time.monotonic() + 60
    while True:
        out = ui.poll_jobs(session)
        if "qa-upload-result" in out[ui.c.upload_result]:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert not out[ui.c.timer].active and "1 of 1 file(s) ingested" in out[ui.c.upload_result]
    assert "Timer note" in out[ui.c.library]  # the library table, refreshed once
    assert ui.c.library not in ui.poll_jobs(session)  # and not again (left as it is)
    assert "Timer note" in titles(ui.ws)


def test_only_rejected_files_are_reported_without_a_job(ui, tmp_path):
    bad = tmp_path / "notes.exe"
    bad.write_text("x")
    out = ui.on_upload([str(bad)], None, request())
    status, timer, session = out[ui.c.upload_result], out[ui.c.timer], out[ui.c.session]
    assert "✗" in status and "unsupported file type" in status and not timer.active
    assert ui.writer.jobs(session.id) == []


def test_exports_go_to_the_browsers_folder_and_go_with_the_session(ui):
    session = Session()
    *_, view = list(ui.respond("Who keeps the Brelloway lighthouse?", session, "extractive", 8, [], [], "", "",
                               request()))
    links = view[ui.c.exports]
    folder = ui.access.export_folder(SID, session.id)
    assert f"qa/exports/{session.id}/" in links and len(list(folder.iterdir())) == 4
    assert ui.access.export_file(SID, session.id, next(folder.iterdir()).name)
    assert ui.access.export_file(FileAccess.new_sid(), session.id, next(folder.iterdir()).name) is None
    ui._session_closed(session)
    assert not folder.exists()


def test_more_evidence_asks_the_latest_question_again_with_twice_the_passages(ui):
    session = Session()
    (view,) = list(ui.more_evidence(session, "extractive", 8, [], [], "", "", request()))
    assert "Ask a question first" in view[ui.c.ask_error] and not session.turns
    list(ui.respond("Who keeps the Brelloway lighthouse?", session, "extractive", 4, [], [], "", "", request()))
    *_, view = list(ui.more_evidence(session, "extractive", 4, [], [], "", "", request()))
    first, again = session.turns
    assert again.question == first.answer.standalone_question and again.options.top_k == 8
    assert not view[ui.c.ask_error] and view[ui.c.answer_json]["question"] == first.answer.standalone_question


def test_clicks_carry_their_target_in_the_event_data(ui):
    import gradio as gr

    session = Session()
    *_, view = list(ui.respond("Who keeps the Brelloway lighthouse?", session, "extractive", 8, [], [], "", "",
                               request()))
    shown = ui.open_citation(session, gr.EventData(None, {"cite": "0:c:1"}))
    assert 'class="qa-ev-item qa-active" data-cite="0:c:1"' in shown[ui.c.evidence]
    assert "qa-hit" in shown[ui.c.source]
    assert ui.open_citation(session, gr.EventData(None, {"cite": "9:c:1"})) == {}  # no such quote: unchanged
    assert ui.take_example(gr.EventData(None, {"example": "Who keeps it?"})) == {ui.c.question: "Who keeps it?"}
    assert ui.take_example(gr.EventData(None, {"cite": "0:c:1"})) == {}
