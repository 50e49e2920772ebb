"""The workspace's own settings: where uploads go and what an upload may be."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from chatbot.types import QAError
from ingest.loaders import SUPPORTED_EXTENSIONS
from ingest.settings import PROJECT_DIR, Settings

DEFAULT_UPLOAD_DIR = PROJECT_DIR / ".uploads"
DEFAULT_MAX_UPLOAD_MB = 20


@dataclass(frozen=True)
class UploadLimits:
    """What an upload may be. ``extensions`` must be a subset of the formats ingest reads."""

    max_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    extensions: tuple[str, ...] = SUPPORTED_EXTENSIONS
    max_files: int = 50

    def __post_init__(self) -> None:
        if not isinstance(self.max_bytes, int) or self.max_bytes < 1:
            raise QAError(f"max_bytes must be a positive number of bytes (got {self.max_bytes!r}).")
        if self.max_files < 1:
            raise QAError(f"max_files must be at least 1 (got {self.max_files!r}).")
        unknown = [e for e in self.extensions if e not in SUPPORTED_EXTENSIONS]
        if unknown or not self.extensions:
            raise QAError(f"extensions must be some of {', '.join(SUPPORTED_EXTENSIONS)} (got {unknown or 'none'}).")

    @property
    def max_mb(self) -> float:
        return self.max_bytes / (1024 * 1024)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "UploadLimits":
        """``QA_MAX_UPLOAD_MB`` (default 20) and ``QA_UPLOAD_TYPES`` (e.g. ``.md,.pdf``; default: all)."""
        values: dict[str, Any] = {}
        raw = (env.get("QA_MAX_UPLOAD_MB") or "").strip()
        if raw:
            try:
                mb = float(raw)
            except ValueError:
                raise QAError(f"QA_MAX_UPLOAD_MB must be a number of megabytes (got {raw!r}).") from None
            if not 0 < mb <= 10_000:
                raise QAError(f"QA_MAX_UPLOAD_MB must be between 0 and 10000 (got {raw!r}).")
            values["max_bytes"] = max(1, int(mb * 1024 * 1024))
        types = (env.get("QA_UPLOAD_TYPES") or "").strip()
        if types:
            exts = tuple(sorted({("." + t.strip().lstrip(".")).lower() for t in types.split(",") if t.strip()}))
            try:
                values["extensions"] = exts
                return cls(**values)
            except QAError:
                raise QAError(f"QA_UPLOAD_TYPES must list some of {', '.join(SUPPORTED_EXTENSIONS)} "
                              f"(got {types!r}).") from None
        return cls(**values)


def upload_dir_from(settings: Settings) -> Path:
    raw = settings.extra.get("QA_UPLOAD_DIR")
    return Path(raw).expanduser() if raw else DEFAULT_UPLOAD_DIR

