"""The Gradio workspace. It only renders: behaviour is in ``workspace/`` (unit-tested without
Gradio), markup in ``workspace/ui/render.py`` (everything from documents escaped) and the page's
layout in ``workspace/ui/layout.py``.

Tabs: **Ask** (start view, chat with clickable ``[n]`` markers, evidence panel, source viewer,
exports), **Brief** (the index's onboarding brief, built in the background, every line's ``[n]``
opening its quote), **Library** (documents, upload, delete), **Settings** (answer mode, passages,
filters).
Conversation state lives in ``gr.State``: one ``Session`` per browser session, bound to the
browser's session cookie (``workspace/access.py``: who may read uploads and exports). Uploads and
deletions run on the writer thread (``workspace/jobs.py``); a timer shows their progress.

Every event function returns a dict keyed by the components it updates (``Components``): an
output not in it is left as it is.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import utils as gradio_utils
from starlette.middleware import Middleware

from chatbot.safe_text import clean_question
from ingest.types import UserError
from workspace.access import AccessMiddleware, FileAccess, export_url, request_sid, routes
from workspace.brief import BUILDING, BriefStatus, export_folder_id, write_brief_exports
from workspace.jobs import DONE, WriteQueue, embedding_progress
from workspace.session import Session
from workspace.throttle import LoginThrottle
from workspace.ui import render, render_brief
from workspace.ui.layout import (CSS_PATH, LOGIN_NOTE, Components, ask_tab, brief_tab, library_tab, settings_tab,
                                 theme)
from workspace.workspace import Workspace

log = logging.getLogger(__name__)
DELETE_WAIT = 5.0  # seconds a delete click waits for its turn before the timer reports it
# Uploads nobody handled (direct API calls) leave Gradio's temp folder: checked every 30 min, after 1 h.
GRADIO_CACHE_CLEANUP = (1800, 3600)


class WorkspaceUI:
    """Builds the Blocks for one ``Workspace``; ``launch_options()`` gives everything for launch()."""

    def __init__(self, workspace: Workspace, llm_available: bool = False, export_dir: Path | None = None,
                 writer: WriteQueue | None = None) -> None:
        self.ws = workspace
        self.llm_available = llm_available
        self._own_export_dir = export_dir is None
        self.export_dir = Path(export_dir or tempfile.mkdtemp(prefix="qa-exports-"))
        self.writer = writer or WriteQueue(workspace)
        self.delete_wait = DELETE_WAIT
        # every folder that holds users' files: Gradio's uploads and cache, our uploads and exports
        self.access = FileAccess(self.export_dir, [gradio_utils.get_cache_folder(), workspace.upload_dir],
                                 scratch_roots=[Path(gradio_utils.get_upload_folder())],
                                 library_file=workspace.upload_file)
        self.c = Components()
        self.demo = self._build()

    def launch_options(self, auth: tuple[str, str] | None = None) -> dict[str, Any]:
        """Keyword arguments for ``demo.launch``: look, limits, login (throttled), and the access
        middleware and routes that keep each browser's uploads and exports its own."""
        throttle = LoginThrottle() if auth else None
        return {
            "css": CSS_PATH.read_text(encoding="utf-8"), "max_file_size": self.ws.limits.max_bytes,
            "theme": theme(), "auth": auth, "auth_message": LOGIN_NOTE if auth else None,
            # Gradio must never serve our folders itself (the access routes do, per session)
            "blocked_paths": [str(self.export_dir), str(self.ws.upload_dir)],
            "ssr_mode": False, "run_history": False,
            "app_kwargs": {"middleware": [Middleware(AccessMiddleware, access=self.access, throttle=throttle)],
                           "routes": routes(self.access)},
        }

    def close(self) -> None:
        """The app is stopping: exports go with it."""
        if self._own_export_dir:
            shutil.rmtree(self.export_dir, ignore_errors=True)

    # ------------------------------------------------------------------ layout
    def _build(self) -> gr.Blocks:
        c = self.c
        with gr.Blocks(title="Cited Q&A workspace", analytics_enabled=False, fill_width=True,
                       delete_cache=GRADIO_CACHE_CLEANUP) as demo:
            c.session = gr.State(None, delete_callback=self._session_closed)
            gr.HTML('<div class="qa-header"><span class="qa-logo">❝</span><span>Cited Q&amp;A</span>'
                    '<span class="qa-header-sub">answers quote the documents, exactly</span></div>')
            with gr.Tabs():
                with gr.Tab("Ask", id="ask"):
                    ask_tab(c, self.ws)
                with gr.Tab("Brief", id="brief") as c.brief_tab:
                    brief_tab(c, self.ws)
                with gr.Tab("Library", id="library"):
                    library_tab(c, self.ws.limits)
                with gr.Tab("Settings", id="settings"):
                    settings_tab(c, self.llm_available, self.ws.service.default_top_k)
            self._wire(demo)
        return demo

    # ------------------------------------------------------------------ events
    def _wire(self, demo: gr.Blocks) -> None:
        c = self.c
        refreshed = [c.start, c.library, c.sources, c.documents, c.delete_choice, c.about, c.brief_timer]
        private = {"api_visibility": "private"}
        demo.load(self.on_load, [c.session], [c.session, c.transcript, *refreshed], **private)

        ask_inputs = [c.question, c.session, *c.settings]
        ask_outputs = [c.transcript, c.start, c.evidence, c.source, c.session, c.question, c.ask_error,
                       c.answer_json, c.exports]
        pending_outputs = [c.transcript, c.start, c.ask_error]
        pending = gr.on([c.question.submit, c.ask_btn.click], self.show_pending, [c.question, c.session],
                        pending_outputs, queue=False, **private)
        pending.then(self.respond, ask_inputs, ask_outputs, api_name="respond")
        example = c.start.click(self.take_example, None, [c.question], queue=False, **private)
        example.then(self.show_pending, [c.question, c.session], pending_outputs, queue=False, **private).then(
            self.respond, ask_inputs, ask_outputs, **private)
        for panel in (c.transcript, c.evidence):
            panel.click(self.open_citation, [c.session], [c.evidence, c.source], **private)
        c.new_btn.click(self.new_conversation, [c.session], ask_outputs, **private)
        c.more_btn.click(self.more_evidence, ask_inputs[1:], ask_outputs, **private)

        c.upload.upload(self.on_upload, [c.upload, c.session], [c.upload_result, c.upload, c.timer, c.session],
                        show_progress_on=[c.upload], **private)
        c.delete_btn.click(self.confirm_delete, [c.delete_choice], [c.confirm_row, c.confirm_text, c.delete_result],
                           **private)
        c.cancel_btn.click(lambda: {c.confirm_row: gr.Row(visible=False)}, None, [c.confirm_row], **private)
        c.confirm_btn.click(self.delete, [c.delete_choice, c.session],
                            [c.delete_result, c.confirm_row, c.timer, c.session, *refreshed], **private)
        c.timer.tick(self.poll_jobs, [c.session], [c.upload_result, c.delete_result, c.timer, *refreshed],
                     queue=False, show_progress="hidden", **private)
        brief_outputs = [c.brief_status, c.brief, c.brief_quotes, c.brief_source, c.brief_timer, c.session]
        c.brief_tab.select(self.open_brief, [c.session], brief_outputs, queue=False, **private)
        c.brief_timer.tick(self.poll_brief, [c.session], brief_outputs, queue=False, show_progress="hidden", **private)
        for panel in (c.brief, c.brief_quotes):
            panel.click(self.open_brief_quote, [c.session], [c.brief_quotes, c.brief_source], queue=False, **private)
        gr.on([x.change for x in (c.sources, c.documents)] + [c.date_from.blur, c.date_to.blur],
              self.filters_line, [c.sources, c.documents, c.date_from, c.date_to], [c.filters_line],
              queue=False, **private)

    # ------------------------------------------------------------- ask handlers
    def on_load(self, session: Session | None, request: gr.Request) -> dict:
        session = self._session(session, request)
        return {self.c.session: session,
                self.c.transcript: gr.HTML(render.render_transcript(session), visible=bool(session.turns)),
                **self._refreshed(session)}

    @staticmethod
    def _session(session: Session | None, request: gr.Request | None) -> Session:
        """This page's session, bound to the browser's session cookie (its uploads and exports)."""
        session = session or Session()
        if not session.owner and request is not None:
            session.owner = request_sid(getattr(request, "cookies", None)) or ""
        return session

    def _session_closed(self, session: Session | None) -> None:
        """Gradio dropped the page's state (tab closed): its exports and finished jobs go."""
        if isinstance(session, Session):
            for folder in (session.id, export_folder_id(session.id)):
                shutil.rmtree(self.access.export_folder(session.owner, folder), ignore_errors=True)
            self.writer.forget(session.id)

    def _refreshed(self, session: Session) -> dict:
        """Start view, library table, filter and delete choices, versions (after any corpus change);
        a brief this page shows is rebuilt (the brief's timer shows it)."""
        c = self.c
        overview = self.ws.overview()
        choices = self.ws.filter_choices(overview.documents)  # the summaries the overview just built
        brief = {}
        if session.brief is not None and self.ws.brief_status().state == BUILDING:
            brief = {c.brief_timer: gr.Timer(active=True)}
        return {**brief,
            c.start: gr.HTML(render.render_start(overview), visible=not session.turns),
            c.library: render.render_library(overview.documents),
            c.sources: gr.Dropdown(choices=choices["sources"]),
            c.documents: gr.Dropdown(choices=choices["documents"]),
            c.delete_choice: gr.Dropdown(choices=choices["documents"], value=None),
            c.about: self.ws.versions(),
        }

    def show_pending(self, question: str, session: Session | None) -> dict:
        c = self.c
        question = clean_question(question)
        if not question:
            return {c.ask_error: render.render_message("Type a question first.", "error")}
        return {c.transcript: gr.HTML(render.render_transcript(session or Session(), pending=question), visible=True),
                c.start: gr.HTML(visible=False), c.ask_error: ""}

    def respond(self, question: str, session: Session | None, mode: str, top_k: float, sources: list[str] | None,
                documents: list[str] | None, date_from: str, date_to: str, request: gr.Request):
        """Answer ``question`` in this session (follow-ups use its history)."""
        yield from self._answer(session, request, lambda: (question, self.ws.options(mode, top_k, sources, documents,
                                                                                      date_from, date_to)))

    def more_evidence(self, session: Session | None, mode: str, top_k: float, sources: list[str] | None,
                      documents: list[str] | None, date_from: str, date_to: str, request: gr.Request):
        """Ask the latest question again with twice the passages, so the answer quotes more."""
        session = self._session(session, request)
        yield from self._answer(session, request, lambda: self.ws.more_evidence(
            session, self.ws.options(mode, top_k, sources, documents, date_from, date_to)))

    def _answer(self, session: Session | None, request: gr.Request, asked):
        """``asked()`` -> (question, options); yields the views while it is answered."""
        session = self._session(session, request)
        try:
            question, options = asked()
            for item in self.ws.ask_stream(session, question, options):
                if isinstance(item, str):  # the draft of a streaming (LLM) answer
                    yield {self.c.transcript: render.render_transcript(session, pending=clean_question(question),
                                                                       draft=item)}
                else:
                    yield self._ask_view(session, answer=item.answer.to_json())
        except UserError as exc:
            yield self._ask_view(session, error=str(exc), keep_question=True)
        except Exception as exc:  # a bug: the traceback goes to the log, the user gets a sentence, not "Error"
            log.exception("Answering a question failed")
            yield self._ask_view(session, error=f"Something went wrong while answering ({type(exc).__name__}: {exc}); "
                                 "the details are in the server log. Try again or rephrase.", keep_question=True)

    def _ask_view(self, session: Session, error: str | None = None, answer: dict | None = None,
                  keep_question: bool = False) -> dict:
        c = self.c
        has_turns = bool(session.turns)
        view = {
            c.transcript: gr.HTML(render.render_transcript(session), visible=has_turns),
            c.start: gr.HTML(render.render_start(self.ws.overview()) if not has_turns else "", visible=not has_turns),
            c.evidence: render.render_evidence(session, self.ws.context),
            c.source: render.render_source(None),
            c.session: session,
            c.ask_error: render.render_message(error, "error") if error else "",
            c.exports: render.render_exports(self._exports(session) if has_turns else {}),
        }
        if not keep_question:
            view[c.question] = ""
        if answer is not None:
            view[c.answer_json] = answer
        return view

    def _exports(self, session: Session) -> dict[str, str]:
        """Links to freshly written exports, which only this browser can download."""
        folder = self.access.export_folder(session.owner, session.id)
        return {k: export_url(p) for k, p in self.ws.write_exports(session, folder).items()}

    def take_example(self, evt: gr.EventData) -> dict:
        example = getattr(evt, "example", None)  # data-example of the clicked button (layout.CLICK_JS)
        return {self.c.question: example} if example else {}

    def open_citation(self, session: Session | None, evt: gr.EventData) -> dict:
        key = getattr(evt, "cite", None)  # data-cite of the clicked marker or card (layout.CLICK_JS)
        session = session or Session()
        found = session.find(key) if key else None
        if found is None:
            return {}
        return {self.c.evidence: render.render_evidence(session, self.ws.context, turn_index=found[0], active=key),
                self.c.source: render.render_source(self.ws.source_view(session, key))}

    def new_conversation(self, session: Session | None, request: gr.Request) -> dict:
        owner = ""
        if session is not None:
            shutil.rmtree(self.access.export_folder(session.owner, session.id), ignore_errors=True)
            owner = session.owner
        return {**self._ask_view(self._session(Session(owner=owner), request)), self.c.answer_json: None}

    def filters_line(self, sources, documents, date_from, date_to) -> dict:
        titles = dict((doc_id, title) for title, doc_id in self.ws.filter_choices()["documents"])
        return {self.c.filters_line: render.render_filters_line(
            sources or [], [titles.get(d, d) for d in documents or []], (date_from or "").strip(),
            (date_to or "").strip())}

    # ----------------------------------------------------------- brief handlers
    def open_brief(self, session: Session | None, request: gr.Request) -> dict:
        """The Brief tab: the index's brief, or its build started in the background (the timer
        polls it); a brief that failed for this index state is tried again."""
        return self._brief_view(self._session(session, request), self.ws.brief_status(retry=True), whole=True)

    def poll_brief(self, session: Session | None, request: gr.Request) -> dict:
        return self._brief_view(self._session(session, request), self.ws.brief_status())

    def _brief_view(self, session: Session, status: BriefStatus, whole: bool = False) -> dict:
        """The brief view for ``status``: its banner, and the brief itself when it is another than
        the page shows (or ``whole``): then the page's clicks resolve against the new one, its
        downloads are written, the quote panels emptied. The timer's polls during a build send
        the banner only."""
        c = self.c
        view = {c.brief_timer: gr.Timer(active=status.state == BUILDING), c.session: session,
                c.brief_status: render_brief.render_brief_status(status)}
        if status.brief is not None and status.brief is not session.brief:
            session.brief = status.brief
            session.brief_links = self._brief_exports(session)
            view.update({c.brief_quotes: render_brief.render_brief_quotes(None, self.ws.context),
                         c.brief_source: render.render_source(None)})
            whole = True
        if whole:
            view[c.brief] = render_brief.render_brief(session.brief, session.brief_links)
        return view

    def _brief_exports(self, session: Session) -> dict[str, str]:
        assert session.brief is not None
        try:
            folder = self.access.export_folder(session.owner, export_folder_id(session.id))
            return {k: export_url(p) for k, p in write_brief_exports(session.brief, folder).items()}
        except OSError:  # the brief is still shown, without downloads
            log.exception("Writing the brief's downloads failed")
            return {}

    def open_brief_quote(self, session: Session | None, evt: gr.EventData) -> dict:
        key = getattr(evt, "cite", None)  # data-cite of the clicked [n] or matrix cell (layout.CLICK_JS)
        found = self.ws.brief_quotes(session.brief if session else None, key) if key else None
        if found is None:
            return {}
        clicked, line = found
        return {self.c.brief_quotes: render_brief.render_brief_quotes(found, self.ws.context),
                self.c.brief_source: render.render_source(self.ws.quote_view(clicked, line))}

    # --------------------------------------------------------- library handlers
    def on_upload(self, files: list[str] | None, session: Session | None, request: gr.Request) -> dict:
        """Check and store the files, queue their ingest, return at once (the timer shows the rest)."""
        c = self.c
        session = self._session(session, request)
        if not files:
            return {c.session: session}
        try:
            staged = self.ws.stage([(Path(f).name, Path(f)) for f in files])
        finally:  # Gradio's copy of the upload is not needed (nor served) any more
            self.access.release(request_sid(getattr(request, "cookies", None)), files)
        if not staged.saved:  # nothing acceptable: the per-file reasons, now
            return {c.upload_result: render.render_upload_result(self.ws.ingest(staged)), c.upload: None,
                    c.timer: gr.Timer(active=False), c.session: session}
        self.writer.submit_upload(session.id, staged)
        return {c.upload_result: self._jobs_view(session), c.upload: None, c.timer: gr.Timer(active=True),
                c.session: session}

    def poll_jobs(self, session: Session | None) -> dict:
        """The timer: this session's uploads and deletions; the library is refreshed once a job ends."""
        c = self.c
        if session is None:
            return {c.timer: gr.Timer(active=False)}
        jobs = self.writer.jobs(session.id)
        ended = [j for j in jobs if j.state == DONE and not j.shown]
        for j in ended:
            j.shown = True
        deletion = next((j for j in ended if j.kind == "delete"), None)
        view = {c.upload_result: self._jobs_view(session), c.timer: gr.Timer(active=any(j.state != DONE for j in jobs))}
        if deletion:
            view[c.delete_result] = render.render_message(deletion.message, "ok" if deletion.ok else "error")
        return {**view, **(self._refreshed(session) if ended else {})}

    def _jobs_view(self, session: Session) -> str:
        uploads = [j for j in self.writer.jobs(session.id) if j.kind == "upload"][:3]
        running = any(j.state != DONE and j.started is not None for j in uploads)
        return render.render_jobs(uploads, self.writer.ahead, time.monotonic(),
                                  embedding_progress() if running else None)

    def confirm_delete(self, doc_id: str | None) -> dict:
        c = self.c
        hidden = gr.Row(visible=False)
        if not doc_id:
            return {c.confirm_row: hidden, c.confirm_text: "",
                    c.delete_result: render.render_message("Choose a document to delete first.", "error")}
        doc = self.ws.summary(doc_id)
        if doc is None:
            return {c.confirm_row: hidden, c.confirm_text: "",
                    c.delete_result: render.render_message("That document is no longer in the index.", "error")}
        text = (f"Delete “{doc.title}” ({doc.n_chunks} passages)? Answers already given keep their quotes, "
                "but the document can no longer be cited.")
        return {c.confirm_row: gr.Row(visible=True), c.confirm_text: render.render_message(text), c.delete_result: ""}

    def delete(self, doc_id: str | None, session: Session | None, request: gr.Request) -> dict:
        """Queue the deletion behind any upload being indexed; wait a little for it, else the
        timer reports it."""
        c = self.c
        session = self._session(session, request)
        doc = self.ws.summary(doc_id) if doc_id else None
        view = {c.confirm_row: gr.Row(visible=False), c.session: session}
        if doc is None:
            message = "That document is not in the index any more: refresh the library."
            return {**view, c.delete_result: render.render_message(message, "error"), **self._refreshed(session)}
        job = self.writer.submit_delete(session.id, doc.doc_id, doc.title)
        if job.done.wait(self.delete_wait):
            job.shown = True
            return {**view, c.delete_result: render.render_message(job.message, "ok" if job.ok else "error"),
                    **self._refreshed(session)}
        message = f"Deleting “{doc.title}” after the upload being indexed…"
        return {**view, c.delete_result: render.render_message(message), c.timer: gr.Timer(active=True)}


def build_ui(workspace: Workspace, llm_available: bool = False, export_dir: Path | None = None) -> WorkspaceUI:
    return WorkspaceUI(workspace, llm_available=llm_available, export_dir=export_dir)
