"""The interfaces between the Q&A core's stages, as ``typing.Protocol``s.

- ``Retriever``: a question -> ranked ``Passage``s (``chatbot.retrieve.HybridRetriever``: dense +
  BM25, fused). Also a LangChain ``BaseRetriever``: ``chatbot.langchain_adapters.PassageRetriever``.

The store and embedder interfaces are in ``ingest.protocols`` (ingest never imports chatbot).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from chatbot.types import Filters

if TYPE_CHECKING:
    from chatbot.retrieve import Passage


@runtime_checkable
class Retriever(Protocol):
    def retrieve(self, query: str, filters: Filters | None = None, top_k: int | None = None,
                 vector: np.ndarray | None = None) -> list["Passage"]:
        """The best ``top_k`` passages for ``query`` (best first; ``Passage.score`` higher is better)
        among the documents ``filters`` allow; ``vector``: the query's embedding when the caller
        already has it."""
        ...
