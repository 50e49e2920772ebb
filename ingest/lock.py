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

import logging
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from ingest.lock_backends import POLL_SECONDS, Holder, describe_holder, backend_for
from ingest.settings import Settings
from ingest.types import IndexBusy

log = logging.getLogger(__name__)
QUIET_SECONDS = 1.0  # wait this long before saying "waiting": a reader's probe holds the lock for microseconds


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
            backend = backend_for(self.settings)
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
            f"Waiting for another writer of the index at {self._location()} ({describe_holder(holder)}) to finish; "
            f"giving up after {self.wait:.0f} s."
        )

    def _busy(self, holder: Holder | None) -> IndexBusy:
        return IndexBusy(
            f"The index at {self._location()} is busy: another writer ({describe_holder(holder)}) still holds it "
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
        return backend_for(settings).busy()
    except Exception:  # e.g. an unreachable Chroma server: readers go on as if no writer were active
        log.debug("Cannot probe the writer lock of %s", settings.chroma_url or settings.index_dir, exc_info=True)
        return False


@contextmanager
def writer_lock(settings: Settings, purpose: str = "", wait: float | None = None,
                on_wait: Callable[[str], None] | None = None) -> Iterator[WriterLock]:
    lock = WriterLock(settings, purpose, wait, on_wait)
    with lock:
        yield lock
