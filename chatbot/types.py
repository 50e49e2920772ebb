"""Answer-side data. Scores are similarities: higher is better."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from ingest.types import UserError

# How an answer says the documents do not support it ("The sources don't say …"), and how an LLM
# answer flags a sentence its citations do not support. One definition each: the answerers write
# them, the UI and tests recognise them.
NOT_IN_SOURCES = "The sources don't say"
UNSUPPORTED_FLAG = "(unsupported)"
SOURCES_DIFFER = "The sources differ"  # how an answer says that its cited sentences give a figure differently
ANSWER_MODES = ("extractive", "llm")  # how a question may be answered (``AskOptions.mode``, --mode)


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


def claim_text(verb: str, by: str | None) -> str:
    """"Emomali Rahmon claims", "according to engineers in Astana", "estimated"."""
    if verb == "according to":
        return f"according to {by}" if by else "according to an unnamed source"
    return f"{by} {verb}" if by else verb


@dataclass(frozen=True)
class FigureVersion:
    """One version of a disputed figure, as written in the sentence citation ``n`` quotes."""

    n: int
    text: str  # "46 per cent", "roughly a quarter"
    value: float  # shares as fractions, money and units in base units
    qualifier: str  # exact, approximate, at most, at least
    claim_verb: str | None = None  # an attributed claim ("claims", "according to"), else None
    claimant: str | None = None

    def label(self, cite: Callable[[int], str] = "[{}]".format, escape: Callable[[str], str] = str) -> str:
        said = f" ({escape(claim_text(self.claim_verb, self.claimant))})" if self.claim_verb else ""
        return f"“{escape(self.text)}”{said} {cite(self.n)}"

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "text": self.text, "value": self.value, "qualifier": self.qualifier,
                "claim": {"verb": self.claim_verb, "by": self.claimant} if self.claim_verb else None}


@dataclass(frozen=True)
class SourceConflict:
    """Cited sentences that give the same quantity differently (chatbot/cited_conflicts.py)."""

    measure: str  # what is measured, in the text's own words
    kind: str  # share, money:USD, length, count, ...
    across_documents: bool
    versions: tuple[FigureVersion, ...]

    def text(self, cite: Callable[[int], str] = "[{}]".format, escape: Callable[[str], str] = str) -> str:
        """One sentence: The sources differ on ethnic Tajiks; Afghanistan’s population: “roughly a
        quarter” [1] vs “46 per cent” (Emomali Rahmon claims) [2]. ``cite(n)`` writes a citation,
        ``escape`` the text (the UI gives buttons and HTML escaping)."""
        where = "" if self.across_documents else " (within one document)"
        return (f"{SOURCES_DIFFER} on {escape(self.measure)}{where}: "
                + " vs ".join(v.label(cite, escape) for v in self.versions) + ".")

    def to_json(self) -> dict[str, Any]:
        return {"measure": self.measure, "kind": self.kind,
                "scope": "across documents" if self.across_documents else "within a document",
                "versions": [v.to_json() for v in self.versions], "text": self.text()}


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
    lead: str = ""  # what ``text`` says before its claims ("The sources don't say how long. What they say:")
    # figures the cited sentences give differently ("The sources differ: …"); shown beside ``text``
    conflicts: list[SourceConflict] = field(default_factory=list)

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
            "conflicts": [c.to_json() for c in self.conflicts],
        }


class QAError(UserError):
    """A user-facing problem while answering (empty question, missing index...)."""
