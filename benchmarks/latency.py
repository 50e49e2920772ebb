"""End-to-end answer latency and peak memory at N chunks, against the LangChain tutorial recipe.

    python benchmarks/latency.py --chunks N [--json] [--server] [--questions Q] [--build-only]

1. **Index** (built once, cached under ``benchmarks/.cache/latency-N/``, git-ignored; delete the
   folder to rebuild): real text run through the project's own loading, cleaning and chunking
   (``ingest.documents.build_document`` + ``ingest.chunking.chunk_text``):

   - the project's ``corpus/`` (recorded under its real paths and file hashes, so ``python app.py``
     on this index finds it unchanged), the 24 XQuAD dev articles, the SciFact abstracts named in
     the test qrels, then SciFact abstracts and AG News items interleaved (1 : 2) up to ``--base``
     chunks (default 10,000): the *originals*. They are embedded for real, once, with the
     project's embedder; the vectors are cached (``benchmarks/.cache/latency-embeddings/``,
     ``vectors.npy`` + ``ids.json``, keyed by chunk id) and shared by every N.
   - N <= base: a subset of the originals (in the order above) with exactly N chunks.
   - N > base: all originals, then *perturbed copies* (rounds over the originals; in each copy
     every sentence loses one word with probability 0.5 and each paragraph's sentences are
     shuffled with probability 0.5; new text, so new doc ids). Copies are re-chunked by the project,
     but **reuse their originals' embeddings** (chunk j of a copy takes the vector of the chunk at
     the same relative position of its original, plus a small Gaussian jitter, cosine ~0.995, so
     the HNSW graph does not hold exact duplicates) instead of being embedded: building 100,000
     chunks then takes minutes instead of hours.

   Written like ingest writes: ``IndexStore.put_documents`` (pending) -> ``upsert_chunks`` ->
   ``update_documents`` (complete) -> ``ingest.lexical.rebuild``: a normal, complete index.

2. **Measure** in one warm process (index opened, model and BM25 loaded, 5 warm-up questions):
   ``QAService.answer()`` in the default (extractive) mode over ``--questions`` questions (default
   240: the 12 dev questions, then XQuAD dev and SciFact test claims alternately), timed one by one;
   then peak RSS (``ru_maxrss``) *before* the baseline is loaded. Then the **baseline**, the
   LangChain tutorial recipe on the same index and questions: ``langchain_chroma.Chroma`` over the
   same chunk collection and Chroma client, ``HuggingFaceEmbeddings`` (same packaged model,
   normalised), ``similarity_search(q, k=4)``, whole chunks joined as context.

3. ``--server``: the same against a Chroma server (``chroma run --path DIR --host 127.0.0.1
   --port FREE`` next to this Python, started and stopped here; its collection is built once from
   the cached data under ``benchmarks/.cache/latency-N/server/``); the project uses it through
   ``Settings(chroma_url=...)`` (``QA_CHROMA_URL``), the baseline through the same HttpClient.

Also reported: CPU time per answer, the stages the service times (condense / retrieve / answer) and
the parts of an answer timed by wrapping them (query embedding, dense search, BM25, ...).
``--profile FILE`` writes a cProfile of the timed answers. The environment's ``OMP_WAIT_POLICY``
(PyTorch's OpenMP threads spin-wait by default, which costs a lot when the 2 cores are busy) is
recorded and becomes part of the results key, so runs with ``OMP_WAIT_POLICY=PASSIVE`` are kept apart.

Last stdout line: ``{"chunks": N, "p50_ms": x, "p95_ms": y, "rss_mb": z, "baseline_p50_ms": a,
"baseline_p95_ms": b, ...}``. Each run is also kept in ``benchmarks/results/latency.json`` (latest
run per configuration, with date, command, CPU, and the load average: the machine is shared).
Targets on a 2-core machine at N = 100,000: p50 <= 150 ms, p95 <= 400 ms, peak RSS <= 2 GB.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BENCH = SHARED / "bench"
CACHE = Path(os.environ.get("LATENCY_BENCH_CACHE") or ROOT / "benchmarks" / ".cache")  # git-ignored (env: tests)
RESULTS_DIR = CACHE / "results" if os.environ.get("LATENCY_BENCH_CACHE") else ROOT / "benchmarks" / "results"
EMB_CACHE = CACHE / "latency-embeddings"
BUILD_VERSION = 2  # bump when the way the index is composed changes (rebuilds the cached indexes); 2: sentence vectors
DEFAULT_BASE = 10_000
JITTER = 0.1  # norm of the Gaussian jitter added to a reused (unit) vector: cosine ~ 1/sqrt(1.01)

USER_OMP = os.environ.get("OMP_WAIT_POLICY")  # before anything (ingest.embed) sets a default

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import command_line, loadavg, machine, now_iso, peak_rss_mb, update_results  # noqa: E402

for _key, _value in (("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"), ("ANONYMIZED_TELEMETRY", "False"),
                     ("GRADIO_ANALYTICS_ENABLED", "False"), ("TOKENIZERS_PARALLELISM", "false")):
    os.environ.setdefault(_key, _value)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- machine & results
def uptime_load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def write_result(name: str, key: str, figures: dict[str, Any], context: dict[str, Any]) -> Path:
    """Keep the latest run per configuration ``key`` in benchmarks/results/<name>.json."""
    path = RESULTS_DIR / f"{name}.json"
    update_results(path, key, {"figures": figures, **context})
    return path


def record(name: str, key: str, figures: dict[str, Any], started_uptime: str, started_load,
           **env: Any) -> None:
    """Note the caller's ``OMP_WAIT_POLICY`` (the project sets its own default when it loads a model;
    a caller's setting is part of the results key), keep the run in results/<name>.json, and print
    the figures as the last stdout line."""
    figures["env"] = {"OMP_WAIT_POLICY_set_by_caller": USER_OMP, **env}
    key += f",OMP_WAIT_POLICY={USER_OMP}" if USER_OMP else ""
    path = write_result(name, key, figures, run_context(started_uptime, started_load))
    say(f"written to {path}")
    print(json.dumps(figures))


def run_context(started_uptime: str, started_load) -> dict[str, Any]:
    return {"date": now_iso(), "command": command_line(), **machine(), "uptime_at_start": started_uptime,
            "load_at_start": started_load, "load_at_end": loadavg()}


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default)."""
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------- questions
def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def questions(limit: int = 240) -> list[str]:
    """The 12 dev questions, then XQuAD dev questions and SciFact test claims alternately."""
    dev = [r["question"] for r in _jsonl(SHARED / "eval" / "dev_qa.jsonl")]
    xquad = [r["question"] for r in _jsonl(BENCH / "xquad_dev" / "qa.jsonl")]
    test_ids: list[str] = []
    with open(BENCH / "scifact" / "qrels" / "test.tsv", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            q = line.split("\t")[0]
            if q and q not in test_ids:
                test_ids.append(q)
    claims = {str(r["_id"]): r["text"] for r in _jsonl(BENCH / "scifact" / "queries.jsonl")}
    scifact = [claims[q] for q in test_ids if q in claims]
    # Spread the picks over each list (XQuAD questions come grouped by article).
    xquad = xquad[::3] + xquad[1::3] + xquad[2::3]
    out = list(dev)
    i = 0
    while len(out) < limit and (i < len(xquad) or i < len(scifact)):
        for pool in (xquad, scifact):
            if i < len(pool) and len(out) < limit and pool[i] not in out:
                out.append(pool[i])
        i += 1
    return out[:limit]


# ------------------------------------------------------------------------------------ documents
class Item:
    """One document of the benchmark index: cleaned text, chunks, where its vectors come from."""

    __slots__ = ("doc", "chunks", "path", "file_hash", "source_ids", "copy_of", "round")

    def __init__(self, doc, chunks, path: str, file_hash: str, copy_of: "Item | None" = None, round_: int = 0):
        self.doc = doc
        self.chunks = chunks
        self.path = path
        self.file_hash = file_hash
        self.copy_of = copy_of
        self.round = round_


def _markdown(title: str, body: str) -> bytes:
    title = " ".join(title.split())
    return f"---\ntitle: {json.dumps(title, ensure_ascii=False)}\n---\n{body.strip()}\n".encode("utf-8")


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
    return Item(doc, chunks, record_path or f"{CACHE}/latency-sources/{path}", file_hash(data))


def _scifact_rows() -> list[dict]:
    return _jsonl(BENCH / "scifact" / "corpus.jsonl")


def _ag_rows() -> Iterator[tuple[int, str, str]]:
    with open(BENCH / "ag_news" / "test.csv", encoding="utf-8", newline="") as fh:
        for i, row in enumerate(csv.reader(fh)):
            yield i, row[1], row[2]


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
    rows = _scifact_rows()
    relevant: set[str] = set()
    with open(BENCH / "scifact" / "qrels" / "test.tsv", encoding="utf-8") as fh:
        next(fh)
        relevant = {line.split("\t")[1] for line in fh if line.strip()}

    def sci(row) -> Item | None:
        title = " ".join(row["title"].split())
        return _item(Path("scifact") / f"{row['_id']}.md", _markdown(title, f"{title}\n\n{row['text'].strip()}"))

    for row in rows:
        if str(row["_id"]) in relevant:
            add(sci(row))
    rest = [r for r in rows if str(r["_id"]) not in relevant]
    ag = _ag_rows()
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
    path = f"{CACHE}/latency-sources/copies/{Path(item.path).name}#copy{round_}"  # never under corpus/
    return Item(doc, chunks, path, hashlib.sha256(path.encode()).hexdigest()[:20], copy_of=item, round_=round_)


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
    from ingest.store import COMPLETE, PENDING, DocRecord, encode_sentence_vectors

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
    return CACHE / f"latency-{n}"


def build_info(n: int, base: int, items: list[Item]) -> dict[str, Any]:
    copies = sum(1 for it in items if it.copy_of is not None)
    return {"version": BUILD_VERSION, "chunks": n, "base": base, "documents": len(items), "copies": copies,
            "copy_chunks": sum(len(it.chunks) for it in items if it.copy_of is not None),
            "original_chunks": sum(len(it.chunks) for it in items if it.copy_of is None), "jitter": JITTER}


def ensure_index(n: int, base: int = DEFAULT_BASE, chroma_url: str | None = None, server_dir: Path | None = None,
                 embedder=None) -> tuple[Path, dict[str, Any]]:
    """The cached local index of ``n`` chunks (``chroma_url``: the collection on that server, whose data
    lives in ``server_dir``); built if missing or stale. Returns (local index folder, build info)."""
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


# --------------------------------------------------------------------------------- chroma server
class ChromaServer:
    """``chroma run`` on 127.0.0.1 and a free port; stopped (terminate, then kill) on exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = path.parent / "chroma-server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "ChromaServer":
        exe = Path(sys.executable).with_name("chroma")
        self.path.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
        self.proc = subprocess.Popen([str(exe), "run", "--path", str(self.path), "--host", "127.0.0.1",
                                      "--port", str(self.port)], stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT, env=env)
        import urllib.request

        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"chroma run exited ({self.proc.returncode}); see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        self.__exit__()
        raise SystemExit(f"chroma run did not answer within 120 s; see {self.log}")

    def peak_rss_mb(self) -> float | None:
        return peak_rss_mb(self.proc.pid) if self.proc is not None else None

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


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


# -------------------------------------------------------------------------------------- measure
def rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure_project(settings, qs: list[str], warmup: int = 5, profile: Path | None = None) -> dict[str, Any]:
    from chatbot.service import QAService

    t0 = time.perf_counter()
    service = QAService(settings)
    service.open()
    service.warm_up()
    ready = time.perf_counter() - t0
    for q in qs[:warmup]:
        service.answer(q)
    spent = _instrument(service)
    times, cpu, parts, supported = [], [], {"condense": [], "retrieve": [], "answer": []}, 0
    inner: dict[str, list[float]] = {k: [] for k in spent}
    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    for q in qs:
        for k in spent:
            spent[k] = 0.0
        t, c = time.perf_counter(), time.process_time()
        ans = service.answer(q)
        times.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
        supported += ans.supported
        for k in parts:
            parts[k].append(ans.timings_ms.get(k, 0.0))
        for k, v in spent.items():
            inner[k].append(v * 1000)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(profile))
    return {
        "service": service,
        "p50_ms": round(percentile(times, 50), 1), "p95_ms": round(percentile(times, 95), 1),
        "mean_ms": round(statistics.fmean(times), 1), "max_ms": round(max(times), 1),
        "cpu_p50_ms": round(percentile(cpu, 50), 1), "cpu_p95_ms": round(percentile(cpu, 95), 1),
        "stages_p50_ms": {k: round(percentile(v, 50), 1) for k, v in parts.items()},
        "stages_p95_ms": {k: round(percentile(v, 95), 1) for k, v in parts.items()},
        "parts_p50_ms": {k: round(percentile(v, 50), 1) for k, v in inner.items()},
        "parts_p95_ms": {k: round(percentile(v, 95), 1) for k, v in inner.items()},
        "supported": supported, "open_and_warm_up_s": round(ready, 2),
    }


def _instrument(service) -> dict[str, float]:
    """Time the parts of an answer (wall seconds per call, summed per answer) without changing them:
    query embedding, the dense search (Chroma), BM25, loading lexical-only winners, the published-state
    check (one Chroma call each time the lexical index is looked at) and the documents list."""
    spent = {"embed_query": 0.0, "dense_query": 0.0, "bm25_search": 0.0, "get_chunks": 0.0,
             "published_state": 0.0, "documents": 0.0}

    def timed(obj, name: str, key: str) -> None:
        fn = getattr(obj, name)

        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[key] += time.perf_counter() - t

        setattr(obj, name, wrapper)

    retriever = service.retriever
    timed(retriever.embedder, "embed_query", "embed_query")
    timed(service.store, "query", "dense_query")
    timed(service.store, "get_chunks", "get_chunks")
    timed(service.store, "published_state", "published_state")
    timed(retriever, "documents", "documents")
    timed(retriever.lexical_index, "search", "bm25_search")
    return spent


def measure_baseline(service, qs: list[str], warmup: int = 5) -> dict[str, Any]:
    """The LangChain tutorial recipe on the same Chroma client and chunk collection."""
    from langchain_chroma import Chroma
    from langchain_huggingface import HuggingFaceEmbeddings

    from ingest.embed import model_path

    t0 = time.perf_counter()
    embeddings = HuggingFaceEmbeddings(model_name=model_path(), encode_kwargs={"normalize_embeddings": True})
    store = Chroma(client=service.store._get_client(), collection_name=f"{service.settings.collection}_chunks",
                   embedding_function=embeddings)
    ready = time.perf_counter() - t0
    for q in qs[:warmup]:
        store.similarity_search(q, k=4)
    times, cpu, chars = [], [], 0
    for q in qs:
        t, c = time.perf_counter(), time.process_time()
        docs = store.similarity_search(q, k=4)
        context = "\n\n".join(d.page_content for d in docs)  # whole chunks as the context
        times.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
        chars += len(context)
    return {"baseline_p50_ms": round(percentile(times, 50), 1), "baseline_p95_ms": round(percentile(times, 95), 1),
            "baseline_cpu_p50_ms": round(percentile(cpu, 50), 1), "baseline_cpu_p95_ms": round(percentile(cpu, 95), 1),
            "baseline_mean_ms": round(statistics.fmean(times), 1), "baseline_context_chars_mean": round(chars / len(qs)),
            "baseline_load_s": round(ready, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, required=True, metavar="N", help="chunks in the benchmark index")
    p.add_argument("--questions", type=int, default=240, metavar="Q", help="questions to time (>= 200; default 240)")
    p.add_argument("--base", type=int, default=DEFAULT_BASE, metavar="B",
                   help=f"original (really embedded) chunks; more are perturbed copies (default {DEFAULT_BASE})")
    p.add_argument("--server", action="store_true", help="run against a Chroma server (chroma run, started here)")
    p.add_argument("--no-baseline", action="store_true", help="skip the LangChain baseline")
    p.add_argument("--build-only", action="store_true", help="build (or check) the cached index and stop")
    p.add_argument("--profile", type=Path, metavar="FILE", help="cProfile the timed answers into FILE")
    p.add_argument("--json", action="store_true", help="(the last stdout line is always the JSON figures)")
    args = p.parse_args(argv)
    if args.chunks < 1 or args.base < 1:
        p.error("--chunks and --base must be positive")
    started_uptime, started_load = uptime_load(), loadavg()
    say(f"start: {started_uptime}")
    server = None
    try:
        chroma_url = None
        server_dir = None
        if args.server:
            server_dir = index_dir(args.chunks) / "server"
            server = ChromaServer(server_dir).__enter__()
            chroma_url = server.url
            say(f"chroma run on {chroma_url} (data {server_dir})")
            if not (index_dir(args.chunks) / "index" / "latency-build.json").exists():
                ensure_index(args.chunks, args.base)  # the local index first: its BM25 cache is reused
        local, info = ensure_index(args.chunks, args.base, chroma_url, server_dir)
        if args.build_only:
            figures = {"chunks": args.chunks, "built": True, **{k: info[k] for k in ("documents", "copies")}}
            print(json.dumps(figures))
            return 0
        settings = settings_for(local, chroma_url)
        if chroma_url:
            from ingest.embed import SentenceTransformerEmbedder
            from ingest.store import IndexStore

            e = SentenceTransformerEmbedder()
            st = IndexStore(settings, e.model_id, e.dimension)
            reuse_lexical(local, st)
            reuse_lexical(index_dir(args.chunks) / "index", st)
        qs = questions(args.questions)
        if len(qs) < 200:
            say(f"note: only {len(qs)} questions (fewer than 200)")
        load_before = loadavg()
        say(f"timing {len(qs)} questions through QAService.answer() (load {load_before}) …")
        proj = measure_project(settings, qs, profile=args.profile)
        service = proj.pop("service")
        rss = rss_mb()
        figures: dict[str, Any] = {"chunks": args.chunks, "p50_ms": proj["p50_ms"], "p95_ms": proj["p95_ms"],
                                   "rss_mb": rss}
        baseline: dict[str, Any] = {}
        if not args.no_baseline:
            say("timing the LangChain baseline (Chroma similarity_search k=4) …")
            baseline = measure_baseline(service, qs)
            figures.update({"baseline_p50_ms": baseline.pop("baseline_p50_ms"),
                            "baseline_p95_ms": baseline.pop("baseline_p95_ms")})
        figures.update({"mode": "server" if args.server else "embedded", "questions": len(qs),
                        **{k: v for k, v in proj.items() if k not in ("p50_ms", "p95_ms")}, **baseline,
                        "rss_mb_after_baseline": rss_mb() if baseline else None,
                        "server_rss_mb": server.peak_rss_mb() if server else None,
                        "index": {k: info.get(k) for k in ("documents", "original_chunks", "copies", "copy_chunks",
                                                           "base", "jitter")},
                        "load_during": [load_before, loadavg()],
                        "targets_at_100k": {"p50_ms": 150, "p95_ms": 400, "rss_mb": 2048}})
        figures["notes"] = (f"{info.get('copy_chunks', 0)} of the {args.chunks} chunks belong to perturbed copies "
                            f"that reuse their originals' embeddings (plus jitter {JITTER}); the other "
                            f"{info.get('original_chunks')} were embedded for real. rss_mb is the peak RSS of "
                            "this process before the baseline's model was loaded.")
        record("latency", f"chunks={args.chunks}" + (",server" if args.server else ""), figures, started_uptime,
               started_load, OMP_WAIT_POLICY_effective=os.environ.get("OMP_WAIT_POLICY"))
        return 0
    finally:
        if server is not None:
            server.__exit__()


if __name__ == "__main__":
    sys.exit(main())
