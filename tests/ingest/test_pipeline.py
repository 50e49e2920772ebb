"""The incremental pipeline on real Chroma with a deterministic fake embedder (fast)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ingest import lexical
from ingest.chunking import chunk_text
from ingest.documents import build_document
from ingest.pipeline import Ingestor
from ingest.settings import CHUNK_RUN, SENTENCE_MEAN
from ingest.store import COMPLETE, PENDING, DocRecord, IndexStore
from ingest.records import sentence_vectors_of
from ingest.types import IngestError
from tests.ingest.helpers import APPEAL, FakeEmbedder, check_chunks

ARTICLE_A = """---
title: Rail freight to Afghanistan
source: Example Review
published: 2023-04-01
---
The railway from Termez to Mazar-i-Sharif carries half of Afghanistan's imports. It was built in 2011.

Sogdiana Trans suspended operations in February. It resumed two weeks later after a settlement.
"""

ARTICLE_B = """# Water in the Amu Darya basin

The Qosh Tepa canal will divert water from the Amu Darya. Farmers in Uzbekistan worry about the loss.

Officials in Tashkent have asked for talks. Engineers say the canal leaks badly.
"""


def ingest(settings, folder, embedder=None, **kw):
    embedder = embedder or FakeEmbedder()
    ingestor = Ingestor(settings, embedder=embedder, progress=False)
    return ingestor, ingestor.run([folder], **kw)


def stored_state(store: IndexStore) -> dict:
    chunks = {cid: (text, meta) for cid, text, meta in store.iter_chunks()}
    docs = {r.doc_id: r for r in store.list_documents(with_text=True)}
    return {"chunks": chunks, "docs": docs}


def assert_store_consistent(store: IndexStore) -> None:
    """Stored chunks satisfy the offset invariant against their stored document text."""
    state = stored_state(store)
    per_doc: dict[str, int] = {}
    for cid, (text, meta) in state["chunks"].items():
        doc = state["docs"][meta["doc_id"]]
        assert doc.status == COMPLETE
        assert doc.text[meta["start"] : meta["end"]] == text
        assert meta["title"] == doc.title
        per_doc[doc.doc_id] = per_doc.get(doc.doc_id, 0) + 1
        stored = store.get_chunks([cid])[0].chunk
        for s, e in stored.sentences:
            assert stored.start <= s < e <= stored.end
            assert doc.text[s:e] == doc.text[s:e].strip()
    for doc in state["docs"].values():
        assert per_doc.get(doc.doc_id, 0) == doc.n_chunks
    token = store.state_token()
    saved = lexical.LexicalIndex.load(store.lexical_dir())
    assert saved is not None and saved.token == token
    assert sorted(saved.chunk_ids) == sorted(state["chunks"])


def test_sentence_mean_chunk_vectors_cost_no_run_of_their_own(settings, folder):
    """QA_CHUNK_VECTORS=sentence-mean: each sentence is embedded once per run (its vector stored with
    its chunk), and a chunk's vector is the normalised mean of its sentences' (the fake embedder has
    no pooling weights, so they weigh equally)."""
    settings = settings.with_(chunk_size=120, chunk_overlap=40, chunk_vectors=SENTENCE_MEAN)
    embedder = FakeEmbedder()
    ingestor, report = ingest(settings, folder, embedder)
    store = ingestor.store
    assert report.added == 2 and store.chunk_vectors == SENTENCE_MEAN
    assert_store_consistent(store)
    got = store.chunks.get(include=["documents", "metadatas", "embeddings"])
    sentence_texts = set()
    for text, meta, vector in zip(got["documents"], got["metadatas"], got["embeddings"]):
        spans = [tuple(int(x) for x in part.split(":")) for part in meta["sents"].split(",")]
        sentences = [text[s:e] for s, e in spans]
        sentence_texts.update(sentences)
        mean = np.mean([embedder._vector(t) for t in sentences], axis=0)
        assert np.allclose(vector, mean / np.linalg.norm(mean), atol=1e-5)
    assert sorted(embedder.embedded_texts) == sorted(sentence_texts)
    reopened = IndexStore(settings.with_(chunk_vectors=CHUNK_RUN), embedder.model_id, embedder.dimension)
    assert reopened.open(create=False).chunk_vectors == SENTENCE_MEAN  # recorded: the default does not override it


def test_a_chunk_that_is_one_sentence_takes_that_sentences_run(settings, tmp_path):
    """The same text alone in its own run gives the same vector: a one-sentence chunk is not run twice."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "short.md").write_text("The railway links Termez to Mazar-i-Sharif.\n", encoding="utf-8")
    embedder = FakeEmbedder()
    ingestor, report = ingest(settings, folder, embedder)
    [(_, text, meta)] = list(ingestor.store.iter_chunks())
    assert report.added == 1 and embedder.embedded_texts == [text] and meta["sents"].count(":") == 1
    [vector] = ingestor.store.chunks.get(include=["embeddings"])["embeddings"]
    assert np.allclose(vector, embedder._vector(text), atol=1e-5)


def test_chunk_vectors_setting_from_env_and_refused_when_unknown():
    from ingest.settings import Settings

    assert Settings().chunk_vectors == CHUNK_RUN
    assert Settings.from_env({"QA_CHUNK_VECTORS": "sentence-mean"}).chunk_vectors == SENTENCE_MEAN
    with pytest.raises(IngestError, match="QA_CHUNK_VECTORS must be chunk-run or sentence-mean .got 'fast'"):
        Settings.from_env({"QA_CHUNK_VECTORS": "fast"})


def test_an_index_built_before_the_recipe_was_recorded_keeps_embedding_chunks_whole(settings, folder):
    """An index whose metadata has no ``chunk_vectors`` (built before it was recorded, when every
    chunk was embedded whole) opens without a rebuild, and its new chunks are embedded whole too."""
    embedder = FakeEmbedder()
    old = IndexStore(settings, embedder.model_id, embedder.dimension)
    config = {k: v for k, v in old.config.items() if k != "chunk_vectors"}
    old._get_client().get_or_create_collection(
        f"{settings.collection}_chunks", embedding_function=None, configuration={"hnsw": {"space": "cosine"}},
        metadata=config)
    ingestor, report = ingest(settings, folder, embedder)
    assert report.added == 2 and ingestor.store.chunk_vectors == CHUNK_RUN
    chunk_texts = [text for _, text, _ in ingestor.store.iter_chunks()]
    assert set(chunk_texts) <= set(embedder.embedded_texts)
    got = ingestor.store.chunks.get(include=["documents", "embeddings"])
    for text, vector in zip(got["documents"], got["embeddings"]):
        assert np.allclose(vector, embedder._vector(text), atol=1e-5)
    # it keeps its recipe whatever the setting; a rebuild makes a new index with the setting's
    ingestor, _ = ingest(settings.with_(chunk_vectors=SENTENCE_MEAN), folder, FakeEmbedder())
    assert ingestor.store.chunk_vectors == CHUNK_RUN
    ingestor, _ = ingest(settings.with_(chunk_vectors=SENTENCE_MEAN), folder, FakeEmbedder(), rebuild=True)
    assert ingestor.store.chunk_vectors == SENTENCE_MEAN


@pytest.fixture
def folder(tmp_path) -> Path:
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "a.md").write_text(ARTICLE_A, encoding="utf-8")
    (folder / "b.md").write_text(ARTICLE_B, encoding="utf-8")
    return folder


def test_first_run_stores_chunks_documents_and_metadata(settings, folder):
    settings = settings.with_(chunk_size=120, chunk_overlap=40)
    embedder = FakeEmbedder()
    ingestor, report = ingest(settings, folder, embedder)
    assert (report.added, report.updated, report.unchanged, report.removed) == (2, 0, 0, 0)
    assert report.documents == 2 and report.failed == [] and report.duplicates == []
    store = ingestor.store
    assert report.chunks == store.count_chunks() == report.embedded_chunks
    assert_store_consistent(store)
    # each chunk is embedded whole, and each of its sentences (stored with it for the answerer), once per
    # run; a chunk that is one sentence is that sentence's run
    assert store.chunk_vectors == CHUNK_RUN
    chunk_texts = [text for _, text, _ in store.iter_chunks()]
    sentence_texts = {t[s - int(m["start"]):e - int(m["start"])] for _, t, m in store.iter_chunks()
                      for s, e in ((int(a) + int(m["start"]), int(b) + int(m["start"]))
                                   for a, b in (p.split(":") for p in m["sents"].split(",")))}
    whole = [t for t in chunk_texts if t not in sentence_texts]
    assert whole and sorted(embedder.embedded_texts) == sorted(whole + sorted(sentence_texts))
    got = store.chunks.get(include=["documents", "embeddings"])
    for text, vector in zip(got["documents"], got["embeddings"]):
        assert np.allclose(vector, embedder._vector(text), atol=1e-5)
    docs = {r.title: r for r in store.list_documents(with_text=True)}
    a = docs["Rail freight to Afghanistan"]
    assert a.meta["source"] == "Example Review" and a.meta["published"] == "2023-04-01"
    assert a.paths == [str((folder / "a.md").resolve())]
    expected = build_document(folder / "a.md")
    assert a.doc_id == expected.doc_id and a.text == expected.text
    chunks = chunk_text(a.doc_id, a.text, 120, 40)
    check_chunks(a.text, chunks, 120, 40)
    stored = store.get_chunks([c.chunk_id for c in chunks])
    assert [s.chunk for s in stored] == chunks  # ids, offsets, text and sentence spans round-trip
    assert all(len(sentence_vectors_of(s)) == len(s.chunk.sentences) for s in stored)
    assert all(s.meta["published_day"] == 20230401 for s in stored)
    assert "Water in the Amu Darya basin" in docs  # title from the first heading


def test_query_finds_the_right_chunk(settings, folder):
    embedder = FakeEmbedder()
    ingestor, _ = ingest(settings.with_(chunk_size=100, chunk_overlap=0), folder, embedder)
    hits = ingestor.store.query(embedder.embed_query("Sogdiana Trans suspended operations"), k=3)
    assert hits and "Sogdiana Trans suspended operations" in hits[0].chunk.text
    assert hits[0].score >= hits[-1].score and hits[0].score > 0.5
    bm25 = lexical.load_or_build(ingestor.store)
    top, _ = bm25.search("Sogdiana suspended", k=1)[0]
    assert top == hits[0].chunk.chunk_id


def test_rerun_unchanged_embeds_nothing(settings, folder):
    _, first = ingest(settings, folder)
    embedder = FakeEmbedder()
    ingestor, second = ingest(settings, folder, embedder)
    assert (second.added, second.updated, second.unchanged, second.removed) == (0, 0, 2, 0)
    assert second.embedded_chunks == 0 and embedder.document_calls == 0
    assert second.chunks == first.chunks and second.documents == 2
    assert_store_consistent(ingestor.store)


def test_changed_file_replaces_its_chunks(settings, folder):
    ingestor, _ = ingest(settings.with_(chunk_size=100, chunk_overlap=0), folder)
    before = stored_state(ingestor.store)
    old_a = [cid for cid, (_, m) in before["chunks"].items() if m["title"] == "Rail freight to Afghanistan"]
    assert old_a
    (folder / "a.md").write_text(ARTICLE_A.replace("half of Afghanistan's imports", "most of the fuel for Kabul"))
    embedder = FakeEmbedder()
    ingestor, report = ingest(settings.with_(chunk_size=100, chunk_overlap=0), folder, embedder)
    assert (report.added, report.updated, report.unchanged, report.removed) == (0, 1, 1, 0)
    after = stored_state(ingestor.store)
    assert not set(old_a) & set(after["chunks"])
    assert len(after["docs"]) == 2
    assert not any("half of Afghanistan" in t for t, _ in after["chunks"].values())
    assert all("Termez" not in t for t in embedder.embedded_texts if "Amu Darya" in t)  # b.md not re-embedded
    hits = ingestor.store.query(embedder.embed_query("most of the fuel for Kabul"), k=1)
    assert "most of the fuel for Kabul" in hits[0].chunk.text
    assert_store_consistent(ingestor.store)


def test_metadata_only_change_updates_without_reembedding(settings, folder):
    ingest(settings, folder)
    (folder / "a.md").write_text(ARTICLE_A.replace("title: Rail freight to Afghanistan", "title: Rail freight, revised"))
    embedder = FakeEmbedder()
    ingestor, report = ingest(settings, folder, embedder)
    assert report.updated == 1 and report.added == 0 and embedder.document_calls == 0
    titles = {m["title"] for _, _, m in ingestor.store.iter_chunks()}
    assert "Rail freight, revised" in titles and "Rail freight to Afghanistan" not in titles
    # Unchanged next time.
    _, third = ingest(settings, folder)
    assert (third.updated, third.unchanged) == (0, 2)


def test_removed_file_is_removed_from_the_index(settings, folder):
    ingestor, _ = ingest(settings, folder)
    doc_b = build_document(folder / "b.md").doc_id
    (folder / "b.md").unlink()
    ingestor, report = ingest(settings, folder)
    assert report.removed == 1 and report.documents == 1
    assert ingestor.store.get_document(doc_b) is None
    assert not any(m["doc_id"] == doc_b for _, _, m in ingestor.store.iter_chunks())
    assert_store_consistent(ingestor.store)


def test_renamed_file_is_neither_duplicate_nor_removed(settings, folder):
    ingest(settings, folder)
    (folder / "a.md").rename(folder / "rail-freight.md")
    embedder = FakeEmbedder()
    ingestor, report = ingest(settings, folder, embedder)
    assert (report.added, report.updated, report.removed) == (0, 0, 0)
    assert report.duplicates == [] and report.documents == 2 and embedder.document_calls == 0
    doc = ingestor.store.get_document(build_document(folder / "rail-freight.md").doc_id)
    assert doc.paths == [str((folder / "rail-freight.md").resolve())]
    assert_store_consistent(ingestor.store)


def test_changed_file_counts_as_updated_not_removed(settings, folder):
    ingest(settings, folder)
    (folder / "b.md").write_text(ARTICLE_B + "\nA new closing paragraph about the canal budget.\n")
    (folder / "a.md").unlink()
    _, report = ingest(settings, folder)
    assert (report.added, report.updated, report.removed, report.documents) == (0, 1, 1, 1)


def test_files_outside_the_scanned_folder_are_kept(settings, folder, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "c.md").write_text("Kazakhstan accredited Taliban envoys in April.\n")
    ingest(settings, folder)
    ingestor, report = ingest(settings, other)
    assert report.added == 1 and report.removed == 0 and report.documents == 3


def test_same_content_under_two_names_is_indexed_once(settings, folder):
    (folder / "copy-of-b.md").write_text(ARTICLE_B, encoding="utf-8")
    ingestor, report = ingest(settings, folder)
    assert report.added == 2 and report.documents == 2
    assert len(report.duplicates) == 1
    dup = report.duplicates[0]
    assert {Path(dup["path"]).name, Path(dup["same_as"]).name} == {"b.md", "copy-of-b.md"}
    doc = ingestor.store.get_document(build_document(folder / "b.md").doc_id)
    assert sorted(Path(p).name for p in doc.paths) == ["b.md", "copy-of-b.md"]
    assert_store_consistent(ingestor.store)
    # Removing one copy keeps the document; removing both removes it.
    (folder / "b.md").unlink()
    ingestor, report = ingest(settings, folder)
    assert report.documents == 2 and ingestor.store.get_document(doc.doc_id) is not None
    assert report.removed == 0  # the document is still held by its copy
    assert [Path(p).name for p in ingestor.store.get_document(doc.doc_id).paths] == ["copy-of-b.md"]
    (folder / "copy-of-b.md").unlink()
    ingestor, report = ingest(settings, folder)
    assert report.documents == 1 and ingestor.store.get_document(doc.doc_id) is None
    assert report.removed == 1
    assert_store_consistent(ingestor.store)


def test_other_model_is_a_clear_error_and_rebuild_fixes_it(settings, folder):
    ingest(settings, folder)
    other = FakeEmbedder(model_id="test/another-model", dimension=64)
    with pytest.raises(IngestError) as info:
        ingest(settings, folder, other)
    message = str(info.value)
    assert "--rebuild" in message and "test/another-model" in message and "embedding_model" in message
    ingestor, report = ingest(settings, folder, other, rebuild=True)
    assert report.added == 2 and report.documents == 2
    assert ingestor.store.chunks.metadata["embedding_model"] == "test/another-model"
    _, again = ingest(settings, folder, FakeEmbedder(model_id="test/another-model"))
    assert again.unchanged == 2 and again.added == 0


def test_other_chunk_settings_need_rebuild(settings, folder):
    ingest(settings, folder)
    with pytest.raises(IngestError, match="chunk_size.*--rebuild"):
        ingest(settings.with_(chunk_size=300), folder)


def test_pending_documents_from_an_interrupted_run_are_repaired(settings, folder):
    # Simulate a crash: a pending document with only some of its chunks stored.
    ingestor, _ = ingest(settings.with_(chunk_size=100, chunk_overlap=0), folder)
    clean = stored_state(ingestor.store)
    store = ingestor.store
    doc = build_document(folder / "b.md")
    record = store.get_document(doc.doc_id)
    store.delete_documents([doc.doc_id])
    chunks = chunk_text(doc.doc_id, doc.text, 100, 0)
    pending = DocRecord(doc.doc_id, doc.title, dict(doc.meta), record.paths, record.hashes, PENDING, len(chunks), (), doc.text)
    store.put_documents([pending])
    store.upsert_chunks([(c, pending) for c in chunks[:1]], FakeEmbedder().embed_documents([chunks[0].text]))
    ingestor, report = ingest(settings.with_(chunk_size=100, chunk_overlap=0), folder)
    assert report.added == 1 and report.unchanged == 1
    repaired = stored_state(ingestor.store)
    assert repaired["chunks"] == clean["chunks"]
    assert {k: (v.status, v.text, v.paths) for k, v in repaired["docs"].items()} == {
        k: (v.status, v.text, v.paths) for k, v in clean["docs"].items()
    }
    assert_store_consistent(ingestor.store)


def test_delete_document(settings, folder):
    ingestor, _ = ingest(settings, folder)
    doc_id = build_document(folder / "a.md").doc_id
    assert ingestor.delete_document(doc_id) is True
    assert ingestor.delete_document(doc_id) is False
    assert ingestor.store.get_document(doc_id) is None
    assert_store_consistent(ingestor.store)


def test_seed_article_never_stores_the_appeal(settings, seed_corpus, tmp_path):
    ingestor, report = ingest(settings, seed_corpus)
    assert report.added == 1
    for _, text, meta in ingestor.store.iter_chunks():
        assert APPEAL not in text
    for record in ingestor.store.list_documents(with_text=True):
        assert APPEAL not in record.text and APPEAL not in str(record.meta)
    for path in settings.index_dir.rglob("*"):
        if path.is_file():
            assert APPEAL.encode() not in path.read_bytes(), path


def test_missing_path_is_an_error_before_anything_is_touched(settings, tmp_path):
    with pytest.raises(IngestError, match="does not exist"):
        ingest(settings, tmp_path / "nope")
    assert not (settings.index_dir / "chroma.sqlite3").exists()
