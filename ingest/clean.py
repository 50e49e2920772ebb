"""Text cleaning that keeps text quotable.

``normalize`` fixes Unicode and whitespace without rewriting what a reader would quote: curly
quotes, dashes and accents stay as published; only invisible differences (NFC composition,
non-breaking and zero-width spaces, stray control characters, runs of spaces, trailing blanks and
excess blank lines) are folded.

``strip_boilerplate`` removes publisher furniture (donation appeals, newsletter prompts,
copyright lines) by two documented mechanisms:

1. Patterns declared by the source, in the document's front matter::

       boilerplate:
         - "Unlike many news and information platforms"

   Each entry is a literal phrase found anywhere in a paragraph (case-insensitive) or, when
   written ``re:...``, a regular expression. A paragraph that matches is removed; if it is in the
   last third of the document, everything after it is removed too (footers run to the end).
   A file's own regular expressions run with the ``regex`` engine under a budget of CPU seconds
   per document (``Limits.regex_timeout``) and without holding the GIL, so a catastrophic pattern
   (``re:^(a|a)+$``) costs at most that and stalls no other thread; an invalid or too slow pattern
   is a ``BadFile`` naming it.
2. A detector for trailing appeals: paragraphs at the end of a document that read like a footer
   are removed, from the end backwards. A paragraph reads like a footer when it has an
   unambiguous cue ("make a donation", "you can contribute", "support independent journalism",
   "all rights reserved", ©...), or a weaker cue that news text also uses ("donate",
   "subscription", "paywall", "your support"...) while addressing the reader (you/your/us/our);
   a short line following such a paragraph is taken as part of the footer. So "Japan pledged to
   donate 20 locomotives." still ends an article.
"""
from __future__ import annotations

import re
import time
import unicodedata
from typing import Iterable

import regex

from ingest.types import BadFile

_SPACES = re.compile(r"[ \t\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]+")
_INVISIBLE = re.compile(r"[\u200b\u200c\u200d\u2060\ufeff\u00ad]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BLANK_LINES = re.compile(r"\n{3,}")

FOOTER_CUES = re.compile(
    r"(make a donation|you can contribute|contribute (here|now|today)|"
    r"support (us|our work|our journalism|independent journalism)|follow us|"
    r"all rights reserved|copyright ©|©|thank you for reading|share this (article|story)|"
    r"sign up for (our|the) newsletter|subscribe to (our|the) newsletter)",
    re.IGNORECASE,
)
# Cues that news text uses too: they mark a footer only in a paragraph that addresses the reader.
WEAK_FOOTER_CUES = re.compile(
    r"(\bdonate\b|donation|your support|\bsubscribe\b|subscription|newsletter|sign up for|"
    r"paywall|free to read|independent journalism)",
    re.IGNORECASE,
)
_READER = re.compile(r"\b(you|your|us|our)\b", re.IGNORECASE)
# A trailing paragraph this short right after a footer paragraph is taken as part of the footer.
_SHORT_TAIL_WORDS = 12


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n\n")
    text = _INVISIBLE.sub("", text)
    text = _CONTROL.sub("", text)
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    text = "\n".join(lines)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip()


def paragraphs(text: str) -> list[str]:
    return [p for p in text.split("\n\n") if p.strip()]


REGEX_TIMEOUT = 1.0  # default CPU seconds for a document's own `re:` patterns (Limits.regex_timeout)
MAX_PATTERN_CHARS = 1000


class _Patterns:
    """A document's declared boilerplate patterns, matched within one shared time budget."""

    def __init__(self, patterns: Iterable[str], budget: float) -> None:
        self.budget = budget
        self.spent = 0.0
        self.compiled: list[tuple[str, object]] = []
        for p in patterns:
            p = str(p)
            if not p.startswith("re:"):
                self.compiled.append((p, re.compile(re.escape(normalize(p)), re.IGNORECASE)))
                continue
            if len(p) > MAX_PATTERN_CHARS + 3:
                raise BadFile(f"boilerplate pattern is too long ({len(p) - 3} characters; at most {MAX_PATTERN_CHARS})")
            try:
                self.compiled.append((p, regex.compile(p[3:], regex.IGNORECASE | regex.VERSION0)))
            except (regex.error, ValueError, OverflowError, RecursionError) as exc:
                raise BadFile(f"invalid boilerplate pattern {p!r} in front matter: {exc}") from None

    def __bool__(self) -> bool:
        return bool(self.compiled)

    def search(self, paragraph: str) -> bool:
        for source, rx in self.compiled:
            if isinstance(rx, re.Pattern):
                if rx.search(paragraph):
                    return True
                continue
            remaining = self.budget - self.spent
            started = time.thread_time()
            try:
                # concurrent=True: matching releases the GIL (other threads keep running when files are
                # read in-process; normally they are read in a separate process, ingest.reader).
                found = rx.search(paragraph, timeout=max(remaining, 1e-3), concurrent=True)
            except TimeoutError:
                raise BadFile(
                    f"boilerplate pattern {source!r} takes too long on this text (over {self.budget:g} s of "
                    "matching; QA_REGEX_TIMEOUT): simplify it, e.g. avoid nested repeats like (a+)+"
                ) from None
            finally:
                self.spent += time.thread_time() - started
            if found:
                return True
        return False


def looks_like_footer(paragraph: str) -> bool:
    """True for publisher furniture: a donation appeal, newsletter prompt, copyright line..."""
    if FOOTER_CUES.search(paragraph):
        return True
    return bool(WEAK_FOOTER_CUES.search(paragraph) and _READER.search(paragraph))


def kept_paragraphs(paras: list[str], patterns: Iterable[str] = (), regex_timeout: float = REGEX_TIMEOUT) -> list[int]:
    """Indices of the paragraphs that are not boilerplate (declared patterns, then a trailing footer).
    Raises BadFile for an invalid pattern or one that needs more than ``regex_timeout`` seconds."""
    compiled = _Patterns(patterns, regex_timeout)
    kept: list[int] = []
    for i, para in enumerate(paras):
        if compiled and compiled.search(para):
            if i >= len(paras) * 2 / 3:
                break  # a footer: drop it and everything after it
            continue
        kept.append(i)
    # Trailing footer detector, from the end backwards; never strips the first paragraph.
    while len(kept) > 1:
        para, previous = paras[kept[-1]], paras[kept[-2]]
        caption_after_footer = len(para.split()) <= _SHORT_TAIL_WORDS and looks_like_footer(previous)
        if looks_like_footer(para) or caption_after_footer:
            kept.pop()
        else:
            break
    return kept


def strip_boilerplate(text: str, patterns: Iterable[str] = (), regex_timeout: float = REGEX_TIMEOUT) -> str:
    """Return ``text`` without declared boilerplate and without a trailing footer/appeal."""
    paras = paragraphs(text)
    return "\n\n".join(paras[i] for i in kept_paragraphs(paras, patterns, regex_timeout))


def clean(text: str, boilerplate: Iterable[str] = ()) -> str:
    return strip_boilerplate(normalize(text), boilerplate)
