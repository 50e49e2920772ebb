"""The Gradio workspace. It only renders: behaviour is in ``workspace/`` (unit-tested without
Gradio) and markup in ``workspace/ui/render.py`` (everything from documents escaped).

Tabs: **Ask** (start view, chat with clickable ``[n]`` markers, evidence panel, source viewer,
exports), **Library** (documents, upload, delete), **Settings** (answer mode, passages, filters).
Conversation state lives in ``gr.State``: one ``Session`` per browser session, bound to the
browser's session cookie (``workspace/access.py``: who may read uploads and exports). Uploads and
deletions run on the writer thread (``workspace/jobs.py``); a timer shows their progress.
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import utils as gradio_utils
from starlette.middleware import Middleware

from chatbot.safe_text import clean_question
from chatbot.types import QAError
from ingest.types import IngestError
from workspace.access import AccessMiddleware, FileAccess, export_url, request_sid, routes
from workspace.jobs import DONE, WriteQueue, embedding_progress
from workspace.session import Session
from workspace.throttle import LoginThrottle
from workspace.ui import render
from workspace.workspace import Workspace

# Clicks on [data-cite] / [data-example] elements inside a gr.HTML become its "click" event.
CLICK_JS = """
const fire = (t) => t.dataset.cite ? trigger('click', {cite: t.dataset.cite})
                                   : trigger('click', {example: t.dataset.example});
element.addEventListener('click', (e) => {
  const t = e.target.closest('[data-cite],[data-example]');
  if (t && element.contains(t)) { e.preventDefault(); fire(t); }
});
element.addEventListener('keydown', (e) => {
  if (e.key !== 'Enter' && e.key !== ' ') return;
  const t = e.target.closest('[data-cite][role=button]');
  if (t && element.contains(t)) { e.preventDefault(); fire(t); }
});
"""

# Keep the newest turn in view.
TRANSCRIPT_JS = CLICK_JS + """
watch('value', () => requestAnimationFrame(() => {
  const box = element.querySelector('.qa-transcript');
  if (box) box.scrollTop = box.scrollHeight;
}));
"""

# Open the source viewer scrolled to the highlighted quote.
SOURCE_JS = """
watch('value', () => requestAnimationFrame(() => {
  const hit = element.querySelector('mark.qa-hit');
  if (hit) hit.scrollIntoView({block: 'center'});
}));
"""

log = logging.getLogger(__name__)
CSS_PATH = Path(__file__).with_name("ui.css")
# Local fonts only: the app must look right offline (the default theme fetches web fonts).
SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif")
MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace")


@dataclass
class Components:
    """Handles on the components the event functions read and write."""

    session: Any = None
    start: Any = None
    transcript: Any = None
    question: Any = None
    ask_error: Any = None
    evidence: Any = None
    source: Any = None
    answer_json: Any = None
    exports: Any = None
    filters_line: Any = None
    mode: Any = None
    top_k: Any = None
    sources: Any = None
    documents: Any = None
    date_from: Any = None
    date_to: Any = None
    library: Any = None
    upload: Any = None
    upload_result: Any = None
    timer: Any = None
    delete_choice: Any = None
    confirm_row: Any = None
    confirm_text: Any = None
    delete_result: Any = None
    about: Any = None

    @property
    def settings(self) -> list:
        return [self.mode, self.top_k, self.sources, self.documents, self.date_from, self.date_to]


LOGIN_NOTE = ("After 5 failed logins, the next attempt waits 1 s, then 2, 4, 8 … up to 5 minutes "
              "(per user name and per address).")


class WorkspaceUI:
    """Builds the Blocks for one ``Workspace``; ``launch_options()`` gives everything for launch()."""

    def __init__(self, workspace: Workspace, llm_available: bool = False, export_dir: Path | None = None,
                 writer: WriteQueue | None = None) -> None:
        self.ws = workspace
        self.llm_available = llm_available
        self._own_export_dir = export_dir is None
        self.export_dir = Path(export_dir or tempfile.mkdtemp(prefix="qa-exports-"))
        self.writer = writer or WriteQueue(workspace)
        self.delete_wait = 5.0  # seconds a delete click waits for its turn before the timer takes over
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
            "theme": gr.themes.Default(primary_hue="blue", neutral_hue="slate", font=SYSTEM_FONTS,
                                       font_mono=MONO_FONTS),
            "auth": auth, "auth_message": LOGIN_NOTE if auth else None,
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
        # delete_cache: uploads nobody handled (direct API calls) leave Gradio's temp folder within 2 h
        with gr.Blocks(title="Cited Q&A workspace", analytics_enabled=False, fill_width=True,
                       delete_cache=(1800, 3600)) as demo:
            self.c.session = gr.State(None, delete_callback=self._session_closed)
            gr.HTML('<div class="qa-header"><span class="qa-logo">❝</span><span>Cited Q&amp;A</span>'
                    '<span class="qa-header-sub">answers quote the documents, exactly</span></div>')
            with gr.Tabs():
                with gr.Tab("Ask", id="ask"):
                    self._ask_tab()
                with gr.Tab("Library", id="library"):
                    self._library_tab()
                with gr.Tab("Settings", id="settings"):
                    self._settings_tab()
            self._wire(demo)
        return demo

    def _ask_tab(self) -> None:
        c = self.c
        c.filters_line = gr.HTML("", elem_id="qa-filters-line")
        with gr.Row(equal_height=False):
            with gr.Column(scale=6, min_width=420):
                c.start = gr.HTML("", elem_id="qa-start", js_on_load=CLICK_JS)
                c.transcript = gr.HTML("", elem_id="qa-transcript-box", js_on_load=TRANSCRIPT_JS, visible=False)
                c.ask_error = gr.HTML("", elem_id="qa-ask-error")
                with gr.Row(elem_classes="qa-ask-row"):
                    c.question = gr.Textbox(placeholder="Ask a question about the documents…", show_label=False,
                                            lines=1, max_lines=4, scale=8, elem_id="qa-question", autofocus=True)
                    self.ask_btn = gr.Button("Ask", variant="primary", scale=0, min_width=90, elem_id="qa-ask")
                with gr.Row(elem_classes="qa-tools-row"):
                    # scale=0 sizes a button to min_width (not to its text): the widths fit the labels.
                    self.new_btn = gr.Button("New conversation", size="sm", scale=0, min_width=125, elem_id="qa-new")
                    self.more_btn = gr.Button("More evidence", size="sm", scale=0, min_width=110, elem_id="qa-more")
                    c.exports = gr.HTML("", elem_id="qa-exports", padding=False)
                with gr.Accordion("Latest answer as JSON", open=False):
                    c.answer_json = gr.JSON(value=None, elem_id="qa-answer-json")
            with gr.Column(scale=5, min_width=360):
                c.evidence = gr.HTML(render.render_evidence(Session(), self.ws.context), elem_id="qa-evidence",
                                     js_on_load=CLICK_JS)
                c.source = gr.HTML(render.render_source(None), elem_id="qa-source", js_on_load=SOURCE_JS)

    def _library_tab(self) -> None:
        c = self.c
        limits = self.ws.limits
        c.library = gr.HTML("", elem_id="qa-library")
        gr.Markdown(f"**Add documents** — {', '.join(limits.extensions)}; up to {limits.max_mb:g} MB each, "
                    f"{limits.max_files} at a time. Files are stored under generated names and indexed in the "
                    "background (one upload or deletion at a time); the outcome of each file shows here.")
        c.upload = gr.File(label="Upload files", file_count="multiple", elem_id="qa-upload", height=120)
        c.upload_result = gr.HTML("", elem_id="qa-upload-result")
        c.timer = gr.Timer(1.0, active=False)
        gr.Markdown("**Delete a document** — removes it and all its passages from the index.")
        with gr.Row():
            c.delete_choice = gr.Dropdown(label="Document", choices=[], value=None, scale=4, elem_id="qa-delete-choice")
            self.delete_btn = gr.Button("Delete…", variant="stop", scale=0, min_width=120, elem_id="qa-delete")
        with gr.Row(visible=False) as c.confirm_row:
            c.confirm_text = gr.HTML("")
            self.confirm_btn = gr.Button("Yes, delete it", variant="stop", size="sm", elem_id="qa-delete-confirm")
            self.cancel_btn = gr.Button("Cancel", size="sm")
        c.delete_result = gr.HTML("", elem_id="qa-delete-result")

    def _settings_tab(self) -> None:
        c = self.c
        modes = [("Extractive — exact sentences from the sources", "extractive")]
        if self.llm_available:
            modes.append(("LLM — written answer; every sentence checked against its sources", "llm"))
        c.mode = gr.Radio(modes, value="llm" if self.llm_available else "extractive", label="Answer mode",
                          info=None if self.llm_available else "LLM answers need QA_LLM (see README).",
                          elem_id="qa-mode")
        top_k = self.ws.service.retriever.config.top_k
        c.top_k = gr.Slider(1, 30, value=top_k, step=1, label="Passages to retrieve",
                            info="How many passages the answer may draw on (more: slower, broader).",
                            elem_id="qa-top-k")
        gr.Markdown("**Filters** — answer only from some documents (empty: all).")
        with gr.Row():
            c.sources = gr.Dropdown(label="Sources", choices=[], multiselect=True, elem_id="qa-f-sources")
            c.documents = gr.Dropdown(label="Documents", choices=[], multiselect=True, elem_id="qa-f-docs")
        with gr.Row():
            c.date_from = gr.Textbox(label="Published from", placeholder="YYYY-MM-DD", elem_id="qa-f-from")
            c.date_to = gr.Textbox(label="Published to", placeholder="YYYY-MM-DD", elem_id="qa-f-to")
        with gr.Accordion("Index and model versions", open=False):
            c.about = gr.JSON(value=None)

    # ------------------------------------------------------------------ events
    def _wire(self, demo: gr.Blocks) -> None:
        c = self.c
        refresh_outputs = [c.start, c.library, c.sources, c.documents, c.delete_choice, c.about]
        demo.load(self.on_load, [c.session], [c.session, c.transcript, *refresh_outputs], api_visibility="private")

        ask_inputs = [c.question, c.session, *c.settings]
        ask_outputs = [c.transcript, c.start, c.evidence, c.source, c.session, c.question, c.ask_error,
                       c.answer_json, c.exports]
        self._ask_outputs = ask_outputs
        pending = gr.on([c.question.submit, self.ask_btn.click], self.show_pending, [c.question, c.session],
                        [c.transcript, c.start, c.ask_error], api_visibility="private", queue=False)
        pending.then(self.respond, ask_inputs, ask_outputs, api_name="respond")
        example = c.start.click(self.take_example, None, [c.question], api_visibility="private", queue=False)
        example.then(self.show_pending, [c.question, c.session], [c.transcript, c.start, c.ask_error],
                     api_visibility="private", queue=False).then(self.respond, ask_inputs, ask_outputs,
                                                                 api_visibility="private")
        for panel in (c.transcript, c.evidence):
            panel.click(self.open_citation, [c.session], [c.evidence, c.source], api_visibility="private")
        self.new_btn.click(self.new_conversation, [c.session], ask_outputs, api_visibility="private")
        self.more_btn.click(self.more_evidence, ask_inputs[1:], ask_outputs, api_visibility="private")

        c.upload.upload(self.on_upload, [c.upload, c.session], [c.upload_result, c.upload, c.timer, c.session],
                        api_visibility="private", show_progress_on=[c.upload])
        self.delete_btn.click(self.confirm_delete, [c.delete_choice], [c.confirm_row, c.confirm_text, c.delete_result],
                              api_visibility="private")
        self.cancel_btn.click(lambda: gr.Row(visible=False), None, [c.confirm_row], api_visibility="private")
        self.confirm_btn.click(self.delete, [c.delete_choice, c.session],
                               [c.delete_result, c.confirm_row, c.timer, c.session, *refresh_outputs],
                               api_visibility="private")
        c.timer.tick(self.poll_jobs, [c.session], [c.upload_result, c.delete_result, c.timer, *refresh_outputs],
                     api_visibility="private", queue=False, show_progress="hidden")
        gr.on([x.change for x in (c.sources, c.documents)] + [c.date_from.blur, c.date_to.blur],
              self.filters_line, [c.sources, c.documents, c.date_from, c.date_to], [c.filters_line],
              api_visibility="private", queue=False)

    # ------------------------------------------------------------- ask handlers
    def on_load(self, session: Session | None, request: gr.Request):
        session = self._session(session, request)
        return [session, gr.HTML(render.render_transcript(session), visible=bool(session.turns)),
                *self._refreshed(session)]

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
            shutil.rmtree(self.access.export_folder(session.owner, session.id), ignore_errors=True)
            self.writer.forget(session.id)

    def _refreshed(self, session: Session) -> list:
        """Start view, library table, filter and delete choices, versions (after any corpus change)."""
        overview = self.ws.overview()
        choices = self.ws.filter_choices()
        return [
            gr.HTML(render.render_start(overview), visible=not session.turns),
            render.render_library(overview.documents),
            gr.Dropdown(choices=choices["sources"]),
            gr.Dropdown(choices=choices["documents"]),
            gr.Dropdown(choices=choices["documents"], value=None),
            self.ws.versions(),
        ]

    def show_pending(self, question: str, session: Session | None):
        session = session or Session()
        question = clean_question(question)
        if not question:
            return [gr.skip(), gr.skip(), render.render_message("Type a question first.", "error")]
        return [gr.HTML(render.render_transcript(session, pending=question), visible=True),
                gr.HTML(visible=False), ""]

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
                    draft = render.render_transcript(session, pending=clean_question(question), draft=item)
                    yield [draft, *[gr.skip()] * (len(self._ask_outputs) - 1)]
                else:
                    yield self._ask_view(session, answer=item.answer.to_json())
        except (QAError, IngestError) as exc:
            yield self._ask_view(session, error=str(exc), keep_question=True)
        except Exception as exc:  # a bug: the traceback goes to the log, the user gets a sentence, not "Error"
            log.exception("Answering a question failed")
            yield self._ask_view(session, error=f"Something went wrong while answering ({type(exc).__name__}: {exc}); "
                                 "the details are in the server log. Try again or rephrase.", keep_question=True)

    def _ask_view(self, session: Session, error: str | None = None, answer: dict | None = None,
                  keep_question: bool = False) -> list:
        has_turns = bool(session.turns)
        exports = self._exports(session) if has_turns else {}
        return [
            gr.HTML(render.render_transcript(session), visible=has_turns),
            gr.HTML(render.render_start(self.ws.overview()) if not has_turns else "", visible=not has_turns),
            render.render_evidence(session, self.ws.context),
            render.render_source(None),
            session,
            gr.skip() if keep_question else "",
            render.render_message(error, "error") if error else "",
            answer if answer is not None else gr.skip(),
            render.render_exports(exports),
        ]

    def _exports(self, session: Session) -> dict[str, str]:
        """Links to freshly written exports, which only this browser can download."""
        folder = self.access.export_folder(session.owner, session.id)
        return {k: export_url(p) for k, p in self.ws.write_exports(session, folder).items()}

    def take_example(self, evt: gr.EventData):
        example = (getattr(evt, "_data", None) or {}).get("example")
        return example if example else gr.skip()

    def open_citation(self, session: Session | None, evt: gr.EventData):
        key = (getattr(evt, "_data", None) or {}).get("cite")
        session = session or Session()
        found = session.find(key) if key else None
        if found is None:
            return [gr.skip(), gr.skip()]
        view = self.ws.source_view(session, key)
        return [render.render_evidence(session, self.ws.context, turn_index=found[0], active=key),
                render.render_source(view)]

    def new_conversation(self, session: Session | None, request: gr.Request):
        owner = ""
        if session is not None:
            shutil.rmtree(self.access.export_folder(session.owner, session.id), ignore_errors=True)
            owner = session.owner
        view = self._ask_view(self._session(Session(owner=owner), request))
        view[7] = None  # clear the JSON panel
        return view

    def filters_line(self, sources, documents, date_from, date_to):
        titles = dict((doc_id, title) for title, doc_id in self.ws.filter_choices()["documents"])
        return render.render_filters_line(sources or [], [titles.get(d, d) for d in documents or []],
                                          (date_from or "").strip(), (date_to or "").strip())

    # --------------------------------------------------------- library handlers
    def on_upload(self, files: list[str] | None, session: Session | None, request: gr.Request):
        """Check and store the files, queue their ingest, return at once (the timer shows the rest)."""
        session = self._session(session, request)
        if not files:
            return [gr.skip(), gr.skip(), gr.skip(), session]
        try:
            staged = self.ws.stage([(Path(f).name, Path(f)) for f in files])
        finally:  # Gradio's copy of the upload is not needed (nor served) any more
            self.access.release(request_sid(getattr(request, "cookies", None)), files)
        if not staged.saved:  # nothing acceptable: the per-file reasons, now
            return [render.render_upload_result(self.ws.ingest(staged)), None, gr.Timer(active=False), session]
        self.writer.submit_upload(session.id, staged)
        return [self._jobs_view(session), None, gr.Timer(active=True), session]

    def poll_jobs(self, session: Session | None):
        """The timer: this session's uploads and deletions; the library is refreshed once a job ends."""
        if session is None:
            return [gr.skip(), gr.skip(), gr.Timer(active=False), *[gr.skip()] * 6]
        jobs = self.writer.jobs(session.id)
        ended = [j for j in jobs if j.state == DONE and not j.shown]
        for j in ended:
            j.shown = True
        deletion = next((j for j in ended if j.kind == "delete"), None)
        return [
            self._jobs_view(session),
            render.render_message(deletion.message, "ok" if deletion.ok else "error") if deletion else gr.skip(),
            gr.Timer(active=any(j.state != DONE for j in jobs)),
            *(self._refreshed(session) if ended else [gr.skip()] * 6),
        ]

    def _jobs_view(self, session: Session) -> str:
        uploads = [j for j in self.writer.jobs(session.id) if j.kind == "upload"][:3]
        running = any(j.state != DONE and j.started is not None for j in uploads)
        return render.render_jobs(uploads, self.writer.ahead, time.monotonic(),
                                  embedding_progress() if running else None)

    def confirm_delete(self, doc_id: str | None):
        if not doc_id:
            return [gr.Row(visible=False), "", render.render_message("Choose a document to delete first.", "error")]
        doc = self.ws.summary(doc_id)
        if doc is None:
            return [gr.Row(visible=False), "", render.render_message("That document is no longer in the index.",
                                                                     "error")]
        text = (f"Delete “{doc.title}” ({doc.n_chunks} passages)? Answers already given keep their quotes, "
                "but the document can no longer be cited.")
        return [gr.Row(visible=True), render.render_message(text), ""]

    def delete(self, doc_id: str | None, session: Session | None, request: gr.Request):
        """Queue the deletion behind any upload being indexed; wait a little for it, else the
        timer reports it."""
        session = self._session(session, request)
        doc = self.ws.summary(doc_id) if doc_id else None
        if doc is None:
            message = render.render_message("That document is not in the index any more: refresh the library.", "error")
            return [message, gr.Row(visible=False), gr.skip(), session, *self._refreshed(session)]
        job = self.writer.submit_delete(session.id, doc.doc_id, doc.title)
        if job.done.wait(self.delete_wait):
            job.shown = True
            return [render.render_message(job.message, "ok" if job.ok else "error"), gr.Row(visible=False), gr.skip(),
                    session, *self._refreshed(session)]
        message = render.render_message(f"Deleting “{doc.title}” after the upload being indexed…")
        return [message, gr.Row(visible=False), gr.Timer(active=True), session, *[gr.skip()] * 6]


def build_ui(workspace: Workspace, llm_available: bool = False, export_dir: Path | None = None) -> WorkspaceUI:
    return WorkspaceUI(workspace, llm_available=llm_available, export_dir=export_dir)
