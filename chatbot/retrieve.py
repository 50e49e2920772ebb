"""Hybrid retrieval: dense (Chroma) + lexical (BM25), fused per chunk.

Each retriever returns its best ``candidates`` chunks; ``fuse_rankings`` merges the two lists:

- ``fusion="rrf"`` (weighted reciprocal rank fusion, ranks from 1):
  ``score = w_dense / (rrf_k + rank_dense) + w_lexical / (rrf_k + rank_lexical)``;
  a chunk missing from one list gets nothing from it.
- ``fusion="minmax"`` / ``"zscore"`` (score fusion, a convex combination when the weights sum
  to 1): each list's scores are normalised with statistics of its first ``norm_depth`` entries
  (min-max to [0, 1], or z-scores), then ``score = w_dense * dense + w_lexical * lexical``; a chunk
  missing from a list gets that list's lowest normalised score. Statistics over a fixed depth make
  the top of the ranking independent of how many candidates were asked for.

Cost: linear in the candidates (80 by default), well under a millisecond.

Defaults (RRF, k = 60, equal weights, 40 candidates each) were checked on BEIR SciFact
(``python benchmarks/scifact.py --sweep``; figures in benchmarks/results/scifact.json). Over RRF
k 5-100 x lexical weight 0.5-1.5 and min-max / z-score fusion with weights 0.2-0.8, the best
alternative gained 0.002 nDCG@10 (0.733 -> 0.735) and none beat the default on both fixed halves
of the test queries by more than about 0.001, so the default was kept rather than fitted to the test
set; dev_qa, seed_qa and the XQuAD dev half do not move either.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from chatbot.types import Filters, QAError
from ingest import lexical
from ingest.protocols import Embedder, Store
from ingest.store import COMPLETE, DocRecord, StoredChunk
from ingest.records import published_day

FUSIONS = ("rrf", "minmax", "zscore")
TOP_K_MAX = 100  # the most passages a question may ask for (CLI --top-k, the workspace's slider)


@dataclass(frozen=True)
class RetrievalConfig:
    top_k: int = 8  # passages handed to the answerer
    candidates: int = 40  # per retriever, before fusion
    fusion: str = "rrf"
    rrf_k: int = 60
    w_dense: float = 1.0
    w_lexical: float = 1.0
    norm_depth: int = 40  # score fusion: entries of each list its normalisation statistics use

    def __post_init__(self) -> None:
        if not 1 <= self.top_k <= TOP_K_MAX:
            raise QAError(f"top_k must be between 1 and {TOP_K_MAX} (got {self.top_k}).")
        if self.candidates < self.top_k:
            raise QAError(f"candidates must be at least top_k (got {self.candidates} < {self.top_k}).")
        if self.fusion not in FUSIONS:
            raise QAError(f"fusion must be one of {', '.join(FUSIONS)} (got {self.fusion!r}).")
        if self.rrf_k < 0 or self.w_dense < 0 or self.w_lexical < 0:
            raise QAError("rrf_k, w_dense and w_lexical must not be negative.")
        if self.norm_depth < 2:
            raise QAError(f"norm_depth must be at least 2 (got {self.norm_depth}).")


def _normalised(scores: Sequence[float], method: str, depth: int) -> tuple[np.ndarray, float]:
    """Normalised scores of one ranked list, and the value for chunks missing from it."""
    x = np.asarray(scores, dtype=np.float64)
    if x.size == 0:
        return x, 0.0
    head = x[:depth]
    if method == "minmax":
        lo, spread = float(head.min()), float(head.max() - head.min())
        z = (x - lo) / spread if spread > 0 else np.ones_like(x)
        return z, min(0.0, float(z.min()))
    mean, std = float(head.mean()), float(head.std())
    z = (x - mean) / std if std > 0 else np.zeros_like(x)
    return z, float(z.min())


def fuse_rankings(dense: Sequence[tuple[str, float]], lexical_: Sequence[tuple[str, float]],
                  config: RetrievalConfig) -> list[tuple[str, float]]:
    """Merge two rankings ``[(chunk_id, score)]`` (best first) into one, best first.

    Pure and deterministic: ties keep first-seen order (dense list first, then lexical).
    A retriever whose weight is 0 contributes nothing (its chunks only appear if the other found them).
    """
    wd, wl = config.w_dense, config.w_lexical
    lists = [(wd, list(dense)), (wl, list(lexical_))]
    lists = [(w, items) for w, items in lists if w > 0 and items]
    fused: dict[str, float] = {}
    if config.fusion == "rrf":
        for w, items in lists:
            for rank, (cid, _) in enumerate(items, 1):
                fused[cid] = fused.get(cid, 0.0) + w / (config.rrf_k + rank)
    else:
        parts = []
        for w, items in lists:
            z, floor = _normalised([s for _, s in items], config.fusion, config.norm_depth)
            parts.append((w, {cid: float(v) for (cid, _), v in zip(items, z)}, floor))
        for _, values, _ in parts:
            for cid in values:
                fused.setdefault(cid, 0.0)
        for cid in fused:
            fused[cid] = sum(w * values.get(cid, floor) for w, values, floor in parts)
    order = sorted(fused.items(), key=lambda kv: -kv[1])  # stable: ties keep first-seen order
    return order


@dataclass
class Passage:
    chunk: StoredChunk
    score: float = 0.0  # fused
    dense: float | None = None  # cosine similarity, when the dense retriever found it
    lexical: float | None = None  # BM25 score, when the lexical retriever found it
    dense_rank: int | None = None
    lexical_rank: int | None = None


class HybridRetriever:
    def __init__(self, store: Store, embedder: Embedder, config: RetrievalConfig | None = None) -> None:
        self.store = store
        self.embedder = embedder
        self.config = config or RetrievalConfig()
        self._lexical: lexical.LexicalIndex | None = None
        self._docs_cache: tuple[str, list[DocRecord], dict[str, DocRecord], dict[str, tuple[int, ...]]] | None = None

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

    @property
    def loaded_index(self) -> lexical.LexicalIndex:
        """The lexical index as last loaded, without asking the store whether it is still current
        (for the rest of one answer, after ``retrieve`` checked)."""
        return self._lexical if self._lexical is not None else self.lexical_index

    def documents(self) -> list[DocRecord]:
        """The complete documents (metadata only), listed once per state of the index."""
        return self._documents(self.lexical_index.token)[0]

    def pages(self) -> dict[str, tuple[int, ...]]:
        """Page start offsets of paged documents (PDFs) by doc id, cached with the documents."""
        return self._documents(self.loaded_index.token)[2]

    def documents_by_id(self, doc_ids: Iterable[str]) -> list[DocRecord]:
        """The complete documents among ``doc_ids`` (a lookup, not a scan of the whole list)."""
        by_id = self._documents(self.lexical_index.token)[1]
        return [by_id[d] for d in doc_ids if d in by_id]

    def _documents(self, token: str) -> tuple[list[DocRecord], dict[str, DocRecord], dict[str, tuple[int, ...]]]:
        if self._docs_cache is None or self._docs_cache[0] != token:
            docs = [r for r in self.store.list_documents() if r.status == COMPLETE]
            self._docs_cache = (token, docs, {r.doc_id: r for r in docs}, {r.doc_id: r.pages for r in docs if r.pages})
        return self._docs_cache[1:]

    # ------------------------------------------------------------- filters
    def _allowed_docs(self, filters: Filters, token: str) -> list[str] | None:
        if filters.empty:
            return None
        lo = published_day(filters.published_from) if filters.published_from else None
        hi = published_day(filters.published_to) if filters.published_to else None
        allowed = []
        for r in self._documents(token)[0]:
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
        index = self.lexical_index  # the one freshness check per retrieval
        allowed = self._allowed_docs(filters, index.token)
        if allowed is not None and not allowed:
            return []
        mask = None
        if allowed is not None:
            prefixes = tuple(f"{d}-" for d in allowed)
            mask = index.mask(cid for cid in index.chunk_ids if cid.startswith(prefixes))
        n = max(cfg.candidates, top_k)
        vec = self.embedder.embed_query(query) if vector is None else vector
        dense = self.store.nearest(vec, n, allowed) if cfg.w_dense > 0 else []
        lex = index.search(query, n, mask) if cfg.w_lexical > 0 else []
        return self.fuse(dense, lex, top_k)

    def fuse(self, dense: Sequence[tuple[str, float]], lex: Sequence[tuple[str, float]], top_k: int) -> list[Passage]:
        """Fuse the two rankings of (chunk id, score) (``fuse_rankings``), then load the winners' text."""
        fused = fuse_rankings(dense, lex, self.config)[:top_k]
        by_id = {sc.chunk.chunk_id: sc for sc in self.store.get_chunks([cid for cid, _ in fused])}
        dense_at = {cid: (rank, score) for rank, (cid, score) in enumerate(dense, 1)}
        lex_at = {cid: (rank, score) for rank, (cid, score) in enumerate(lex, 1)}
        passages = []
        for cid, score in fused:
            if cid not in by_id:  # deleted between the two searches
                continue
            p = Passage(by_id[cid], score)
            if cid in dense_at:
                p.dense_rank, p.dense = dense_at[cid]
            if cid in lex_at:
                p.lexical_rank, p.lexical = lex_at[cid]
            passages.append(p)
        return passages
