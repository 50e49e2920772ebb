"""The contract every ``ingest.protocols.Store`` implementation must pass, run against embedded
Chroma and against a real Chroma server (`chroma run`).

The vectors are laid out by hand (4 dimensions) so every similarity is known exactly:

    a0 = e0            query e0 -> a0 1.0, b0 0.8, a1 0.0, b1 -0.6
    a1 = e1
    b0 = 0.8 e0 + 0.6 e2
    b1 = -0.6 e0 + 0.8 e3

Persistence is tested by reopening: a new process (and, for the server, a restarted server on the
same data) reads back exactly what was written.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from ingest.protocols import Store
from ingest.settings import Settings
from ingest.store import COMPLETE, PENDING, IndexStore
from ingest.records import encode_sentence_vectors, sentence_vectors_of
from ingest.types import Chunk, DocRecord, IngestError
from tests.servers import chroma_server

MODEL, DIM = "test/hand-laid-vectors", 4
REPO_ROOT = Path(__file__).resolve().parents[2]

TEXT_A = "The canal is long. It takes water from the Amu Darya."
TEXT_B = "Page one opens here. Page two continues it."
A0 = Chunk("doca-0-18", "doca", 0, 18, TEXT_A[0:18], ((0, 18),))
A1 = Chunk("doca-19-53", "doca", 19, 53, TEXT_A[19:53], ((19, 33), (34, 53)))
B0 = Chunk("docb-0-20", "docb", 0, 20, TEXT_B[0:20], ((0, 20),))
B1 = Chunk("docb-21-43", "docb", 21, 43, TEXT_B[21:43], ((21, 43),))
VECTORS = {
    A0.chunk_id: [1.0, 0.0, 0.0, 0.0],
    A1.chunk_id: [0.0, 1.0, 0.0, 0.0],
    B0.chunk_id: [0.8, 0.0, 0.6, 0.0],
    B1.chunk_id: [-0.6, 0.0, 0.0, 0.8],
}
E0 = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)


def record(doc_id: str, status: str = COMPLETE) -> DocRecord:
    if doc_id == "doca":
        return DocRecord("doca", "The canal", {"source": "News", "published": "2023-05-02", "tags": ["water"]},
                         ["/corpus/canal.md"], ["h-a"], status, 2, (), TEXT_A)
    return DocRecord("docb", "Paged", {"source": "Journal"}, ["/corpus/paged.pdf"], ["h-b"], status, 2, (0, 21), TEXT_B)


def write(store: Store, status: str = COMPLETE) -> None:
    """Both documents, their four chunks (with sentence vectors for a1), pending then ``status``."""
    a, b = record("doca", PENDING), record("docb", PENDING)
    store.put_documents([a, b])
    items = [(A0, a), (A1, a), (B0, b), (B1, b)]
    vectors = np.array([VECTORS[c.chunk_id] for c, _ in items], dtype=np.float32)
    svecs = ["", encode_sentence_vectors(np.eye(4, dtype=np.float32)[[1, 2]]), "", ""]
    store.upsert_chunks(items, vectors, svecs)
    store.update_documents([replace(a, status=status, text=None), replace(b, status=status, text=None)])


def ranking(hits) -> list[tuple[str, float]]:
    return [(h.chunk.chunk_id, round(h.score, 5)) for h in hits]


def dump(store: Store) -> dict:
    """Everything a reader can see, in a stable order (compared across processes)."""
    docs = sorted(store.list_documents(with_text=True), key=lambda r: r.doc_id)
    chunks = sorted(store.iter_chunks(), key=lambda row: row[0])
    return {"docs": [asdict(r) for r in docs], "chunks": [list(row) for row in chunks],
            "query": ranking(store.query(E0, 4)), "state": store.published_state(), "config": store.config}


def _dump_main() -> None:  # run in a fresh process by test_everything_survives_reopening
    settings = Settings(index_dir=Path(sys.argv[1]), chroma_url=sys.argv[2] or None, collection=sys.argv[3])
    print(json.dumps(dump(IndexStore(settings, MODEL, DIM).open(create=False))))


# ------------------------------------------------------------------------------------ backends
class Embedded:
    name = "embedded"

    def settings(self, folder: Path, collection: str) -> Settings:
        return Settings(index_dir=folder / "index", collection=collection)

    def restart(self) -> None:
        """Nothing runs between processes: reopening in a new process is the test."""


class Server:
    """One `chroma run` for the test class; ``restart`` stops it and starts a new one on its data."""

    name = "server"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = ""
        self.starts = 0
        self._stack = ExitStack()

    def start(self) -> "Server":
        self.starts += 1
        self.url = self._stack.enter_context(chroma_server(self.root / "data", self.root / f"chroma-{self.starts}.log"))
        return self

    def restart(self) -> None:
        self.close()
        self.start()

    def close(self) -> None:
        self._stack.close()
        self._stack = ExitStack()

    def settings(self, folder: Path, collection: str) -> Settings:
        return Settings(index_dir=folder / "local", chroma_url=self.url, collection=collection)


# ------------------------------------------------------------------------------------ the contract
class StoreContract:
    """Subclasses provide ``backend`` (``settings(folder, collection)``, ``restart()``)."""

    @pytest.fixture
    def settings(self, backend, tmp_path) -> Settings:
        return backend.settings(tmp_path, f"t{uuid.uuid4().hex[:12]}")  # a fresh collection per test

    @pytest.fixture
    def store(self, settings) -> Store:
        return IndexStore(settings, MODEL, DIM).open(create=True)

    def test_implements_the_protocol_and_starts_empty(self, settings):
        store = IndexStore(settings, MODEL, DIM)
        assert isinstance(store, Store)
        assert not store.exists()
        with pytest.raises(IngestError, match="No index at .*Run `python -m ingest` first"):
            store.open(create=False)
        store.open(create=True)
        assert store.exists()
        assert (store.count_chunks(), store.list_documents(), store.published_state()) == (0, [], None)
        assert store.query(E0, 3) == [] and store.get_chunks(["doca-0-18"]) == []
        assert list(store.iter_chunks()) == []
        assert store.config == {"embedding_model": MODEL, "dimension": DIM, "chunk_size": settings.chunk_size,
                                "chunk_overlap": settings.chunk_overlap, "index_format": 1,
                                "chunk_vectors": "chunk-run"}

    def test_documents_round_trip(self, store):
        write(store)
        assert store.get_document("doca") == record("doca")
        assert store.get_document("docb") == record("docb")
        assert store.get_document("nope") is None
        listed = sorted(store.list_documents(), key=lambda r: r.doc_id)
        assert listed == [replace(record("doca"), text=None), replace(record("docb"), text=None)]
        assert [r.doc_id for r in store.list_documents(ids=["docb", "nope"])] == ["docb"]
        assert store.list_documents(ids=[]) == []
        assert record("docb").to_source_doc().page_at(B1.start) == 2

    def test_update_keeps_the_text_and_put_replaces_it(self, store):
        write(store)
        moved = replace(record("doca"), title="Renamed", paths=["/elsewhere/canal.md"], text=None)
        store.update_documents([moved])
        assert store.get_document("doca") == replace(moved, text=TEXT_A)
        store.put_documents([replace(moved, text="New text.")])
        assert store.get_document("doca").text == "New text."
        assert len(store.list_documents()) == 2

    def test_chunks_round_trip_with_offsets_pages_and_sentences(self, store):
        write(store)
        got = store.get_chunks([B1.chunk_id, "nope", A1.chunk_id, A0.chunk_id])
        assert [g.chunk for g in got] == [B1, A1, A0]  # the order asked for; unknown ids skipped
        assert [g.title for g in got] == ["Paged", "The canal", "The canal"]
        assert all(g.score == 0.0 for g in got)
        b1, a1, a0 = got
        assert (b1.meta["page"], b1.meta["page_end"], b1.meta["source"]) == (2, 2, "Journal")
        assert "page" not in a0.meta and a0.meta["published_day"] == 20230502
        for g, text in ((b1, TEXT_B), (a1, TEXT_A)):
            assert text[g.chunk.start:g.chunk.end] == g.chunk.text
        vectors = sentence_vectors_of(a1)
        assert list(vectors) == list(A1.sentences)
        assert float(vectors[A1.sentences[0]] @ np.eye(4)[1]) == pytest.approx(1.0, abs=0.005)
        assert float(vectors[A1.sentences[1]] @ np.eye(4)[2]) == pytest.approx(1.0, abs=0.005)
        assert sentence_vectors_of(a0) == {}
        rows = {cid: (text, meta["doc_id"]) for cid, text, meta in store.iter_chunks()}
        assert rows == {c.chunk_id: (c.text, c.doc_id) for c in (A0, A1, B0, B1)}
        assert {cid for cid, _, _ in store.iter_chunks(include_text=False)} == set(rows)
        assert store.count_chunks() == 4

    def test_query_returns_exact_similarities_best_first(self, store):
        write(store)
        assert ranking(store.query(E0, 4)) == [(A0.chunk_id, 1.0), (B0.chunk_id, 0.8), (A1.chunk_id, 0.0),
                                               (B1.chunk_id, -0.6)]
        assert ranking(store.query(E0, 2)) == [(A0.chunk_id, 1.0), (B0.chunk_id, 0.8)]
        assert ranking(store.query(E0, 10)) == ranking(store.query(E0, 4))  # fewer than k: all of them
        assert ranking(store.query(E0, 4, doc_ids=["docb"])) == [(B0.chunk_id, 0.8), (B1.chunk_id, -0.6)]
        assert store.query(E0, 4, doc_ids=[]) == []
        hit = store.query(np.array([0, 0, 0, 1.0], dtype=np.float32), 1)[0]
        assert hit.chunk == B1 and hit.title == "Paged" and hit.score == pytest.approx(0.8, abs=1e-5)

    def test_upsert_is_idempotent_and_replaces_by_chunk_id(self, store):
        write(store)
        write(store)
        assert store.count_chunks() == 4 and len(store.list_documents()) == 2
        store.upsert_chunks([(A0, record("doca"))], np.array([[-0.8, 0.0, 0.6, 0.0]], dtype=np.float32))
        assert store.count_chunks() == 4
        assert ranking(store.query(E0, 4)) == [(B0.chunk_id, 0.8), (A1.chunk_id, 0.0), (B1.chunk_id, -0.6),
                                               (A0.chunk_id, -0.8)]

    def test_set_chunk_titles(self, store):
        write(store)
        store.set_chunk_titles([replace(record("doca"), title="Renamed")])
        assert [g.title for g in store.get_chunks([A0.chunk_id, A1.chunk_id, B0.chunk_id])] == [
            "Renamed", "Renamed", "Paged"]
        assert store.get_chunks([A0.chunk_id])[0].meta["start"] == 0  # the rest of the metadata is kept

    def test_delete_documents_removes_their_chunks(self, store):
        write(store)
        store.delete_documents(["doca", "nope"])
        assert [r.doc_id for r in store.list_documents()] == ["docb"]
        assert store.count_chunks() == 2
        assert ranking(store.query(E0, 4)) == [(B0.chunk_id, 0.8), (B1.chunk_id, -0.6)]
        assert store.get_chunks([A0.chunk_id, B0.chunk_id])[0].chunk == B0

    def test_state_token_follows_complete_documents_and_is_published(self, store):
        write(store, status=PENDING)
        empty = store.state_token()
        store.update_documents([replace(record("doca"), text=None)])
        one = store.state_token()
        assert one != empty and store.state_token(store.list_documents()) == one
        store.update_documents([replace(record("docb"), text=None)])
        both = store.state_token()
        assert len({empty, one, both}) == 3
        store.publish_state(both)
        assert store.published_state() == both
        assert IndexStore(store.settings, MODEL, DIM).open(create=False).published_state() == both

    def test_an_index_built_otherwise_is_a_clear_error(self, store, settings):
        write(store)
        for other in (IndexStore(settings, "other/model", DIM), IndexStore(settings.with_(chunk_size=800), MODEL, DIM)):
            with pytest.raises(IngestError, match=r"built with other settings .*python -m ingest --rebuild"):
                other.open(create=False)

    def test_drop_removes_everything(self, store, settings):
        write(store)
        store.drop()
        assert not store.exists()
        fresh = IndexStore(settings, MODEL, DIM).open(create=True)
        assert (fresh.count_chunks(), fresh.list_documents()) == (0, [])

    def test_everything_survives_reopening(self, store, backend, tmp_path):
        write(store)
        store.publish_state(store.state_token())
        expected = json.loads(json.dumps(dump(store)))
        assert expected["query"] == [[A0.chunk_id, 1.0], [B0.chunk_id, 0.8], [A1.chunk_id, 0.0], [B1.chunk_id, -0.6]]
        backend.restart()
        again = backend.settings(tmp_path, store.settings.collection)
        result = subprocess.run(
            [sys.executable, "-c", "from tests.ingest.test_store_contract import _dump_main; _dump_main()",
             str(again.index_dir), again.chroma_url or "", again.collection],
            cwd=REPO_ROOT, env=os.environ.copy(), capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads(result.stdout.strip().splitlines()[-1]) == expected


class TestEmbeddedChroma(StoreContract):
    @pytest.fixture
    def backend(self) -> Embedded:
        return Embedded()


@pytest.mark.slow
class TestChromaServer(StoreContract):
    @pytest.fixture(scope="class")
    def backend(self, tmp_path_factory):
        server = Server(tmp_path_factory.mktemp("chroma-server")).start()
        yield server
        server.close()
