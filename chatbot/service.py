"""QAService: the one entry point the CLI, the UI and the benchmarks share.

``answer(question, history)`` -> ``Answer``: resolve a follow-up against the history, retrieve
(hybrid), then answer extractively (default) or with an LLM (when configured), always with exact
citations.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Generator, Iterator, Sequence

from chatbot import conversation
from chatbot.extractive import (
    Candidate,
    ExtractiveConfig,
    QuestionProfile,
    candidates,
    score_candidates,
    select,
    to_citation,
)
from chatbot.retrieve import HybridRetriever, Passage, RetrievalConfig
from chatbot.safe_text import clean_question
from chatbot.types import Answer, Claim, Filters, QAError
from ingest.embed import Embedder
from ingest.settings import Settings
from ingest.store import DocRecord, IndexStore, SourceDoc, embedder_for
from ingest.types import IngestError

NOT_IN_SOURCES = "The sources don't say"


@dataclass(frozen=True)
class SupportPolicy:
    """When is the best evidence strong enough to answer? (calibration: benchmarks/RESULTS.md)

    Refuse when any of these holds:
    - the best sentence covers less than ``min_coverage`` of the question's IDF-weighted terms;
    - ``max_absent`` or more of that weight is on terms found nowhere in the index;
    - the question asks for a number/date/name, the best sentence has none, and its coverage is
      below ``min_coverage_type_mismatch``.
    """

    min_coverage: float = 0.2
    max_absent: float = 0.6
    min_coverage_type_mismatch: float = 0.5

    def supported(self, best: Candidate | None, profile: QuestionProfile) -> tuple[bool, float]:
        if best is None or not profile.terms:
            return False, 0.0
        ok = (
            best.coverage >= self.min_coverage
            and profile.absent < self.max_absent
            and (best.type_match or best.coverage >= self.min_coverage_type_mismatch)
        )
        confidence = max(0.0, min(1.0, best.coverage * (1 - profile.absent) + 0.5 * best.context))
        return ok, confidence


@dataclass(frozen=True)
class AskOptions:
    mode: str = "extractive"  # or "llm"
    top_k: int | None = None
    filters: Filters = field(default_factory=Filters)


class QAService:
    def __init__(
        self,
        settings: Settings,
        embedder: Embedder | None = None,
        retrieval: RetrievalConfig | None = None,
        extractive: ExtractiveConfig | None = None,
        policy: SupportPolicy | None = None,
        llm=None,
    ) -> None:
        self.settings = settings
        self.embedder = embedder or embedder_for(settings)
        self.store = IndexStore(settings, self.embedder.model_id, self.embedder.dimension)
        self.retriever = HybridRetriever(self.store, self.embedder, retrieval)
        self.extractive = extractive or ExtractiveConfig()
        self.policy = policy or SupportPolicy()
        self.llm = llm  # chatbot.generative.LLMAnswerer or None
        self._opened = False
        if llm is not None and hasattr(llm, "attach"):
            llm.attach(self)  # shares the embedder (claim checking) and page lookup

    # ------------------------------------------------------------------ setup
    def open(self) -> "QAService":
        """Open the index; a missing or empty index is a QAError telling the user to run ingest."""
        if self._opened:
            return self
        try:
            self.store.open(create=False)
        except IngestError as exc:
            raise QAError(str(exc)) from None
        if self.store.count_chunks() == 0:
            raise self._empty()
        self._opened = True
        return self

    def _empty(self) -> QAError:
        return QAError(f"The index at {self.store.location} is empty. Run `python -m ingest` to add articles.")

    def warm_up(self) -> None:
        self.open()
        self.embedder.embed_query("warm up")
        self.retriever.lexical_index
        if self.llm is not None:
            try:
                self.llm.warm_up()  # QA_LLM=llamacpp: start the model's server process now
            except Exception:
                pass  # the first LLM question reports it, with the extractive answer

    # ----------------------------------------------------------------- answer
    def answer(self, question: str, history: Sequence[tuple[str, str]] = (), options: AskOptions | None = None) -> Answer:
        """Answer one question (with the conversation so far) with exact citations."""
        answer = None
        for item in self._run(question, history, options):
            answer = item
        assert isinstance(answer, Answer)
        return answer

    def answer_stream(self, question: str, history: Sequence[tuple[str, str]] = (),
                      options: AskOptions | None = None) -> Iterator[str | Answer]:
        """Yield pieces of draft text while an LLM writes (LLM mode only), then the final Answer."""
        return self._run(question, history, options)

    def _run(self, question: str, history, options: AskOptions | None) -> Iterator[str | Answer]:
        options = options or AskOptions()
        question = clean_question(question)  # no control characters in what is shown, exported, printed
        if not question:
            raise QAError("The question is empty: type a question about the documents.")
        if len(question) > 2000:
            raise QAError("The question is too long (over 2,000 characters): ask something shorter.")
        self.open()
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        standalone = self._standalone(question, history, options)
        timings["condense"] = (time.perf_counter() - t0) * 1000
        t1 = time.perf_counter()
        passages = self.retriever.retrieve(standalone, options.filters, options.top_k)
        if not passages and len(self.retriever.loaded_index) == 0:  # every document was deleted since
            raise self._empty()
        timings["retrieve"] = (time.perf_counter() - t1) * 1000
        t2 = time.perf_counter()
        answer = self._extractive(question, standalone, passages)
        if options.mode == "llm":
            answer = yield from self._generative(question, standalone, passages, answer)
        timings["answer"] = (time.perf_counter() - t2) * 1000
        timings["total"] = (time.perf_counter() - t0) * 1000
        answer.timings_ms = timings
        yield answer

    def _standalone(self, question: str, history, options: AskOptions) -> str:
        if not history:
            return question
        if options.mode == "llm" and self.llm is not None:
            condensed = self.llm.condense(question, history)
            if condensed:
                return condensed
        return conversation.condense(question, history)

    def _extractive(self, question: str, standalone: str, passages: list[Passage]) -> Answer:
        profile = QuestionProfile.of(standalone, self.retriever.loaded_index)
        ranked = score_candidates(profile, candidates(passages), self.extractive)
        best = ranked[0] if ranked else None
        ok, confidence = self.policy.supported(best, profile)
        if not ok:
            nearest = select(ranked, replace(self.extractive, keep_ratio=0.0, max_sentences=3))
            evidence = [to_citation(i, c, c.score, self.page_at(c.doc_id, c.start)) for i, c in enumerate(nearest, 1)]
            return Answer(question=question, text=f"{NOT_IN_SOURCES} — nothing in the indexed documents answers "
                          f"“{standalone}” closely enough to quote.", supported=False, evidence=evidence,
                          standalone_question=standalone, confidence=confidence)
        chosen = select(ranked, self.extractive)
        citations = [to_citation(i, c, min(1.0, c.coverage + 0.5 * c.context), self.page_at(c.doc_id, c.start))
                     for i, c in enumerate(chosen, 1)]
        claims = [Claim(c.quote, (c.n,), c.support, True) for c in citations]
        text = " ".join(f"{c.quote} [{c.n}]" for c in citations)
        return Answer(question=question, text=text, supported=True, citations=citations, claims=claims,
                      standalone_question=standalone, confidence=confidence)

    def _generative(self, question: str, standalone: str, passages: list[Passage],
                    fallback: Answer) -> Generator[str, None, Answer]:
        """Yields draft text pieces; returns the checked LLM answer, or the extractive one with a notice."""
        if self.llm is None:
            fallback.notice = "No LLM is configured (set QA_LLM); showing the extractive answer."
            return fallback
        from chatbot.generative import LLMUnavailable

        try:
            for item in self.llm.answer_stream(question, standalone, passages, fallback):
                if isinstance(item, Answer):
                    return item
                yield item
            raise LLMUnavailable("no answer was produced")
        except LLMUnavailable as exc:
            fallback.notice = f"The LLM could not answer ({exc}); showing the extractive answer."
            return fallback

    # --------------------------------------------------------------- corpus
    def page_at(self, doc_id: str, start: int) -> int | None:
        """The page of offset ``start`` in a paged document (PDF); None for unpaged ones."""
        pages = self.retriever.pages().get(doc_id)
        return SourceDoc(doc_id, "", "", {}, pages).page_at(start) if pages else None

    def documents(self) -> list[DocRecord]:
        self.open()
        return list(self.retriever.documents())

    def document(self, doc_id: str) -> DocRecord | None:
        self.open()
        return self.store.get_document(doc_id)

    def doc_text(self, doc_id: str) -> str | None:
        record = self.document(doc_id)
        return record.text if record else None
