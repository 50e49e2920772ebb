"""Answer-side data. Scores are similarities: higher is better."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ingest.types import UserError

# How an answer says the documents do not support it ("The sources don't say …"), and how an LLM
# answer flags a sentence its citations do not support. One definition each: the answerers write
# them, the UI and tests recognise them.
NOT_IN_SOURCES = "The sources don't say"
UNSUPPORTED_FLAG = "(unsupported)"


@dataclass(frozen=True)
class Citation:
    """An exact quote: ``quote == stored_text_of(doc_id)[start:end]``."""

    n: int
    doc_id: str
    title: str
    start: int
    end: int
    quote: str
    support: float = 0.0  # how well this quote supports the sentence that cites it (0..1)
    page: int | None = None
    chunk_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Claim:
    """One sentence of the answer, the citation numbers it carries, and its support score.

    An answer's text is its ``lead`` and its claims in order: a supported claim followed by its
    ``[n]`` markers, an unsupported one flagged ``(unsupported)``, a ``refusal`` (an LLM's "the
    sources don't say …" inside an answer) as written. Front ends render from these, never by
    parsing the text."""

    text: str
    citations: tuple[int, ...]
    support: float
    supported: bool
    refusal: bool = False

    def to_json(self) -> dict[str, Any]:
        data = {"text": self.text, "citations": list(self.citations), "support": round(self.support, 4),
                "supported": self.supported}
        return {**data, "refusal": True} if self.refusal else data


@dataclass(frozen=True)
class Filters:
    doc_ids: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    published_from: str | None = None  # ISO date, inclusive
    published_to: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.doc_ids or self.sources or self.published_from or self.published_to)


@dataclass
class Answer:
    question: str
    text: str
    supported: bool  # true only when support_level is "answered"
    citations: list[Citation] = field(default_factory=list)
    # the sentences of ``text`` after ``lead``, with their citation numbers (see ``Claim``); empty
    # when nothing is cited (``text`` then says why)
    claims: list[Claim] = field(default_factory=list)
    evidence: list[Citation] = field(default_factory=list)  # nearest passages when unsupported
    mode: str = "extractive"
    standalone_question: str = ""
    notice: str | None = None
    confidence: float = 0.0
    # "answered"; "partial": the sources cover the topic, not the detail asked (citations show what
    # they say); "none": nothing relevant (nearest passages in ``evidence``). See chatbot.judge.
    # Empty: derived from ``supported`` (answered / none), for answerers that only decide that.
    support_level: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    lead: str = ""  # what ``text`` says before its claims ("The sources don't say exactly that. What they say:")

    @property
    def level(self) -> str:
        return self.support_level or ("answered" if self.supported else "none")

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "supported": self.supported,
            "support_level": self.level,
            "citations": [c.to_json() for c in self.citations],
            "claims": [c.to_json() for c in self.claims],
            "evidence": [c.to_json() for c in self.evidence],
            "mode": self.mode,
            "standalone_question": self.standalone_question or self.question,
            "notice": self.notice,
            "confidence": round(self.confidence, 4),
        }


class QAError(UserError):
    """A user-facing problem while answering (empty question, missing index...)."""
