"""Reading files (parse, clean, chunk) in a supervised child process.

Nothing a file contains may hang, exhaust or crash the process that ingests it: the CLI, or the
app serving other users while it ingests an upload. So ``ChildReader`` reads each file in a
child process (a fresh interpreter, ``python -c`` running ``serve()``), one file at a time:

- **time**: the parent waits at most ``Limits.file_timeout`` seconds for a file; then the child
  is killed (and replaced for the next file) and the file is reported failed;
- **memory**: the child's address space is limited to ``Limits.file_memory_mb`` (RLIMIT_AS); a
  file that needs more fails with MemoryError there, and that child is replaced;
- **crashes**: a child that dies (say, a native crash in a parser) fails that file only.

The targeted limits (front matter, zip bombs, regex budgets: ``ingest.loaders``, ``ingest.clean``)
refuse known attacks fast and with a precise reason; this is the backstop for everything else.

The child is started when the first file must be read (a run over an unchanged corpus starts
none) and kept for later files and runs of this process; it exits when its parent closes its
input, and a file it is still reading when its parent dies gets at most twice the time limit
in CPU seconds (RLIMIT_CPU). Messages are length-prefixed JSON, never pickle: the child handles
hostile input, so what it sends back is data only. ``InProcessReader`` reads in the calling
process with none of these bounds (tests and tools).
"""
from __future__ import annotations

import atexit
import json
import os
import queue
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from collections import deque
from typing import Any, BinaryIO, Iterable, Iterator, Protocol

from ingest.chunking import chunk_id, chunk_text
from ingest.documents import build_document
from ingest.settings import PROJECT_DIR, Limits, Settings, child_env
from ingest.types import BadFile, Chunk, IngestError, SourceDoc

START_TIMEOUT = 120.0  # seconds for a child to import its modules (a loaded 2-core machine is slow)
_FRAME = struct.Struct(">I")


@dataclass(frozen=True)
class ReadResult:
    doc: SourceDoc
    chunks: list[Chunk]


class FileReader(Protocol):
    def read(self, path: Path, data: bytes, settings: Settings) -> ReadResult:
        """The cleaned document and its chunks; raises BadFile with a one-line reason."""
        ...

    def read_many(self, jobs: Iterable[tuple[Any, Path, bytes]], settings: Settings
                  ) -> Iterator[tuple[Any, ReadResult | Exception]]:
        """``(tag, ReadResult or the exception reading it raised)`` for each ``(tag, path, data)``,
        in order; may read ahead (``jobs`` is consumed lazily)."""
        ...


def read_in_process(path: Path, data: bytes, settings: Settings) -> ReadResult:
    doc = build_document(path, data, settings.limits)
    return ReadResult(doc, chunk_text(doc.doc_id, doc.text, settings.chunk_size, settings.chunk_overlap))


class InProcessReader:
    """Reads in this process: no time, memory or crash isolation."""

    def read(self, path: Path, data: bytes, settings: Settings) -> ReadResult:
        return read_in_process(path, data, settings)

    def read_many(self, jobs: Iterable[tuple[Any, Path, bytes]], settings: Settings):
        for tag, path, data in jobs:
            try:
                yield tag, read_in_process(path, data, settings)
            except Exception as exc:  # handed to the caller, traceback attached
                yield tag, exc


# ------------------------------------------------------------------------------ framing
def _write_frame(stream: BinaryIO, payload: bytes) -> None:
    stream.write(_FRAME.pack(len(payload)))
    stream.write(payload)


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    parts, left = [], n
    while left:
        part = stream.read(left)
        if not part:
            return None
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _read_frame(stream: BinaryIO) -> bytes | None:
    head = _read_exact(stream, _FRAME.size)
    if head is None:
        return None
    return _read_exact(stream, _FRAME.unpack(head)[0])


# ------------------------------------------------------------------------------- child
def _encode_result(result: ReadResult) -> dict:
    doc = result.doc
    return {"ok": {
        "doc_id": doc.doc_id, "title": doc.title, "text": doc.text, "meta": doc.meta, "pages": list(doc.pages),
        "chunks": [[c.start, c.end, [list(s) for s in c.sentences]] for c in result.chunks],
    }}


def _decode_result(data: dict) -> ReadResult:
    doc = SourceDoc(data["doc_id"], data["title"], data["text"], data["meta"], tuple(data["pages"]))
    chunks = [
        Chunk(chunk_id(doc.doc_id, start, end), doc.doc_id, start, end, doc.text[start:end],
              tuple((s, e) for s, e in sentences))
        for start, end, sentences in data["chunks"]
    ]
    return ReadResult(doc, chunks)


def _bound_cpu(seconds: float) -> None:
    """Allow this process ``seconds`` more CPU time (then SIGXCPU ends it): a backstop for a
    file still being read after its parent is gone (a live parent kills us at its timeout)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    limit = int(usage.ru_utime + usage.ru_stime + seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))


def serve(memory_mb: int) -> None:
    """The child's loop: read a request, answer, until the parent closes our input."""
    import resource

    limit = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent, which then stops us
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the answers
    sys.stdout = sys.stderr
    requests = sys.stdin.buffer
    _write_frame(answers, b'{"ready": true}')
    answers.flush()
    while True:
        head = _read_frame(requests)
        data = _read_frame(requests) if head is not None else None
        if data is None:
            return
        request = json.loads(head)
        settings = Settings(chunk_size=request["chunk_size"], chunk_overlap=request["chunk_overlap"],
                            limits=Limits(**request["limits"]))
        _bound_cpu(2 * settings.limits.file_timeout + 5)
        leave = False
        try:
            answer = _encode_result(read_in_process(Path(request["path"]), data, settings))
        except BadFile as exc:
            answer = {"bad": str(exc)}
        except MemoryError:
            answer = {"memory": True}
            leave = True  # a fresh child for the next file: this heap may stay fragmented
        except RecursionError:
            answer = {"bad": "structure nested too deeply to read"}
        except Exception as exc:  # a bug, or a parser's unexpected error: reported, with the traceback
            import traceback

            answer = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        del data
        try:
            payload = json.dumps(answer, default=str).encode("utf-8", "surrogatepass")
        except MemoryError:
            payload, leave = b'{"memory": true}', True
        _write_frame(answers, payload)
        answers.flush()
        if leave:
            return


# ------------------------------------------------------------------------------ parent
class _Child:
    """One reader process, with a thread writing its requests and one reading its answers (so the
    parent never blocks on a pipe and can always enforce its time limit)."""

    def __init__(self, memory_mb: int) -> None:
        self.memory_mb = memory_mb
        code = f"import sys; sys.path.insert(0, {str(PROJECT_DIR)!r}); from ingest.reader import serve; serve({memory_mb})"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
            env=child_env(OMP_NUM_THREADS="1"),
        )
        self.answers: queue.Queue = queue.Queue()
        self._outbox: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, name="file-reader-answers", daemon=True).start()
        threading.Thread(target=self._send_loop, name="file-reader-requests", daemon=True).start()
        try:
            ready = self.answers.get(timeout=START_TIMEOUT)
        except queue.Empty:
            ready = None
        if ready is None:
            self.stop(kill=True)
            raise IngestError(f"cannot start the process that reads files ({sys.executable}); see the messages above.")

    def _pump(self) -> None:
        while True:
            frame = _read_frame(self.proc.stdout)
            self.answers.put(frame)
            if frame is None:  # it exited
                return

    def _send_loop(self) -> None:
        while True:
            item = self._outbox.get()
            try:
                if item is None:
                    self.proc.stdin.close()  # end of input: the child returns
                    return
                _write_frame(self.proc.stdin, item[0])
                _write_frame(self.proc.stdin, item[1])
                self.proc.stdin.flush()
            except OSError:  # it died: the answers end, which the reader reports
                return

    def send(self, header: dict, data: bytes) -> None:
        self._outbox.put((json.dumps(header).encode(), data))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        self._outbox.put(None)
        try:
            self.proc.wait(timeout=2)  # a child busy with a file is not waited for (Ctrl-C, exit)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            self.proc.stdout.close()
        except OSError:
            pass

    def death(self) -> str:
        code = self.proc.wait()
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit status {code}"


WINDOW = 4  # files queued in the reader process, so it never waits for the parent between files


class ChildReader:
    """Reads files in a child process under ``Limits`` (see the module docstring). Thread-safe:
    one caller at a time."""

    def __init__(self) -> None:
        self._child: _Child | None = None
        self._lock = threading.Lock()

    def read(self, path: Path, data: bytes, settings: Settings) -> ReadResult:
        ((_tag, outcome),) = self.read_many([(None, path, data)], settings)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def read_many(self, jobs: Iterable[tuple[Any, Path, bytes]], settings: Settings,
                  window: int = WINDOW) -> Iterator[tuple[Any, ReadResult | BadFile | ReaderError]]:
        """``(tag, outcome)`` for each ``(tag, path, data)`` of ``jobs``, in order: the file's
        ReadResult, or the BadFile / ReaderError reading it raised. Up to ``window`` files wait in
        the reader process's queue; ``jobs`` is consumed lazily."""
        limits = settings.limits
        jobs = iter(jobs)
        pending: deque[tuple[Any, dict, bytes]] = deque()
        exhausted = False
        started = 0.0  # when the head of ``pending`` became the file the child is reading
        with self._lock:
            try:
                while True:
                    while not exhausted and len(pending) < window:
                        job = next(jobs, None)
                        if job is None:
                            exhausted = True
                            break
                        tag, path, data = job
                        header = {"path": str(path), "chunk_size": settings.chunk_size,
                                  "chunk_overlap": settings.chunk_overlap, "limits": limits.to_dict()}
                        child = self._ready(limits.file_memory_mb)
                        if not pending:
                            started = time.monotonic()
                        pending.append((tag, header, data))
                        child.send(header, data)
                    if not pending:
                        return
                    child = self._child
                    try:
                        frame = child.answers.get(timeout=max(0.0, started + limits.file_timeout - time.monotonic()))
                    except queue.Empty:
                        outcome, restart = BadFile(
                            f"reading it took longer than {limits.file_timeout:g} s (QA_FILE_TIMEOUT); it was stopped"), True
                        child.stop(kill=True)
                    else:
                        if frame is None:  # it died reading this file
                            outcome, restart = BadFile(
                                f"the process reading it crashed ({child.death()}); the file may be malformed"), True
                            child.stop(kill=True)
                        else:
                            outcome, restart = _outcome(json.loads(frame), limits)
                            if restart:  # out of memory: it exits after answering
                                child.stop()
                    tag = pending.popleft()[0]
                    started = time.monotonic()
                    if restart:  # the files queued behind go to a fresh child
                        self._child = None
                        if pending:
                            child = self._ready(limits.file_memory_mb)
                            for _tag, header, data in pending:
                                child.send(header, data)
                            started = time.monotonic()  # the budget is for reading, not the child's start-up
                    yield tag, outcome
            finally:
                if pending and self._child is not None:  # abandoned mid-way (Ctrl-C, an error): out of step
                    self._child.stop(kill=True)
                    self._child = None

    def _ready(self, memory_mb: int) -> _Child:
        child = self._child
        if child is not None and (not child.alive() or child.memory_mb != memory_mb):
            child.stop(kill=True)
            child = self._child = None
        if child is None:
            child = self._child = _Child(memory_mb)
        return child

    def close(self) -> None:
        with self._lock:
            if self._child is not None:
                self._child.stop()
                self._child = None


def _outcome(answer: dict, limits: Limits) -> tuple[ReadResult | BadFile | ReaderError, bool]:
    """What the child said about one file, and whether that child is leaving (out of memory)."""
    if "ok" in answer:
        return _decode_result(answer["ok"]), False
    if answer.get("memory"):
        return BadFile(f"reading it needs more than {limits.file_memory_mb} MB of memory (QA_FILE_MEMORY_MB)"), True
    if "bad" in answer:
        return BadFile(answer["bad"]), False
    return ReaderError(answer.get("error", "unknown error"), answer.get("traceback", "")), False


class ReaderError(Exception):

    """An unexpected exception while reading a file in the child (its traceback is attached)."""

    def __init__(self, message: str, child_traceback: str) -> None:
        super().__init__(message)
        self.child_traceback = child_traceback


_SHARED: ChildReader | None = None
_SHARED_LOCK = threading.Lock()


def shared_reader() -> ChildReader:
    """The process's file reader (one child for every Ingestor of the process)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = ChildReader()
            atexit.register(_SHARED.close)
        return _SHARED
