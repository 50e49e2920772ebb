"""The index: two Chroma collections, one for chunks (with vectors) and one for whole documents.

- ``<name>_chunks``: one row per chunk; vector, text, and metadata ``doc_id, title, start, end,
  sents`` (sentence spans relative to the chunk start), ``source``, ``published``, pages.
- ``<name>_docs``: one row per document; the full cleaned text and its metadata, the file paths it
  came from and their content hashes, and a ``status``. A document is written ``pending`` before
  its chunks and marked ``complete`` after the last one, so an interrupted run leaves only
  ``pending`` rows, which the next run deletes (with their chunks) and redoes.

The embedding model and chunking settings are recorded in the chunk collection's metadata;
opening an index built differently is an ``IngestError`` that says how to rebuild. How the chunk
vectors are made (``chunk_vectors``, ``Settings.chunk_vectors``) is recorded too, and an index
keeps its own recipe.

Chroma's "distance" is converted to a similarity (``1 - cosine distance``) here and only here.
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence
from urllib.parse import urlparse

import numpy as np

from ingest.records import COMPLETE, PENDING, chunk_meta, doc_meta, doc_record, stored_chunk  # noqa: F401 (PENDING: callers import it from here)
from ingest.settings import CHUNK_RUN, Settings
# DocRecord, StoredChunk and SourceDoc are also imported from here by callers.
from ingest.types import Chunk, DocRecord, IndexBusy, IngestError, SourceDoc, StoredChunk  # noqa: F401

INDEX_FORMAT = 1
_SYNC_ID = "__catch_up__"  # never a chunk id (those are hex digests)


def _client(settings: Settings):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        try:
            return chromadb.HttpClient(
                host=url.hostname or "127.0.0.1", port=url.port or 8000, ssl=url.scheme == "https",
                settings=chroma_settings,
            )
        except Exception as exc:
            raise IngestError(f"cannot reach the Chroma server at {settings.chroma_url} ({exc}).") from None
    try:
        settings.index_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise IngestError(
            f"cannot use {settings.index_dir} as the index folder ({exc.strerror or exc}); "
            "choose another with --index or QA_INDEX_DIR."
        ) from None
    return chromadb.PersistentClient(path=str(settings.index_dir), settings=chroma_settings)


def recorded_model(settings: Settings) -> str | None:
    """The embedding model id an existing index recorded; None when there is no index yet (or it
    cannot be read here: opening it later reports why)."""
    store = IndexStore(settings, "", 0)
    try:
        if not store.exists():
            return None
        collection = store._get_client().get_collection(store._names()[0], embedding_function=None)
    except Exception:
        return None
    return (collection.metadata or {}).get("embedding_model")


def embedder_for(settings: Settings, new_index: bool = False):
    """The real embedder for this index: ``QA_EMBED_BACKEND`` if set, else the backend the index was
    built with, else the default (``ingest.embed.choose_backend``). Lazy: nothing is loaded yet."""
    from ingest.embed import SentenceTransformerEmbedder, choose_backend

    recorded = None if new_index else recorded_model(settings)
    return SentenceTransformerEmbedder(settings.embed_batch_size, choose_backend(settings.embed_backend, recorded),
                                       settings.models_dir)


class IndexStore:
    def __init__(self, settings: Settings, model_id: str, dimension: int) -> None:
        self.settings = settings
        self.model_id = model_id
        self.dimension = dimension
        # Settings.chunk_vectors for a new index; once opened, the index's own recipe (recorded, or
        # CHUNK_RUN for an index built before it was recorded), so its new chunks match its old ones
        self.chunk_vectors = settings.chunk_vectors
        self._client = None
        self._chunks = None
        self._docs = None
        self._seen_state: str | None = None  # the published state this process's view is current with

    # ----------------------------------------------------------------- opening
    @property
    def config(self) -> dict[str, Any]:
        return {
            "embedding_model": self.model_id,
            "dimension": self.dimension,
            "chunk_size": self.settings.chunk_size,
            "chunk_overlap": self.settings.chunk_overlap,
            "index_format": INDEX_FORMAT,
            "chunk_vectors": self.chunk_vectors,
        }

    @property
    def location(self) -> str:
        return self.settings.chroma_url or str(self.settings.index_dir)

    def _names(self) -> tuple[str, str]:
        return f"{self.settings.collection}_chunks", f"{self.settings.collection}_docs"

    def exists(self) -> bool:
        if not self.settings.chroma_url and not (self.settings.index_dir / "chroma.sqlite3").exists():
            return False
        client = self._get_client()
        names = {c if isinstance(c, str) else c.name for c in client.list_collections()}
        return self._names()[0] in names

    def _get_client(self):
        if self._client is None:
            self._client = _client(self.settings)
        return self._client

    def open(self, create: bool = True) -> "IndexStore":
        """Open (or create) the collections; raise IngestError if the index was built differently."""
        if self._chunks is not None:
            return self
        if not create and not self.exists():
            raise IngestError(
                f"No index at {self.location}. Run `python -m ingest` first (it builds the index from corpus/)."
            )
        client = self._get_client()
        chunk_name, doc_name = self._names()
        try:
            chunks = client.get_or_create_collection(
                chunk_name, embedding_function=None, configuration={"hnsw": {"space": "cosine"}},
                metadata=self.config,
            )
            docs = client.get_or_create_collection(doc_name, embedding_function=None)
        except IngestError:
            raise
        except Exception as exc:
            raise IngestError(f"cannot open the index at {self.location} ({exc}).") from None
        recorded = dict(chunks.metadata or {})
        recorded.setdefault("chunk_vectors", CHUNK_RUN)  # an index built before the key existed
        self.chunk_vectors = recorded["chunk_vectors"]
        mismatched = {k: (recorded.get(k), v) for k, v in self.config.items() if recorded.get(k) != v}
        if mismatched:
            what = "; ".join(f"{k}: index has {old!r}, this run uses {new!r}" for k, (old, new) in mismatched.items())
            hint = " (or unset QA_EMBED_BACKEND to use the index's own)" if "embedding_model" in mismatched else ""
            raise IngestError(
                f"The index at {self.location} was built with other settings ({what}). "
                f"Rebuild it with `python -m ingest --rebuild` (add your usual PATH and --index){hint}."
            )
        self._chunks, self._docs = chunks, docs
        return self

    def drop(self) -> None:
        """Delete both collections (``--rebuild``) and the cached lexical index."""
        client = self._get_client()
        existing = {c if isinstance(c, str) else c.name for c in client.list_collections()}
        for name in self._names():
            if name in existing:
                client.delete_collection(name)
        self._chunks = self._docs = None
        lexical = self.lexical_dir()
        if lexical.exists():
            import shutil

            shutil.rmtree(lexical)

    def lexical_dir(self) -> Path:
        """Where the BM25 index for this collection is cached (local even in server mode)."""
        if self.settings.chroma_url:
            key = hashlib.sha256(f"{self.settings.chroma_url}/{self.settings.collection}".encode()).hexdigest()[:12]
            return self.settings.index_dir / f"lexical-{key}"
        return self.settings.index_dir / f"lexical-{self.settings.collection}"

    @property
    def chunks(self):
        return self.open()._chunks

    @property
    def docs(self):
        return self.open()._docs

    # ---------------------------------------------------------------- documents
    def list_documents(self, with_text: bool = False, ids: Sequence[str] | None = None) -> list[DocRecord]:
        include = ["metadatas", "documents"] if with_text else ["metadatas"]
        out: list[DocRecord] = []
        if ids is not None and not ids:
            return out
        batch = self._batch_size()
        total = self.docs.count() if ids is None else len(ids)
        for offset in range(0, max(total, 1), batch):
            if ids is None:
                res = self.docs.get(include=include, limit=batch, offset=offset)
            else:
                res = self.docs.get(ids=list(ids[offset : offset + batch]), include=include)
            texts = res.get("documents") or [None] * len(res["ids"])
            for doc_id, meta, text in zip(res["ids"], res["metadatas"], texts):
                out.append(doc_record(doc_id, meta, text if with_text else None))
        return out

    def get_document(self, doc_id: str) -> DocRecord | None:
        found = self.list_documents(with_text=True, ids=[doc_id])
        return found[0] if found else None

    def put_documents(self, records: Sequence[DocRecord]) -> None:
        batch = self._batch_size()
        for i in range(0, len(records), batch):
            part = records[i : i + batch]
            self.docs.upsert(
                ids=[r.doc_id for r in part],
                embeddings=[[0.0] for _ in part],  # documents are looked up by id, never by vector
                documents=[r.text or "" for r in part],
                metadatas=[doc_meta(r) for r in part],
            )

    def update_documents(self, records: Sequence[DocRecord]) -> None:
        """Update metadata (paths, status, title...) without rewriting the text."""
        batch = self._batch_size()
        for i in range(0, len(records), batch):
            part = records[i : i + batch]
            self.docs.update(ids=[r.doc_id for r in part], metadatas=[doc_meta(r) for r in part])

    def delete_documents(self, doc_ids: Iterable[str]) -> None:
        """Delete documents and all their chunks (chunks first, then the record)."""
        doc_ids = list(doc_ids)
        for i in range(0, len(doc_ids), 100):
            part = doc_ids[i : i + 100]
            self.chunks.delete(where={"doc_id": {"$in": part}})
            self.docs.delete(ids=part)

    def state_token(self, records: Sequence[DocRecord] | None = None) -> str:
        """Changes whenever the set of complete documents changes (keys the lexical index).
        ``records``: the documents if the caller has just listed them."""
        records = self.list_documents() if records is None else records
        ids = sorted(r.doc_id for r in records if r.status == COMPLETE)
        return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]

    def publish_state(self, token: str) -> None:
        """Record the state token the lexical index was built for (cheap for readers to check)."""
        self.chunks.modify(metadata={**self.config, "state": token})

    def published_state(self) -> str | None:
        """The token last published by ingest; a fresh read, so other processes' runs are seen (and,
        for a local index, caught up with: see ``_catch_up``)."""
        name = self._names()[0]
        collection = self._get_client().get_collection(name, embedding_function=None)
        token = (collection.metadata or {}).get("state")
        if token != self._seen_state and self._catch_up():
            self._seen_state = token
        return token

    def _catch_up(self) -> bool:
        """Bring this process's view of a local index up to date with writes of other processes.

        Chroma's embedded mode keeps each process's vector index in memory and applies other
        processes' writes only when this process writes: until then its queries miss their new
        chunks and still return deleted ones (with no text). Deleting an id that does not exist is
        a write that changes nothing and applies them. Done under the writer lock, without waiting:
        False when a writer is busy (try again later; its run publishes a new state at the end)."""
        if self.settings.chroma_url:
            return True  # the server has one view
        from ingest.lock import WriterLock

        try:
            with WriterLock(self.settings, "catch up with other writers", wait=0, on_wait=lambda _m: None):
                self.chunks.delete(ids=[_SYNC_ID])
        except IndexBusy:
            return False
        except Exception:  # e.g. a read-only index folder: nothing to catch up with that we could do
            return True
        return True

    # ------------------------------------------------------------------- chunks
    def upsert_chunks(self, items: Sequence[tuple[Chunk, DocRecord]], vectors: np.ndarray,
                      sentence_vectors: Sequence[str] | None = None) -> None:
        """``sentence_vectors``: per chunk, its sentences' vectors (``encode_sentence_vectors``) or ""."""
        batch = self._batch_size()
        svecs = list(sentence_vectors) if sentence_vectors is not None else [""] * len(items)
        for i in range(0, len(items), batch):
            part = items[i : i + batch]
            self.chunks.upsert(
                ids=[c.chunk_id for c, _ in part],
                embeddings=vectors[i : i + batch],
                documents=[c.text for c, _ in part],
                metadatas=[chunk_meta(c, d, sv) for (c, d), sv in zip(part, svecs[i : i + batch])],
            )

    def set_chunk_titles(self, records: Iterable[DocRecord]) -> None:
        """Give every chunk of each document its record's (possibly changed) title."""
        for r in records:
            res = self.chunks.get(where={"doc_id": r.doc_id}, include=["metadatas"])
            stale = [(cid, m) for cid, m in zip(res["ids"], res["metadatas"]) if m.get("title") != r.title]
            if stale:
                self.chunks.update(
                    ids=[cid for cid, _ in stale], metadatas=[{**m, "title": r.title} for _, m in stale]
                )

    def count_chunks(self) -> int:
        return self.chunks.count()

    def nearest(self, vector: np.ndarray, k: int, doc_ids: Sequence[str] | None = None) -> list[tuple[str, float]]:
        """Ids and cosine similarities of the ``k`` chunks nearest ``vector`` (best first; ``doc_ids``:
        only those documents' chunks). No text or metadata: a chunk's metadata holds its sentence
        vectors, and reading them for 40 candidates from SQLite cost 4-5 times the search itself at
        100k chunks (benchmarks/RESULTS.md); ``get_chunks`` reads the few a caller keeps."""
        if doc_ids is not None and not doc_ids:
            return []
        # Chroma returns fewer than k when the collection (or the filter) has fewer: no count() needed.
        where = {"doc_id": {"$in": list(doc_ids)}} if doc_ids is not None else None
        res = self.chunks.query(query_embeddings=[np.asarray(vector, dtype=np.float32)], n_results=k, where=where,
                                include=["distances"])
        return [(cid, 1.0 - float(dist)) for cid, dist in zip(res["ids"][0], res["distances"][0])]

    def query(self, vector: np.ndarray, k: int, doc_ids: Sequence[str] | None = None) -> list[StoredChunk]:
        """The ``k`` chunks nearest ``vector`` (best first; ``doc_ids``: only those documents' chunks)."""
        hits = self.nearest(vector, k, doc_ids)
        by_id = {sc.chunk.chunk_id: sc for sc in self.get_chunks([cid for cid, _ in hits])}
        # a chunk deleted by another process since this one last caught up is left out
        return [replace(by_id[cid], score=score) for cid, score in hits if cid in by_id]

    def get_chunks(self, chunk_ids: Sequence[str]) -> list[StoredChunk]:
        if not chunk_ids:
            return []
        res = self.chunks.get(ids=list(chunk_ids), include=["documents", "metadatas"])
        by_id = {cid: stored_chunk(cid, t, m) for cid, t, m in zip(res["ids"], res["documents"], res["metadatas"])}
        return [by_id[c] for c in chunk_ids if c in by_id]

    def iter_chunks(self, include_text: bool = True) -> Iterator[tuple[str, str, dict]]:
        batch = self._batch_size()
        include = ["documents", "metadatas"] if include_text else ["metadatas"]
        offset = 0
        while True:
            res = self.chunks.get(include=include, limit=batch, offset=offset)
            if not res["ids"]:
                return
            texts = res.get("documents") or [""] * len(res["ids"])
            yield from zip(res["ids"], texts, res["metadatas"])
            offset += len(res["ids"])

    def _batch_size(self) -> int:
        try:
            return max(1, min(5000, self._get_client().get_max_batch_size()))
        except Exception:
            return 1000
