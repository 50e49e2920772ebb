"""The ONNX Runtime backends: exported locally into a cache folder; fp32 gives PyTorch's vectors,
int8 (the default) close ones that depend on nothing but the text; which backend an index uses."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("onnx")  # needed to export/quantise (see requirements.txt)
pytest.importorskip("onnxruntime")

from ingest.embed import DEFAULT_BACKEND, MODEL_ID, SentenceTransformerEmbedder, choose_backend  # noqa: E402
from tests.ingest.helpers import REPO_ROOT  # noqa: E402

pytestmark = pytest.mark.slow

TEXTS = [
    "Kyiv's grain exports rose in May.",
    "",
    "A much longer paragraph about monetary policy, inflation expectations and the central bank's "
    "decision to hold rates, repeated to make it long. " * 12,
    "x",
]


@pytest.fixture(scope="module")
def torch_embedder():
    embedder = SentenceTransformerEmbedder(backend="torch")
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="module")
def _models_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def models_dir(_models_folder):
    """The export cache of this module (``Settings.models_dir``, passed to the embedders)."""
    return _models_folder


def test_onnx_fp32_matches_torch_and_is_cached(models_dir, torch_embedder):
    onnx = SentenceTransformerEmbedder(backend="onnx", models_dir=models_dir)
    assert onnx.model_id == MODEL_ID  # same vectors: indexes stay interchangeable with torch ones
    vectors = onnx.embed_documents(TEXTS)
    reference = torch_embedder.embed_documents(TEXTS)
    assert vectors.shape == (len(TEXTS), 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (vectors * reference).sum(axis=1).min() > 0.9999
    query = onnx.embed_query("grain exports")
    assert float(query @ torch_embedder.embed_query("grain exports")) > 0.9999
    exported = list(models_dir.rglob("*.onnx"))
    assert [p.name for p in exported] == ["model.onnx"]  # int8 only when asked for
    mtime = exported[0].stat().st_mtime
    SentenceTransformerEmbedder(backend="onnx", models_dir=models_dir).warm_up()  # second use: loaded, not exported again
    assert exported[0].stat().st_mtime == mtime


def test_onnx_int8_is_close_and_recorded_as_another_model(models_dir, torch_embedder):
    int8 = SentenceTransformerEmbedder(backend="onnx-int8", models_dir=models_dir)
    assert int8.model_id != MODEL_ID  # its vectors differ measurably: an index records it
    vectors = int8.embed_documents(TEXTS)
    reference = torch_embedder.embed_documents(TEXTS)
    assert (vectors * reference).sum(axis=1).mean() > 0.97


def test_int8_vector_depends_only_on_its_text(models_dir):
    """int8 scales activations per run: batched with others (and padded) a text's vector would move."""
    int8 = SentenceTransformerEmbedder(backend="onnx-int8", models_dir=models_dir)
    together = int8.embed_documents(TEXTS)
    for text, vector in zip(TEXTS, together):
        assert np.array_equal(int8.embed_documents([text])[0], vector)
    assert np.array_equal(int8.embed_query(TEXTS[0]), together[0])


def test_default_backend_and_choice_for_existing_indexes():
    assert DEFAULT_BACKEND == "onnx-int8" and SentenceTransformerEmbedder().backend == DEFAULT_BACKEND
    assert choose_backend(None, None) == DEFAULT_BACKEND  # a new index
    assert choose_backend(None, MODEL_ID) == "torch"  # an index built with PyTorch (or ONNX fp32) keeps it
    assert choose_backend(None, MODEL_ID + "+onnx-int8") == "onnx-int8"
    assert choose_backend("onnx", MODEL_ID + "+onnx-int8") == "onnx"  # asked for: the store refuses the mix


def test_models_dir_is_a_setting(tmp_path):
    from ingest.settings import Settings
    from ingest.store import embedder_for

    settings = Settings.from_env({"QA_MODELS_DIR": str(tmp_path / "models")}, index_dir=tmp_path / "index")
    assert settings.models_dir == tmp_path / "models"
    assert embedder_for(settings, new_index=True).models_dir == tmp_path / "models"


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend"):
        SentenceTransformerEmbedder(backend="tensorrt")


def test_first_ingest_with_an_export_prints_no_library_debug_output(tmp_path, seed_corpus):
    """The int8 export once left a stderr handler on the root logger (quantize_dynamic's
    logging.warning), after which bm25s's DEBUG records were printed by `python -m ingest`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update(QA_MODELS_DIR=str(tmp_path / "models"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = subprocess.run([sys.executable, "-m", "ingest", str(seed_corpus), "--index", str(tmp_path / "index"),
                          "--quiet"], capture_output=True, text=True, timeout=600, cwd=REPO_ROOT, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert list((tmp_path / "models").rglob("model_int8.onnx"))  # the export really ran in that process
    assert "DEBUG" not in out.stderr, out.stderr[-2000:]


@pytest.mark.parametrize("backend", ["torch", "onnx-int8"])
def test_pooling_weights_give_the_sum_of_each_texts_token_states(backend, models_dir):
    """``embed_pooled``: the same unit vectors as ``embed_documents``, and weight x unit vector = the
    sum of the text's token states (what a chunk vector pooled from its sentences adds up)."""
    from chatbot.relevance import TokenAligner

    embedder = SentenceTransformerEmbedder(backend=backend, models_dir=models_dir)
    texts = [t for t in TEXTS if t] + ["Uzbekistan relies on the railway for half of Afghanistan's imports."]
    units, weights = embedder.embed_pooled(texts)
    assert np.allclose(units, embedder.embed_documents(texts), atol=1e-6) and weights.shape == (len(texts),)
    aligner = TokenAligner(embedder)  # its runs return the raw token states, special tokens included
    for text, unit, weight in zip(texts, units, weights):
        _, hidden = aligner._run(text)
        assert np.allclose(weight * unit, hidden.sum(axis=0), rtol=1e-4, atol=1e-3)


def test_bulk_calls_spin_and_give_the_same_vectors(models_dir):
    """Ingest's bulk calls run on a session whose idle threads spin (faster back-to-back runs), a
    question's few runs on one whose threads sleep: the vectors must not depend on which."""
    from ingest.onnx_backend import BULK_RUNS

    int8 = SentenceTransformerEmbedder(backend="onnx-int8", models_dir=models_dir)
    encoder = int8.warm_up()
    texts = [f"{text} ({i})" for i, text in enumerate(TEXTS * BULK_RUNS)][:BULK_RUNS]
    alone = np.stack([int8.embed_documents([text])[0] for text in texts])
    assert encoder._bulk_session is None  # single texts never made the spinning session
    assert np.array_equal(int8.embed_documents(texts), alone)
    assert encoder._bulk_session is not None
    vectors, _weights = int8.embed_pooled(texts)  # token sums, normalised: the same direction as the means
    assert np.allclose(vectors, alone, atol=1e-6)
