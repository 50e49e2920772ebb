"""QAService: the one entry point the CLI, the UI and the benchmarks share.

``answer(question, history)`` -> ``Answer``: resolve a follow-up against the history, retrieve
(hybrid), then answer extractively (default) or with an LLM (when configured), always with exact
citations.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Generator, Iterable, Iterator, Sequence

import numpy as np

from chatbot import conversation
from chatbot.answerer import NONE, AnswerRequest, ExtractiveAnswerer, SupportPolicy
from chatbot.cited_conflicts import ConflictFinder
from chatbot.extractive import ExtractiveConfig, expand_query
from chatbot.provenance import index_info, index_provenance
from chatbot.relevance import SentenceVectors, TokenAligner
from chatbot.retrieve import HybridRetriever, Passage, RetrievalConfig
from chatbot.safe_text import clean_question
from chatbot.settings import QASettings
from chatbot.types import Answer, Filters, QAError
from ingest.protocols import Embedder
from ingest.settings import Settings
from ingest.store import DocRecord, IndexStore, SourceDoc, embedder_for
from ingest.types import IngestError, IngestReport

MAX_QUESTION_CHARS = 2000  # a question is a sentence or two, not a document

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AskOptions:
    mode: str = "extractive"  # one of chatbot.types.ANSWER_MODES
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
        self.sentences = SentenceVectors(self.embedder)
        self.aligner = TokenAligner(self.embedder)
        self.answerer = ExtractiveAnswerer(self.retriever, self.sentences, self.aligner, self.page_at, extractive,
                                           policy)
        self.llm = llm  # chatbot.generative.LLMAnswerer (a chatbot.protocols.Answerer) or None
        self.conflicts = ConflictFinder(self.doc_text, self._parse_cache)
        self._opened = False
        self.brief_themes: Path | None = None  # QA_BRIEF_THEMES: the brief's themes file (None: the default themes)
        if llm is not None and hasattr(llm, "attach"):
            llm.attach(self)  # shares the embedder (claim checking) and page lookup

    @classmethod
    def from_settings(cls, settings: QASettings, embedder: Embedder | None = None) -> "QAService":
        """The service the settings tree describes: its index, answering policy and LLM (checked now:
        ``LLMConfigError`` for a bad setting or a missing package)."""
        from chatbot.generative import llm_from_settings

        service = cls(settings.index, embedder=embedder, policy=SupportPolicy(**settings.answer.policy_values()),
                      llm=llm_from_settings(settings))
        service.brief_themes = settings.brief_themes
        return service

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
        self.conflicts.warm_up()  # spaCy's process loads in the background ("The sources differ")
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
        if len(question) > MAX_QUESTION_CHARS:
            raise QAError(f"The question is too long (over {MAX_QUESTION_CHARS:,} characters): ask something shorter.")
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
        request = AnswerRequest(question, standalone, passages, vector, options.top_k)
        answer = self.answerer.answer(request)
        if options.mode == "llm" and answer.level != NONE:  # the judge refuses before any generation
            answer = yield from self._generative(replace(request, extractive=answer))
        elif options.mode == "llm":
            answer.notice = "Nothing in the documents covers this question, so the LLM was not asked."
        timings["answer"] = (time.perf_counter() - t2) * 1000
        t3 = time.perf_counter()
        answer.conflicts = self.conflicts.find(answer.citations)  # "The sources differ: …"
        timings["conflicts"] = (time.perf_counter() - t3) * 1000
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

    def _generative(self, request: AnswerRequest) -> Generator[str, None, Answer]:
        """Yields draft text pieces; returns the checked LLM answer, or the extractive one with a notice."""
        fallback = request.extractive
        assert fallback is not None
        if self.llm is None:
            fallback.notice = "No LLM is configured (set QA_LLM); showing the extractive answer."
            return fallback
        from chatbot.generative import LLMUnavailable

        try:
            for item in self.llm.answer_stream(request):
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

    def _parse_cache(self):
        """The brief's spaCy parses of this index's documents (chatbot/brief/cache.py), if built."""
        from chatbot.brief.cache import ParseCache, cache_dir

        return ParseCache(cache_dir(self.store) / "parsed")

    def doc_text_and_file(self, doc_id: str) -> tuple[str | None, str | None]:
        """A document's stored text and the name of the file it came from (None, None when gone)."""
        record = self.document(doc_id)
        if record is None:
            return None, None
        return record.text, (Path(record.paths[0]).name if record.paths else record.meta.get("filename"))

    def index_info(self) -> dict[str, Any]:
        """Where the index is, its state and size, and the settings it was built with (for exports)."""
        return index_info(self.store)

    def brief(self, refresh: bool = False, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
        """The onboarding brief of the index (chatbot/brief/): read from its cache when the index
        state has not changed, else built (seconds to minutes: call it off the request path)."""
        from chatbot.brief.build import BriefConfig, BriefError
        from chatbot.brief.cache import brief_for_index
        from chatbot.brief.themes import DEFAULT_THEMES, ThemeError, load_themes

        self.open()
        try:
            config = BriefConfig(themes=load_themes(self.brief_themes) if self.brief_themes else DEFAULT_THEMES)
            return brief_for_index(self.store, self.embedder, config, refresh=refresh, progress=progress)
        except (BriefError, ThemeError) as exc:
            raise QAError(str(exc)) from None

    def model_ids(self) -> dict[str, str | None]:
        """The embedding model's and the LLM's ids (None: extractive answers only)."""
        llm = self.llm
        return {"embedding": self.embedder.model_id,
                "llm": None if llm is None else str(getattr(llm, "model_id", None) or getattr(llm, "name", None)
                                                    or type(llm).__name__)}

    def provenance(self) -> dict[str, Any]:
        """The index state and model ids answers come from (exports record it; chatbot/provenance.py)."""
        return index_provenance(self.store, self.model_ids())

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
