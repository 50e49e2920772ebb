"""Hybrid retrieval: dense (Chroma) + lexical (BM25), fused by weighted reciprocal rank fusion.

Fusion: ``score(chunk) = w_dense / (rrf_k + rank_dense) + w_lex / (rrf_k + rank_lex)`` with ranks
from 1. Defaults were tuned on ../shared/eval/dev_qa.jsonl, XQuAD (dev half) and BEIR SciFact;
see benchmarks/RESULTS.md.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from chatbot.types import Filters, QAError
from ingest import lexical
from ingest.embed import Embedder
from ingest.store import COMPLETE, IndexStore, StoredChunk, published_day


@dataclass(frozen=True)
class RetrievalConfig:
    top_k: int = 8  # passages handed to the answerer
    candidates: int = 40  # per retriever, before fusion
    rrf_k: int = 60
    w_dense: float = 1.0
    w_lexical: float = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= 100:
            raise QAError(f"top_k must be between 1 and 100 (got {self.top_k}).")
        if self.candidates < self.top_k:
            raise QAError(f"candidates must be at least top_k (got {self.candidates} < {self.top_k}).")
        if self.rrf_k < 0 or self.w_dense < 0 or self.w_lexical < 0:
            raise QAError("rrf_k, w_dense and w_lexical must not be negative.")


@dataclass
class Passage:
    chunk: StoredChunk
    score: float = 0.0  # fused
    dense: float | None = None  # cosine similarity, when the dense retriever found it
    lexical: float | None = None  # BM25 score, when the lexical retriever found it
    dense_rank: int | None = None
    lexical_rank: int | None = None
    extra: dict = field(default_factory=dict)


class HybridRetriever:
    def __init__(self, store: IndexStore, embedder: Embedder, config: RetrievalConfig | None = None) -> None:
        self.store = store
        self.embedder = embedder
        self.config = config or RetrievalConfig()
        self._lexical: lexical.LexicalIndex | None = None
        self._docs_cache: tuple[str, list] | None = None

    # ------------------------------------------------------------- state
    @property
    def lexical_index(self) -> lexical.LexicalIndex:
        """Loaded once; reloaded only when ingest changed the set of documents."""
        published = self.store.published_state()
        if self._lexical is None or self._lexical.token != published:
            self._lexical = lexical.load_or_build(self.store, published)
            self._docs_cache = None
        return self._lexical

    def refresh(self) -> None:
        self._lexical = None
        self._docs_cache = None

    def documents(self):
        if self._docs_cache is None or self._docs_cache[0] != self.lexical_index.token:
            docs = [r for r in self.store.list_documents() if r.status == COMPLETE]
            self._docs_cache = (self.lexical_index.token, docs)
        return self._docs_cache[1]

    # ------------------------------------------------------------- filters
    def _allowed_docs(self, filters: Filters) -> list[str] | None:
        if filters.empty:
            return None
        lo = published_day(filters.published_from) if filters.published_from else None
        hi = published_day(filters.published_to) if filters.published_to else None
        allowed = []
        for r in self.documents():
            if filters.doc_ids and r.doc_id not in filters.doc_ids:
                continue
            if filters.sources and str(r.meta.get("source", "")) not in filters.sources:
                continue
            if lo or hi:
                day = published_day(r.meta.get("published"))
                if day is None or (lo and day < lo) or (hi and day > hi):
                    continue
            allowed.append(r.doc_id)
        return allowed

    # ------------------------------------------------------------- search
    def retrieve(self, query: str, filters: Filters | None = None, top_k: int | None = None,
                 vector: np.ndarray | None = None) -> list[Passage]:
        cfg = self.config
        top_k = top_k or cfg.top_k
        filters = filters or Filters()
        index = self.lexical_index
        allowed = self._allowed_docs(filters)
        if allowed is not None and not allowed:
            return []
        where = {"doc_id": {"$in": allowed}} if allowed is not None else None
        mask = None
        if allowed is not None:
            prefixes = tuple(f"{d}-" for d in allowed)
            mask = index.mask(cid for cid in index.chunk_ids if cid.startswith(prefixes))
        n = max(cfg.candidates, top_k)
        vec = self.embedder.embed_query(query) if vector is None else vector
        dense = self.store.query(vec, n, where) if cfg.w_dense > 0 else []
        lex = index.search(query, n, mask) if cfg.w_lexical > 0 else []
        return self.fuse(dense, lex, top_k)

    def fuse(self, dense: Sequence[StoredChunk], lex: Sequence[tuple[str, float]], top_k: int) -> list[Passage]:
        cfg = self.config
        passages: dict[str, Passage] = {}
        for rank, sc in enumerate(dense, 1):
            p = passages.setdefault(sc.chunk.chunk_id, Passage(sc))
            p.dense, p.dense_rank = sc.score, rank
            p.score += cfg.w_dense / (cfg.rrf_k + rank)
        missing = [cid for cid, _ in lex if cid not in passages]
        fetched = {sc.chunk.chunk_id: sc for sc in self.store.get_chunks(missing[: max(top_k * 3, 30)])}
        for rank, (cid, score) in enumerate(lex, 1):
            if cid not in passages:
                if cid not in fetched:
                    continue
                passages[cid] = Passage(fetched[cid])
            p = passages[cid]
            p.lexical, p.lexical_rank = score, rank
            p.score += cfg.w_lexical / (cfg.rrf_k + rank)
        ranked = sorted(passages.values(), key=lambda p: p.score, reverse=True)
        return ranked[:top_k]
