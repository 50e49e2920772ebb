"""The index's settings: the root of the settings tree, built once at each entry point and passed down.

``Settings`` (index, store, chunking, embedding, writer lock, file limits) is what ingest needs;
the Q&A core adds its answering and LLM settings around it (``chatbot/settings.py``), the
workspace its uploads and server (``workspace/settings.py``). Every setting is read from the
environment (``QA_*``) and command-line flags here and in those two modules only, when an entry
point calls ``from_env``: nothing reads the environment at import time or deeper down.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from ingest.types import IngestError

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = PROJECT_DIR / "corpus"
DEFAULT_INDEX = PROJECT_DIR / ".index"
# How a chunk's vector is made (``QA_CHUNK_VECTORS``; ``ingest.pipeline.embed_group``), recorded by
# the index as ``chunk_vectors``. CHUNK_RUN: the chunk is embedded whole, besides its sentences
# (the default). SENTENCE_MEAN: pooled from its sentences' own runs, so ingest runs the model once
# per sentence and 1.5-2x faster, for slightly worse retrieval (benchmarks/RESULTS.md, "Chunk vectors
# pooled from the sentence runs").
CHUNK_RUN = "chunk-run"
SENTENCE_MEAN = "sentence-mean"
CHUNK_VECTORS = (CHUNK_RUN, SENTENCE_MEAN)
DEFAULT_MODELS = PROJECT_DIR / ".models"  # locally exported ONNX models (ingest/onnx_backend.py), git-ignored


@dataclass(frozen=True)
class Limits:
    """Bounds on what one input file may cost (README, "Limits"). A file over a limit is that
    file's ``failed`` entry; the run goes on. Each has an environment variable."""

    max_file_mb: float = 100.0  # QA_MAX_FILE_MB: size of a file on disk
    # QA_MAX_EXPANDED_MB: what a compressed file may expand to: a DOCX's parts together (declared
    # sizes, checked before unzipping), a PDF's content stream (each, while decompressing)
    max_expanded_mb: float = 200.0
    max_ratio: float = 100.0  # QA_MAX_RATIO: expanded/compressed size of one DOCX part over 1 MB
    file_timeout: float = 120.0  # QA_FILE_TIMEOUT: seconds to read, clean and chunk one file
    file_memory_mb: int = 2048  # QA_FILE_MEMORY_MB: address space of the process that reads files
    regex_timeout: float = 1.0  # QA_REGEX_TIMEOUT: CPU seconds for one document's `re:` boilerplate
    front_matter_kb: float = 64.0  # QA_FRONT_MATTER_KB: size of a file's YAML front matter
    max_meta_chars: int = 2000  # QA_MAX_META_CHARS: one front-matter value (each list item too)

    ENV = {
        "QA_MAX_FILE_MB": "max_file_mb", "QA_MAX_EXPANDED_MB": "max_expanded_mb", "QA_MAX_RATIO": "max_ratio",
        "QA_FILE_TIMEOUT": "file_timeout", "QA_FILE_MEMORY_MB": "file_memory_mb",
        "QA_REGEX_TIMEOUT": "regex_timeout", "QA_FRONT_MATTER_KB": "front_matter_kb",
        "QA_MAX_META_CHARS": "max_meta_chars",
    }

    def __post_init__(self) -> None:
        for name in self.ENV.values():
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise IngestError(f"{name} must be a positive number (got {value!r}).")
        if self.file_memory_mb < 256:
            raise IngestError(f"file_memory_mb must be at least 256 (got {self.file_memory_mb!r}).")

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "Limits":
        values = {}
        for key, name in cls.ENV.items():
            if env.get(key):
                parse = _int if name in ("file_memory_mb", "max_meta_chars") else _float
                values[name] = parse(key, env[key])
        return cls(**values)

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.ENV.values()}


@dataclass(frozen=True)
class Settings:
    index_dir: Path = DEFAULT_INDEX
    chroma_url: str | None = None
    collection: str = "qa"
    chunk_size: int = 600  # characters
    chunk_overlap: int = 150  # characters of whole sentences repeated from the previous chunk
    embed_batch_size: int = 64
    # "torch", "onnx" or "onnx-int8"; None: the one the index was built with, or onnx-int8 for a new
    # index (ingest.embed.choose_backend; see benchmarks/RESULTS.md)
    embed_backend: str | None = None
    # Seconds a second writer waits for the index's writer lock before failing (ingest.lock).
    lock_wait: float = 600.0
    # Chroma server only: a writer's lease not renewed for this long is taken over (ingest.lock).
    lease_ttl: float = 30.0
    limits: Limits = field(default_factory=Limits)
    models_dir: Path = DEFAULT_MODELS  # QA_MODELS_DIR: where ONNX exports of the model are cached
    # QA_CHUNK_VECTORS, for a new index (or --rebuild): an existing index keeps its own recipe
    chunk_vectors: str = CHUNK_RUN

    def __post_init__(self) -> None:
        check_chunking(self.chunk_size, self.chunk_overlap)
        if self.embed_batch_size < 1:
            raise IngestError(f"embed_batch_size must be at least 1 (got {self.embed_batch_size}).")
        if self.embed_backend not in (None, "torch", "onnx", "onnx-int8"):
            raise IngestError(
                f"QA_EMBED_BACKEND must be torch, onnx or onnx-int8 (got {self.embed_backend!r})."
            )
        if self.chunk_vectors not in CHUNK_VECTORS:
            raise IngestError(f"QA_CHUNK_VECTORS must be {' or '.join(CHUNK_VECTORS)} (got {self.chunk_vectors!r}).")
        if not isinstance(self.lock_wait, (int, float)) or not self.lock_wait >= 0:  # NaN fails too
            raise IngestError(f"lock_wait must be a number of seconds, 0 or more (got {self.lock_wait!r}).")
        if not isinstance(self.lease_ttl, (int, float)) or not 1 <= self.lease_ttl < float("inf"):
            raise IngestError(f"lease_ttl must be at least 1 second (got {self.lease_ttl!r}).")
        if self.chroma_url is not None and not self.chroma_url.startswith(("http://", "https://")):
            raise IngestError(f"QA_CHROMA_URL must look like http://host:port (got {self.chroma_url!r}).")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "Settings":
        env = environment() if env is None else env
        values: dict = {}
        if env.get("QA_INDEX_DIR"):
            values["index_dir"] = Path(env["QA_INDEX_DIR"]).expanduser()
        if env.get("QA_CHROMA_URL"):
            values["chroma_url"] = env["QA_CHROMA_URL"].rstrip("/")
        if env.get("QA_COLLECTION"):
            values["collection"] = env["QA_COLLECTION"]
        for key, name in (("QA_CHUNK_SIZE", "chunk_size"), ("QA_CHUNK_OVERLAP", "chunk_overlap")):
            if env.get(key):
                values[name] = _int(key, env[key])
        for key, name in (("QA_LOCK_WAIT", "lock_wait"), ("QA_LEASE_TTL", "lease_ttl")):
            if env.get(key):
                values[name] = _float(key, env[key])
        if env.get("QA_EMBED_BACKEND"):
            values["embed_backend"] = env["QA_EMBED_BACKEND"]
        if env.get("QA_CHUNK_VECTORS"):
            values["chunk_vectors"] = env["QA_CHUNK_VECTORS"]
        if env.get("QA_MODELS_DIR"):
            values["models_dir"] = Path(env["QA_MODELS_DIR"]).expanduser()
        values["limits"] = Limits.from_env(env)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "index_dir" in values:
            values["index_dir"] = Path(values["index_dir"]).expanduser()
        return cls(**values)

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)


def environment() -> Mapping[str, str]:
    """The process environment, for an entry point's ``from_env`` (the one place that reads it)."""
    return os.environ


def child_env(**changes: str) -> dict[str, str]:
    """The environment for a child process: this process's, with ``changes``."""
    return {**os.environ, **changes}


def check_chunking(chunk_size: int, chunk_overlap: int) -> None:
    if not isinstance(chunk_size, int) or chunk_size < 50:
        raise IngestError(f"chunk_size must be an integer of at least 50 characters (got {chunk_size!r}).")
    if not isinstance(chunk_overlap, int) or chunk_overlap < 0:
        raise IngestError(f"chunk_overlap must be a non-negative integer (got {chunk_overlap!r}).")
    if chunk_overlap >= chunk_size:
        raise IngestError(
            f"chunk_overlap must be less than chunk_size (got overlap {chunk_overlap}, size {chunk_size})."
        )


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise IngestError(f"{name} must be an integer (got {value!r}).") from None


def _float(name: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise IngestError(f"{name} must be a number (got {value!r}).") from None
