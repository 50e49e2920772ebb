"""HTML of the Brief view: actors, the actor × theme matrix, the timeline, the conflicts and the
figures of the index's brief (``chatbot/brief``), every line with its ``[n]`` buttons.

Everything from documents goes through ``esc``. Each line's element has the class
``qa-brief-line`` and at least one ``button.qa-cite``; its buttons carry ``data-cite`` keys
``b:<n>:<the line's quotes>`` (``workspace/brief.py``), which the page turns into clicks like an
answer's markers: the line's quotes in the quote panel, the clicked one in the source viewer.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from chatbot.brief.render import claim_text
from chatbot.types import Citation
from workspace.brief import BUILDING, FAILED, IDLE, BriefStatus, brief_key
from workspace.sources import QuoteContext
from workspace.ui.render import cite_button, clip, esc, plural, quote_card, render_exports

MAX_TIMELINE = 300  # entries shown; the downloads have them all
MAX_FIGURES = 200
KINDS = (("state", "States"), ("organisation", "Organisations"), ("person", "People"))


def render_brief(brief: Mapping[str, Any] | None, links: Mapping[str, str] | None = None) -> str:
    """The brief (the previous one while a new index state's brief is built); empty without one."""
    if brief is None:
        return '<div class="qa-brief"></div>'
    return (f'<div class="qa-brief">{_head(brief, links or {})}{_actors(brief)}{_matrix(brief)}'
            f'{_timeline(brief)}{_conflicts(brief)}{_figures(brief)}</div>')


def render_brief_status(status: BriefStatus) -> str:
    """The building / failed banner above the brief (empty once it is ready). The timer updates it
    every second during a build; the brief below is sent only when it changes."""
    if status.state == IDLE:  # the tab's content before its select event has asked for the brief
        return '<div class="qa-brief-status qa-job-pending"><span class="qa-spinner"></span>Opening the brief…</div>'
    if status.state == BUILDING:
        what = ("The documents changed: rebuilding the brief" if status.brief is not None else "Building the brief")
        step = f": {status.step}" if status.step else ""
        below = (" Shown below until it is ready: the brief of the documents as they were." if status.brief
                 else " The first build of an index takes seconds (minutes for thousands of documents); "
                      "questions in the Ask tab are answered meanwhile.")
        return (f'<div class="qa-brief-status qa-job-pending"><span class="qa-spinner"></span>'
                f'{esc(what)}{esc(step) or "…"} · {status.elapsed:.0f} s.{esc(below)}</div>')
    if status.state == FAILED:
        return f'<div class="qa-brief-status qa-bad">The brief could not be built: {esc(status.step)}</div>'
    return ""


def _head(brief: Mapping[str, Any], links: Mapping[str, str]) -> str:
    docs = brief["documents"]
    took = brief.get("timings_s", {}).get("total")
    facts = [plural(len(docs), "document"), f"built {esc(brief['generated_at'])}"]
    if took is not None:
        facts.append(f"in {took:.1f} s")
    return (
        '<div class="qa-brief-head"><h2>Onboarding brief</h2>'
        f'<p class="qa-muted">{" · ".join(facts)}. Every line quotes the documents exactly: click a '
        '<span class="qa-cite-demo">[n]</span> or a matrix cell to read its quotes and see each one '
        f'highlighted in its source.</p>{render_exports(dict(links))}</div>'
    )


def _cites(numbers: Sequence[int], quotes: Mapping[int, Mapping[str, Any]], line: Sequence[int] | None = None) -> str:
    """``[n]`` buttons for ``numbers``; each opens its quote with the others of ``line`` (default: these)."""
    line = list(line or numbers)
    return " ".join(cite_button(brief_key(n, line), n, quotes[n]["title"]) for n in dict.fromkeys(numbers)
                    if n in quotes)


def _quotes(brief: Mapping[str, Any]) -> dict[int, Mapping[str, Any]]:
    return {q["n"]: q for q in brief["quotes"]}


def _section(ident: str, title: str, body: str, note: str = "") -> str:
    note = f'<p class="qa-muted">{note}</p>' if note else ""
    return f'<section class="qa-brief-section" id="qa-brief-{ident}"><h3>{esc(title)}</h3>{note}{body}</section>'


# ------------------------------------------------------------------------------------ actors
def _actors(brief: Mapping[str, Any]) -> str:
    quotes = _quotes(brief)
    titles = {d["doc_id"]: d["title"] for d in brief["documents"]}
    groups = []
    for kind, heading in KINDS:
        rows = "".join(_actor_row(a, quotes, titles) for a in brief["actors"] if a["kind"] == kind)
        if rows:
            groups.append(f'<tbody><tr class="qa-brief-group"><th colspan="4">{heading}</th></tr>{rows}</tbody>')
    if not groups:
        return _section("actors", "Actors", '<p class="qa-muted">No actor is named often enough.</p>')
    table = ('<table class="qa-brief-table qa-brief-actors"><thead><tr><th>Actor</th><th>Mentions</th>'
             f'<th>Documents</th><th>Tied to</th></tr></thead>{"".join(groups)}</table>')
    return _section("actors", "Actors", table, "Named entities (spaCy), aliases merged: a capital or demonym counts "
                                               "for its state, a leader is listed under the state as well.")


def _actor_row(a: Mapping[str, Any], quotes, titles: Mapping[str, str]) -> str:
    aliases = ", ".join(f"{esc(k)} ×{v}" for k, v in a["aliases"].items() if k != a["name"])
    also = f'<div class="qa-muted qa-brief-aliases">also as {aliases}</div>' if aliases else ""
    docs = a["documents"]
    doc_titles = "; ".join(titles.get(d, d) for d in docs)
    ties = [f'{esc(m["name"])} <span class="qa-muted">— {esc(m["role"])}</span> {_cites(m["citations"], quotes)}'
            for m in a.get("linked", [])]
    aff = a.get("affiliation")
    if aff:
        ties.insert(0, f'{esc(aff["role"])} <span class="qa-muted">({esc(aff["name"])})</span> '
                       f'{_cites(aff["citations"], quotes)}')
    return (
        f'<tr class="qa-brief-line qa-brief-actor" data-actor="{esc(a["name"])}" data-kind="{esc(a["kind"])}">'
        f'<td><b>{esc(a["name"])}</b> {_cites(a["citations"], quotes)}{also}</td>'
        f'<td class="qa-num">{a["mentions"]:,}</td>'
        f'<td title="{esc(doc_titles)}">{plural(len(docs), "document")}</td>'
        f'<td>{"<br>".join(ties) or "—"}</td></tr>'
    )


# ------------------------------------------------------------------------------------ matrix
def _matrix(brief: Mapping[str, Any]) -> str:
    rows = brief["positions"]
    if not rows:
        return _section("matrix", "Positions and motives", '<p class="qa-muted">No stance sentence of a state '
                                                             'matched a theme.</p>')
    quotes = _quotes(brief)
    themes = brief["themes"]
    head = "".join(f'<th title="{esc(t["description"])}">{esc(t["name"])}</th>' for t in themes)
    body = []
    for row in rows:
        cells = []
        for t in themes:
            items = row["cells"].get(t["name"], [])
            line = [n for q in items for n in q["citations"]]
            if not line:
                cells.append('<td class="qa-brief-cell qa-brief-empty">—</td>')
                continue
            tip = f'{row["actor"]} × {t["name"]}: {plural(len(line), "quote")} — click to read them'
            cells.append(f'<td class="qa-brief-cell qa-brief-line" data-cite="{esc(brief_key(line[0], line))}" '
                         f'data-theme="{esc(t["name"])}" role="button" tabindex="0" title="{esc(tip)}">'
                         f'{_cites(line, quotes)}</td>')
        body.append(f'<tr class="qa-brief-row" data-actor="{esc(row["actor"])}"><th>{esc(row["actor"])}</th>'
                    f'{"".join(cells)}</tr>')
    table = (f'<table class="qa-brief-table qa-brief-matrix"><thead><tr><th>State</th>{head}</tr></thead>'
             f'<tbody>{"".join(body)}</tbody></table>')
    return _section("matrix", "Positions and motives", table,
                    "Each state's stance and motive sentences, under the theme they are closest to in meaning.")


# ---------------------------------------------------------------------------------- timeline
def _timeline(brief: Mapping[str, Any]) -> str:
    events = brief["timeline"]
    if not events:
        return _section("timeline", "Timeline", '<p class="qa-muted">No dated event.</p>')
    quotes = _quotes(brief)
    items = []
    for e in events[:MAX_TIMELINE]:
        marks = []
        if e["resolved"]:
            marks.append(f'<span class="qa-brief-mark" title="{esc(e["as_written"])}, resolved against '
                         f'{esc(e["basis"])}">resolved from “{esc(e["as_written"])}”</span>')
        if not e["year_stated"]:
            marks.append(f'<span class="qa-brief-mark qa-brief-mark-weak" title="placed {esc(e["placed"])}">'
                         'year not stated</span>')
        n = e["citations"][0]
        items.append(f'<li class="qa-brief-line qa-brief-event" data-date="{esc(e["date"])}">'
                     f'<span class="qa-brief-date">{esc(e["label"])}</span>{"".join(marks)} '
                     f'<span class="qa-brief-text">{esc(clip(quotes[n]["quote"], 260))}</span> '
                     f'{_cites(e["citations"], quotes)}</li>')
    more = len(events) - MAX_TIMELINE
    tail = f'<p class="qa-muted">and {more:,} more in the downloads.</p>' if more > 0 else ""
    return _section("timeline", "Timeline", f'<ol class="qa-brief-timeline">{"".join(items)}</ol>{tail}',
                    "Dated events in order; a date without a year, or a relative one, is resolved against the "
                    "document's date and marked.")


# ------------------------------------------------------------------------- conflicts, figures
def _version(v: Mapping[str, Any], quotes, line: Sequence[int]) -> str:
    claim = (f' <span class="qa-brief-claim" title="An attributed claim, not stated by the document as fact">'
             f'claim: {esc(claim_text(v["claim"]))}</span>' if v.get("claim") else "")
    n = v["citations"][0]
    return (f'<div class="qa-brief-version"><div><b>“{esc(v["text"])}”</b>{claim}</div>'
            f'<div class="qa-brief-text">{esc(clip(quotes[n]["quote"], 300))} {_cites(v["citations"], quotes, line)}'
            '</div></div>')


def _conflicts(brief: Mapping[str, Any]) -> str:
    found = brief["conflicts"]
    if not found:
        return _section("conflicts", "Where the sources disagree",
                        '<p class="qa-muted">No figure is given differently by the documents.</p>')
    quotes = _quotes(brief)
    items = []
    for c in found:
        line = [n for v in c["versions"] for n in v["citations"]]
        versions = '<div class="qa-brief-vs">vs</div>'.join(_version(v, quotes, line) for v in c["versions"])
        items.append(f'<div class="qa-brief-line qa-brief-conflict"><div class="qa-brief-measure">'
                     f'{esc(c["measure"])} <span class="qa-muted">({esc(c["kind"])}, {esc(c["scope"])})</span></div>'
                     f'<div class="qa-brief-versions">{versions}</div></div>')
    return _section("conflicts", "Where the sources disagree", "".join(items),
                    "The same quantity given differently, each version with its source; attributed claims are "
                    "marked as claims.")


def _figures(brief: Mapping[str, Any]) -> str:
    figures = brief["figures"]
    if not figures:
        return ""
    quotes = _quotes(brief)
    items = []
    for f in figures[:MAX_FIGURES]:
        kind = "change" if f["change"] else f["kind"]
        what = f' — {esc(f["measure"])}' if f["measure"] else ""
        claim = (f' <span class="qa-brief-claim">claim: {esc(claim_text(f["claim"]))}</span>' if f.get("claim")
                 else "")
        items.append(f'<li class="qa-brief-line qa-brief-figure"><b>“{esc(f["text"])}”</b> '
                     f'<span class="qa-muted">({esc(kind)}){what}</span>{claim} {_cites(f["citations"], quotes)}</li>')
    more = len(figures) - MAX_FIGURES
    tail = f'<p class="qa-muted">and {more:,} more in the downloads.</p>' if more > 0 else ""
    return _section("figures", "Figures", f'<ul class="qa-brief-figures">{"".join(items)}</ul>{tail}',
                    "Quantities and what they measure.")


# -------------------------------------------------------------------------------- quote panel
def render_brief_quotes(found: tuple[Citation, list[Citation]] | None,
                        context: Callable[[Citation], QuoteContext]) -> str:
    """The clicked line's quotes in their paragraphs (the clicked one active), for the panel
    beside the brief."""
    if found is None:
        return ('<div class="qa-evidence qa-empty">Click a <span class="qa-cite-demo">[n]</span> or a matrix cell: '
                'its quotes show here in their paragraphs, and the document below, scrolled to the quote.</div>')
    clicked, line = found
    numbers = [c.n for c in line]
    head = f'<div class="qa-ev-head">Quotes of this line ({plural(len(line), "quote")})</div>'
    cards = "".join(quote_card(brief_key(c.n, numbers), c, context(c), c.n == clicked.n, None) for c in line)
    return f'<div class="qa-evidence qa-brief-quotes">{head}{cards}</div>'
