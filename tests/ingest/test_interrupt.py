"""Interrupted runs (Ctrl-C, kill -9) of a real `python -m ingest` are repaired by the next run:
afterwards the index equals a clean build of the same folder."""
from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest

from ingest import lexical
from ingest.pipeline import EMBED_GROUP, Ingestor
from ingest.settings import Settings
from ingest.store import COMPLETE, IndexStore
from tests.ingest.helpers import REPO_ROOT, FakeEmbedder, IngestProcess, synthetic_corpus

pytestmark = pytest.mark.slow

# Tiny chunks embed fast; more than one embedding group so a run can stop between two writes.
CHUNK_SIZE, CHUNK_OVERLAP = 50, 10


def start_ingest(corpus: Path, index: Path) -> IngestProcess:
    return IngestProcess(corpus, index, "--chunk-size", str(CHUNK_SIZE), "--chunk-overlap", str(CHUNK_OVERLAP))


def stored_chunk_rows(index: Path) -> int:
    """Chunk rows committed to Chroma's SQLite file, read-only (safe while ingest is writing).
    0 while the file is locked or has a transaction to roll back: use only to poll."""
    db = index / "chroma.sqlite3"
    if not db.exists():
        return 0
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)) as conn:
            (count,) = conn.execute(
                "SELECT count(*) FROM embeddings e JOIN segments s ON e.segment_id = s.id "
                "JOIN collections c ON s.collection = c.id WHERE c.name = 'qa_chunks'"
            ).fetchone()
    except sqlite3.Error:
        return 0  # locked by the writer, or not created yet
    return count


def snapshot(index: Path) -> dict:
    """Everything observable about an index: chunks (text, metadata, vector), documents, BM25."""
    from ingest.embed import DEFAULT_BACKEND, model_id_for

    store = IndexStore(Settings(index_dir=index, chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP),
                       model_id_for(DEFAULT_BACKEND), 384)
    store.open(create=False)
    res = store.chunks.get(include=["documents", "metadatas", "embeddings"])
    # sentence vectors ("svec") are vectors, not compared as metadata (checked to be there below)
    svec = {cid: meta.get("svec", "") for cid, meta in zip(res["ids"], res["metadatas"])}
    chunks = {cid: (text, {k: v for k, v in meta.items() if k != "svec"})
              for cid, text, meta in zip(res["ids"], res["documents"], res["metadatas"])}
    vectors = {cid: np.asarray(v) for cid, v in zip(res["ids"], res["embeddings"])}
    docs = {r.doc_id: r for r in store.list_documents(with_text=True)}
    bm25 = lexical.LexicalIndex.load(store.lexical_dir())
    return {"chunks": chunks, "vectors": vectors, "svec": svec, "docs": docs, "bm25": bm25, "token": store.state_token(),
            # The BM25 state token published for readers (when the store supports it).
            "published": getattr(store, "published_state", lambda: None)()}


_INSPECT = """
import json, sys
from pathlib import Path
from ingest.embed import DEFAULT_BACKEND, model_id_for
from ingest.settings import Settings
from ingest.store import COMPLETE, IndexStore
store = IndexStore(Settings(index_dir=Path(sys.argv[1]), chunk_size=int(sys.argv[2]), chunk_overlap=int(sys.argv[3])),
                   model_id_for(DEFAULT_BACKEND), 384).open(create=False)
docs = store.list_documents()
print(json.dumps({"pending": sum(1 for r in docs if r.status != COMPLETE), "chunks": store.count_chunks()}))
"""


def inspect_index(index: Path) -> dict:
    """Unfinished documents and stored chunks, counted by a separate process: Chroma's persistent
    mode must not be opened by this process while `python -m ingest` processes write the same
    folder (a client caches segment state and goes stale). Chroma also rolls back a transaction
    left open by kill -9, which a read-only SQLite connection cannot."""
    result = subprocess.run(
        [sys.executable, "-c", _INSPECT, str(index), str(CHUNK_SIZE), str(CHUNK_OVERLAP)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_interrupted_runs_are_repaired_to_a_clean_build(tmp_path, real_embedder):
    corpus = tmp_path / "corpus"
    # ~17 chunks each: about 6 embedding groups, several seconds even for the fast int8 backend
    # (~650 tiny chunks/s), so both interruptions below land while embedding is still going on.
    n_docs = max(40, EMBED_GROUP * 6 // 17)
    synthetic_corpus(corpus, n_docs=n_docs, sentences_per_doc=4)
    index = tmp_path / "index"

    # 1. Ctrl-C while the first group is being embedded (the model is loading or encoding).
    run = start_ingest(corpus, index)
    run.wait_for(lambda: run.progress() is not None, "the progress bar")
    total = run.progress()[1]
    assert total > EMBED_GROUP, "corpus too small to interrupt between two writes"
    time.sleep(0.5)
    run.proc.send_signal(signal.SIGINT)
    code, stdout = run.finish()
    assert code == 130, run.stderr[-2000:]
    assert "Interrupted" in run.stderr and "again" in run.stderr
    assert "Traceback" not in run.stderr
    assert inspect_index(index)["pending"] > 0  # really left unfinished

    # 2. kill -9 once the first group's chunks are in the index, while the next group is embedded.
    run = start_ingest(corpus, index)
    run.wait_for(lambda: (run.progress() or (0, 0))[0] >= EMBED_GROUP, "the first embedded group")
    run.wait_for(lambda: stored_chunk_rows(index) > 0, "chunks in the index")
    assert run.proc.poll() is None
    run.proc.kill()
    run.finish()
    assert run.proc.returncode == -signal.SIGKILL
    state = inspect_index(index)
    assert 0 < state["chunks"] < total and state["pending"] > 0, state

    # 3. Re-run to completion: repaired.
    run = start_ingest(corpus, index)
    code, stdout = run.finish()
    assert code == 0, run.stderr[-3000:]
    assert "Repairing" in run.stderr
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["documents"] == n_docs and report["failed"] == []

    # 4. A clean build of the same folder elsewhere. Vectors are not compared with it, so a fake
    #    embedder recorded under the real model's id builds it quickly; a sample of the repaired
    #    vectors is checked against the real model below.
    from ingest.embed import DEFAULT_BACKEND, model_id_for

    clean_index = tmp_path / "clean"
    settings = Settings(index_dir=clean_index, chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    fake = FakeEmbedder(model_id=model_id_for(DEFAULT_BACKEND), dimension=384)
    clean_report = Ingestor(settings, embedder=fake, progress=False).run([corpus])
    assert clean_report.added == n_docs and clean_report.chunks == total

    repaired, clean = snapshot(index), snapshot(clean_index)
    assert set(repaired["docs"]) == set(clean["docs"]) and len(clean["docs"]) == n_docs
    for doc_id, want in clean["docs"].items():
        got = repaired["docs"][doc_id]
        assert got.status == want.status == COMPLETE
        assert (got.text, got.title, got.meta, got.paths, got.hashes, got.n_chunks, got.pages) == (
            want.text, want.title, want.meta, want.paths, want.hashes, want.n_chunks, want.pages)
    assert set(repaired["chunks"]) == set(clean["chunks"]) and len(clean["chunks"]) == total
    assert repaired["chunks"] == clean["chunks"]  # texts and metadata
    sample = sorted(repaired["chunks"])[:: max(1, total // 40)]
    expected = real_embedder.embed_documents([repaired["chunks"][cid][0] for cid in sample])
    for cid, vector in zip(sample, expected):
        assert np.allclose(repaired["vectors"][cid], vector, atol=2e-3), cid
    assert all(repaired["svec"].values())  # every repaired chunk has its sentence vectors
    assert repaired["token"] == clean["token"] == repaired["published"] == clean["published"]
    assert repaired["bm25"].token == clean["bm25"].token == clean["token"]
    assert sorted(repaired["bm25"].chunk_ids) == sorted(clean["bm25"].chunk_ids)
    query = "Qosh Tepa canal"
    assert repaired["bm25"].search(query, 5) == clean["bm25"].search(query, 5) != []
    assert report["chunks"] == total
