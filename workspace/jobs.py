"""The app's writer: uploads and deletions run on one background thread, in the order asked.

A request never waits for an ingest: the upload handler stores the files (``Workspace.stage``),
queues a job and returns; the page polls ``jobs(session_id)`` for its status and per-file
outcomes. One thread is enough (the index has one writer at a time anyway) and keeps a second
upload or a deletion from running into the first. Whatever goes wrong in a job, even a bug,
ends as that job's outcome (every file with a one-line reason, its stored copy removed) and a
traceback in the server log; the thread keeps serving the next job.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable

from workspace.library import StagedUpload, UploadResult
from workspace.workspace import Workspace
from ingest.types import UserError

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE = "queued", "running", "done"


@dataclass
class Job:
    id: str
    kind: str  # "upload" or "delete"
    owner: str  # the workspace Session that asked
    label: str  # what it is about, for display
    submitted: float
    state: str = QUEUED
    started: float | None = None
    finished: float | None = None
    upload: UploadResult | None = None  # an upload's outcomes
    message: str = ""  # a deletion's message, or why a job failed
    note: str = ""  # while running: the latest step ("Ingesting…", "Waiting for another writer…")
    ok: bool = True
    shown: bool = False  # the session's page has shown the finished job (and refreshed its library)
    done: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)
    _work: Callable[["Job"], None] | None = field(default=None, repr=False, compare=False)


class WriteQueue:
    def __init__(self, workspace: Workspace, keep: int = 10, clock: Callable[[], float] = time.monotonic) -> None:
        self.ws = workspace
        self.keep = keep  # finished jobs remembered per session
        self.clock = clock
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._jobs: dict[str, list[Job]] = {}  # by owner, oldest first
        self._order: list[Job] = []  # waiting and running jobs, in order
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ submit
    def submit_upload(self, owner: str, staged: StagedUpload) -> Job:
        names = staged.names
        label = f"{len(names)} file{'s' * (len(names) != 1)}: {', '.join(names[:3])}" + (", …" if len(names) > 3 else "")
        return self._submit(owner, "upload", label, lambda job: self._upload(job, staged))

    def submit_delete(self, owner: str, doc_id: str, title: str) -> Job:
        return self._submit(owner, "delete", f"delete “{title}”", lambda job: self._delete(job, doc_id))

    def _submit(self, owner: str, kind: str, label: str, work: Callable[[Job], None]) -> Job:
        job = Job(uuid.uuid4().hex[:12], kind, owner, label, self.clock(), _work=work)
        with self._lock:
            jobs = self._jobs.setdefault(owner, [])
            jobs.append(job)
            finished = [j for j in jobs if j.state == DONE]
            for old in finished[: max(0, len(finished) - self.keep)]:
                jobs.remove(old)
            self._order.append(job)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name="writer", daemon=True)
                self._thread.start()
        self._queue.put(job)
        return job

    # ------------------------------------------------------------------- query
    def jobs(self, owner: str) -> list[Job]:
        """This session's jobs, newest first."""
        with self._lock:
            return list(reversed(self._jobs.get(owner, [])))

    def ahead(self, job: Job) -> int:
        """How many jobs (of any session) run or wait before ``job``."""
        with self._lock:
            return self._order.index(job) if job in self._order else 0

    def forget(self, owner: str) -> None:
        """A session ended: drop its finished jobs (waiting ones still run)."""
        with self._lock:
            left = [j for j in self._jobs.get(owner, []) if j.state != DONE]
            if left:
                self._jobs[owner] = left
            else:
                self._jobs.pop(owner, None)

    def close(self, timeout: float = 30.0) -> None:
        """Finish the queued jobs, then stop the thread."""
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    # ------------------------------------------------------------------ worker
    def _serve(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job.state, job.started = RUNNING, self.clock()
            try:
                assert job._work is not None
                job._work(job)
            except Exception as exc:  # a bug: logged in full, reported to the user in one line
                log.exception("The %s job %s failed", job.kind, job.id)
                job.ok = False
                job.message = f"failed with an unexpected error ({type(exc).__name__}: {exc}); details are in the server log."
            finally:
                job._work = None
                job.finished = self.clock()
                job.state = DONE
                with self._lock:
                    if job in self._order:
                        self._order.remove(job)
                job.done.set()

    def _upload(self, job: Job, staged: StagedUpload) -> None:
        try:
            job.upload = self.ws.ingest(staged, progress=lambda _fraction, message: self._note(job, message))
        except Exception as exc:  # ingest removed the stored files; every file gets the reason
            log.exception("Ingesting upload %s failed", job.id)
            job.upload = staged.failed(f"not ingested: unexpected error ({type(exc).__name__}: {exc}); "
                                       "details are in the server log.")
        job.ok = not job.upload.failed

    @staticmethod
    def _note(job: Job, message: str) -> None:
        job.note = message

    def _delete(self, job: Job, doc_id: str) -> None:
        try:
            job.message = self.ws.delete(doc_id, on_wait=lambda message: self._note(job, message))
        except UserError as exc:
            job.ok, job.message = False, str(exc)


def embedding_progress() -> tuple[int, int] | None:
    """(passages embedded, total) of the ingest running in this process, read from its progress
    bar (the writer thread is the only in-process ingest while the app serves); None if none."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    for bar in list(getattr(tqdm, "_instances", None) or ()):
        if str(getattr(bar, "desc", "")).startswith("Embedding") and getattr(bar, "total", None):
            return int(bar.n), int(bar.total)
    return None
