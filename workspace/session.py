"""One browser session's conversation: its turns, each with the ``Answer`` and the options used."""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

from chatbot.service import AskOptions
from chatbot.types import Answer, Citation


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class Turn:
    question: str
    answer: Answer
    asked_at: str
    options: AskOptions = field(default_factory=AskOptions)
    # (corpus generation, export entry): built once, not on every later answer of the conversation
    export_entry: tuple[int, dict] | None = field(default=None, repr=False, compare=False)


@dataclass
class Session:
    """One browser session's conversation. Held in ``gr.State``: never shared between users."""

    turns: list[Turn] = field(default_factory=list)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    owner: str = field(default="", repr=False)  # the browser's session cookie (workspace/access.py)
    # the brief this page shows (workspace/brief.py): its [n] keys are resolved against it
    brief: dict | None = field(default=None, repr=False, compare=False)
    brief_links: dict = field(default_factory=dict, repr=False, compare=False)  # its downloads

    @property
    def current(self) -> Turn | None:
        return self.turns[-1] if self.turns else None

    def history(self) -> list[tuple[str, str]]:
        return [(t.question, t.answer.text) for t in self.turns]

    def find(self, key: str) -> tuple[int, Turn, Citation] | None:
        """``"<turn>:c:<n>"`` (a citation) or ``"<turn>:e:<n>"`` (nearest evidence) -> the quote."""
        m = re.fullmatch(r"(\d+):([ce]):(\d+)", (key or "").strip())
        if not m:
            return None
        i, kind, n = int(m.group(1)), m.group(2), int(m.group(3))
        if not 0 <= i < len(self.turns):
            return None
        turn = self.turns[i]
        for c in turn.answer.citations if kind == "c" else turn.answer.evidence:
            if c.n == n:
                return i, turn, c
        return None


def cite_key(turn_index: int, citation: Citation, evidence: bool = False) -> str:
    return f"{turn_index}:{'e' if evidence else 'c'}:{citation.n}"

