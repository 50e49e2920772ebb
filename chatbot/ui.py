"""The Gradio workspace. It only renders: behaviour is in ``chatbot/workspace.py`` (unit-tested
without Gradio) and markup in ``chatbot/render.py`` (everything from documents escaped).

Tabs: **Ask** (start view, chat with clickable ``[n]`` markers, evidence panel, source viewer,
exports), **Library** (documents, upload, delete), **Settings** (answer mode, passages, filters).
Conversation state lives in ``gr.State``: one ``Session`` per browser session.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from chatbot import render
from chatbot.types import QAError
from chatbot.workspace import Session, Workspace
from ingest.types import IngestError

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
    exports: dict[str, Any] = field(default_factory=dict)
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
    delete_choice: Any = None
    confirm_row: Any = None
    confirm_text: Any = None
    delete_result: Any = None
    about: Any = None

    @property
    def settings(self) -> list:
        return [self.mode, self.top_k, self.sources, self.documents, self.date_from, self.date_to]


class WorkspaceUI:
    """Builds the Blocks for one ``Workspace``; ``launch_options()`` gives css/js/paths for launch()."""

    def __init__(self, workspace: Workspace, llm_available: bool = False, export_dir: Path | None = None) -> None:
        self.ws = workspace
        self.llm_available = llm_available
        self.export_dir = Path(export_dir or tempfile.mkdtemp(prefix="qa-exports-"))
        self.c = Components()
        self.demo = self._build()

    def launch_options(self) -> dict[str, Any]:
        return {"css": CSS_PATH.read_text(encoding="utf-8"), "allowed_paths": [str(self.export_dir)], "max_file_size": self.ws.limits.max_bytes,
                "theme": gr.themes.Default(primary_hue="blue", neutral_hue="slate", font=SYSTEM_FONTS,
                                           font_mono=MONO_FONTS)}

    # ------------------------------------------------------------------ layout
    def _build(self) -> gr.Blocks:
        with gr.Blocks(title="Cited Q&A workspace", analytics_enabled=False, fill_width=True) as demo:
            self.c.session = gr.State(None)
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
                    for key, label, width in (("answer.md", "⤓ Answer .md", 100), ("answer.json", "⤓ Answer .json", 105),
                                              ("conversation.md", "⤓ Conversation .md", 135),
                                              ("conversation.json", "⤓ Conversation .json", 140)):
                        c.exports[key] = gr.DownloadButton(label, size="sm", visible=False, scale=0, min_width=width,
                                                           elem_id="qa-export-" + key.replace(".", "-"))
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
        gr.Markdown(f"**Add documents** — {', '.join(limits.extensions)}; up to {limits.max_mb:g} MB each. "
                    "Files are stored under generated names and indexed straight away.")
        c.upload = gr.File(label="Upload files", file_count="multiple", elem_id="qa-upload", height=120)
        c.upload_result = gr.HTML("", elem_id="qa-upload-result")
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
                       c.answer_json, *c.exports.values()]
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

        library_outputs = [c.upload_result, c.upload, *refresh_outputs]
        c.upload.upload(self.on_upload, [c.upload, c.session], library_outputs, api_visibility="private",
                        show_progress_on=[c.upload])
        self.delete_btn.click(self.confirm_delete, [c.delete_choice], [c.confirm_row, c.confirm_text, c.delete_result],
                              api_visibility="private")
        self.cancel_btn.click(lambda: gr.Row(visible=False), None, [c.confirm_row], api_visibility="private")
        self.confirm_btn.click(self.delete, [c.delete_choice, c.session], [c.delete_result, c.confirm_row, *refresh_outputs],
                               api_visibility="private")
        gr.on([x.change for x in (c.sources, c.documents)] + [c.date_from.blur, c.date_to.blur],
              self.filters_line, [c.sources, c.documents, c.date_from, c.date_to], [c.filters_line],
              api_visibility="private", queue=False)

    # ------------------------------------------------------------- ask handlers
    def on_load(self, session: Session | None):
        session = session or Session()
        return [session, gr.HTML(render.render_transcript(session), visible=bool(session.turns)),
                *self._refreshed(session)]

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
        if not (question or "").strip():
            return [gr.skip(), gr.skip(), render.render_message("Type a question first.", "error")]
        return [gr.HTML(render.render_transcript(session, pending=question.strip()), visible=True),
                gr.HTML(visible=False), ""]

    def respond(self, question: str, session: Session | None, mode: str, top_k: float, sources: list[str] | None,
                documents: list[str] | None, date_from: str, date_to: str):
        """Answer ``question`` in this session (follow-ups use its history)."""
        session = session or Session()
        try:
            options = self.ws.options(mode, top_k, sources, documents, date_from, date_to)
            for item in self.ws.ask_stream(session, question, options):
                if isinstance(item, str):  # the draft of a streaming (LLM) answer
                    draft = render.render_transcript(session, pending=(question or "").strip(), draft=item)
                    yield [draft, *[gr.skip()] * (len(self._ask_outputs) - 1)]
                else:
                    yield self._ask_view(session, answer=item.answer.to_json())
        except (QAError, IngestError) as exc:
            yield self._ask_view(session, error=str(exc), keep_question=True)

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
            *[gr.DownloadButton(value=exports.get(k), visible=k in exports) for k in self.c.exports],
        ]

    def _exports(self, session: Session) -> dict[str, str]:
        folder = self.export_dir / _session_folder(session)
        return {k: str(p) for k, p in self.ws.write_exports(session, folder).items()}

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

    def new_conversation(self, session: Session | None):
        if session is not None:
            shutil.rmtree(self.export_dir / _session_folder(session), ignore_errors=True)
        view = self._ask_view(Session())
        view[7] = None  # clear the JSON panel
        return view

    def filters_line(self, sources, documents, date_from, date_to):
        titles = dict((doc_id, title) for title, doc_id in self.ws.filter_choices()["documents"])
        return render.render_filters_line(sources or [], [titles.get(d, d) for d in documents or []],
                                          (date_from or "").strip(), (date_to or "").strip())

    # --------------------------------------------------------- library handlers
    def on_upload(self, files: list[str] | None, session: Session | None, progress=gr.Progress(track_tqdm=True)):
        if not files:
            return [gr.skip(), gr.skip(), *[gr.skip()] * 6]
        pairs = [(Path(f).name, Path(f)) for f in files]
        try:
            result = self.ws.upload(pairs, progress=lambda fraction, message: progress(fraction, desc=message))
            message = render.render_upload_result(result)
        except (QAError, IngestError) as exc:
            message = render.render_message(str(exc), "error")
        return [message, None, *self._refreshed(session or Session())]

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

    def delete(self, doc_id: str | None, session: Session | None):
        try:
            message = render.render_message(self.ws.delete(doc_id or ""), "ok")
        except (QAError, IngestError) as exc:
            message = render.render_message(str(exc), "error")
        return [message, gr.Row(visible=False), *self._refreshed(session or Session())]


def _session_folder(session: Session) -> str:
    return f"session-{session.id}"


def build_ui(workspace: Workspace, llm_available: bool = False, export_dir: Path | None = None) -> WorkspaceUI:
    return WorkspaceUI(workspace, llm_available=llm_available, export_dir=export_dir)
