"""The workspace's page: its components (``Components``, what the event functions read and write,
by name), the three tabs' layout, the browser-side scripts and the look (local fonts only)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from chatbot.retrieve import TOP_K_MAX
from workspace.session import Session
from workspace.settings import UploadLimits
from workspace.brief import IDLE, BriefStatus
from workspace.ui import render, render_brief
from workspace.workspace import Workspace

# Clicks on [data-cite] / [data-example] elements inside a gr.HTML become its "click" event; a
# [data-tab] element switches to the tab of that name (the tab's own select event does the rest).
CLICK_JS = """
const fire = (t) => t.dataset.cite ? trigger('click', {cite: t.dataset.cite})
                                   : trigger('click', {example: t.dataset.example});
element.addEventListener('click', (e) => {
  const tab = e.target.closest('[data-tab]');
  if (tab && element.contains(tab)) {
    e.preventDefault();
    const b = [...document.querySelectorAll('button[role=tab]')].find(x => x.textContent.trim() === tab.dataset.tab);
    if (b) b.click();
    return;
  }
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
    brief_tab: Any = None
    brief: Any = None
    brief_quotes: Any = None
    brief_source: Any = None
    brief_timer: Any = None
    brief_status: Any = None
    ask_btn: Any = None
    new_btn: Any = None
    more_btn: Any = None
    delete_btn: Any = None
    confirm_btn: Any = None
    cancel_btn: Any = None

    @property
    def settings(self) -> list:
        return [self.mode, self.top_k, self.sources, self.documents, self.date_from, self.date_to]


CSS_PATH = Path(__file__).with_name("ui.css")
JOB_POLL = 1.0  # seconds between two looks at this session's running uploads and deletions
# Local fonts only: the app must look right offline (the default theme fetches web fonts).
SYSTEM_FONTS = ("ui-sans-serif", "system-ui", "Segoe UI", "Roboto", "Helvetica Neue", "Arial", "sans-serif")
MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "Liberation Mono", "monospace")
LOGIN_NOTE = ("After 5 failed logins, the next attempt waits 1 s, then 2, 4, 8 … up to 5 minutes "
              "(per user name and per address).")


def theme() -> gr.themes.Base:
    return gr.themes.Default(primary_hue="blue", neutral_hue="slate", font=SYSTEM_FONTS, font_mono=MONO_FONTS)


def ask_tab(c: Components, ws: Workspace) -> None:
    c.filters_line = gr.HTML("", elem_id="qa-filters-line")
    with gr.Row(equal_height=False):
        with gr.Column(scale=6, min_width=420):
            c.start = gr.HTML("", elem_id="qa-start", js_on_load=CLICK_JS)
            c.transcript = gr.HTML("", elem_id="qa-transcript-box", js_on_load=TRANSCRIPT_JS, visible=False)
            c.ask_error = gr.HTML("", elem_id="qa-ask-error")
            with gr.Row(elem_classes="qa-ask-row"):
                c.question = gr.Textbox(placeholder="Ask a question about the documents…", show_label=False,
                                        lines=1, max_lines=4, scale=8, elem_id="qa-question", autofocus=True)
                c.ask_btn = gr.Button("Ask", variant="primary", scale=0, min_width=90, elem_id="qa-ask")
            with gr.Row(elem_classes="qa-tools-row"):
                # scale=0 sizes a button to min_width (not to its text): the widths fit the labels.
                c.new_btn = gr.Button("New conversation", size="sm", scale=0, min_width=125, elem_id="qa-new")
                c.more_btn = gr.Button("More evidence", size="sm", scale=0, min_width=110, elem_id="qa-more")
                c.exports = gr.HTML("", elem_id="qa-exports", padding=False)
            with gr.Accordion("Latest answer as JSON", open=False):
                c.answer_json = gr.JSON(value=None, elem_id="qa-answer-json")
        with gr.Column(scale=5, min_width=360):
            c.evidence = gr.HTML(render.render_evidence(Session(), ws.context), elem_id="qa-evidence",
                                 js_on_load=CLICK_JS)
            c.source = gr.HTML(render.render_source(None), elem_id="qa-source", js_on_load=SOURCE_JS)


def brief_tab(c: Components, ws: Workspace) -> None:
    """The index's onboarding brief beside a quote panel and a source viewer of its own."""
    with gr.Row(equal_height=False):
        with gr.Column(scale=6, min_width=420):
            c.brief_status = gr.HTML(render_brief.render_brief_status(BriefStatus(IDLE, None, False)),
                                     elem_id="qa-brief-status")
            c.brief = gr.HTML(render_brief.render_brief(None), elem_id="qa-brief", js_on_load=CLICK_JS)
        with gr.Column(scale=5, min_width=360, elem_id="qa-brief-side"):  # stays in view (ui.css)
            c.brief_quotes = gr.HTML(render_brief.render_brief_quotes(None, ws.context), elem_id="qa-brief-quotes",
                                     js_on_load=CLICK_JS)
            c.brief_source = gr.HTML(render.render_source(None), elem_id="qa-brief-source", js_on_load=SOURCE_JS)
    c.brief_timer = gr.Timer(JOB_POLL, active=False)


def library_tab(c: Components, limits: UploadLimits) -> None:
    c.library = gr.HTML("", elem_id="qa-library")
    gr.Markdown(f"**Add documents** — {', '.join(limits.extensions)}; up to {limits.max_mb:g} MB each, "
                f"{limits.max_files} at a time. Files are stored under generated names and indexed in the "
                "background (one upload or deletion at a time); the outcome of each file shows here.")
    c.upload = gr.File(label="Upload files", file_count="multiple", elem_id="qa-upload", height=120)
    c.upload_result = gr.HTML("", elem_id="qa-upload-result")
    c.timer = gr.Timer(JOB_POLL, active=False)
    gr.Markdown("**Delete a document** — removes it and all its passages from the index.")
    with gr.Row():
        c.delete_choice = gr.Dropdown(label="Document", choices=[], value=None, scale=4, elem_id="qa-delete-choice")
        c.delete_btn = gr.Button("Delete…", variant="stop", scale=0, min_width=120, elem_id="qa-delete")
    with gr.Row(visible=False) as c.confirm_row:
        c.confirm_text = gr.HTML("")
        c.confirm_btn = gr.Button("Yes, delete it", variant="stop", size="sm", elem_id="qa-delete-confirm")
        c.cancel_btn = gr.Button("Cancel", size="sm")
    c.delete_result = gr.HTML("", elem_id="qa-delete-result")


def settings_tab(c: Components, llm_available: bool, top_k: int) -> None:
    modes = [("Extractive — exact sentences from the sources", "extractive")]
    if llm_available:
        modes.append(("LLM — written answer; every sentence checked against its sources", "llm"))
    c.mode = gr.Radio(modes, value="llm" if llm_available else "extractive", label="Answer mode",
                      info=None if llm_available else "LLM answers need QA_LLM (see README).",
                      elem_id="qa-mode")
    c.top_k = gr.Slider(1, TOP_K_MAX, value=top_k, step=1, label="Passages to retrieve",
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
