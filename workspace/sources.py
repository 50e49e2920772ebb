"""Quotes in their documents: a quote's paragraph (evidence panel) and a window of the document
with the turn's quotes marked (source viewer)."""
from __future__ import annotations

from dataclasses import dataclass

from chatbot.types import Citation
from workspace.overview import DocSummary

CONTEXT_CHARS = 700  # of the quote's paragraph shown on either side of it in the evidence panel


@dataclass(frozen=True)
class QuoteContext:
    """A quote inside its paragraph: ``before + quote + after`` is a slice of the stored text."""

    before: str
    quote: str
    after: str
    verified: bool  # the stored text at [start:end] is exactly the quote
    clipped_before: bool = False
    clipped_after: bool = False


def quote_context(text: str | None, start: int, end: int, quote: str, limit: int = CONTEXT_CHARS) -> QuoteContext:
    """The paragraph holding ``text[start:end]`` (paragraphs are separated by blank lines), with at
    most ``limit`` characters either side of the quote, cut at a word boundary."""
    if text is None or not (0 <= start <= end <= len(text)):
        return QuoteContext("", quote, "", False)
    p_start = text.rfind("\n\n", 0, start)
    p_start = 0 if p_start < 0 else p_start + 2
    p_end = text.find("\n\n", end)
    p_end = len(text) if p_end < 0 else p_end
    before, after = text[p_start:start], text[end:p_end]
    clipped_before = clipped_after = False
    if len(before) > limit:
        before = before[-limit:]
        before = before[before.find(" ") + 1:] if " " in before else before
        clipped_before = True
    if len(after) > limit:
        after = after[:limit]
        after = after[: after.rfind(" ")] if " " in after else after
        clipped_after = True
    return QuoteContext(before, text[start:end], after, text[start:end] == quote, clipped_before, clipped_after)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    label: str
    primary: bool


@dataclass(frozen=True)
class SourceView:
    """A document (or a window of a long one) with quote spans to mark, in document offsets."""

    doc: DocSummary | None
    title: str
    text: str  # the shown window of the stored text
    offset: int  # document offset of ``text[0]``
    length: int  # length of the whole document
    spans: list[Span]
    citation: Citation
    missing: bool = False  # the document is no longer in the index

