"""How documents and chunks are stored as Chroma rows: their metadata (flat values only: lists and
dicts as JSON, sentence spans and sentence vectors as compact strings) and back."""
from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from ingest.types import Chunk, DocRecord, StoredChunk

PENDING, COMPLETE = "pending", "complete"  # a document's status: its chunks are being written / all written


def published_day(value: Any) -> int | None:
    """'2023-05-02' -> 20230502 (for range filters); None when unknown."""
    if not value:
        return None
    digits = "".join(ch for ch in str(value)[:10] if ch.isdigit())
    if len(digits) == 8:
        return int(digits)
    if len(digits) == 4:
        return int(digits) * 10000 + 101
    return None


def doc_meta(r: DocRecord) -> dict[str, Any]:
    meta = {
        "title": r.title,
        "status": r.status,
        "n_chunks": r.n_chunks,
        "paths": json.dumps(r.paths),
        "hashes": json.dumps(r.hashes),
        "pages": json.dumps(list(r.pages)),
        "meta": json.dumps(r.meta, ensure_ascii=False, default=str),
        "source": str(r.meta.get("source", "")),
    }
    day = published_day(r.meta.get("published"))
    if day:
        meta["published_day"] = day
    return meta


def doc_record(doc_id: str, meta: dict, text: str | None) -> DocRecord:
    return DocRecord(
        doc_id=doc_id,
        title=meta.get("title", ""),
        meta=json.loads(meta.get("meta") or "{}"),
        paths=json.loads(meta.get("paths") or "[]"),
        hashes=json.loads(meta.get("hashes") or "[]"),
        status=meta.get("status", COMPLETE),
        n_chunks=int(meta.get("n_chunks", 0)),
        pages=tuple(json.loads(meta.get("pages") or "[]")),
        text=text,
    )


def chunk_meta(chunk: Chunk, doc: DocRecord, sentence_vectors: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {
        "doc_id": chunk.doc_id,
        "title": doc.title,
        "start": chunk.start,
        "end": chunk.end,
        "sents": ",".join(f"{s - chunk.start}:{e - chunk.start}" for s, e in chunk.sentences),
        "source": str(doc.meta.get("source", "")),
    }
    if sentence_vectors:
        meta["svec"] = sentence_vectors
    day = published_day(doc.meta.get("published"))
    if day:
        meta["published_day"] = day
    if doc.pages:
        src = doc.to_source_doc()
        meta["page"] = src.page_at(chunk.start)
        meta["page_end"] = src.page_at(max(chunk.start, chunk.end - 1))
    return meta


def encode_sentence_vectors(vectors: np.ndarray) -> str:
    """Unit sentence vectors as chunk metadata: per vector a float16 scale and int8 components,
    base64 (about 520 characters per 384-d vector; cosine error below 0.005)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    scale = np.maximum(np.abs(vectors).max(axis=1), 1e-12) / 127.0
    q = np.clip(np.rint(vectors / scale[:, None]), -127, 127).astype(np.int8)
    rows = [scale.astype(np.float16)[i].tobytes() + q[i].tobytes() for i in range(len(q))]
    return base64.b64encode(b"".join(rows)).decode("ascii")


def sentence_vectors_of(stored: StoredChunk) -> dict[tuple[int, int], np.ndarray]:
    """The sentence vectors stored with a chunk at ingest, by sentence span; {} when it has none."""
    raw = stored.meta.get("svec")
    spans = stored.chunk.sentences
    if not raw or not spans:
        return {}
    data = np.frombuffer(base64.b64decode(raw), dtype=np.uint8)
    width = 2 + (len(data) // len(spans) - 2)
    if width < 3 or len(data) != width * len(spans):
        return {}
    rows = data.reshape(len(spans), width)
    scale = rows[:, :2].copy().view(np.float16).astype(np.float32)
    vecs = rows[:, 2:].copy().view(np.int8).astype(np.float32) * scale
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    return {span: vecs[i] for i, span in enumerate(spans)}


def stored_chunk(chunk_id: str, text: str, meta: dict, score: float = 0.0) -> StoredChunk:
    start = int(meta["start"])
    sents = []
    for part in (meta.get("sents") or "").split(","):
        if part:
            s, e = part.split(":")
            sents.append((start + int(s), start + int(e)))
    chunk = Chunk(chunk_id, meta["doc_id"], start, int(meta["end"]), text, tuple(sents))
    return StoredChunk(chunk=chunk, title=meta.get("title", ""), meta=meta, score=score)
