"""The start view's data: what is in the index (documents, sources, dates) and example questions."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

from ingest.store import DocRecord


@dataclass(frozen=True)
class DocSummary:
    doc_id: str
    title: str
    source: str
    published: str
    kind: str
    url: str
    n_chunks: int
    n_pages: int
    filename: str  # what the user knows the file as (the original name of an upload)
    uploaded: bool


@dataclass(frozen=True)
class Overview:
    documents: list[DocSummary]
    chunks: int
    sources: list[tuple[str, int]]  # (source, documents), most documents first
    first_date: str | None
    last_date: str | None
    undated: int
    examples: list[str]


_NAME = re.compile(r"\b[A-Z][\w’'-]*(?:\s+(?:of\s+|the\s+)?[A-Z][\w’'-]*)+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_LEADING_WORD = re.compile(r"^(?:The|A|An|In|On|At|By|For|From|Its|His|Her|Their|This|That|While|When|After)\s+")


def example_questions(records: Sequence[DocRecord], text_of: Callable[[str], str | None], limit: int = 6) -> list[str]:
    """Questions declared in the documents' ``questions:`` metadata, interleaved across documents;
    for documents that declare none, questions derived from their title and opening sentences."""
    declared = [[str(q).strip() for q in (r.meta.get("questions") or []) if str(q).strip()] for r in records]
    out: list[str] = []
    depth = 0
    while len(out) < limit and any(len(qs) > depth for qs in declared):
        for qs in declared:
            if len(qs) > depth and qs[depth] not in out and len(out) < limit:
                out.append(qs[depth])
        depth += 1
    for record, qs in zip(records, declared):
        if len(out) >= limit:
            break
        if not qs:
            q = derived_question(record.title, text_of(record.doc_id) or "")
            if q and q not in out:
                out.append(q)
    return out


def derived_question(title: str, text: str) -> str | None:
    """A question a reader of this document could ask: its title if it is one, else about the
    most frequent multi-word name in the opening sentences, else about the title."""
    title = " ".join(title.split())
    if title.endswith("?"):
        return title
    opening = " ".join(_SENTENCE_END.split(text.strip(), maxsplit=3)[:3])
    names = [_LEADING_WORD.sub("", m.group().strip()) for m in _NAME.finditer(opening)]
    names = [n for n in names if len(n) > 3 and " " in n]
    if names:
        best = max(names, key=lambda n: (text.count(n), -names.index(n)))
        return f"What do the sources say about {best}?"
    if title:
        short = title if len(title) <= 80 else title[:77].rsplit(" ", 1)[0] + "…"
        return f"What does “{short}” report?"
    return None

