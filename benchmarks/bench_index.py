"""The cached benchmark indexes of latency.py, cold_start.py and load.py: N chunks of real text.

    python benchmarks/latency.py --chunks N --build-only     # build (or check) one

Built once, cached under ``benchmarks/.cache/latency-N/`` (git-ignored; delete the folder to
rebuild), from real text run through the project's own loading, cleaning and chunking
(``ingest.documents.build_document`` + ``ingest.chunking.chunk_text``):

- the project's ``corpus/`` (recorded under its real paths and file hashes, so ``python app.py``
  on this index finds it unchanged), the 24 XQuAD dev articles, the SciFact abstracts named in
  the test qrels, then SciFact abstracts and AG News items interleaved (1 : 2) up to ``base``
  chunks (default 10,000): the *originals*. They are embedded for real, once, with the project's
  embedder; the vectors are cached (``benchmarks/.cache/latency-embeddings/``, ``vectors.npy`` +
  ``ids.json``, keyed by chunk id) and shared by every N.
- N <= base: a subset of the originals (in the order above) with exactly N chunks.
- N > base: all originals, then *perturbed copies* (rounds over the originals; in each copy every
  sentence loses one word with probability 0.5 and each paragraph's sentences are shuffled with
  probability 0.5; new text, so new doc ids). Copies are re-chunked by the project, but **reuse
  their originals' embeddings** (chunk j of a copy takes the vector of the chunk at the same
  relative position of its original, plus a small Gaussian jitter, cosine ~0.995, so the HNSW
  graph does not hold exact duplicates) instead of being embedded: building 100,000 chunks then
  takes minutes instead of hours.

Written like ingest writes: ``IndexStore.put_documents`` (pending) -> ``upsert_chunks`` ->
``update_documents`` (complete) -> ``ingest.lexical.rebuild``: a normal, complete index.

With a Chroma server (``ensure_index(..., chroma_url=...)``; ``ChromaServer`` starts ``chroma run``
next to this Python) the same collection is built on the server, its data under
``benchmarks/.cache/latency-N/server/``.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import (
    BENCH, CACHE_DIR, ROOT, ag_news, loadavg, markdown_file, now_iso, say, scifact_corpus, scifact_qrels,
)

EMB_CACHE = CACHE_DIR / "latency-embeddings"
BUILD_VERSION = 2  # bump when the way the index is composed changes (rebuilds the cached indexes); 2: sentence vectors
DEFAULT_BASE = 10_000
JITTER = 0.1  # norm of the Gaussian jitter added to a reused (unit) vector: cosine ~ 1/sqrt(1.01)


# ------------------------------------------------------------------------------------ documents
@dataclass(eq=False, slots=True)
class Item:
    """One document of the benchmark index: cleaned text, chunks, where its vectors come from."""

    doc: Any  # ingest.types.SourceDoc
    chunks: list  # its ingest.types.Chunk list
    path: str  # the file path recorded for it
    file_hash: str
    copy_of: "Item | None" = None  # the original a perturbed copy reuses the vectors of
    round: int = 0  # which round of copies


def _item(path: Path, data: bytes, record_path: str | None = None) -> "Item | None":
    from ingest.chunking import chunk_text
    from ingest.documents import build_document
    from ingest.pipeline import file_hash
    from ingest.settings import Settings
    from ingest.types import BadFile

    s = Settings()
    try:
        doc = build_document(path, data)
    except BadFile:
        return None
    chunks = chunk_text(doc.doc_id, doc.text, s.chunk_size, s.chunk_overlap)
    if not chunks:
        return None
    return Item(doc, chunks, record_path or f"{CACHE_DIR}/latency-sources/{path}", file_hash(data))


def _markdown(title: str, body: str) -> bytes:
    return markdown_file(title, body).encode("utf-8")


def originals(base: int) -> list[Item]:
    """The real documents, in priority order, about ``base`` chunks in all (see the module doc)."""
    items: list[Item] = []
    seen: set[str] = set()
    total = 0

    def add(item: Item | None) -> None:
        nonlocal total
        if item is None or item.doc.doc_id in seen:
            return
        seen.add(item.doc.doc_id)
        items.append(item)
        total += len(item.chunks)

    corpus = ROOT / "corpus"
    if corpus.is_dir():
        for p in sorted(corpus.rglob("*")):
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(corpus).parts):
                add(_item(p, p.read_bytes(), str(p.resolve())))
    for p in sorted((BENCH / "xquad_dev" / "corpus").glob("*.md")):
        add(_item(Path("xquad") / p.name, p.read_bytes()))
    rows = scifact_corpus()
    relevant = {doc for rels in scifact_qrels().values() for doc in rels}

    def sci(row) -> Item | None:
        title = " ".join(row["title"].split())
        return _item(Path("scifact") / f"{row['_id']}.md", _markdown(title, f"{title}\n\n{row['text'].strip()}"))

    for row in rows:
        if str(row["_id"]) in relevant:
            add(sci(row))
    rest = [r for r in rows if str(r["_id"]) not in relevant]
    ag = ((i, title, desc) for i, (_, title, desc) in enumerate(ag_news()))
    for row in rest:
        if total >= base:
            break
        add(sci(row))
        for _ in range(2):
            nxt = next(ag, None)
            if nxt is not None:
                i, title, desc = nxt
                add(_item(Path("ag_news") / f"{i:05d}.md", _markdown(title, desc.replace("\\", " "))))
    for i, title, desc in ag:  # single-chunk items to land on ``base`` exactly
        if total >= base + 200:
            break
        add(_item(Path("ag_news") / f"{i:05d}.md", _markdown(title, desc.replace("\\", " "))))
    return items


def take_exactly(pool: list[Item], n: int, total: int = 0, out: list[Item] | None = None) -> tuple[list[Item], int]:
    out = [] if out is None else out
    for item in pool:
        if total == n:
            break
        if total + len(item.chunks) <= n:
            out.append(item)
            total += len(item.chunks)
    return out, total


def perturb(item: Item, round_: int) -> Item | None:
    """A near-copy of ``item``: words dropped, sentences shuffled (seeded by doc id and round)."""
    from ingest.chunking import chunk_text, content_id, split_sentences
    from ingest.settings import Settings
    from ingest.types import SourceDoc

    s = Settings()
    rng = random.Random(f"{item.doc.doc_id}/{round_}")
    paragraphs = item.doc.text.split("\n\n")
    out_paras = []
    for para in paragraphs:
        sents = [para[a:b] for a, b in split_sentences(para)] or [para]
        new = []
        for sent in sents:
            words = sent.split(" ")
            if len(words) > 4 and rng.random() < 0.5:
                del words[rng.randrange(1, len(words) - 1)]
            new.append(" ".join(words))
        if len(new) > 1 and rng.random() < 0.5:
            rng.shuffle(new)
        out_paras.append(" ".join(new))
    text = "\n\n".join(out_paras)
    if text == item.doc.text:
        words = text.split(" ")
        if len(words) < 3:
            return None
        del words[rng.randrange(1, len(words) - 1)]
        text = " ".join(words)
    doc = SourceDoc(content_id(text), item.doc.title, text,
                    {**item.doc.meta, "filename": f"copy{round_}-{item.doc.meta.get('filename', '')}"})
    chunks = chunk_text(doc.doc_id, text, s.chunk_size, s.chunk_overlap)
    if not chunks:
        return None
    path = f"{CACHE_DIR}/latency-sources/copies/{Path(item.path).name}#copy{round_}"  # never under corpus/
    return Item(doc, chunks, path, hashlib.sha256(path.encode()).hexdigest()[:20], copy_of=item, round=round_)


def plan(n: int, base: int) -> tuple[list[Item], list[Item]]:
    """(items with exactly ``n`` chunks, the originals they draw their vectors from)."""
    pool = originals(base)
    base_items, base_total = take_exactly(pool, base)
    if n <= base_total:
        items, total = take_exactly(base_items, n)
        if total != n:
            raise SystemExit(f"cannot compose exactly {n} chunks from the originals (got {total}).")
        return items, base_items
    items, total = list(base_items), base_total
    seen = {it.doc.doc_id for it in items}
    round_ = 0
    while total < n:
        round_ += 1
        added = 0
        for orig in base_items:
            if total == n:
                break
            copy = perturb(orig, round_)
            if copy is None or copy.doc.doc_id in seen or total + len(copy.chunks) > n:
                continue
            seen.add(copy.doc.doc_id)
            items.append(copy)
            total += len(copy.chunks)
            added += 1
        if not added:
            raise SystemExit(f"cannot compose exactly {n} chunks (stuck at {total}).")
    return items, base_items


# ----------------------------------------------------------------------------------- embeddings
class EmbeddingCache:
    """Vectors of original chunks by chunk id: ``vectors.npy`` + ``ids.json`` (appended, resumable)."""

    def __init__(self, folder: Path, model_id: str) -> None:
        import numpy as np

        self.folder = folder
        self.model_id = model_id
        self.ids: list[str] = []
        self.vectors = np.zeros((0, 384), dtype=np.float32)
        meta = folder / "meta.json"
        if meta.exists() and json.loads(meta.read_text()).get("model_id") == model_id:
            ids = json.loads((folder / "ids.json").read_text())
            vectors = np.load(folder / "vectors.npy")
            k = min(len(ids), len(vectors))
            self.ids, self.vectors = ids[:k], vectors[:k]
        self.index = {cid: i for i, cid in enumerate(self.ids)}

    def __contains__(self, chunk_id: str) -> bool:
        return chunk_id in self.index

    def get(self, chunk_id: str):
        return self.vectors[self.index[chunk_id]]

    def add(self, ids: list[str], vectors) -> None:
        import numpy as np

        self.vectors = np.concatenate([self.vectors, np.asarray(vectors, dtype=np.float32)])
        for cid in ids:
            self.index[cid] = len(self.ids)
            self.ids.append(cid)
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "meta.json").write_text(json.dumps({"model_id": self.model_id, "dimension": 384}))
        tmp = self.folder / "vectors.tmp.npy"
        np.save(tmp, self.vectors)
        os.replace(tmp, self.folder / "vectors.npy")  # vectors first: ids.json never runs ahead
        tmp_ids = self.folder / "ids.json.tmp"
        tmp_ids.write_text(json.dumps(self.ids))
        os.replace(tmp_ids, self.folder / "ids.json")


def ensure_embeddings(base_items: list[Item], embedder) -> EmbeddingCache:
    cache = EmbeddingCache(EMB_CACHE, embedder.model_id)
    todo = [c for it in base_items for c in it.chunks if c.chunk_id not in cache]
    if todo:
        say(f"Embedding {len(todo)} original chunks once (cached in {EMB_CACHE}; resumable)…")
        todo.sort(key=lambda c: len(c.text), reverse=True)  # similar lengths: less padding
        started = time.perf_counter()
        done = 0
        for i in range(0, len(todo), 512):
            group = todo[i : i + 512]
            vectors = embedder.embed_documents([c.text for c in group])
            cache.add([c.chunk_id for c in group], vectors)
            done += len(group)
            rate = done / (time.perf_counter() - started)
            say(f"  embedded {done}/{len(todo)} ({rate:.1f} chunks/s, load {loadavg()})")
    return cache


def vectors_for(item: Item, cache: EmbeddingCache):
    import numpy as np

    if item.copy_of is None:
        return np.stack([cache.get(c.chunk_id) for c in item.chunks])
    orig = item.copy_of.chunks
    n_o, n_c = len(orig), len(item.chunks)
    rng = np.random.default_rng(int(hashlib.sha256(item.doc.doc_id.encode()).hexdigest()[:8], 16))
    out = []
    for j in range(n_c):
        src = orig[round(j * (n_o - 1) / (n_c - 1)) if n_c > 1 else 0]
        v = cache.get(src.chunk_id) + rng.normal(0.0, JITTER / np.sqrt(384), 384).astype(np.float32)
        out.append(v / np.linalg.norm(v))
    return np.stack(out).astype(np.float32)


# ---------------------------------------------------------------------------------- index build
def write_index(store, items: list[Item], cache: EmbeddingCache, batch: int = 2000) -> None:
    """Like ingest: documents pending, then their chunks, then complete; then the BM25 index."""
    from dataclasses import replace

    from ingest import lexical
    from ingest.store import COMPLETE, PENDING, DocRecord
    from ingest.records import encode_sentence_vectors

    store.open(create=True)
    started = time.perf_counter()
    written = 0
    i = 0
    while i < len(items):
        group, n = [], 0
        while i < len(items) and (not group or n + len(items[i].chunks) <= batch):
            group.append(items[i])
            n += len(items[i].chunks)
            i += 1
        records = [DocRecord(doc_id=it.doc.doc_id, title=it.doc.title, meta=dict(it.doc.meta), paths=[it.path],
                             hashes=[it.file_hash], status=PENDING, n_chunks=len(it.chunks), pages=it.doc.pages,
                             text=it.doc.text) for it in group]
        store.put_documents(records)
        import numpy as np

        pairs = [(c, r) for it, r in zip(group, records) for c in it.chunks]
        vectors = np.concatenate([vectors_for(it, cache) for it in group])
        # Sentence vectors (what ingest stores for chatbot/relevance.py): each sentence reuses its
        # chunk's vector, so the index costs no extra embedding; the answer path's work is the same.
        sentence_vectors = [encode_sentence_vectors(np.repeat(v[None], max(1, len(c.sentences)), axis=0))
                            for (c, _), v in zip(pairs, vectors)]
        store.upsert_chunks(pairs, vectors, sentence_vectors)
        store.update_documents([replace(r, status=COMPLETE, text=None) for r in records])
        written += n
        if (written // batch) % 10 == 0 or i >= len(items):
            say(f"  stored {written} chunks ({written / (time.perf_counter() - started):.0f}/s)")
    say("  building the BM25 index (ingest.lexical.rebuild)…")
    lexical.rebuild(store)


def settings_for(index_dir: Path, chroma_url: str | None = None):
    from ingest.settings import Settings

    return Settings(index_dir=index_dir, chroma_url=chroma_url)


def index_dir(n: int) -> Path:
    return CACHE_DIR / f"latency-{n}"


def build_info(n: int, base: int, items: list[Item]) -> dict[str, Any]:
    copies = sum(1 for it in items if it.copy_of is not None)
    return {"version": BUILD_VERSION, "chunks": n, "base": base, "documents": len(items), "copies": copies,
            "copy_chunks": sum(len(it.chunks) for it in items if it.copy_of is not None),
            "original_chunks": sum(len(it.chunks) for it in items if it.copy_of is None), "jitter": JITTER}


def server_dir(n: int) -> Path:
    """Where ``chroma run`` keeps the data of the ``n``-chunk collection (``servers.ChromaServer``)."""
    return index_dir(n) / "server"


def ensure_index(n: int, base: int = DEFAULT_BASE, chroma_url: str | None = None,
                 embedder=None) -> tuple[Path, dict[str, Any]]:
    """The cached local index of ``n`` chunks (``chroma_url``: the collection on that server, run
    over ``server_dir(n)``); built if missing or stale. Returns (local index folder, build info)."""
    from ingest.embed import SentenceTransformerEmbedder
    from ingest.store import IndexStore

    folder = index_dir(n)
    marker = folder / "server-build.json" if chroma_url else folder / "index" / "latency-build.json"
    local = folder / ("server-local" if chroma_url else "index")
    settings = settings_for(local, chroma_url)
    embedder = embedder or SentenceTransformerEmbedder()
    store = IndexStore(settings, embedder.model_id, embedder.dimension)
    if marker.exists():
        info = json.loads(marker.read_text())
        if info.get("version") == BUILD_VERSION and info.get("chunks") == n and info.get("base") == base:
            try:
                if store.exists() and store.open(create=False).count_chunks() == n:
                    return local, info
            except Exception as exc:  # unreadable: rebuild
                say(f"cached index unusable ({exc}); rebuilding")
    say(f"Building the {n:,}-chunk benchmark index at {chroma_url or local} …")
    t0 = time.perf_counter()
    items, base_items = plan(n, base)
    say(f"  planned {len(items)} documents ({time.perf_counter() - t0:.0f} s)")
    needed = list({id(o): o for o in (it.copy_of or it for it in items)}.values())  # originals used
    cache = ensure_embeddings(needed, embedder)
    marker.unlink(missing_ok=True)
    store.drop()  # through the client: Chroma caches an open local index per path, so no rmtree
    write_index(store, items, cache)
    info = {**build_info(n, base, items), "build_seconds": round(time.perf_counter() - t0, 1), "built": now_iso()}
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(info, indent=2))
    say(f"  done in {info['build_seconds']:.0f} s")
    return local, info


def ensure_server_index(n: int, base: int, chroma_url: str) -> tuple[Path, dict[str, Any]]:
    """``ensure_index`` on the server at ``chroma_url``, the local index first so that the BM25 index
    saved for the same data is reused rather than rebuilt from every chunk."""
    from ingest.embed import SentenceTransformerEmbedder
    from ingest.store import IndexStore

    if not (index_dir(n) / "index" / "latency-build.json").exists():
        ensure_index(n, base)
    local, info = ensure_index(n, base, chroma_url)
    embedder = SentenceTransformerEmbedder()
    store = IndexStore(settings_for(local, chroma_url), embedder.model_id, embedder.dimension)
    reuse_lexical(local, store)
    reuse_lexical(index_dir(n) / "index", store)
    return local, info


def reuse_lexical(local: Path, store) -> None:
    """The server's port is new each run, and the BM25 cache folder is keyed by the URL: copy the
    one saved for the same data (same token) instead of rebuilding it from 100,000 chunks (moved
    when it is a previous server run's, copied when it is the local index's)."""
    target = store.lexical_dir()
    if target.exists():
        return
    candidates = sorted((p for p in local.glob("lexical-*") if p.is_dir() and (p / "token").exists()),
                        key=lambda p: p.stat().st_mtime, reverse=True)
    published = store.published_state()
    for p in candidates:
        if (p / "token").read_text() == published:
            if p.parent == target.parent:
                os.replace(p, target)
            else:
                shutil.copytree(p, target)
            return
