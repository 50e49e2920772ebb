"""Claims of a generated answer: its sentences with their ``[n]`` markers, each checked against
the passages it cites.

Claim checking (``check_claims``): the answer is split into sentences and each sentence's ``[n]``
markers are parsed (markers to passages that were not in the prompt are dropped). A sentence's
support against a cited passage is ``0.6 * cosine + 0.4 * lexical`` for the passage sentence that
matches it best (cosine between MiniLM embeddings of the two sentences, the passage sentences'
vectors being those stored at ingest that the extractive answerer ranks with, so only the claims are
embedded; lexical = share of the claim's stemmed content words found in that sentence, a state named
by its capital or demonym counting as the state, ``chatbot.extractive.terms_of``), times 0.3 when a
number of the claim does not occur in the cited passage, and times 0.75 per capitalised name of the
claim missing from that sentence and its neighbours (compared on their first five letters; at most
halved). On 18 hand-written claims about the seed article, the 9 true paraphrases scored 0.67–0.92
and the 9 false ones 0.10–0.52 (stored sentence vectors and aliases; 0.69–0.93 / 0.10–0.52 before) (the highest, "Kazakhstan offered sanctuary to Ahmad Massoud", swaps
who did what: similarity checks see that only through the names). A sentence without markers is
checked against every passage and attributed to the best one when that supports it. Sentences below
``QA_LLM_MIN_SUPPORT`` are ``supported=False``: their markers are removed and the text flags them
"(unsupported)". Each citation quotes the best-matching *sentence* of the cited passage (an exact
span of the stored document), and citations are renumbered 1..m in order of appearance. If the model
says the sources don't say, or no sentence is supported, or the supported sentences are beside the
question (cosine to the question below 0.25, e.g. a copied title), the answer is ``supported=False``
with the extractive answerer's nearest evidence.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from chatbot.extractive import terms_of
from chatbot.retrieve import Passage
from ingest.lexical import STOPWORDS

_MARKER = re.compile(r"\[\s*(?:passages?|sources?|p\.?)?\s*(\d+(?:\s*(?:,|;|and|&|-|–)\s*\d+)*)\s*\]", re.I)
_MARKERS_AFTER_END = re.compile(r"([.!?]+)((?:\s*" + _MARKER.pattern + r")+)", re.I)
_LABEL = re.compile(r"(?:^|(?<=\n)|(?<=[.!?]\s))\s*(?:the\s+|from\s+|in\s+)?(?:passage|source)\s*\[?\s*(\d+)\s*\]?\s*"
                    r"(?:says|states)?\s*[:\-–—]\s*", re.I)
_CAPITAL = re.compile(r"\b[A-Z][A-Za-z]+")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_REFUSAL = re.compile(
    r"\b(sources?|passages?|documents?|context|texts?)\s+(do|does|did)\s*(n[o’']?t|not)\s+"
    r"(say|mention|contain|provide|specify|state|answer|include|give|address)|"
    r"\bno (relevant )?information\b|\bnot (mentioned|stated|specified) in the (sources?|passages?)", re.I)


def parse_markers(group: str) -> list[int]:
    out: list[int] = []
    for part in re.split(r"\s*(?:,|;|and|&)\s*", group):
        m = re.fullmatch(r"(\d+)\s*[-–]\s*(\d+)", part.strip())
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            out.extend(range(a, b + 1) if 0 < b - a < 20 else (a, b))
        elif part.strip().isdigit():
            out.append(int(part))
    return out


@dataclass
class DraftSentence:
    text: str  # without markers
    markers: list[int]  # as written by the model, in order, deduplicated


def clean_output(text: str) -> str:
    text = re.sub(r"</?\s*passage[^>]*>", " ", text or "", flags=re.I)
    text = re.sub(r"^\s*(answer|response)\s*:\s*", "", text.strip(), flags=re.I)
    return text.strip()


def split_claims(text: str) -> list[DraftSentence]:
    """Sentences of a generated answer with their ``[n]`` markers (markers after the full stop, as
    in "X. [1] Y.", belong to the sentence before them)."""
    from ingest.chunking import split_sentences

    out: list[DraftSentence] = []
    for label, segment in _labelled_segments(clean_output(text)):
        for draft in _split_segment(segment, split_sentences):
            if label is not None and not draft.markers:
                draft.markers.append(label)
            out.append(draft)
    return out


def _labelled_segments(text: str) -> list[tuple[int | None, str]]:
    """Small models write "Passage 2: <sentences>" instead of markers: the label cites passage 2
    for the sentences after it (up to the next label)."""
    parts = _LABEL.split(text)
    out: list[tuple[int | None, str]] = [(None, parts[0])]
    for i in range(1, len(parts), 2):
        out.append((int(parts[i]), parts[i + 1]))
    return [(n, seg) for n, seg in out if seg.strip()]


def _split_segment(text: str, split_sentences) -> list[DraftSentence]:
    text = _MARKERS_AFTER_END.sub(lambda m: " " + m.group(2).strip() + m.group(1), text)
    out: list[DraftSentence] = []
    for s, e in split_sentences(text):
        raw = text[s:e]
        markers: list[int] = []
        for m in _MARKER.finditer(raw):
            for n in parse_markers(m.group(1)):
                if n not in markers:
                    markers.append(n)
        clean = _MARKER.sub("", raw)
        clean = re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"\s{2,}", " ", clean)).strip()
        clean = re.sub(r"^[-*•]\s+", "", clean)
        if not clean or not re.search(r"\w", clean):
            if out and markers:  # a stray marker line: it belongs to the sentence before
                out[-1].markers += [n for n in markers if n not in out[-1].markers]
            continue
        out.append(DraftSentence(clean, markers))
    return out


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text))


def numbers_in(text: str) -> set[str]:
    return {m.group().replace(",", "") for m in _NUMBER.finditer(text)}


_NOT_NAMES = STOPWORDS | frozenset(
    """however overall according additionally therefore thus meanwhile moreover furthermore yes
    because although though since after before during despite unlike like both either neither many
    several most all one two three first second third finally today currently instead passage
    passages source sources answer question based""".split()
)


def names_in(text: str) -> set[str]:
    """Capitalised words of a claim, lower-cased (sentence openers like "However" excepted)."""
    return {w.lower() for w in _CAPITAL.findall(text.strip())} - _NOT_NAMES


def _prefixes(text: str) -> set[str]:
    """First five letters of every word: "Afghan" matches "Afghanistan", "Tajiks" matches "Tajik"."""
    return {w[:5] for w in re.findall(r"\w+", text.lower())}


# --------------------------------------------------------------------------- claim checking
@dataclass(frozen=True)
class SupportConfig:
    w_embedding: float = 0.6
    w_lexical: float = 0.4
    number_penalty: float = 0.3  # factor when a number of the claim is not in the cited text
    name_penalty: float = 0.25  # per name of the claim missing around the quoted sentence...
    name_floor: float = 0.5  # ...down to this factor
    min_support: float = 0.6
    min_relevance: float = 0.25  # cosine between the question and the best supported sentence


@dataclass
class _Sentence:
    passage: int  # 1-based position in the prompt
    start: int  # document offsets
    end: int
    text: str
    tokens: frozenset[str]


@dataclass
class Match:
    passage: int
    sentence: _Sentence
    support: float


@dataclass
class CheckedClaim:
    text: str
    matches: list[Match]  # the citations kept, one per cited passage
    support: float
    supported: bool
    refusal: bool = False
    vector: Any = None  # the claim's embedding


def passage_sentences(p: Passage, index: int) -> list[_Sentence]:
    c = p.chunk.chunk
    out = []
    for s, e in c.sentences or ((c.start, c.end),):
        text = c.text[s - c.start : e - c.start]
        if text.strip():
            out.append(_Sentence(index, s, e, text, terms_of(text)))
    return out


def check_claims(drafts: Sequence[DraftSentence], passages: Sequence[Passage], embedder,
                 config: SupportConfig = SupportConfig(), sentence_vectors=None) -> list[CheckedClaim]:
    """Score every sentence of an answer against the passages it cites (see the module docstring).
    ``sentence_vectors`` (``chatbot.relevance.SentenceVectors``, the extractive answerer's): the
    passages' sentence vectors stored at ingest, so only the claims are embedded; without it every
    sentence is embedded here."""
    k = len(passages)
    sentences = {i: passage_sentences(p, i) for i, p in enumerate(passages, 1)}
    claims = [d for d in drafts]
    valid = [[n for n in d.markers if 1 <= n <= k] for d in claims]
    # Embed each claim; the vectors of every sentence of the passages that may be compared with it.
    needed = sorted({n for v in valid for n in v} | (set(sentences) if any(not v for v in valid) else set()))
    pool = [s for n in needed for s in sentences[n]]
    if not claims:
        claim_vecs = pool_vecs = np.zeros((0, 1))
    elif sentence_vectors is not None:
        claim_vecs = np.asarray(embedder.embed_documents([d.text for d in claims]), dtype=np.float32)
        pool_vecs = sentence_vectors.of_spans([(passages[s.passage - 1], s.start, s.end, s.text) for s in pool])
    else:
        vectors = embedder.embed_documents([d.text for d in claims] + [s.text for s in pool])
        claim_vecs, pool_vecs = vectors[: len(claims)], vectors[len(claims):]
    where = {id(s): j for j, s in enumerate(pool)}
    passage_text_of = {i: p.chunk.chunk.text for i, p in enumerate(passages, 1)}

    out: list[CheckedClaim] = []
    for d, vec, cited in zip(claims, claim_vecs, valid):
        if is_refusal(d.text):
            out.append(CheckedClaim(d.text, [], 0.0, False, refusal=True, vector=vec))
            continue
        tokens = terms_of(d.text)
        nums = numbers_in(d.text)
        names = names_in(d.text)

        def best_in(n: int) -> Match | None:
            best: Match | None = None
            factor = 1.0 if nums <= numbers_in(passage_text_of[n]) else config.number_penalty
            group = sentences[n]
            for j, s in enumerate(group):
                cos = float(np.dot(vec, pool_vecs[where[id(s)]]))
                lex = len(tokens & s.tokens) / len(tokens) if tokens else 0.0
                score = (config.w_embedding * max(0.0, min(1.0, cos)) + config.w_lexical * lex) * factor
                if names:  # the names must be in the quoted sentence or next to it
                    near = _prefixes(" ".join(x.text for x in group[max(0, j - 1): j + 2]))
                    missing = sum(1 for name in names if name[:5] not in near)
                    score *= max(config.name_floor, 1.0 - config.name_penalty * missing)
                if best is None or score > best.support:
                    best = Match(n, s, score)
            return best

        candidates = cited or list(sentences)
        matches = [m for m in (best_in(n) for n in candidates) if m is not None]
        if not matches:
            out.append(CheckedClaim(d.text, [], 0.0, False, vector=vec))
            continue
        if cited:
            top = max(m.support for m in matches)
            # Keep the cited passages that support the sentence; if none does, keep nothing.
            kept = [m for m in matches if m.support >= config.min_support]
            out.append(CheckedClaim(d.text, kept, top, top >= config.min_support and bool(kept), vector=vec))
        else:  # no (valid) marker: attribute to the best passage if that one supports it
            best = max(matches, key=lambda m: m.support)
            ok = best.support >= config.min_support
            out.append(CheckedClaim(d.text, [best] if ok else [], best.support, ok, vector=vec))
    return out

