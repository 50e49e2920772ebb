"""Sentence splitting with exact character spans, and sentence-aware chunking.

Sentences are never cut unless a single sentence is longer than ``chunk_size``; such a sentence
is split at whitespace into pieces of at most ``chunk_size`` characters.
"""
from __future__ import annotations

import hashlib
import re

from ingest.settings import check_chunking
from ingest.types import Chunk

# Words after which a period does not end a sentence.
ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt ft vs etc e.g i.e cf al fig figs no nos vol pp ed eds approx
    inc ltd co corp gov gen col lt sgt capt rev hon jan feb mar apr jun jul aug sep sept oct nov dec
    u.s u.k u.n e.u a.m p.m ca est""".split()
)
_END = re.compile(r"[.!?…]+[\"'’”»)\]]*")
_PARA = re.compile(r"\n+")


def split_sentences(text: str, offset: int = 0) -> list[tuple[int, int]]:
    """Return (start, end) spans of the sentences of ``text``, shifted by ``offset``.

    Spans exclude surrounding whitespace. Line breaks always end a sentence (they separate
    paragraphs, headings and list items in cleaned text).
    """
    spans: list[tuple[int, int]] = []
    pos = 0
    for line in _PARA.split(text):
        start_in_text = text.index(line, pos) if line else pos
        pos = start_in_text + len(line)
        for s, e in _split_line(line):
            spans.append((offset + start_in_text + s, offset + start_in_text + e))
    return spans


def _split_line(line: str) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    start = 0
    n = len(line)
    for m in _END.finditer(line):
        end = m.end()
        if end >= n:
            break
        if not line[end].isspace():
            continue  # "3.5", "U.S.A", "example.com"
        nxt = end
        while nxt < n and line[nxt].isspace():
            nxt += 1
        if nxt >= n:
            break
        following = line[nxt]
        if not (following.isupper() or following.isdigit() or following in "\"'‘“«([—–-"):
            continue
        if m.group().startswith(".") and _is_abbreviation(line, m.start()):
            continue
        _append(out, line, start, end)
        start = nxt
    _append(out, line, start, n)
    return out


def _is_abbreviation(line: str, dot: int) -> bool:
    word_start = dot
    while word_start > 0 and not line[word_start - 1].isspace() and line[word_start - 1] not in "(\"'‘“":
        word_start -= 1
    word = line[word_start:dot].lower()
    if not word:
        return False
    if len(word) == 1 and word.isalpha():
        return True  # an initial: "J. Smith"
    return word in ABBREVIATIONS or word.rstrip(".") in ABBREVIATIONS


def _append(out: list[tuple[int, int]], line: str, start: int, end: int) -> None:
    while start < end and line[start].isspace():
        start += 1
    while end > start and line[end - 1].isspace():
        end -= 1
    if end > start:
        out.append((start, end))


def _cut_long(text: str, span: tuple[int, int], size: int) -> list[tuple[int, int]]:
    """Split one over-long sentence at whitespace into pieces of at most ``size`` characters.

    Pieces, like sentences, never start or end with whitespace.
    """
    start, end = span
    pieces = []
    while end - start > size:
        cut = start + size  # no whitespace in the window: hard cut
        for pos in range(start + size, start, -1):
            if text[pos].isspace():
                cut = pos
                break
        piece_end = cut
        while piece_end > start and text[piece_end - 1].isspace():
            piece_end -= 1
        pieces.append((start, piece_end))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if end > start:
        pieces.append((start, end))
    return pieces


def chunk_text(doc_id: str, text: str, chunk_size: int = 600, chunk_overlap: int = 150) -> list[Chunk]:
    """Pack whole sentences into chunks of at most ``chunk_size`` characters.

    Each new chunk repeats the last sentences of the previous one, up to ``chunk_overlap``
    characters. Chunk ids derive from the document id and the span, so they are stable.
    """
    check_chunking(chunk_size, chunk_overlap)
    sentences: list[tuple[int, int]] = []
    for span in split_sentences(text):
        sentences.extend(_cut_long(text, span, chunk_size) if span[1] - span[0] > chunk_size else [span])
    chunks: list[Chunk] = []
    i = 0
    while i < len(sentences):
        j = i
        while j + 1 < len(sentences) and sentences[j + 1][1] - sentences[i][0] <= chunk_size:
            j += 1
        start, end = sentences[i][0], sentences[j][1]
        chunks.append(
            Chunk(
                chunk_id=chunk_id(doc_id, start, end),
                doc_id=doc_id,
                start=start,
                end=end,
                text=text[start:end],
                sentences=tuple(sentences[i : j + 1]),
            )
        )
        if j + 1 >= len(sentences):
            break
        # Next chunk starts with the trailing sentences that fit in the overlap and still leave room
        # for the next new sentence (so it always progresses and is never a subset of this one).
        k = j + 1
        while (
            k - 1 > i
            and sentences[j][1] - sentences[k - 1][0] <= chunk_overlap
            and sentences[j + 1][1] - sentences[k - 1][0] <= chunk_size
        ):
            k -= 1
        i = k
    return chunks


def chunk_id(doc_id: str, start: int, end: int) -> str:
    return f"{doc_id}-{start}-{end}"


def content_id(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]
