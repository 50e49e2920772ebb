"""How the writer lock (``ingest/lock.py``) is held: an ``flock`` on ``<index>/writer.lock`` for a
local index (``_FileLock``), a lease record in the ``<collection>_writer`` collection for a Chroma
server (``_Lease``); ``Holder`` is who holds it, for the messages."""
from __future__ import annotations

import errno
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ingest.settings import Settings
from ingest.types import IngestError

log = logging.getLogger(__name__)
LOCK_FILE = "writer.lock"
POLL_SECONDS = 0.2


def _command() -> str:
    argv = list(sys.argv) or ["python"]
    first = argv[0].replace("\\", "/")
    if first.endswith("ingest/__main__.py"):
        argv[0] = "python -m ingest"
    elif first.endswith("chatbot/__main__.py"):
        argv[0] = "python -m chatbot"
    else:
        argv[0] = Path(argv[0]).name or "python"
    text = " ".join(argv)
    return text if len(text) <= 200 else text[:199] + "…"


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a lock, for messages."""

    pid: int
    host: str
    command: str
    started: str  # local time, seconds
    purpose: str = ""
    token: str = ""

    @classmethod
    def me(cls, purpose: str) -> "Holder":
        return cls(os.getpid(), socket.gethostname(), _command(), time.strftime("%Y-%m-%d %H:%M:%S"), purpose,
                   uuid.uuid4().hex)

    def to_dict(self) -> dict:
        return {"pid": self.pid, "host": self.host, "command": self.command, "started": self.started,
                "purpose": self.purpose, "token": self.token}

    @classmethod
    def from_dict(cls, data: dict) -> "Holder | None":
        try:
            return cls(int(data["pid"]), str(data["host"]), str(data["command"]), str(data["started"]),
                       str(data.get("purpose", "")), str(data.get("token", "")))
        except (KeyError, TypeError, ValueError):
            return None

    def describe(self) -> str:
        where = "this process" if (self.pid, self.host) == (os.getpid(), socket.gethostname()) else (
            f"pid {self.pid} on {self.host}")
        what = f", {self.purpose}" if self.purpose else ""
        return f"{where}, `{self.command}`{what}, since {self.started}"


def describe_holder(holder: Holder | None) -> str:
    return holder.describe() if holder is not None else "a process that has not recorded itself yet"


# ----------------------------------------------------------------------------- backends
class _FileLock:
    """flock on <index>/writer.lock."""

    def __init__(self, settings: Settings) -> None:
        self.path = Path(settings.index_dir) / LOCK_FILE
        self._fd: int | None = None

    def try_acquire(self, holder: Holder) -> bool:
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise IngestError(
                f"cannot use {self.path.parent} as the index folder ({exc.strerror or exc}); "
                "choose another with --index or QA_INDEX_DIR."
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise IngestError(f"cannot lock {self.path} ({exc.strerror or exc}).") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder.to_dict()).encode(), 0)
        self._fd = fd
        return True

    def current(self) -> Holder | None:
        try:
            return Holder.from_dict(json.loads(self.path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None

    def check(self) -> None:
        """A held flock cannot be lost."""

    def release(self) -> None:
        import fcntl

        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # nobody holds it now
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def busy(self) -> bool:
        """True when another writer holds the lock right now (a probe; takes it for an instant)."""
        import fcntl

        if not self.path.exists():
            return False
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # closing releases the probe's lock
        return False


class _Lease:
    """A lease in the Chroma server's ``<name>_writer`` collection (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.location = f"{settings.chroma_url} (collection {settings.collection})"
        self.ttl = settings.lease_ttl
        self.renew_every = max(0.2, self.ttl / 6)
        self._collection = None
        self._held: tuple[int, Holder] | None = None
        self._seen: tuple[str, int, float] | None = None  # (record id, beat, first seen at) of the lease we watch
        self._lost: str | None = None
        self._renew_error: str | None = None
        self._last_renewal = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _col(self):
        if self._collection is None:
            from ingest.store import _client

            try:
                self._collection = _client(self.settings).get_or_create_collection(
                    f"{self.settings.collection}_writer", embedding_function=None)
            except IngestError:
                raise
            except Exception as exc:
                raise IngestError(f"cannot reach the Chroma server at {self.settings.chroma_url} ({exc}).") from None
        return self._collection

    def _latest(self) -> tuple[int, dict] | None:
        res = self._col().get(include=["metadatas"])
        leases = [(int(i.split("-", 1)[1]), m) for i, m in zip(res["ids"], res["metadatas"]) if i.startswith("lease-")]
        return max(leases, key=lambda x: x[0]) if leases else None

    def current(self) -> Holder | None:
        latest = self._latest()
        if latest is None or latest[1].get("released"):
            return None
        return Holder.from_dict(latest[1])

    def _free(self, latest: tuple[int, dict] | None) -> bool:
        if latest is None or latest[1].get("released"):
            return True
        n, meta = latest
        key = (f"lease-{n}", int(meta.get("beat", 0)))
        now = time.monotonic()
        if self._seen is None or self._seen[:2] != key:
            self._seen = (*key, now)
            return False
        return now - self._seen[2] >= self.ttl  # not renewed for a whole TTL: its holder is gone

    def try_acquire(self, holder: Holder) -> bool:
        latest = self._latest()
        if not self._free(latest):
            return False
        n = (latest[0] if latest else 0) + 1
        col = self._col()
        col.add(ids=[f"lease-{n}"], embeddings=[[0.0]], metadatas=[{**holder.to_dict(), "n": n, "beat": 0}])
        got = col.get(ids=[f"lease-{n}"], include=["metadatas"])["metadatas"]
        if not got or got[0].get("token") != holder.token:
            return False  # another writer added this generation first
        if n > 1:  # earlier generations are history now
            col.delete(ids=[f"lease-{i}" for i in range(max(1, n - 50), n)])
        self._held = (n, holder)
        self._lost = None
        self._last_renewal = time.monotonic()
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name="writer-lease", daemon=True)
        self._thread.start()
        return True

    def _renew_loop(self) -> None:
        beat = 0
        while not self._stop.wait(self.renew_every):
            n, holder = self._held
            read_at = time.monotonic()  # a renewal counts from before its read: a pause mid-way must not look fresh
            try:
                latest = self._latest()
                if latest is None or latest[0] != n:
                    self._lost = "another writer took over the lease (this one was not renewed in time)"
                    return
                beat += 1
                self._col().update(ids=[f"lease-{n}"], metadatas=[{**holder.to_dict(), "n": n, "beat": beat}])
                self._last_renewal = read_at
            except Exception as exc:  # the server is unreachable: check() reports it once the lease is stale
                self._renew_error = f"cannot renew the lease ({type(exc).__name__}: {exc})"

    def check(self) -> None:
        if self._lost is None and time.monotonic() - self._last_renewal > self.ttl * 0.75:
            self._lost = self._renew_error or "the lease was not renewed in time"
        if self._lost is not None:
            raise IngestError(
                f"Stopped writing to {self.location}: {self._lost}. Documents finished so far are kept; "
                "run the same command again to finish."
            )

    def release(self) -> None:
        if self._held is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        n, holder = self._held
        self._held = None
        try:
            latest = self._latest()
            if latest is not None and latest[0] == n:
                self._col().update(ids=[f"lease-{n}"], metadatas=[{**holder.to_dict(), "n": n, "released": True}])
        except Exception:  # unreachable server: the lease expires by itself
            log.debug("Cannot mark the lease released", exc_info=True)

    def busy(self) -> bool:
        latest = self._latest()
        return latest is not None and not latest[1].get("released")


def backend_for(settings: Settings):
    """The lock of the index ``settings`` points at: a lease on a Chroma server, else a lock file."""
    return _Lease(settings) if settings.chroma_url else _FileLock(settings)
