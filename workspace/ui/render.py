"""HTML for the workspace. Every piece of document text, title, file name, question and answer
goes through ``esc`` (``html.escape``): nothing from a document is ever inserted as markup.

Interactive elements carry ``data-cite="<turn>:<c|e>:<n>"`` (open a quote in the source viewer)
or ``data-example="<question>"`` (ask it); ``workspace/ui/app.py`` turns those clicks into events.
"""
from __future__ import annotations

import html
from typing import Callable, Sequence

from chatbot.types import NOT_IN_SOURCES, UNSUPPORTED_FLAG, Citation
from workspace.access import library_url
from workspace.jobs import DONE, Job
from workspace.library import UploadResult
from workspace.overview import DocSummary, Overview
from workspace.session import Session, Turn, cite_key
from workspace.sources import QuoteContext, SourceView

UNSUPPORTED_TIP = "The cited passages do not support this sentence: check it before relying on it."


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


# ---------------------------------------------------------------------------- start view
def render_start(overview: Overview, max_docs: int = 8) -> str:
    n_docs = len(overview.documents)
    if n_docs == 0:
        return ('<div class="qa-start"><h2>No documents yet</h2><p>Add articles in the <b>Library</b> tab '
                '(Markdown, text, HTML, PDF or Word), then ask questions about them here.</p></div>')
    if overview.first_date:
        dates = esc(overview.first_date) if overview.first_date == overview.last_date else \
            f"{esc(overview.first_date)} – {esc(overview.last_date)}"
        if overview.undated:
            dates += f" <small>({overview.undated} undated)</small>"
    else:
        dates = "—"
    stats = "".join(f'<div class="qa-stat"><b>{value}</b><span>{label}</span></div>' for value, label in (
        (f"{n_docs:,}", "document" + "s" * (n_docs != 1)),
        (f"{overview.chunks:,}", "indexed passages"),
        (f"{len(overview.sources):,}", "source" + "s" * (len(overview.sources) != 1)),
        (dates, "published"),
    ))
    sources = ", ".join(f"{esc(s)} ({n})" for s, n in overview.sources[:12]) or "not recorded"
    examples = "".join(
        f'<button type="button" class="qa-example" data-example="{esc(q)}">{esc(q)}</button>'
        for q in overview.examples
    )
    docs = "".join(
        f'<li><span class="qa-doc-title">{esc(d.title)}</span>'
        f'<span class="qa-muted"> — {esc(", ".join(x for x in (d.source, d.published) if x) or d.filename)}'
        f' · {plural(d.n_chunks, "passage")}</span></li>'
        for d in overview.documents[:max_docs]
    )
    more = n_docs - max_docs
    if more > 0:
        docs += f'<li class="qa-muted">and {more:,} more in the Library tab</li>'
    return (
        '<div class="qa-start">'
        '<h2>Ask the documents</h2>'
        '<p class="qa-lead">Answers quote exact sentences from the indexed documents. Click a '
        '<span class="qa-cite-demo">[n]</span> marker or an evidence card to see the quote highlighted in its '
        'source. When the documents do not support an answer, the assistant says '
        f'<i>“{esc(NOT_IN_SOURCES)}”</i> and shows the closest passages instead.</p>'
        f'<div class="qa-stats">{stats}</div>'
        f'<p class="qa-muted">Sources: {sources}</p>'
        + '<p class="qa-brief-link">New to these documents? <button type="button" class="qa-open-brief" '
        'data-tab="Brief">Open the brief: actors, positions, timeline, conflicting figures →</button></p>'
        + (f'<h3>Try a question</h3><div class="qa-examples">{examples}</div>' if examples else "")
        + f'<h3>In the index</h3><ul class="qa-doclist">{docs}</ul>'
        '</div>'
    )


# ------------------------------------------------------------------------------ transcript
def render_transcript(session: Session, pending: str | None = None, draft: str = "") -> str:
    """The conversation; ``pending``: a question being answered (``draft``: its answer so far)."""
    parts = [render_turn(i, t) for i, t in enumerate(session.turns)]
    if pending is not None:
        status = (f'<div class="qa-a-text">{esc(draft)}</div><div class="qa-a-meta"><span class="qa-spinner"></span>'
                  'writing; citations are checked when the answer is complete…</div>' if draft else
                  '<span class="qa-spinner"></span>Searching the documents…')
        parts.append(
            f'<div class="qa-turn"><div class="qa-q"><span class="qa-who">You</span>{esc(pending)}</div>'
            f'<div class="qa-a qa-pending">{status}</div></div>'
        )
    return f'<div class="qa-transcript">{"".join(parts)}</div>'


def cite_button(key: str, n: int, title: str) -> str:
    return (f'<button type="button" class="qa-cite" data-cite="{esc(key)}" '
            f'title="Show quote {n} in {esc(title)}">[{n}]</button>')


def answer_html(turn_index: int, turn: Turn) -> str:
    """The answer from its structure (``Answer.lead`` and ``Answer.claims``), escaped: a supported
    sentence with a button per citation, an unsupported one flagged, a refusal as written."""
    a = turn.answer
    if not a.claims:
        return esc(a.text)
    by_n = {c.n: c for c in a.citations}
    parts = [esc(a.lead)] if a.lead else []
    for claim in a.claims:
        if claim.refusal:
            parts.append(esc(claim.text))
        elif claim.supported:
            buttons = [cite_button(cite_key(turn_index, by_n[n]), n, by_n[n].title) for n in claim.citations if n in by_n]
            parts.append(" ".join([esc(claim.text), *buttons]))
        else:  # LLM answers flag sentences their citations do not support (chatbot/generative.py)
            parts.append(f'{esc(claim.text)} <span class="qa-unsupported" title="{UNSUPPORTED_TIP}">'
                         f'{UNSUPPORTED_FLAG}</span>')
    return " ".join(parts)


def conflicts_html(turn_index: int, turn: Turn) -> str:
    """"The sources differ on …: “x” [1] vs “y” (who claims it) [2]." from ``Answer.conflicts``, one
    block per disputed figure, each version with its citation button."""
    by_n = {c.n: c for c in turn.answer.citations}

    def button(n: int) -> str:
        return cite_button(cite_key(turn_index, by_n[n]), n, by_n[n].title) if n in by_n else f"[{n}]"

    return "".join(f'<div class="qa-conflict">{c.text(button, esc)}</div>' for c in turn.answer.conflicts)


def render_turn(i: int, turn: Turn) -> str:
    a = turn.answer
    meta = []
    if a.standalone_question and a.standalone_question != turn.question:
        meta.append(f"read as “{esc(a.standalone_question)}”")
    meta.append(esc(a.mode) if a.mode.startswith("llm") else "extractive")
    if a.supported:
        meta.append(f"confidence {a.confidence:.2f}")
    if a.timings_ms.get("total"):
        meta.append(f"{a.timings_ms['total'] / 1000:.1f} s")
    f = turn.options.filters
    if not f.empty:
        meta.append("filtered")
    notice = f'<div class="qa-notice">{esc(a.notice)}</div>' if a.notice else ""
    if a.supported:
        body = f'<div class="qa-a-text">{answer_html(i, turn)}</div>{conflicts_html(i, turn)}'
        cls = "qa-supported"
    elif a.level == "partial":  # the sources cover the topic, not the detail asked: what they say, cited
        body = ('<div class="qa-partial-head">Partly answered: the documents cover this topic but not the '
                f'detail asked</div><div class="qa-a-text">{answer_html(i, turn)}</div>{conflicts_html(i, turn)}')
        cls = "qa-partial"
    else:
        nearest = "".join(
            f'<li>{cite_button(cite_key(i, c, evidence=True), c.n, c.title)} '
            f'<span class="qa-ev-snippet">“{esc(clip(c.quote, 220))}”</span> '
            f'<span class="qa-muted">— {esc(c.title)}</span></li>'
            for c in a.evidence
        )
        body = (
            '<div class="qa-refusal-head">Not answered by the documents</div>'
            f'<div class="qa-a-text">{esc(a.text)}</div>'
            + (f'<div class="qa-nearest"><div class="qa-nearest-head">Closest evidence — shown for checking, '
               f'it does not answer the question:</div><ul>{nearest}</ul></div>' if nearest else "")
        )
        if not f.empty:
            body += ('<div class="qa-notice">Only documents matching your filters were searched '
                     '(Settings → Filters).</div>')
        cls = "qa-refused"
    return (
        f'<div class="qa-turn" id="qa-turn-{i}">'
        f'<div class="qa-q"><span class="qa-who">You</span>{esc(turn.question)}</div>'
        f'<div class="qa-a {cls}">{body}{notice}{_claims(a)}<div class="qa-a-meta">{" · ".join(meta)}</div></div>'
        '</div>'
    )


def _claims(a) -> str:
    """For LLM answers: each sentence of the model's answer and how well its sources support it."""
    checked = [c for c in a.claims if not c.refusal]
    if not a.mode.startswith("llm") or not checked:
        return ""
    items = "".join(
        f'<li class="{"qa-ok" if c.supported else "qa-bad"}">{"✓" if c.supported else "✗"} {esc(c.text)} '
        f'<span class="qa-muted">— {"cites " + ", ".join(f"[{n}]" for n in c.citations) if c.citations else "no citation"}'
        f', support {c.support:.2f}</span></li>'
        for c in checked
    )
    return (f'<details class="qa-claims"><summary>Sentence checks ({sum(c.supported for c in checked)} of '
            f'{len(checked)} supported)</summary><ul>{items}</ul></details>')


def clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1].rsplit(" ", 1)[0] + "…"


# -------------------------------------------------------------------------------- evidence
def render_evidence(session: Session, context: Callable[[Citation], QuoteContext],
                    turn_index: int | None = None, active: str | None = None) -> str:
    if not session.turns:
        return ('<div class="qa-evidence qa-empty">Evidence appears here: every quote of the answer inside its '
                'paragraph, where it is in the document, and how well it supports the answer.</div>')
    i = len(session.turns) - 1 if turn_index is None else turn_index
    turn = session.turns[i]
    a = turn.answer
    partial = a.level == "partial"
    quotes, evidence = (a.citations, False) if a.supported or partial else (a.evidence, True)
    label = "Sources" if a.supported else "What the sources say (not the detail asked)" if partial else \
        "Closest evidence (not an answer)"
    head = (f'<div class="qa-ev-head">{label} '
            f'for Q{i + 1}: <span class="qa-ev-q">“{esc(clip(turn.question, 140))}”</span></div>')
    if not quotes:
        return f'<div class="qa-evidence">{head}<p class="qa-muted">No passage came close.</p></div>'
    score = "relevance" if evidence else "support"
    items = "".join(quote_card(cite_key(i, c, evidence), c, context(c), cite_key(i, c, evidence) == active, score)
                    for c in quotes)
    style = " qa-evidence-refused" if evidence else " qa-evidence-partial" if partial else ""
    return f'<div class="qa-evidence{style}">{head}{items}</div>'


def quote_card(key: str, c: Citation, ctx: QuoteContext, active: bool, label: str | None) -> str:
    """A quote inside its paragraph, where it is, whether it is exact, and (``label``: "support",
    "relevance") its score; a click opens it in the source viewer."""
    where = [f"characters {c.start:,}–{c.end:,}"]
    if c.page:
        where.insert(0, f"page {c.page}")
    check = ('<span class="qa-ok" title="The stored document text at these offsets is exactly this quote">'
             '✓ exact quote</span>' if ctx.verified else
             '<span class="qa-bad">✗ quote not found at these offsets</span>')
    pct = max(0.0, min(1.0, float(c.support))) * 100
    para = (("… " if ctx.clipped_before else "") + esc(ctx.before) + f'<mark class="qa-quote">{esc(ctx.quote)}</mark>'
            + esc(ctx.after) + (" …" if ctx.clipped_after else ""))
    return (
        f'<div class="qa-ev-item{" qa-active" if active else ""}" data-cite="{esc(key)}" role="button" tabindex="0" '
        f'title="Open in the source viewer">'
        f'<div class="qa-ev-title"><span class="qa-badge">[{c.n}]</span>{esc(c.title)}</div>'
        f'<div class="qa-ev-para">{para}</div>'
        f'<div class="qa-ev-meta">{" · ".join(where)} · {check}'
        + (f'<span class="qa-support" title="{label} score {c.support:.2f}"><span class="qa-bar">'
           f'<span style="width:{pct:.0f}%"></span></span>{label} {c.support:.2f}</span>' if label else "")
        + '</div>'
        '</div>'
    )


# ---------------------------------------------------------------------------- source viewer
def render_source(view: SourceView | None) -> str:
    if view is None:
        return ('<div class="qa-source qa-empty">Click a <span class="qa-cite-demo">[n]</span> marker or an '
                'evidence card to open the document here, scrolled to the highlighted quote.</div>')
    c = view.citation
    if view.missing:
        return (f'<div class="qa-source"><div class="qa-src-head"><b>{esc(view.title)}</b></div>'
                '<p class="qa-bad">This document is no longer in the index (it was deleted after this answer).</p>'
                '</div>')
    d = view.doc
    facts = [x for x in ((d.source, d.published, d.filename) if d else ()) if x]
    link = (f' · <a href="{esc(d.url)}" target="_blank" rel="noopener noreferrer">original</a>'
            if d and d.url.startswith(("http://", "https://")) else "")
    where = f"[{c.n}] characters {c.start:,}–{c.end:,}" + (f", page {c.page}" if c.page else "")
    body, pos = [], 0
    for s in view.spans:
        a, b = s.start - view.offset, s.end - view.offset
        body.append(esc(view.text[pos:a]))
        cls = "qa-hit" if s.primary else "qa-other"
        ident = ' id="qa-hit"' if s.primary else ""
        body.append(f'<mark class="{cls}"{ident} data-label="{esc(s.label)}">{esc(view.text[a:b])}</mark>')
        pos = b
    body.append(esc(view.text[pos:]))
    before = f'<div class="qa-muted">… {view.offset:,} characters before …</div>' if view.offset else ""
    rest = view.length - view.offset - len(view.text)
    after = f'<div class="qa-muted">… {rest:,} characters after …</div>' if rest > 0 else ""
    return (
        '<div class="qa-source">'
        f'<div class="qa-src-head"><div class="qa-src-title">{esc(view.title)}</div>'
        f'<div class="qa-muted">{esc(" · ".join(facts))}{link} · doc <code>{esc(c.doc_id)}</code></div>'
        f'<div class="qa-src-where">{esc(where)}</div></div>'
        f'{before}<div class="qa-src-body">{"".join(body)}</div>{after}'
        '</div>'
    )


# --------------------------------------------------------------------------------- library
def render_library(docs: Sequence[DocSummary]) -> str:
    if not docs:
        return '<div class="qa-library qa-empty">The index is empty: upload documents below.</div>'
    rows = "".join(
        "<tr>"
        f'<td class="qa-doc-title">{esc(d.title)}</td><td>{esc(d.source) or "—"}</td>'
        f'<td class="qa-nowrap">{esc(d.published) or "—"}</td><td class="qa-num">{d.n_chunks:,}</td>'
        f'<td class="qa-num">{d.n_pages or "—"}</td>'
        f'<td>{_file_cell(d)}</td>'
        f'<td><code>{esc(d.doc_id[:12])}</code></td>'
        "</tr>"
        for d in docs
    )
    total = sum(d.n_chunks for d in docs)
    return (
        f'<div class="qa-library"><div class="qa-muted">{plural(len(docs), "document")}, '
        f'{plural(total, "passage")}</div>'
        '<table><thead><tr><th>Title</th><th>Source</th><th>Published</th><th>Passages</th><th>Pages</th>'
        f'<th>File</th><th>ID</th></tr></thead><tbody>{rows}</tbody></table></div>'
    )


def _file_cell(d: DocSummary) -> str:
    """An uploaded document's file name links to its original (served while it is in the index)."""
    if not d.uploaded:
        return esc(d.filename)
    return (f'<a class="qa-file-link" href="{esc(library_url(d.doc_id))}" download="{esc(d.filename)}" '
            f'title="Download the uploaded file">{esc(d.filename)}</a> <small class="qa-muted">(uploaded)</small>')


def render_jobs(jobs: Sequence[Job], ahead: Callable[[Job], int], now: float,
                progress: tuple[int, int] | None = None) -> str:
    """A session's uploads (or deletions), newest first: waiting, running (with the embedding
    progress when known) or finished with one line per file."""
    parts = []
    for job in jobs:
        if job.state == DONE:
            if job.upload is not None:
                parts.append(render_upload_result(job.upload))
            else:
                parts.append(render_message(job.message, "ok" if job.ok else "error"))
            continue
        if job.started is None:
            n = ahead(job)
            text = f"Queued: {job.label} — waiting for {plural(n, 'earlier job')} to finish."
            bar = ""
        else:
            verb = "Indexing" if job.kind == "upload" else "Deleting"
            step = ""
            bar = ""
            if progress and job.kind == "upload":
                done, total = progress
                step = f"embedding {done:,} of {plural(total, 'passage')} · "
                bar = f'<span class="qa-bar"><span style="width:{100 * done / max(1, total):.0f}%"></span></span>'
            text = f"{verb} {job.label}: {step}{max(0.0, now - job.started):.0f} s"
            if job.note and not step:  # e.g. waiting for another process that writes the index
                text += f" — {job.note}"
        parts.append(f'<div class="qa-job qa-job-pending"><span class="qa-spinner"></span>{esc(text)}{bar}</div>')
    return f'<div class="qa-jobs">{"".join(parts)}</div>' if parts else ""


def render_exports(links: dict[str, str]) -> str:
    """Download links for the latest exports (served only to this browser: workspace/access.py)."""
    labels = {"answer.md": "⤓ Answer .md", "answer.json": "⤓ Answer .json",
              "conversation.md": "⤓ Conversation .md", "conversation.json": "⤓ Conversation .json",
              "brief.md": "⤓ Brief .md", "brief.json": "⤓ Brief .json"}
    items = "".join(
        f'<a class="qa-export" id="qa-export-{key.replace(".", "-")}" href="{esc(links[key])}" '
        f'download="{esc(links[key].rsplit("/", 1)[-1])}">{label}</a>'
        for key, label in labels.items() if key in links
    )
    return f'<div class="qa-exports">{items}</div>' if items else ""


def render_upload_result(result: UploadResult) -> str:
    if not result.outcomes:
        return ""
    items = "".join(
        f'<li class="{"qa-ok" if o.ok else "qa-bad"}"><b>{"✓" if o.ok else "✗"} {esc(o.name)}</b>: {esc(o.message)}'
        + (f' <span class="qa-muted">— “{esc(o.title)}”</span>' if o.ok and o.title else "") + "</li>"
        for o in result.outcomes
    )
    summary = f"{len(result.ok)} of {len(result.outcomes)} file(s) ingested"
    if result.failed:
        summary += f", {len(result.failed)} failed"
    return f'<div class="qa-upload-result"><div><b>{esc(summary)}.</b></div><ul>{items}</ul></div>'


def render_message(text: str, kind: str = "info") -> str:
    cls = {"error": "qa-bad", "ok": "qa-ok"}.get(kind, "qa-muted")
    return f'<div class="qa-message {cls}">{esc(text)}</div>'


def render_filters_line(sources: Sequence[str], doc_titles: Sequence[str], date_from: str, date_to: str) -> str:
    parts = []
    if sources:
        parts.append("source: " + ", ".join(sources))
    if doc_titles:
        parts.append("documents: " + ", ".join(clip(t, 50) for t in doc_titles))
    if date_from or date_to:
        parts.append(f"published {date_from or '…'} to {date_to or '…'}")
    if not parts:
        return ""
    return f'<div class="qa-filters-line">Answers are limited to {esc("; ".join(parts))} (change in Settings).</div>'
