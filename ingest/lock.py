"""One writer per index at a time, across processes and threads.

Every write to an index holds its *writer lock* for its whole duration: ``Ingestor.run`` (CLI
ingest, the app's start-up ingest and uploads, ``--rebuild``) and ``Ingestor.delete_document``
take it themselves, so callers need nothing else. A second writer waits up to
``Settings.lock_wait`` seconds (``--lock-wait``, ``QA_LOCK_WAIT``), reporting once that it is
waiting and for whom, then fails with an ``IngestError`` that names the other writer and says
what to do. Readers (answering questions) never take it.

- **Local index** (an index folder): an exclusive ``fcntl.flock`` on ``<index>/writer.lock``.
  The kernel releases it when the holder exits, however it exits (kill -9 included), so *holding
  it proves that no other writer is alive*: that is what allows the repair of unfinished
  (``pending``) documents at the start of a run. The file records who holds it (pid, host,
  command, start time) for the messages. The index folder must be on a local file system (flock
  is not reliable over NFS).
- **Chroma server** (``QA_CHROMA_URL``): a lease in the small collection ``<name>_writer``. A
  writer takes generation ``n + 1`` by *adding* the record ``lease-<n+1>``; Chroma ignores an add
  of an existing id, so exactly one of two racing writers gets it (checked by reading it back).
  The holder renews the lease every few seconds from a background thread and marks it released
  at the end. A waiter takes over a lease that is released, or whose renewal count it has watched
  stand still for ``Settings.lease_ttl`` seconds of its own clock (no clock comparison between
  machines). What a lease does not guarantee: a holder that is *paused* for longer than the TTL
  (a suspended laptop, SIGSTOP) loses the lease without knowing it until its next check; the
  pipeline checks before every write and stops with an error, but one write already in flight
  can still land after the next writer started.

Within one process the lock is re-entrant for the thread that holds it, and other threads wait
for it like other processes do.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ingest.settings import Settings
from ingest.types import IndexBusy, IngestError

LOCK_FILE = "writer.lock"
POLL_SECONDS = 0.2
QUIET_SECONDS = 1.0  # wait this long before saying "waiting": a reader's probe holds the lock for microseconds


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


def _describe(holder: Holder | None) -> str:
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
            try:
                latest = self._latest()
                if latest is None or latest[0] != n:
                    self._lost = "another writer took over the lease (this one was not renewed in time)"
                    return
                beat += 1
                self._col().update(ids=[f"lease-{n}"], metadatas=[{**holder.to_dict(), "n": n, "beat": beat}])
                self._last_renewal = time.monotonic()
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
        except Exception:
            pass  # unreachable server: the lease expires by itself

    def busy(self) -> bool:
        latest = self._latest()
        return latest is not None and not latest[1].get("released")


# ------------------------------------------------------------------------- in-process
class _Shared:
    """One per index in this process: which thread holds the lock, how deep, and the backend."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.owner: int | None = None
        self.depth = 0
        self.backend = None
        self.holder: Holder | None = None


_SHARED: dict[str, _Shared] = {}
_SHARED_LOCK = threading.Lock()


def _key(settings: Settings) -> str:
    if settings.chroma_url:
        return f"{settings.chroma_url}#{settings.collection}"
    return str(Path(settings.index_dir).resolve())


def _backend(settings: Settings):
    return _Lease(settings) if settings.chroma_url else _FileLock(settings)


def _say_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class WriterLock:
    """The writer lock of the index ``settings`` points at. Use as a context manager::

        with WriterLock(settings, purpose="ingest") as lock:
            ...            # call lock.check() before each write (raises if a lease was lost)

    ``wait``: seconds to wait for another writer (default ``settings.lock_wait``); ``on_wait``
    receives the one-line "waiting for another writer" message (default: print to stderr).
    """

    def __init__(self, settings: Settings, purpose: str = "", wait: float | None = None,
                 on_wait: Callable[[str], None] | None = None) -> None:
        self.settings = settings
        self.purpose = purpose
        self.wait = settings.lock_wait if wait is None else wait
        self.on_wait = on_wait or _say_stderr
        with _SHARED_LOCK:
            self._shared = _SHARED.setdefault(_key(settings), _Shared())

    def __enter__(self) -> "WriterLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def acquire(self) -> None:
        me = threading.get_ident()
        deadline = time.monotonic() + self.wait
        shared = self._shared
        said = False
        quiet = min(QUIET_SECONDS, self.wait / 2)
        with shared.cond:
            if shared.owner == me:
                shared.depth += 1
                return
            while shared.owner is not None:  # another thread of this process writes
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._busy(shared.holder)
                if not said and self.wait - remaining >= quiet:
                    self._waiting(shared.holder)
                    said = True
                shared.cond.wait(min(remaining, POLL_SECONDS))
            shared.owner, shared.depth = me, 1
        try:
            backend = _backend(self.settings)
            holder = Holder.me(self.purpose)
            while not backend.try_acquire(holder):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise self._busy(backend.current())
                if not said and self.wait - remaining >= quiet:
                    self._waiting(backend.current())
                    said = True
                time.sleep(min(remaining, POLL_SECONDS))
        except BaseException:
            self._reset()
            raise
        shared.backend, shared.holder = backend, holder

    def check(self) -> None:
        """Raise IngestError if the lock was lost (a server lease not renewed in time)."""
        if self._shared.backend is not None:
            self._shared.backend.check()

    def release(self) -> None:
        shared = self._shared
        with shared.cond:
            if shared.owner != threading.get_ident():
                return
            shared.depth -= 1
            if shared.depth > 0:
                return
        try:
            if shared.backend is not None:
                shared.backend.release()
        finally:
            self._reset()

    def _reset(self) -> None:
        shared = self._shared
        with shared.cond:
            shared.owner, shared.depth, shared.backend, shared.holder = None, 0, None, None
            shared.cond.notify_all()

    def _location(self) -> str:
        return self.settings.chroma_url or str(self.settings.index_dir)

    def _waiting(self, holder: Holder | None) -> None:
        self.on_wait(
            f"Waiting for another writer of the index at {self._location()} ({_describe(holder)}) to finish; "
            f"giving up after {self.wait:.0f} s."
        )

    def _busy(self, holder: Holder | None) -> IndexBusy:
        return IndexBusy(
            f"The index at {self._location()} is busy: another writer ({_describe(holder)}) still holds it "
            f"after {self.wait:.0f} s. Wait for it to finish (or stop it) and run again; "
            "--lock-wait / QA_LOCK_WAIT sets how long to wait."
        )


def writer_active(settings: Settings) -> bool:
    """True when a writer (in this process or another) holds the index's lock right now.
    A probe for readers; never waits."""
    shared = _SHARED.get(_key(settings))
    if shared is not None and shared.owner is not None:
        return True
    try:
        return _backend(settings).busy()
    except Exception:
        return False


@contextmanager
def writer_lock(settings: Settings, purpose: str = "", wait: float | None = None,
                on_wait: Callable[[str], None] | None = None) -> Iterator[WriterLock]:
    lock = WriterLock(settings, purpose, wait, on_wait)
    with lock:
        yield lock
