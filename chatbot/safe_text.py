"""Questions as the rest of the system sees them: no control characters.

A question is shown in the transcript, written into exports and printed by the CLI. Control
characters in it (NUL, ESC sequences that repaint a terminal, the right-to-left override that
makes "txt.exe" read "exe.txt", invisible tag characters that smuggle text to an LLM) are removed
once, where every front end's question enters the service (``QAService``), so all of them agree.
"""
from __future__ import annotations

import re
import unicodedata

# Bidirectional embeddings, overrides and isolates, and the marks that steer them (U+061C ALM,
# U+200E LRM, U+200F RLM), the byte-order mark, interlinear annotation controls, and the tag block
# (U+E0000–U+E007F, invisible ASCII look-alikes). Other format characters stay: zero-width
# non-joiner and joiner are part of Persian words and emoji.
# Terminal escape sequences go whole (ESC [ 31 m, not just the ESC): CSI, OSC and two-byte escapes.
_ESCAPES = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]")
_FORMAT_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]")


def clean_question(text: str | None) -> str:
    """``text`` with control characters removed and every run of whitespace (tabs, newlines,
    line/paragraph separators) made one space; stripped."""
    text = _FORMAT_CONTROLS.sub("", _ESCAPES.sub("", text or ""))
    kept = []
    for ch in text:
        if ch.isspace():
            kept.append(" ")
        elif unicodedata.category(ch) not in ("Cc", "Cs"):  # C0/C1 controls, lone surrogates
            kept.append(ch)
    return " ".join("".join(kept).split())
