"""The interfaces between the Q&A core's stages, as ``typing.Protocol``s.

- ``Retriever``: a question -> ranked ``Passage``s (``chatbot.retrieve.HybridRetriever``: dense +
  BM25, fused). Also a LangChain ``BaseRetriever``: ``chatbot.langchain_adapters.PassageRetriever``.
- ``Answerer``: the question and its passages (``chatbot.answerer.AnswerRequest``) -> an ``Answer``
  with exact citations (``chatbot.answerer.ExtractiveAnswerer``, ``chatbot.generative.LLMAnswerer``).

The store and embedder interfaces are in ``ingest.protocols`` (ingest never imports chatbot).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from chatbot.types import Filters

if TYPE_CHECKING:
    from chatbot.answerer import AnswerRequest
    from chatbot.retrieve import Passage
    from chatbot.types import Answer


@runtime_checkable
class Retriever(Protocol):
    def retrieve(self, query: str, filters: Filters | None = None, top_k: int | None = None,
                 vector: np.ndarray | None = None) -> list["Passage"]:
        """The best ``top_k`` passages for ``query`` (best first; ``Passage.score`` higher is better)
        among the documents ``filters`` allow; ``vector``: the query's embedding when the caller
        already has it."""
        ...


@runtime_checkable
class Answerer(Protocol):
    mode: str  # recorded in each Answer ("extractive", "llm:<provider>")

    def answer(self, request: "AnswerRequest") -> "Answer":
        """The answer to ``request.question`` from ``request.passages``: every quote an exact slice of a
        stored document, or "The sources don't say" when the passages do not answer it."""
        ...
