"""Fusion logic of the hybrid retriever: pure, fast, deterministic (no model, no Chroma)."""
from __future__ import annotations

import numpy as np
import pytest

from chatbot.retrieve import FUSIONS, HybridRetriever, RetrievalConfig, fuse_rankings
from chatbot.types import Filters, QAError
from ingest.lexical import LexicalIndex
from ingest.store import COMPLETE, DocRecord, StoredChunk
from ingest.types import Chunk

DENSE = [("a", 0.91), ("b", 0.80), ("c", 0.62), ("d", 0.55)]
LEX = [("c", 14.0), ("e", 9.5), ("a", 7.0), ("f", 2.0)]


def ids(fused):
    return [cid for cid, _ in fused]


@pytest.mark.parametrize("fusion", FUSIONS)
def test_found_by_both_outranks_found_by_one(fusion):
    # "x" is second in both lists; each single-list winner is first in one list only.
    dense = [("d1", 0.9), ("x", 0.85), ("d3", 0.5), ("d4", 0.4)]
    lex = [("l1", 12.0), ("x", 11.0), ("l3", 4.0), ("l4", 3.0)]
    cfg = RetrievalConfig(fusion=fusion, w_dense=0.5, w_lexical=0.5)
    fused = fuse_rankings(dense, lex, cfg)
    assert fused[0][0] == "x"
    assert set(ids(fused)) == {"d1", "x", "d3", "d4", "l1", "l3", "l4"}
    scores = [s for _, s in fused]
    assert scores == sorted(scores, reverse=True)


def test_rrf_scores_follow_the_formula():
    cfg = RetrievalConfig(fusion="rrf", rrf_k=10, w_dense=1.0, w_lexical=2.0)
    fused = dict(fuse_rankings(DENSE, LEX, cfg))
    assert fused["a"] == pytest.approx(1 / 11 + 2 / 13)
    assert fused["c"] == pytest.approx(1 / 13 + 2 / 11)
    assert fused["b"] == pytest.approx(1 / 12)
    assert fused["e"] == pytest.approx(2 / 12)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_zero_weight_disables_a_retriever(fusion):
    only_dense = fuse_rankings(DENSE, LEX, RetrievalConfig(fusion=fusion, w_dense=1.0, w_lexical=0.0))
    assert ids(only_dense) == ["a", "b", "c", "d"]
    only_lex = fuse_rankings(DENSE, LEX, RetrievalConfig(fusion=fusion, w_dense=0.0, w_lexical=1.0))
    assert ids(only_lex) == ["c", "e", "a", "f"]


@pytest.mark.parametrize("fusion", FUSIONS)
def test_one_empty_list_keeps_the_other_order(fusion):
    cfg = RetrievalConfig(fusion=fusion)
    assert ids(fuse_rankings(DENSE, [], cfg)) == ["a", "b", "c", "d"]
    assert ids(fuse_rankings([], LEX, cfg)) == ["c", "e", "a", "f"]
    assert fuse_rankings([], [], cfg) == []


def test_minmax_is_a_convex_combination_of_normalised_scores():
    cfg = RetrievalConfig(fusion="minmax", w_dense=0.6, w_lexical=0.4)
    fused = dict(fuse_rankings(DENSE, LEX, cfg))
    dense_norm = {c: (s - 0.55) / (0.91 - 0.55) for c, s in DENSE}
    lex_norm = {c: (s - 2.0) / (14.0 - 2.0) for c, s in LEX}
    for cid in fused:
        expected = 0.6 * dense_norm.get(cid, 0.0) + 0.4 * lex_norm.get(cid, 0.0)
        assert fused[cid] == pytest.approx(expected)
    assert max(fused.values()) <= 1.0 + 1e-9


def test_zscore_gives_missing_chunks_the_lowest_score_of_the_list():
    cfg = RetrievalConfig(fusion="zscore", w_dense=1.0, w_lexical=1.0)
    fused = dict(fuse_rankings(DENSE, LEX, cfg))
    lex = np.array([s for _, s in LEX])
    z_lex = (lex - lex.mean()) / lex.std()
    dense = np.array([s for _, s in DENSE])
    z_dense = (dense - dense.mean()) / dense.std()
    assert fused["b"] == pytest.approx(z_dense[1] + z_lex.min())  # dense only
    assert fused["e"] == pytest.approx(z_dense.min() + z_lex[1])  # lexical only


@pytest.mark.parametrize("fusion", ("minmax", "zscore"))
def test_score_fusion_top_does_not_depend_on_how_many_candidates_were_fetched(fusion):
    rng = np.random.default_rng(7)
    dense = [(f"c{i}", float(s)) for i, s in enumerate(sorted(rng.random(200), reverse=True))]
    order = rng.permutation(200)
    lex = [(f"c{i}", float(s)) for i, s in zip(order, sorted(rng.random(200) * 20, reverse=True))]
    cfg = RetrievalConfig(fusion=fusion, norm_depth=40, w_dense=0.5, w_lexical=0.5)
    deep = fuse_rankings(dense, lex, cfg)
    shallow = fuse_rankings(dense[:40], lex[:40], cfg)
    # Chunks in both shallow lists keep exactly the same fused score with more candidates.
    both = {c for c, _ in dense[:40]} & {c for c, _ in lex[:40]}
    deep_d, shallow_d = dict(deep), dict(shallow)
    for cid in both:
        assert deep_d[cid] == pytest.approx(shallow_d[cid])


def test_ties_are_broken_deterministically_by_first_appearance():
    dense = [("p", 0.5), ("q", 0.4)]
    lex = [("q", 3.0), ("p", 2.0)]
    cfg = RetrievalConfig(fusion="rrf", rrf_k=60)
    assert ids(fuse_rankings(dense, lex, cfg)) == ["p", "q"]
    assert fuse_rankings(dense, lex, cfg) == fuse_rankings(list(dense), list(lex), cfg)


@pytest.mark.parametrize("bad", [dict(fusion="max"), dict(w_dense=-1.0), dict(rrf_k=-1), dict(norm_depth=1),
                                 dict(top_k=0), dict(top_k=20, candidates=10)])
def test_bad_config_is_a_clear_error(bad):
    with pytest.raises(QAError):
        RetrievalConfig(**bad)


# --------------------------------------------------------------- HybridRetriever on a fake store
DOCS = {
    "doc1": ("Canals", "The Qosh Tepa canal diverts water from the Amu Darya river.", "news"),
    "doc2": ("Pipelines", "The TAPI gas pipeline crosses Afghanistan towards Pakistan and India.", "report"),
    "doc3": ("Rivers", "The Amu Darya river forms the border with Uzbekistan and Tajikistan.", "news"),
}
VOCAB = ["canal", "water", "river", "gas", "pipeline", "border", "amu"]


def _vector(text: str) -> np.ndarray:
    low = text.lower()
    v = np.array([1.0 if w in low else 0.0 for w in VOCAB]) + 0.01
    return (v / np.linalg.norm(v)).astype(np.float32)


class FakeEmbedder:
    model_id, dimension = "fake", len(VOCAB)

    def embed_query(self, text):
        return _vector(text)


class FakeStore:
    """The slice of IndexStore the retriever uses: cosine search with a doc_id filter, get by id."""

    def __init__(self):
        self.chunks = {}
        for doc_id, (title, text, _) in DOCS.items():
            chunk = Chunk(f"{doc_id}-0-{len(text)}", doc_id, 0, len(text), text, ((0, len(text)),))
            self.chunks[chunk.chunk_id] = StoredChunk(chunk, title, {"doc_id": doc_id})
        self.fetched = []

    def published_state(self):
        return "t"

    def list_documents(self):
        return [DocRecord(d, t, {"source": s}, [f"/{d}.md"], ["h"], COMPLETE, 1) for d, (t, _, s) in DOCS.items()]

    def nearest(self, vector, k, doc_ids=None):
        allowed = set(doc_ids) if doc_ids is not None else None
        hits = [(cid, float(_vector(sc.chunk.text) @ vector)) for cid, sc in self.chunks.items()
                if allowed is None or sc.chunk.doc_id in allowed]
        return sorted(hits, key=lambda h: -h[1])[:k]

    def get_chunks(self, chunk_ids):
        self.fetched.extend(chunk_ids)
        return [self.chunks[c] for c in chunk_ids if c in self.chunks]


def _retriever(**config):
    store = FakeStore()
    retriever = HybridRetriever(store, FakeEmbedder(), RetrievalConfig(**{"top_k": 3, "candidates": 3, **config}))
    retriever._lexical = LexicalIndex.build(((cid, sc.chunk.text) for cid, sc in store.chunks.items()), "t")
    return retriever, store


@pytest.mark.parametrize("fusion", FUSIONS)
def test_retrieve_fuses_both_retrievers(fusion):
    retriever, _ = _retriever(fusion=fusion)
    passages = retriever.retrieve("Which canal takes water from the Amu Darya?")
    assert passages[0].chunk.chunk.doc_id == "doc1"
    top = passages[0]
    assert top.dense_rank == 1 and top.lexical_rank == 1 and top.dense > 0 and top.lexical > 0
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)


def test_filters_restrict_results_of_both_retrievers():
    retriever, _ = _retriever()
    by_doc = retriever.retrieve("Amu Darya canal water", Filters(doc_ids=("doc2",)))
    assert {p.chunk.chunk.doc_id for p in by_doc} == {"doc2"}
    by_source = retriever.retrieve("Amu Darya canal water", Filters(sources=("news",)))
    assert {p.chunk.chunk.doc_id for p in by_source} <= {"doc1", "doc3"} and by_source
    assert retriever.retrieve("Amu Darya", Filters(doc_ids=("nope",))) == []


def test_lexical_only_winners_are_fetched_with_their_text():
    retriever, store = _retriever(w_dense=0.0)
    passages = retriever.retrieve("TAPI gas pipeline")
    assert passages[0].chunk.chunk.doc_id == "doc2"
    assert passages[0].chunk.chunk.text.startswith("The TAPI")
    assert passages[0].dense_rank is None and passages[0].lexical_rank == 1


def test_only_the_passages_kept_are_read_from_the_store():
    retriever, store = _retriever(candidates=4)
    passages = retriever.retrieve("Which canal takes water from the Amu Darya?", top_k=2)
    assert store.fetched == [p.chunk.chunk.chunk_id for p in passages] and len(passages) == 2


# --------------------------------------------------------------- BM25 settings (ingest/lexical.py)
def test_bm25_indexes_the_document_title_with_every_chunk():
    from ingest.lexical import indexed_text

    assert indexed_text("It flows north.", {"title": "Amu Darya"}) == "Amu Darya\nIt flows north."
    assert indexed_text("Amu Darya\n\nIt flows north.", {"title": "Amu Darya"}) == "Amu Darya\n\nIt flows north."
    assert indexed_text("It flows north.", {}) == "It flows north."


def test_a_saved_bm25_index_built_with_other_settings_is_rebuilt(tmp_path, monkeypatch):
    from ingest import lexical

    index = LexicalIndex.build([("d-0-5", "water canal"), ("e-0-5", "gas pipeline")], "t")
    index.save(tmp_path / "lex")
    assert LexicalIndex.load(tmp_path / "lex") is not None
    monkeypatch.setattr(lexical, "BM25_PARAMS", {**lexical.BM25_PARAMS, "k1": 0.9})
    assert LexicalIndex.load(tmp_path / "lex") is None
    monkeypatch.undo()
    monkeypatch.setattr(lexical, "BM25_TITLE", not lexical.BM25_TITLE)
    assert LexicalIndex.load(tmp_path / "lex") is None
