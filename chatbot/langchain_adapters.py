"""LangChain-native edges of the Q&A core, for applications built on LangChain (LCEL).

- ``PassageRetriever``: a LangChain ``BaseRetriever`` over the hybrid retriever (dense + BM25,
  ``chatbot.retrieve``). Each passage is a ``Document`` (``id`` = the chunk id) whose
  ``page_content`` is the chunk's text, exactly as stored, and whose metadata say where it is:
  ``doc_id``, ``chunk_id``, ``title``, ``start`` / ``end`` (offsets in the stored document:
  ``document_text[start:end] == page_content``), ``page`` / ``page_end`` (PDFs; None otherwise),
  ``source``, and the scores: ``score`` (fused, higher is better), ``dense_score`` (cosine) and
  ``dense_rank``, ``lexical_score`` (BM25) and ``lexical_rank`` (None when that retriever did not
  find the passage).
- ``AnswerRunnable``: a LangChain ``Runnable`` around ``QAService.answer``. Input: a question, or
  ``{"question", "history", "options"}`` (history: (user, assistant) pairs or LangChain messages;
  options: an ``AskOptions`` or a dict ``{"mode", "top_k", "filters": {"doc_ids", "sources",
  "published_from", "published_to"}}``). Output: the ``Answer`` with its exact citations, or its
  JSON (``as_json=True``, as ``python -m chatbot ask --json`` prints it).

    service = QAService(Settings.from_env()).open()
    retriever = PassageRetriever.from_service(service, top_k=4)
    answer = AnswerRunnable(service, as_json=True)
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig
from pydantic import ConfigDict

from chatbot.protocols import Retriever
from chatbot.retrieve import Passage
from chatbot.service import AskOptions, QAService
from chatbot.types import ANSWER_MODES, Answer, Filters, QAError


def to_document(passage: Passage) -> Document:
    stored = passage.chunk
    chunk = stored.chunk
    return Document(id=chunk.chunk_id, page_content=chunk.text, metadata={
        "doc_id": chunk.doc_id, "chunk_id": chunk.chunk_id, "title": stored.title, "start": chunk.start,
        "end": chunk.end, "page": stored.meta.get("page"), "page_end": stored.meta.get("page_end"),
        "source": stored.meta.get("source") or None, "score": passage.score,
        "dense_score": passage.dense, "dense_rank": passage.dense_rank,
        "lexical_score": passage.lexical, "lexical_rank": passage.lexical_rank,
    })


class PassageRetriever(BaseRetriever):
    """The hybrid retriever as a LangChain retriever (see the module docstring for the metadata).
    ``top_k`` and ``filters`` may also be given per call: ``invoke(query, top_k=3)``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: Any  # a chatbot.protocols.Retriever
    top_k: int | None = None  # None: the retriever's own default
    filters: Filters | None = None

    @classmethod
    def from_service(cls, service: QAService, **kwargs: Any) -> "PassageRetriever":
        """Over an opened service's retriever (``QAService(settings).open()``)."""
        return cls(retriever=service.retriever, **kwargs)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                top_k: int | None = None, filters: Filters | None = None) -> list[Document]:
        retriever: Retriever = self.retriever
        passages = retriever.retrieve(query, filters or self.filters, top_k or self.top_k)
        return [to_document(p) for p in passages]


class AnswerRunnable(Runnable[Any, Any]):
    """``QAService.answer`` as a LangChain ``Runnable`` (see the module docstring)."""

    def __init__(self, service: QAService, as_json: bool = False) -> None:
        self.service = service
        self.as_json = as_json

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Answer | dict[str, Any]:
        return self._call_with_config(self._answer, input, config)

    def _answer(self, input: Any) -> Answer | dict[str, Any]:
        question, history, options = parse_input(input)
        answer = self.service.answer(question, history, options)
        return answer.to_json() if self.as_json else answer


def parse_input(value: Any) -> tuple[str, list[tuple[str, str]], AskOptions]:
    """(question, history as (user, assistant) pairs, options) from a question or a mapping."""
    if isinstance(value, str):
        return value, [], AskOptions()
    if not isinstance(value, Mapping) or not isinstance(value.get("question"), str):
        raise QAError("The input must be a question, or a mapping with a \"question\" string "
                      f"(and optionally \"history\" and \"options\"); got {type(value).__name__}.")
    unknown = set(value) - {"question", "history", "options"}
    if unknown:
        raise QAError(f"Unknown input keys: {', '.join(sorted(unknown))} (expected question, history, options).")
    return value["question"], history_pairs(value.get("history") or []), ask_options(value.get("options"))


def history_pairs(history: Sequence[Any]) -> list[tuple[str, str]]:
    """(user, assistant) pairs from pairs or from LangChain messages (a human message, then the AI's)."""
    pairs: list[tuple[str, str]] = []
    for turn in history:
        if isinstance(turn, BaseMessage):
            if turn.type == "human":
                pairs.append((turn.text, ""))
            elif turn.type == "ai" and pairs and not pairs[-1][1]:
                pairs[-1] = (pairs[-1][0], turn.text)
        elif isinstance(turn, (tuple, list)) and len(turn) == 2:
            pairs.append((str(turn[0] or ""), str(turn[1] or "")))
        else:
            raise QAError("history must be (question, answer) pairs or LangChain messages "
                          f"(got {type(turn).__name__}).")
    return pairs


def ask_options(value: Any) -> AskOptions:
    if value is None or isinstance(value, AskOptions):
        return value or AskOptions()
    if not isinstance(value, Mapping):
        raise QAError(f"options must be an AskOptions or a mapping (got {type(value).__name__}).")
    unknown = set(value) - {"mode", "top_k", "filters"}
    if unknown:
        raise QAError(f"Unknown options: {', '.join(sorted(unknown))} (expected mode, top_k, filters).")
    filters = value.get("filters") or Filters()
    if isinstance(filters, Mapping):
        fields = {k: tuple(v) if k in ("doc_ids", "sources") else v for k, v in filters.items()}
        try:
            filters = Filters(**fields)
        except TypeError:
            raise QAError("filters may have doc_ids, sources, published_from and published_to "
                          f"(got {', '.join(sorted(filters))}).") from None
    mode = value.get("mode", "extractive")
    if mode not in ANSWER_MODES:
        raise QAError(f"mode must be one of {', '.join(ANSWER_MODES)} (got {mode!r}).")
    return AskOptions(mode=mode, top_k=value.get("top_k"), filters=filters)
