"""Test helpers for the ingest suite: a deterministic fake embedder, a PDF writer, invariant checks."""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

from ingest.chunking import split_sentences
from ingest.types import Chunk

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = REPO_ROOT.parent / "shared"
SEED_MD = REPO_ROOT / "corpus" / "central-asia-taliban-engagement.md"
SEED_RAW = SHARED_DIR / "corpus" / "central-asia-taliban-engagement.txt"
APPEAL = "Unlike many news"

_WORD = re.compile(r"\w+")
PROGRESS = re.compile(r"Embedding:\s+\d+%\|[^|]*\|\s*(\d+)/(\d+)")


class FakeEmbedder:
    """Implements ``ingest.embed.Embedder``: hashed bag of words, unit-normalised float32.

    Texts sharing words get similar vectors, so queries by keyword find their chunk. Counts calls
    so tests can check what was (not) embedded.
    """

    def __init__(self, model_id: str = "test/fake-hash-embedder", dimension: int = 64) -> None:
        self.model_id = model_id
        self.dimension = dimension
        self.document_calls = 0
        self.query_calls = 0
        self.embedded_texts: list[str] = []

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dimension, dtype=np.float32)
        for word in _WORD.findall(text.lower()):
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
            v[h % self.dimension] += 1.0 if (h >> 32) & 1 else -1.0
        v[0] += 1e-3  # never the zero vector
        return v / np.linalg.norm(v)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        self.document_calls += 1
        self.embedded_texts.extend(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._vector(t) for t in texts]).astype(np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        self.query_calls += 1
        return self._vector(text)


def check_chunks(text: str, chunks: Sequence[Chunk], chunk_size: int, chunk_overlap: int) -> None:
    """Every invariant a list of chunks of ``text`` must satisfy (raises AssertionError)."""
    assert text.strip() == "" or chunks, "non-empty text produced no chunks"
    spans = split_sentences(text)
    sentence_set = set(spans)
    for c in chunks:
        assert text[c.start : c.end] == c.text, (c.start, c.end)
        assert c.text and c.text == c.text.strip(), repr(c.text[:40])
        assert len(c.text) <= chunk_size
        assert c.sentences, "chunk without sentence spans"
        assert c.sentences[0][0] == c.start and c.sentences[-1][1] == c.end
        previous_end = c.start
        for s, e in c.sentences:
            assert c.start <= s < e <= c.end
            assert s >= previous_end
            previous_end = e
            assert text[s:e] == text[s:e].strip() and text[s:e]
            if (s, e) not in sentence_set:
                # Only a sentence longer than a chunk may be cut, and then into pieces of it.
                whole = [sp for sp in spans if sp[0] <= s and e <= sp[1]]
                assert len(whole) == 1 and whole[0][1] - whole[0][0] > chunk_size, (s, e)
    # Consecutive chunks: forward progress, overlap of whole sentences within the budget.
    for prev, nxt in zip(chunks, chunks[1:]):
        assert nxt.start > prev.start and nxt.end > prev.end
        if nxt.start < prev.end:
            assert prev.end - nxt.start <= chunk_overlap
            assert nxt.sentences[0] in prev.sentences
            k = prev.sentences.index(nxt.sentences[0])
        else:
            k = len(prev.sentences)
        assert k >= 1
        # The overlap is as large as allowed: one more sentence would exceed it, or would leave no
        # room for the first new sentence (or would repeat the whole previous chunk).
        if k - 1 > 0:
            first_new = nxt.sentences[len(prev.sentences) - k]
            assert first_new[0] >= prev.end
            assert (
                prev.end - prev.sentences[k - 1][0] > chunk_overlap
                or first_new[1] - prev.sentences[k - 1][0] > chunk_size
            )
    # Every character of every sentence is covered by some chunk.
    covered = sorted(sp for c in chunks for sp in c.sentences)
    pos = 0
    for s, e in spans:
        pieces = [sp for sp in covered if s <= sp[0] and sp[1] <= e]
        assert pieces and pieces[0][0] == s and max(p[1] for p in pieces) == e, (s, e)
        assert s >= pos
        pos = e


def make_pdf(pages: Sequence[Sequence[str]], title: str | None = None) -> bytes:
    """A minimal valid PDF, one text line per string, one page per list, with a correct xref table."""

    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    n = len(pages)
    font_no = 3 + 2 * n
    bodies: dict[int, bytes] = {}
    kids = []
    for i, lines in enumerate(pages):
        page_no, content_no = 3 + 2 * i, 4 + 2 * i
        kids.append(f"{page_no} 0 R")
        ops = ["BT", "/F1 11 Tf", "14 TL", "72 720 Td"] + [f"({esc(line)}) Tj T*" for line in lines] + ["ET"]
        stream = "\n".join(ops).encode("latin-1")
        bodies[page_no] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_no} 0 R "
            f"/Resources << /Font << /F1 {font_no} 0 R >> >> >>"
        ).encode()
        bodies[content_no] = b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"
    bodies[1] = b"<< /Type /Catalog /Pages 2 0 R >>"
    bodies[2] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {n} >>".encode()
    bodies[font_no] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    info_no = None
    if title:
        info_no = font_no + 1
        bodies[info_no] = f"<< /Title ({esc(title)}) >>".encode("latin-1")
    return pdf_bytes(bodies, f" /Info {info_no} 0 R" if info_no else "")


def pdf_bytes(bodies: dict[int, bytes], trailer_extra: str = "") -> bytes:
    """A PDF file of the numbered object ``bodies`` (1 is the catalog), with a correct xref table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for no in sorted(bodies):
        offsets[no] = len(out)
        out += b"%d 0 obj\n" % no + bodies[no] + b"\nendobj\n"
    xref = len(out)
    size = max(bodies) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for no in range(1, size):
        out += b"%010d 00000 n \n" % offsets[no]
    trailer = f"<< /Size {size} /Root 1 0 R{trailer_extra} >>"
    out += b"trailer\n" + trailer.encode() + b"\nstartxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def seed_sentences() -> list[str]:
    """The sentences of the seed article's body (cleaned), for synthetic documents."""
    from ingest.documents import build_document

    doc = build_document(SEED_MD)
    return [doc.text[s:e] for s, e in split_sentences(doc.text)]


def synthetic_corpus(folder: Path, n_docs: int, sentences_per_doc: int, seed: int = 1234) -> list[Path]:
    """``n_docs`` Markdown files of shuffled seed-article sentences (a seeded RNG: same files every time)."""
    rng = random.Random(seed)
    sentences = seed_sentences()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_docs):
        picked = [rng.choice(sentences) for _ in range(sentences_per_doc)]
        paras = [" ".join(picked[j : j + 3]) for j in range(0, len(picked), 3)]
        body = f"# Synthetic article {i}\n\nDocument number {i} of the synthetic set.\n\n" + "\n\n".join(paras) + "\n"
        path = folder / f"article-{i:03d}.md"
        path.write_text(body, encoding="utf-8")
        paths.append(path)
    return paths


def run_ingest(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    base.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"})
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ingest", *args], cwd=REPO_ROOT, env=base, capture_output=True, text=True,
        timeout=timeout,
    )


def last_json(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert lines, "no output on stdout"
    data = json.loads(lines[-1])
    assert isinstance(data, dict)
    return data


class IngestProcess:
    """`python -m ingest` with its stderr read live (for the progress bar)."""

    def __init__(self, corpus: Path, index: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
        env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingest", str(corpus), "--index", str(index), "--json", *args],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            # A shell's background job (nohup cmd &, some CI runners) starts with SIGINT ignored, and
            # Python then keeps ignoring it: give the child the default, so Ctrl-C is KeyboardInterrupt.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.stderr = ""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            data = os.read(self.proc.stderr.fileno(), 4096)
            if not data:
                return
            with self._lock:
                self.stderr += data.decode("utf-8", "replace")

    def progress(self) -> tuple[int, int] | None:
        with self._lock:
            found = PROGRESS.findall(self.stderr)
        return (int(found[-1][0]), int(found[-1][1])) if found else None

    def wait_for(self, condition, what: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"ingest finished (exit {self.proc.returncode}) before {what}:\n{self.stderr[-2000:]}")
            if time.monotonic() > deadline:
                self.proc.kill()
                pytest.fail(f"timed out waiting for {what}")
            time.sleep(0.05)

    def said(self, text: str) -> bool:
        with self._lock:
            return text in self.stderr

    def finish(self, timeout: float = 600) -> tuple[int, str]:
        # Not communicate(): it would read stderr too, racing the reader thread.
        stdout = self.proc.stdout.read()
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=30)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.proc.returncode, stdout.decode()


_HEALTH = """
import json, sys
from pathlib import Path
from ingest import lexical
from ingest.settings import Settings
from ingest.store import COMPLETE, IndexStore
settings = Settings(index_dir=Path(sys.argv[1]), chunk_size=int(sys.argv[4]), chunk_overlap=int(sys.argv[5]),
                    chroma_url=sys.argv[6] if len(sys.argv) > 6 else None)
store = IndexStore(settings, sys.argv[2], int(sys.argv[3])).open(create=False)
docs = store.list_documents()
complete = {r.doc_id: r for r in docs if r.status == COMPLETE}
per_doc = {}
chunk_ids = set()
for cid, _text, meta in store.iter_chunks(include_text=False):
    per_doc[meta["doc_id"]] = per_doc.get(meta["doc_id"], 0) + 1
    chunk_ids.add(cid)
bm25 = lexical.LexicalIndex.load(store.lexical_dir())
sample = sorted(chunk_ids)[:: max(1, len(chunk_ids) // 100)]
vectors = store.chunks.get(ids=sample, include=["embeddings"])["embeddings"] if sample else []
found = store.chunks.query(query_embeddings=list(vectors), n_results=1, include=["distances"]) if sample else None
print(json.dumps({
    "unfindable_chunks": sum(1 for d in (found["distances"] if found else []) if not d or d[0] > 1e-3),
    "documents": len(docs), "pending": len(docs) - len(complete),
    "paths": sorted(p for r in complete.values() for p in r.paths),
    "chunks": len(chunk_ids),
    "orphan_chunks": sum(n for d, n in per_doc.items() if d not in complete),
    "short_documents": sorted(d for d, r in complete.items() if per_doc.get(d, 0) != r.n_chunks),
    "bm25_matches": bm25 is not None and sorted(bm25.chunk_ids) == sorted(chunk_ids)
                    and bm25.token == store.state_token() == store.published_state(),
}))
"""


def index_health(settings, embedder) -> dict:
    """What a consistent index must show, counted in a fresh process (a process that did not write
    the index last may hold a stale view of it): documents, pending ones, their paths, chunks,
    orphan chunks (of no complete document), documents missing chunks, sampled chunks the vector
    index does not find by their own vector, and whether the saved BM25 index covers exactly the stored chunks under the published state."""
    args = [str(settings.index_dir), embedder.model_id, str(embedder.dimension), str(settings.chunk_size),
            str(settings.chunk_overlap)]
    if settings.chroma_url:
        args.append(settings.chroma_url)
    result = subprocess.run([sys.executable, "-c", _HEALTH, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


_LOCK_LINE = re.compile(r"\b(?:POSIX|OFDLCK|FLOCK)\s+\S+\s+\S+\s+(\d+)\s+[0-9a-f]+:[0-9a-f]+:(\d+)\s")


def holds_posix_locks(pid: int, path: Path) -> bool:
    """True while process ``pid`` holds a lock on ``path`` (/proc/locks): SQLite locks the
    database file for the whole of a transaction, reads included."""
    inode = str(os.stat(path).st_ino)
    for line in Path("/proc/locks").read_text().splitlines():
        found = _LOCK_LINE.search(line)
        if found and "->" not in line and found.group(1) == str(pid) and found.group(2) == inode:
            return True
    return False


def stop_between_transactions(proc: subprocess.Popen, index: Path, timeout: float = 120) -> None:
    """SIGSTOP ``proc`` at a moment it has no SQLite transaction open on the index: a process
    stopped inside one would stall every other process's access to the index (readers included),
    which is not what the tests are about."""
    db = index / "chroma.sqlite3"
    deadline = time.monotonic() + timeout
    while True:
        proc.send_signal(signal.SIGSTOP)
        while Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("T", "t"):
            time.sleep(0.005)
        if not db.exists() or not holds_posix_locks(proc.pid, db):
            return
        proc.send_signal(signal.SIGCONT)
        if time.monotonic() > deadline:
            pytest.fail("could not stop the process between two transactions")
        time.sleep(0.02)
