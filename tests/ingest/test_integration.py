"""The seed corpus through the real model and real Chroma (one model load per session)."""
from __future__ import annotations

from pathlib import Path

import pytest

from ingest.documents import build_document
from ingest.embed import SentenceTransformerEmbedder
from ingest.pipeline import Ingestor
from ingest.settings import Settings
from ingest.store import COMPLETE, IndexStore
from ingest.types import IngestError
from tests.ingest.helpers import APPEAL, SEED_MD, FakeEmbedder

pytestmark = pytest.mark.slow

QUESTION = "Who offered sanctuary to Ahmad Massoud?"
ANSWER = "Rahmon has offered sanctuary to Ahmad Massoud"


def _build(settings: Settings, corpus: Path, embedder):
    report = Ingestor(settings, embedder=embedder, progress=False).run([corpus])
    return settings, corpus, report


@pytest.fixture(scope="module")
def shared(tmp_path_factory, real_embedder):
    """One index of the seed corpus for the tests that only read it (built once per module)."""
    root = tmp_path_factory.mktemp("shared-index")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / SEED_MD.name).write_bytes(SEED_MD.read_bytes())
    return _build(Settings(index_dir=root / "index"), corpus, real_embedder)


@pytest.fixture
def built(settings, seed_corpus, real_embedder):
    """A private index of the seed corpus, for tests that change files or the index."""
    return _build(settings, seed_corpus, real_embedder)


def _top_texts(store: IndexStore, embedder, question: str, k: int = 3) -> list[str]:
    return [hit.chunk.text for hit in store.query(embedder.embed_query(question), k=k)]


def test_ingest_and_query_the_seed_article(shared, real_embedder):
    settings, _, report = shared
    assert report.added == 1 and report.documents == 1 and not report.failed
    assert report.chunks >= 5 and report.embedded_chunks == report.chunks
    store = IndexStore(settings, real_embedder.model_id, real_embedder.dimension).open(create=False)
    hits = store.query(real_embedder.embed_query(QUESTION), k=3)
    assert ANSWER in hits[0].chunk.text
    assert 0 < hits[0].score <= 1.0 and hits[0].score >= hits[1].score
    doc = store.get_document(hits[0].chunk.doc_id)
    assert doc.text[hits[0].chunk.start : hits[0].chunk.end] == hits[0].chunk.text
    assert doc.title.startswith("‘A reality to be accepted’")
    assert hits[0].title == doc.title and hits[0].meta["source"] == "Emerging Europe"


def test_sentence_mean_chunk_vectors_on_the_real_model(settings, seed_corpus, real_embedder):
    """QA_CHUNK_VECTORS=sentence-mean: the index records it, retrieval still puts the answer's chunk
    first, and each chunk's pooled vector stays close to the vector of the chunk's own run."""
    import numpy as np

    from ingest.settings import SENTENCE_MEAN

    settings = settings.with_(chunk_vectors=SENTENCE_MEAN)
    _, _, report = _build(settings, seed_corpus, real_embedder)
    assert report.added == 1 and not report.failed
    store = IndexStore(settings, real_embedder.model_id, real_embedder.dimension).open(create=False)
    assert store.chunk_vectors == SENTENCE_MEAN
    assert ANSWER in store.query(real_embedder.embed_query(QUESTION), k=1)[0].chunk.text
    got = store.chunks.get(include=["documents", "embeddings"])
    whole = real_embedder.embed_documents(got["documents"])
    cosines = (np.asarray(got["embeddings"]) * whole).sum(axis=1)
    assert cosines.min() > 0.8 and cosines.mean() > 0.9, cosines


def test_reopen_from_disk(shared, real_embedder):
    settings, _, report = shared
    # A brand-new store object (and Chroma client) on the same folder.
    reopened = IndexStore(settings, real_embedder.model_id, real_embedder.dimension).open(create=False)
    assert reopened.count_chunks() == report.chunks
    assert ANSWER in _top_texts(reopened, real_embedder, QUESTION, k=1)[0]
    [record] = reopened.list_documents(with_text=True)
    assert record.status == COMPLETE and record.text == build_document(SEED_MD).text


def test_no_file_in_the_index_contains_the_appeal(shared):
    settings, _, _ = shared
    files = [p for p in settings.index_dir.rglob("*") if p.is_file()]
    assert any(p.name == "chroma.sqlite3" for p in files)
    for path in files:
        assert APPEAL.encode() not in path.read_bytes(), path


def test_second_run_loads_no_model(shared):
    settings, corpus, first = shared
    fresh = SentenceTransformerEmbedder()
    report = Ingestor(settings, embedder=fresh, progress=False).run([corpus])
    assert (report.added, report.updated, report.unchanged) == (0, 0, 1)
    assert report.embedded_chunks == 0
    assert fresh.loads == 0 and not fresh.loaded
    assert report.chunks == first.chunks


def test_changed_file_replaces_old_chunks(built, real_embedder):
    settings, corpus, _ = built
    store = IndexStore(settings, real_embedder.model_id, real_embedder.dimension)
    old_ids = {cid for cid, _, _ in store.iter_chunks()}
    path = corpus / SEED_MD.name
    new_sentence = "Dushanbe later granted asylum to the singer Farrukh Zakirov in a surprise move."
    path.write_text(path.read_text(encoding="utf-8").replace(
        "Rahmon has offered sanctuary to Ahmad Massoud", new_sentence + " Rahmon has offered sanctuary to Ahmad Massoud"
    ), encoding="utf-8")
    report = Ingestor(settings, embedder=real_embedder, progress=False).run([corpus])
    assert (report.added, report.updated, report.removed) == (0, 1, 0) and report.documents == 1
    store = IndexStore(settings, real_embedder.model_id, real_embedder.dimension)
    new_ids = {cid for cid, _, _ in store.iter_chunks()}
    assert not old_ids & new_ids
    assert new_sentence in _top_texts(store, real_embedder, "Who was granted asylum in Dushanbe?", k=1)[0]
    assert len(store.list_documents()) == 1


def test_removed_file_and_duplicates(built, real_embedder, tmp_path):
    settings, corpus, first = built
    copy = corpus / "same-article-again.md"
    copy.write_bytes((corpus / SEED_MD.name).read_bytes())
    report = Ingestor(settings, embedder=real_embedder, progress=False).run([corpus])
    assert report.added == 0 and report.documents == 1 and report.chunks == first.chunks
    assert [Path(d["path"]).name for d in report.duplicates] == ["same-article-again.md"]
    (corpus / SEED_MD.name).unlink()
    copy.unlink()
    report = Ingestor(settings, embedder=real_embedder, progress=False).run([corpus])
    assert report.removed == 1 and report.documents == 0 and report.chunks == 0  # one document, two files
    store = IndexStore(settings, real_embedder.model_id, real_embedder.dimension)
    assert store.list_documents() == [] and store.query(real_embedder.embed_query(QUESTION), k=3) == []


def test_model_mismatch_and_rebuild(built, real_embedder):
    settings, corpus, first = built
    other = FakeEmbedder(model_id="test/other-model", dimension=384)
    with pytest.raises(IngestError, match="--rebuild") as info:
        Ingestor(settings, embedder=other, progress=False).run([corpus])
    assert real_embedder.model_id in str(info.value)
    # The failed attempt changed nothing.
    store = IndexStore(settings, real_embedder.model_id, real_embedder.dimension)
    assert store.count_chunks() == first.chunks
    report = Ingestor(settings, embedder=real_embedder, progress=False).run([corpus], rebuild=True)
    assert report.added == 1 and report.chunks == first.chunks
    store = IndexStore(settings, real_embedder.model_id, real_embedder.dimension)
    assert ANSWER in _top_texts(store, real_embedder, QUESTION, k=1)[0]


def test_an_index_keeps_the_backend_it_was_built_with(tmp_path, seed_corpus, monkeypatch):
    """The default backend changed (torch -> onnx-int8): an older torch index still opens and
    updates with torch, without a rebuild; asking for another backend is a clear error; --rebuild
    builds a new index with the default."""
    from chatbot.service import QAService
    from ingest.embed import DEFAULT_BACKEND, MODEL_ID, model_id_for

    settings = Settings(index_dir=tmp_path / "index")
    torch_built = FakeEmbedder(model_id=MODEL_ID, dimension=384)  # what a torch-built index records
    Ingestor(settings, embedder=torch_built, progress=False).run([seed_corpus])

    auto = Ingestor(settings, progress=False)
    report = auto.run([seed_corpus])  # the backend is chosen once the run holds the writer lock
    assert auto.embedder.backend == "torch"
    assert report.unchanged == 1 and report.embedded_chunks == 0 and not auto.embedder.loaded
    assert QAService(settings).embedder.backend == "torch"

    monkeypatch.setenv("QA_EMBED_BACKEND", "onnx-int8")
    with pytest.raises(IngestError, match="--rebuild.*QA_EMBED_BACKEND"):
        Ingestor(Settings.from_env(index_dir=settings.index_dir), progress=False).run([seed_corpus])
    monkeypatch.delenv("QA_EMBED_BACKEND")

    rebuilt = Ingestor(settings, progress=False)
    report = rebuilt.run([seed_corpus], rebuild=True)
    assert rebuilt.embedder.backend == DEFAULT_BACKEND and report.added == 1 and report.embedded_chunks > 0
    service = QAService(settings).open()
    assert service.embedder.model_id == model_id_for(DEFAULT_BACKEND) == service.store.config["embedding_model"]
    assert ANSWER in service.answer(QUESTION).text
