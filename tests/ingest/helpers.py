"""Test helpers for the ingest suite: a deterministic fake embedder, a PDF writer, invariant checks."""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ingest.chunking import split_sentences
from ingest.types import Chunk

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = REPO_ROOT.parent / "shared"
SEED_MD = REPO_ROOT / "corpus" / "central-asia-taliban-engagement.md"
SEED_RAW = SHARED_DIR / "corpus" / "central-asia-taliban-engagement.txt"
APPEAL = "Unlike many news"

_WORD = re.compile(r"\w+")


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
    trailer = f"<< /Size {size} /Root 1 0 R" + (f" /Info {info_no} 0 R" if info_no else "") + " >>"
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
