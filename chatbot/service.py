"""QAService: the one entry point the CLI, the UI and the benchmarks share.

``answer(question, history)`` -> ``Answer``: resolve a follow-up against the history, retrieve
(hybrid), then answer extractively (default) or with an LLM (when configured), always with exact
citations.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Generator, Iterable, Iterator, Sequence

import numpy as np

from chatbot import conversation
from chatbot.extractive import (
    Candidate,
    ExtractiveConfig,
    QuestionProfile,
    candidates,
    expand_query,
    score_candidates,
    select,
    spans_actors,
    to_citation,
    window_text,
)
from chatbot.judge import ALIGN_TOP, MODEL_FILE, Judge, asks_for, features
from chatbot.provenance import index_info
from chatbot.relevance import SentenceVectors, TokenAligner, similarities
from chatbot.retrieve import HybridRetriever, Passage, RetrievalConfig
from chatbot.safe_text import clean_question
from chatbot.settings import QASettings
from chatbot.types import NOT_IN_SOURCES, Answer, Claim, Filters, QAError
from ingest.protocols import Embedder
from ingest.settings import Settings
from ingest.store import DocRecord, IndexStore, SourceDoc, embedder_for
from ingest.types import IngestError, IngestReport

ANSWERED, PARTIAL, NONE = "answered", "partial", "none"

log = logging.getLogger(__name__)


@dataclass
class Evidence:
    """What the extractive answerer found for one question (also what benchmarks/train_judge.py fits on)."""

    profile: QuestionProfile
    ranked: list[Candidate]  # best first
    features: dict[str, float] | None  # None when there is no candidate or no content term
    probability: float


@dataclass(frozen=True)
class SupportPolicy:
    """Answer, say what the sources do say (partial), or refuse (calibration: benchmarks/RESULTS.md).

    The judge (``chatbot.judge``, fitted model in ``chatbot/judge_model.json``) gives the
    probability that the best sentence answers the question. At or above ``threshold``
    (``QA_ANSWER_THRESHOLD``) the answer is ``answered``, unless the question asks for a number or a
    date that none of the top sentences supplies (``chatbot.judge.DETAIL_KINDS``) or uses a name
    found nowhere in the index ("the TAPI pipeline"). Otherwise it is ``partial`` when
    the best evidence is on the question's topic: its cosine to the question is at least
    ``topic_semantic`` (``QA_TOPIC_SEMANTIC``) or it and its neighbours cover at least
    ``topic_window`` of the question's IDF-weighted terms, and every name it uses is in the index;
    otherwise ``none``.
    """

    threshold: float = 0.3
    topic_semantic: float = 0.45
    topic_window: float = 0.6
    model_path: Path = MODEL_FILE

    def __post_init__(self) -> None:
        for name in ("threshold", "topic_semantic", "topic_window"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise QAError(f"{name} must be between 0 and 1 (got {value}).")

    def answers(self, probability: float, feats: dict[str, float]) -> bool:
        """The judge's probability is high enough, an asked-for number or date is supplied, and every
        name the question uses occurs somewhere in the index."""
        return (probability >= self.threshold and not feats.get("type_gap_top", 0.0)
                and not feats.get("names_unknown", 0.0))

    @cached_property
    def judge(self) -> Judge:
        return Judge.load(self.model_path)

    def level(self, probability: float, feats: dict[str, float]) -> str:
        if self.answers(probability, feats):
            return ANSWERED
        if feats.get("names_unknown"):  # what the question is about is never mentioned
            return NONE
        if feats["semantic"] >= self.topic_semantic or feats["window"] >= self.topic_window:
            return PARTIAL
        return NONE


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
        self.sentences = SentenceVectors(self.embedder)
        self.aligner = TokenAligner(self.embedder)
        self.llm = llm  # chatbot.generative.LLMAnswerer or None
        self._opened = False
        if llm is not None and hasattr(llm, "attach"):
            llm.attach(self)  # shares the embedder (claim checking) and page lookup

    @classmethod
    def from_settings(cls, settings: QASettings, embedder: Embedder | None = None) -> "QAService":
        """The service the settings tree describes: its index, answering policy and LLM (checked now:
        ``LLMConfigError`` for a bad setting or a missing package)."""
        from chatbot.generative import llm_from_settings

        return cls(settings.index, embedder=embedder, policy=SupportPolicy(**settings.answer.policy_values()),
                   llm=llm_from_settings(settings))

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
            from chatbot.llm_client import LLMUnavailable

            try:
                self.llm.warm_up()  # QA_LLM=llamacpp: start the model's server process now
            except LLMUnavailable as exc:  # the first LLM question reports it, with the extractive answer
                log.warning("The LLM is not ready: %s", exc)

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
        vector = self.aligner.question_vector(standalone)  # one model run for retrieval and the judge
        if vector is None:
            vector = self.embedder.embed_query(standalone)
        passages = self.passages(standalone, vector, options.filters, options.top_k)
        if not passages and len(self.retriever.loaded_index) == 0:  # every document was deleted since
            raise self._empty()
        timings["retrieve"] = (time.perf_counter() - t1) * 1000
        t2 = time.perf_counter()
        answer = self._extractive(question, standalone, passages, vector, options.top_k)
        if options.mode == "llm" and answer.level != NONE:  # the judge refuses before any generation
            answer = yield from self._generative(question, standalone, passages, answer)
        elif options.mode == "llm":
            answer.notice = "Nothing in the documents covers this question, so the LLM was not asked."
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

    def passages(self, standalone: str, vector: np.ndarray, filters: Filters | None = None,
                 top_k: int | None = None) -> list[Passage]:
        """The retrieved passages; the keyword search is also given the other names of the states the
        question names (capitals, demonyms: ``chatbot.extractive.expand_query``). Taking sentences
        from 16 passages instead of 8 was measured: no gain (benchmarks/RESULTS.md)."""
        return self.retriever.retrieve(expand_query(standalone), filters, top_k, vector=vector)

    def evidence(self, standalone: str, passages: list[Passage], vector: np.ndarray) -> Evidence:
        """Score every sentence of the passages (terms + meaning) and judge the best one."""
        found = self.rank(standalone, passages, vector)
        if found.features is not None:
            found.probability = self.policy.judge.probability(found.features)
        return found

    def rank(self, standalone: str, passages: list[Passage], vector: np.ndarray) -> Evidence:
        """The candidate sentences, best first, and the judge's features of the best (no probability yet)."""
        index = self.retriever.loaded_index
        profile = QuestionProfile.of(standalone, index)
        cands = candidates(passages)
        semantic = similarities(vector, self.sentences.of(cands))
        ranked = score_candidates(profile, list(cands), self.extractive, semantic)
        if not ranked or not profile.terms:
            return Evidence(profile, ranked, None, 0.0)
        # (worst-matched words, mean) of the better-aligned of the top sentences
        alignment = max(self.aligner.alignment(standalone, c.text) for c in ranked[:ALIGN_TOP])
        feats = features(standalone, profile, ranked, window_text(cands, ranked[0]), index, alignment)
        return Evidence(profile, ranked, feats, 0.0)

    def _quoting(self, standalone: str, top_k: int | None) -> ExtractiveConfig:
        """How much to quote: reasons, positions and comparisons take several sentences (a lower bar
        for runners-up); asking for more passages (``--top-k``, "more evidence") raises the budget."""
        config = self.extractive
        if asks_for(standalone) == "reason" or spans_actors(standalone):
            config = replace(config, keep_ratio=min(config.keep_ratio, 0.3))
        default_k = self.retriever.config.top_k
        if top_k and top_k > default_k:
            config = replace(config, max_chars=int(config.max_chars * top_k / default_k),
                             max_sentences=min(10, max(config.max_sentences, top_k // 2)))
        return config

    def _extractive(self, question: str, standalone: str, passages: list[Passage], vector: np.ndarray,
                    top_k: int | None = None) -> Answer:
        found = self.evidence(standalone, passages, vector)
        ranked, p = found.ranked, found.probability
        level = NONE if found.features is None else self.policy.level(p, found.features)
        if level == NONE:
            nearest = select(ranked, replace(self.extractive, keep_ratio=0.0, max_sentences=3))
            evidence = [to_citation(i, c, c.score, self.page_at(c.doc_id, c.start)) for i, c in enumerate(nearest, 1)]
            return Answer(question=question, text=f"{NOT_IN_SOURCES} — nothing in the indexed documents answers "
                          f"“{standalone}” closely enough to quote.", supported=False, evidence=evidence,
                          standalone_question=standalone, confidence=p, support_level=NONE)
        per_actor = spans_actors(standalone)
        chosen = select(ranked, self._quoting(standalone, top_k), per_actor=per_actor, question=standalone)
        citations = [to_citation(i, c, min(1.0, c.coverage + 0.5 * c.context), self.page_at(c.doc_id, c.start))
                     for i, c in enumerate(chosen, 1)]
        # several actors: one line per actor's sentence, each cited
        quoted = ("\n" if per_actor and len(citations) > 1 else " ").join(f"{c.quote} [{c.n}]" for c in citations)
        claims = [Claim(c.quote, (c.n,), c.support, True) for c in citations]
        if level == PARTIAL:
            lead = f"{NOT_IN_SOURCES} exactly that. What they say:"
            return Answer(question=question, text=f"{lead} {quoted}", supported=False, citations=citations,
                          claims=claims, standalone_question=standalone, confidence=p, support_level=PARTIAL,
                          lead=lead)
        return Answer(question=question, text=quoted, supported=True, citations=citations, claims=claims,
                      standalone_question=standalone, confidence=p, support_level=ANSWERED)

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
            log.warning("The LLM could not answer (%s); showing the extractive answer", exc, exc_info=True)
            fallback.notice = f"The LLM could not answer ({exc}); showing the extractive answer."
            return fallback

    # --------------------------------------------------------------- corpus
    @property
    def default_top_k(self) -> int:
        """Passages retrieved when a question does not say (``AskOptions.top_k`` None)."""
        return self.retriever.config.top_k

    def page_at(self, doc_id: str, start: int) -> int | None:
        """The page of offset ``start`` in a paged document (PDF); None for unpaged ones."""
        pages = self.retriever.pages().get(doc_id)
        return SourceDoc(doc_id, "", "", {}, pages).page_at(start) if pages else None

    def documents(self) -> list[DocRecord]:
        """The complete documents (metadata only)."""
        self.open()
        return list(self.retriever.documents())

    def documents_by_id(self, doc_ids: Iterable[str]) -> list[DocRecord]:
        """The complete documents among ``doc_ids``."""
        self.open()
        return self.retriever.documents_by_id(doc_ids)

    def document(self, doc_id: str) -> DocRecord | None:
        self.open()
        return self.store.get_document(doc_id)

    def doc_text(self, doc_id: str) -> str | None:
        record = self.document(doc_id)
        return record.text if record else None

    def index_info(self) -> dict[str, Any]:
        """Where the index is, its state and size, and the settings it was built with (for exports)."""
        return index_info(self.store)

    # ---------------------------------------------------------------- writes
    def ingest(self, paths: Sequence[Path], progress: bool = False,
               on_wait: Callable[[str], None] | None = None) -> IngestReport:
        """Index ``paths`` (incremental; under the index's writer lock, ``on_wait`` hearing "waiting
        for another writer…") with this service's model; answers see the new documents at once."""
        try:
            return self._ingestor(progress, on_wait).run(list(paths))
        finally:
            self.refresh()

    def delete_document(self, doc_id: str, on_wait: Callable[[str], None] | None = None) -> None:
        """Delete a document and its chunks from the index."""
        try:
            self._ingestor(False, on_wait).delete_document(doc_id)
        finally:
            self.refresh()

    def refresh(self) -> None:
        """Forget what was cached about the index's documents (after this process wrote to it)."""
        self.retriever.refresh()

    def _ingestor(self, progress: bool, on_wait: Callable[[str], None] | None):
        from ingest.pipeline import Ingestor

        return Ingestor(self.settings, embedder=self.embedder, progress=progress, on_wait=on_wait)
