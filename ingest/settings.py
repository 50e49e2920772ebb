"""One settings object, built once at the entry point (CLI or app) and passed down.

Nothing here reads the environment at import time: call ``Settings.from_env()``.
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
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_chunking(self.chunk_size, self.chunk_overlap)
        if self.embed_batch_size < 1:
            raise IngestError(f"embed_batch_size must be at least 1 (got {self.embed_batch_size}).")
        if self.embed_backend not in (None, "torch", "onnx", "onnx-int8"):
            raise IngestError(
                f"QA_EMBED_BACKEND must be torch, onnx or onnx-int8 (got {self.embed_backend!r})."
            )
        if not isinstance(self.lock_wait, (int, float)) or not self.lock_wait >= 0:  # NaN fails too
            raise IngestError(f"lock_wait must be a number of seconds, 0 or more (got {self.lock_wait!r}).")
        if not isinstance(self.lease_ttl, (int, float)) or not 1 <= self.lease_ttl < float("inf"):
            raise IngestError(f"lease_ttl must be at least 1 second (got {self.lease_ttl!r}).")
        if self.chroma_url is not None and not self.chroma_url.startswith(("http://", "https://")):
            raise IngestError(f"QA_CHROMA_URL must look like http://host:port (got {self.chroma_url!r}).")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> "Settings":
        env = os.environ if env is None else env
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
        values["extra"] = {k: v for k, v in env.items() if k.startswith("QA_")}
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "index_dir" in values:
            values["index_dir"] = Path(values["index_dir"]).expanduser()
        return cls(**values)

    def with_(self, **changes) -> "Settings":
        return replace(self, **changes)


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
