"""Conflicts inside an answer: figures its cited sentences give differently ("The sources differ: …").

One definition with the brief: figures and what they measure come from chatbot/brief/figures.py
(on spaCy's parse), the conflicts from chatbot/brief/conflicts.py. What answers add is cost control,
because the answer path does not otherwise parse:

1. The figure patterns run over the quotes, without a parse (``quantities``). A conflict needs two
   cited sentences holding quantities of the same kind (a year is no count) and sharing two words
   (``rough_terms``); most answers have none, and then nothing else runs (about a millisecond).
   This step only skips work: it cannot drop a conflict (irregular plurals aside: "men" / "man").
2. Otherwise those quotes are parsed: from the brief's parse cache when the brief has been built
   (no spaCy process at all), else by a spaCy process the finder keeps for its lifetime
   (``nlp.Server``: about 2 s to start, once), remembered per quote. Only the quotes, not their
   paragraphs: spaCy reads ~17 characters a millisecond on one core here, and the paragraphs of
   an answer's quotes made this check the slowest part of an answer (p95 ~180 ms at 100k chunks,
   benchmarks/RESULTS.md). A figure's measure, subject and attribution are read within its
   sentence, so a quote parsed alone gives what its paragraph's parse gives, but for rare
   differences at its edges.

"He claims" names the person named last before it in the same paragraph, whichever parse is used
(the paragraph is parsed whole when the name may lie before the quote), so the claimant does not
depend on whether the brief was built.
"""
from __future__ import annotations

import logging
import threading
import weakref
from collections import OrderedDict
from typing import Callable, Sequence

from chatbot.brief import nlp
from chatbot.brief.conflicts import conflicts
from chatbot.brief.figures import Figure, find_figures, quantities, rough_terms
from chatbot.types import Citation, FigureVersion, SourceConflict

log = logging.getLogger(__name__)

TEXTS_REMEMBERED = 2000  # parsed quotes and paragraphs kept in memory (a few kB each)


def worth_parsing(citations: Sequence[Citation]) -> list[Citation]:
    """The citations that can take part in a conflict, seen without a parse: each holds a quantity
    of a kind that another cited quote also holds, and shares two word stems with it
    (``figures.rough_terms``). [] for most answers."""
    kinds = {c.n: {kind for kind, _ in quantities(c.quote)} for c in citations}
    cited = [c for c in citations if kinds[c.n]]
    terms = {c.n: rough_terms(c.quote) for c in cited}
    keep: set[int] = set()
    for i, a in enumerate(cited):
        for b in cited[i + 1:]:
            if kinds[a.n] & kinds[b.n] and len(terms[a.n] & terms[b.n]) >= 2:
                keep |= {a.n, b.n}
    return [c for c in cited if c.n in keep]


class ConflictFinder:
    """``find(citations)`` -> the figures those quotes give differently.

    ``doc_text(doc_id)``: a stored document's text; ``parse_cache()``: the brief's parse cache
    (``chatbot.brief.cache.ParseCache``) or None; ``server``: makes the spaCy process (tests pass
    a fake). ``close()`` stops the process (also done when the finder is collected, or at exit)."""

    def __init__(self, doc_text: Callable[[str], str | None], parse_cache: Callable[[], object] | None = None,
                 server: Callable[[], object] = nlp.Server) -> None:
        self.doc_text = doc_text
        self.parse_cache = parse_cache
        self._make_server = server
        self._server = None
        self._lock = threading.Lock()
        self._parsed: OrderedDict[str, nlp.Parsed] = OrderedDict()
        self._finalizer: weakref.finalize | None = None

    def find(self, citations: Sequence[Citation]) -> list[SourceConflict]:
        cited = worth_parsing(citations)
        if not cited:
            return []
        texts = {doc_id: self.doc_text(doc_id) for doc_id in dict.fromkeys(c.doc_id for c in cited)}
        cited = [c for c in cited if texts[c.doc_id] is not None and texts[c.doc_id][c.start:c.end] == c.quote]
        try:
            parsed, covered = self._parses({d: t for d, t in texts.items() if t is not None}, cited)
            return find_conflicts(cited, parsed, covered, self._paragraph)
        except nlp.NLPError as exc:  # the answer stands without its conflict check
            log.warning("Conflicts among the cited sentences were not checked: %s", exc)
            return []

    def _parses(self, texts: dict[str, str], cited: Sequence[Citation]
                ) -> tuple[dict[str, nlp.Parsed], dict[str, list[tuple[int, int]]]]:
        """A parse per cited document covering (at least) the cited quotes, and the spans each parse
        covers (absent: the whole document, from the brief's cache)."""
        out: dict[str, nlp.Parsed] = {}
        cache = self.parse_cache() if self.parse_cache else None
        covered: dict[str, list[tuple[int, int]]] = {}
        for doc_id, text in texts.items():
            hit = cache.get(_Doc(doc_id, text)) if cache is not None else None
            if hit is not None:
                out[doc_id] = hit[0]
            else:
                covered[doc_id] = _merged(sorted((c.start, c.end) for c in cited if c.doc_id == doc_id))
        spans = [texts[d][a:b] for d, parts in covered.items() for a, b in parts]
        by_text = dict(zip(spans, self._parse_texts(spans)))
        for doc_id, parts in covered.items():
            out[doc_id] = nlp.stitch(texts[doc_id], [(a, by_text[texts[doc_id][a:b]]) for a, b in parts])
        return out, covered

    def _paragraph(self, text: str) -> nlp.Parsed:
        """A whole paragraph's parse (for "he claims" when the person is named before the quote)."""
        return self._parse_texts([text])[0]

    def _parse_texts(self, texts: list[str]) -> list[nlp.Parsed]:
        """Parses of ``texts`` by the spaCy process, remembered by text."""
        with self._lock:
            todo = [t for t in dict.fromkeys(texts) if t not in self._parsed]
            if todo:
                for text, p in zip(todo, self._server_parse(todo)):
                    self._parsed[text] = p
            for text in texts:
                self._parsed.move_to_end(text)
            out = [self._parsed[t] for t in texts]
            while len(self._parsed) > TEXTS_REMEMBERED:
                self._parsed.popitem(last=False)
        return out

    def warm_up(self, wait: bool = False) -> None:
        """Start the spaCy process now (it loads while this process goes on), so that the first
        answer needing a parse does not wait for it; nothing when the brief's parses are cached.
        ``wait``: return once it has loaded (benchmarks time answers, not spaCy's start-up)."""
        cache = self.parse_cache() if self.parse_cache else None
        if cache is not None and cache.folder.is_dir() and any(cache.folder.iterdir()):
            return
        with self._lock:
            server = self._running_server()
        if wait:
            server.parse(["Ready."])

    def _running_server(self):
        if self._server is None or not self._server.alive:
            self._server = self._make_server()
            if self._finalizer is not None:
                self._finalizer.detach()
            self._finalizer = weakref.finalize(self, self._server.close)
        return self._server

    def _server_parse(self, texts: list[str]) -> list[nlp.Parsed]:
        try:
            return self._running_server().parse(texts)[0]
        except nlp.NLPError:
            self._server = None  # the next answer starts a fresh process
            raise

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._server = None


class _Doc:
    """What ``ParseCache.get`` reads of a document."""

    def __init__(self, doc_id: str, text: str) -> None:
        self.doc_id, self.text = doc_id, text


def find_conflicts(citations: Sequence[Citation], parsed: dict[str, nlp.Parsed],
                   covered: dict[str, list[tuple[int, int]]] | None = None,
                   paragraph: Callable[[str], nlp.Parsed] | None = None) -> list[SourceConflict]:
    """The figures the cited spans give differently; ``parsed``: a parse of each cited document that
    covers its quotes (``covered[doc_id]``: the spans it covers, when not the whole document;
    ``paragraph(text)`` then parses a paragraph whose start the parse lacks, for "he claims").
    Each version names the citation that quotes it."""
    covered = covered or {}
    ids = list(dict.fromkeys(c.doc_id for c in citations if c.doc_id in parsed))
    index = {doc_id: d for d, doc_id in enumerate(ids)}
    resolvers = [_named_before(parsed[doc_id], covered.get(doc_id), paragraph) for doc_id in ids]
    figures: dict[tuple[int, int], Figure] = {}
    cited_by: dict[tuple[int, int], int] = {}
    for c in citations:
        if c.doc_id not in index:
            continue
        d = index[c.doc_id]
        for f in find_figures(parsed[c.doc_id], d, c.start, c.end, lambda doc, offset: resolvers[doc](offset)):
            figures.setdefault((d, f.start), f)
            cited_by.setdefault((d, f.start), c.n)
    return [SourceConflict(c.measure, c.kind, c.across_documents,
                           tuple(FigureVersion(cited_by[(f.doc, f.start)], f.text, f.value, f.qualifier, f.claim_verb,
                                               f.claimant) for f in c.versions))
            for c in conflicts(list(figures.values()))]


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted spans with overlapping ones joined (quotes of overlapping chunks)."""
    out: list[tuple[int, int]] = []
    for a, b in spans:
        if out and a < out[-1][1]:
            out[-1] = (out[-1][0], max(b, out[-1][1]))
        else:
            out.append((a, b))
    return out


def _named_before(p: nlp.Parsed, covered: list[tuple[int, int]] | None = None,
                  paragraph: Callable[[str], nlp.Parsed] | None = None) -> Callable[[int], str | None]:
    """``offset`` -> the person named last before it in its paragraph. When ``p`` covers only
    ``covered`` and not the paragraph from its start to ``offset``, the paragraph is parsed whole
    (``paragraph``): the same person the brief's parse of the paragraph names."""
    paragraphs = nlp.paragraphs(p.text)

    def before(offset: int) -> str | None:
        start, end = max(((a, b) for a, b in paragraphs if a <= offset), default=(0, len(p.text)))
        if covered is not None and not any(a <= start and offset <= b for a, b in covered):
            if paragraph is None:
                return None
            whole = paragraph(p.text[start:end])
            names = [(a, b) for a, b, label in whole.ents if label == "PERSON" and start + whole.starts[a] < offset]
            return whole.span_text(*names[-1]) if names else None
        names = [(a, b) for a, b, label in p.ents if label == "PERSON" and start <= p.starts[a] < offset]
        return p.span_text(*names[-1]) if names else None

    return before
