"""The app's settings tree: the Q&A core's (``chatbot.settings.QASettings``, with the index's inside)
plus the workspace's own — where uploads go, what an upload may be — and where the server listens.

``AppSettings.from_env`` is called once, by ``app.py``, with its command-line flags; the tree is
passed down. Each setting keeps its variable's name in its error message.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from chatbot.settings import QASettings
from chatbot.types import QAError
from ingest.loaders import SUPPORTED_EXTENSIONS
from ingest.settings import PROJECT_DIR, environment

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


@dataclass(frozen=True)
class ServerSettings:
    """Where the app listens and who may log in."""

    host: str = "127.0.0.1"  # QA_HOST (--host)
    port: int = 7860  # QA_PORT (--port)
    auth: tuple[str, str] | None = None  # QA_AUTH: user:password, or no login

    @property
    def local(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1")

    @classmethod
    def from_env(cls, env: Mapping[str, str], host: str | None = None, port: int | None = None) -> "ServerSettings":
        """Flags (``host``, ``port``) win over the variables."""
        return cls(host=host or env.get("QA_HOST") or cls.host,
                   port=parse_port(str(port) if port is not None else env.get("QA_PORT") or str(cls.port)),
                   auth=parse_auth(env.get("QA_AUTH")))


@dataclass(frozen=True)
class AppSettings:
    """The whole tree ``app.py`` runs on."""

    qa: QASettings = field(default_factory=QASettings)
    upload_dir: Path = DEFAULT_UPLOAD_DIR  # QA_UPLOAD_DIR
    uploads: UploadLimits = field(default_factory=UploadLimits)
    server: ServerSettings = field(default_factory=ServerSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, index_dir: Path | None = None, host: str | None = None,
                 port: int | None = None) -> "AppSettings":
        env = environment() if env is None else env
        return cls(
            qa=QASettings.from_env(env, index_dir=index_dir),
            upload_dir=Path(env["QA_UPLOAD_DIR"]).expanduser() if env.get("QA_UPLOAD_DIR") else DEFAULT_UPLOAD_DIR,
            uploads=UploadLimits.from_env(env),
            server=ServerSettings.from_env(env, host, port),
        )


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise QAError("QA_AUTH must look like user:password (both non-empty).")
    return user, password


def parse_port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise QAError(f"QA_PORT must be a port number (got {value!r}).") from None
    if not 1 <= port <= 65535:
        raise QAError(f"the port must be between 1 and 65535 (got {port}).")
    return port

