"""QA_LLM=llamacpp: llama.cpp runs in a supervised child process, never in the app's, the CLI's or
the test runner's process.

Why: native code can crash. llama-cpp-python built with llama.cpp's default (native) flags
segfaulted in ``decode`` on Intel AVX-512/AMX machines and took the whole process with it.
requirements-llm.txt now builds a portable x86-64 baseline, and on top of that ``LlamaServer``
keeps whatever happens inside llama.cpp out of our process:

- **Start**: on first use, or ``start()`` at warm-up, in the background: ``python -m
  chatbot.llm_server`` (``main`` below, a thin wrapper around llama-cpp-python's OpenAI-compatible
  ``python -m llama_cpp.server``) on 127.0.0.1 and a free port, with a random API key sent through
  the child's stdin (never on a command line). Ready when ``GET /v1/models`` answers: the model
  is loaded before the server listens. Requests queue (``--interrupt_requests False``): one
  answer never cuts off another.
- **Supervision**: when a request fails and the child has exited (a crash, a kill), the error
  names the signal or status and the child is restarted at once; failures in a row (crashes or
  failed starts, counted until an answer succeeds) wait 5 s, 30 s, 2 min, then 5 min before the
  next start (a failed start waits at least 5 s), so a model that crashes on every request is not
  restarted in a loop. Meanwhile every question gets the extractive answer with the reason as its
  notice.
- **Shutdown**: ``close()``, or at interpreter exit. If the parent dies without cleaning up
  (SIGKILL), the child notices within a second: its stdin is a pipe whose write end only the
  parent holds (end-of-file), and its parent pid changes. (``PR_SET_PDEATHSIG`` is not used: it
  fires when the *thread* that started the child exits, and starts happen in a short-lived thread.)
- **Log**: the child's output is appended to ``QA_LLM_LOG`` (default ``.logs/llm-server.log`` in the
  project, rotated at 10 MB): llama.cpp's load report (including the CPU features it uses, e.g.
  ``AVX2 = 1 | AVX512 = 0``), each request's timings, and a Python traceback if it dies of a
  fatal signal. Crashes are also reported on the parent's stderr with the log's path.

Nothing here imports llama_cpp in the parent; ``main`` (the child) does.
"""
from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import weakref
from dataclasses import dataclass
from pathlib import Path

from chatbot.llm_client import LLMUnavailable
from ingest.settings import child_env

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_LOG = PROJECT_DIR / ".logs" / "llm-server.log"
START_TIMEOUT = 300.0  # seconds for the child to load the model and answer
BACKOFF = (0.0, 5.0, 30.0, 120.0, 300.0)  # wait before the next start after 1, 2, 3... failures in a row
LOG_LIMIT = 10 * 1024 * 1024
STOP_GRACE = 5.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    base_url: str  # http://127.0.0.1:PORT/v1
    api_key: str
    model: str  # the name the server knows the model by
    generation: int  # one per start: a new process needs a new client


class LlamaServer:
    """One supervised ``llama_cpp.server`` child for one GGUF file (see the module docstring)."""

    def __init__(self, model_path: Path, n_ctx: int = 4096, log_path: Path | None = None,
                 start_timeout: float = START_TIMEOUT) -> None:
        self.model_path = Path(model_path).expanduser().resolve()
        self.n_ctx = n_ctx
        self.log_path = Path(log_path) if log_path else DEFAULT_LOG
        self.start_timeout = start_timeout
        self.starts = 0  # successful starts so far
        self._cond = threading.Condition()
        self._child: dict = {"proc": None, "pipe": None}  # shared with the exit-time finalizer
        self._endpoint: Endpoint | None = None
        self._starting = False
        self._error: str | None = None  # why the last start or the last process failed
        self._failures = 0  # crashes and failed starts since the last good answer
        self._retry_at = 0.0
        weakref.finalize(self, _stop_child, self._child)

    # ------------------------------------------------------------------ public
    @property
    def pid(self) -> int | None:
        """The running child's process id (None when no child is running)."""
        proc = self._child["proc"]
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> None:
        """Begin starting the child in the background, unless it runs, is starting or backs off."""
        with self._cond:
            self._check_exit()
            if self._endpoint is None and not self._starting and time.monotonic() >= self._retry_at:
                self._begin()

    def endpoint(self) -> Endpoint:
        """The running server, started (and waited for) if needed; ``LLMUnavailable`` when it
        cannot start or is backing off after repeated failures."""
        with self._cond:
            self._check_exit()
            if self._endpoint is None and not self._starting:
                left = self._retry_at - time.monotonic()
                if left > 0:
                    raise LLMUnavailable(f"{self._error}; the next start is in {left:.0f} s")
                self._begin()
            while self._starting:  # the start thread always ends within start_timeout
                self._cond.wait()
            if self._endpoint is None:
                raise LLMUnavailable(self._error or "the llama.cpp server did not start")
            return self._endpoint

    def report_failure(self, wait: float = 1.0) -> str | None:
        """After a failed request: if the child has died (waiting up to ``wait`` s for it to be
        reaped), record the crash, start a new child when allowed, and return the one-line
        reason; None when the child is alive (the failure was something else)."""
        proc = self._child["proc"]
        if proc is None:
            return None
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return None
        with self._cond:
            return self._check_exit(proc) or None

    def mark_ok(self) -> None:
        """A request succeeded: the failure count starts again."""
        with self._cond:
            self._failures = 0

    def close(self) -> None:
        """Stop the child (a later ``endpoint()`` starts a new one)."""
        with self._cond:
            while self._starting:
                self._cond.wait()
            self._endpoint = None
            _stop_child(self._child)

    # ------------------------------------------------------------------ supervision (under the lock)
    def _check_exit(self, proc: subprocess.Popen | None = None) -> str:
        """If the current child has exited: record it, maybe restart, return the reason ('' if alive)."""
        current = self._child["proc"]
        if current is None or (proc is not None and proc is not current) or current.poll() is None:
            return ""
        reason = f"the llama.cpp server process {describe_exit(current.returncode)}"
        _stop_child(self._child)
        self._endpoint = None
        delay = self._failed(reason)
        log.warning("%s; see %s", reason, self.log_path)
        if delay == 0:
            self._begin()
            return f"{reason}; restarting it"
        return f"{reason} ({self._failures} failures in a row); the next start is in {delay:.0f} s"

    def _failed(self, reason: str, at_least: float = 0.0) -> float:
        self._error = reason
        self._failures += 1
        delay = max(at_least, BACKOFF[min(self._failures, len(BACKOFF)) - 1])
        self._retry_at = time.monotonic() + delay
        return delay

    def _begin(self) -> None:
        self._starting = True
        threading.Thread(target=self._boot, name="llm-server-start", daemon=True).start()

    # ------------------------------------------------------------------ starting (in a thread)
    def _boot(self) -> None:
        proc = pipe = endpoint = None
        error = "the llama.cpp server did not start"
        try:
            for _ in range(3):  # another program may take the free port before the child binds it
                proc, pipe, endpoint, error = self._spawn()
                if endpoint is not None or "address already in use" not in error.lower():
                    break
        except Exception as exc:  # e.g. the log folder cannot be created
            log.warning("Starting the llama.cpp server failed", exc_info=True)
            error = f"cannot start the llama.cpp server: {type(exc).__name__}: {exc}"
        with self._cond:
            self._starting = False
            if endpoint is not None:
                self._child.update(proc=proc, pipe=pipe)
                self._endpoint = endpoint
                self._error = None
                self.starts += 1
            else:  # a start that failed will likely fail again: not at once
                self._failed(error, at_least=BACKOFF[1])
                log.warning("%s; see %s", error, self.log_path)
            self._cond.notify_all()

    def _spawn(self) -> tuple:
        """Start one child and wait until it answers: (proc, pipe, endpoint, '') or (.., None, error)."""
        port = _free_port()
        key = secrets.token_hex(16)
        alias = self.model_path.name
        cmd = [sys.executable, "-m", "chatbot.llm_server", "--model", str(self.model_path), "--model_alias", alias,
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(self.n_ctx), "--n_batch", "512",
               "--seed", "0", "--use_mlock", "False", "--interrupt_requests", "False", "--verbose", "True"]
        env = child_env(PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_DIR), env.get("PYTHONPATH")) if p)
        child = {"proc": None, "pipe": None}
        read_end, child["pipe"] = os.pipe()
        try:
            with self._open_log(port) as out:
                child["proc"] = subprocess.Popen(cmd, stdin=read_end, stdout=out, stderr=subprocess.STDOUT,
                                                 cwd=PROJECT_DIR, env=env, start_new_session=True)
        except BaseException:
            os.close(child["pipe"])
            raise
        finally:
            os.close(read_end)
        proc = child["proc"]
        try:
            os.write(child["pipe"], key.encode() + b"\n")
        except OSError:  # it died already: reported below
            log.debug("Cannot send the key to the llama.cpp server", exc_info=True)
        base_url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + self.start_timeout
        while True:
            if proc.poll() is not None:
                _stop_child(child)
                last = _last_line(self.log_path)
                return None, None, None, (f"the llama.cpp server could not start: it {describe_exit(proc.returncode)}"
                                          + (f" ({last})" if last else ""))
            if _answers(f"{base_url}/models", key):
                return proc, child["pipe"], Endpoint(base_url, key, alias, self.starts + 1), ""
            if time.monotonic() > deadline:
                _stop_child(child)
                return None, None, None, f"the llama.cpp server did not answer within {self.start_timeout:g} s"
            time.sleep(0.2)

    def _open_log(self, port: int):
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            if self.log_path.exists() and self.log_path.stat().st_size > LOG_LIMIT:
                os.replace(self.log_path, self.log_path.with_name(self.log_path.name + ".1"))
            out = open(self.log_path, "ab")
        except OSError:  # e.g. a read-only project folder: the temp folder then
            log.warning("Cannot write %s; the llama.cpp server logs to the temp folder", self.log_path, exc_info=True)
            self.log_path = Path(tempfile.gettempdir()) / f"qa-llm-server-{os.getuid()}.log"
            out = open(self.log_path, "ab")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        out.write(f"\n=== {stamp} llama.cpp server for {self.model_path} on 127.0.0.1:{port} "
                  f"(parent pid {os.getpid()})\n".encode())
        out.flush()
        return out


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}" if -code in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT) else f"crashed ({name})"
    return f"exited with status {code}"


def _stop_child(child: dict) -> None:
    """Close the child's stdin (it exits on end-of-file), then kill it if it lingers; idempotent."""
    proc, pipe = child.get("proc"), child.get("pipe")
    child.update(proc=None, pipe=None)
    if pipe is not None:
        try:
            os.close(pipe)
        except OSError:
            pass
    if proc is not None and proc.poll() is None:
        try:
            proc.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _answers(url: str, key: str) -> bool:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    try:
        with _NO_PROXY.open(request, timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [x.strip() for x in f.read().decode(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


# ---------------------------------------------------------------------------------------- the child
def main(argv: list[str] | None = None) -> None:
    """The child process: ``python -m chatbot.llm_server <llama_cpp.server arguments>`` with the API
    key on the first line of stdin; exits when stdin closes or the parent changes."""
    import faulthandler
    import runpy

    faulthandler.enable()  # a fatal signal in llama.cpp leaves a Python traceback in the log
    key = _read_line(0)
    if not key:
        sys.exit("chatbot.llm_server: no API key on stdin (LlamaServer starts this module)")
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    _clean_environment()
    sys.argv = ["llama_cpp.server", *(sys.argv[1:] if argv is None else argv), "--api_key", key]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


def _read_line(fd: int) -> str:
    data = b""
    while not data.endswith(b"\n"):
        byte = os.read(fd, 1)
        if not byte:
            break
        data += byte
    return data.decode(errors="replace").strip()


def _exit_with_parent(parent: int) -> None:
    import select

    while True:
        ready, _, _ = select.select([0], [], [], 1.0)
        if (ready and not os.read(0, 4096)) or os.getppid() != parent:
            print("chatbot.llm_server: stopped by its parent, or the parent has gone; exiting",
                  file=sys.stderr, flush=True)
            os._exit(0)


def _clean_environment() -> None:
    """llama_cpp.server reads its settings from the environment too (HOST, PORT, MODEL, N_CTX...,
    any case): only our command line may configure it."""
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    names = {n.lower() for cls in (ModelSettings, ServerSettings) for n in cls.model_fields}
    names |= {"host", "port", "config_file"}
    for key in [k for k in os.environ if k.lower() in names]:
        del os.environ[key]


if __name__ == "__main__":
    main()
