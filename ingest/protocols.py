"""The interfaces between ingest's stages and the index, as ``typing.Protocol``s.

- ``Embedder``: texts -> unit vectors (``ingest.embed.SentenceTransformerEmbedder``; fakes in tests).
- ``Store``: where documents and chunks live (``ingest.store.IndexStore``, on embedded Chroma or a
  Chroma server). Ingest writes through it and ``chatbot`` reads through it; any implementation
  must pass the contract in ``tests/ingest/test_store_contract.py``.

Scores a store returns are similarities (higher is better), never distances.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from ingest.types import Chunk, DocRecord, StoredChunk


@runtime_checkable
class Embedder(Protocol):
    model_id: str  # recorded by the index; opening it with another model is an error
    dimension: int

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """One unit-normalised float32 row per text."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        ...


@runtime_checkable
class Store(Protocol):
    """Documents (text, metadata, the files they came from, a pending/complete status) and their
    chunks (text, offsets, sentence spans, vector). Built for one embedding model and one chunking
    (``config``); opening an index built otherwise is an ``IngestError`` saying how to rebuild."""

    model_id: str
    dimension: int
    # how chunk vectors are made for this index (``settings.CHUNK_RUN`` or ``SENTENCE_MEAN``);
    # an existing index's own recipe once opened
    chunk_vectors: str

    @property
    def location(self) -> str:
        """Where the index lives (a folder or a server URL), for messages."""
        ...

    @property
    def config(self) -> dict[str, Any]:
        """The embedding model and chunking settings the index records."""
        ...

    # ------------------------------------------------------------------ the index
    def exists(self) -> bool: ...

    def open(self, create: bool = True) -> "Store":
        """Open (or create) the index; ``IngestError`` if it is missing (``create=False``) or was
        built with another ``config``."""
        ...

    def drop(self) -> None:
        """Delete every document and chunk (``--rebuild``)."""
        ...

    def lexical_dir(self) -> Path:
        """The local folder where the BM25 index of this store is cached."""
        ...

    # ------------------------------------------------------------------ documents
    def list_documents(self, with_text: bool = False, ids: Sequence[str] | None = None) -> list[DocRecord]: ...

    def get_document(self, doc_id: str) -> DocRecord | None: ...

    def put_documents(self, records: Sequence[DocRecord]) -> None:
        """Insert or replace documents, text included."""
        ...

    def update_documents(self, records: Sequence[DocRecord]) -> None:
        """Update documents' metadata; their stored text is kept."""
        ...

    def delete_documents(self, doc_ids: Iterable[str]) -> None:
        """Delete documents and all their chunks."""
        ...

    # ------------------------------------------------------------------ state
    def state_token(self, records: Sequence[DocRecord] | None = None) -> str:
        """Changes whenever the set of complete documents changes."""
        ...

    def publish_state(self, token: str) -> None: ...

    def published_state(self) -> str | None:
        """The token last published (by any process); None before the first."""
        ...

    # ------------------------------------------------------------------ chunks
    def upsert_chunks(self, items: Sequence[tuple[Chunk, DocRecord]], vectors: np.ndarray,
                      sentence_vectors: Sequence[str] | None = None) -> None:
        """Insert or replace chunks (by chunk id) with their vectors."""
        ...

    def set_chunk_titles(self, records: Iterable[DocRecord]) -> None: ...

    def count_chunks(self) -> int: ...

    def nearest(self, vector: np.ndarray, k: int, doc_ids: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """(chunk id, cosine similarity) of the ``k`` nearest chunks, best first, without their text."""
        ...

    def query(self, vector: np.ndarray, k: int, doc_ids: Sequence[str] | None = None) -> list[StoredChunk]:
        """The ``k`` nearest chunks, best first, ``score`` = cosine similarity."""
        ...

    def get_chunks(self, chunk_ids: Sequence[str]) -> list[StoredChunk]:
        """The chunks that exist among ``chunk_ids``, in that order."""
        ...

    def iter_chunks(self, include_text: bool = True) -> Iterator[tuple[str, str, dict]]:
        """(chunk id, text, metadata) of every chunk."""
        ...
