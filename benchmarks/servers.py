"""The processes benchmarks start and talk to: ``python app.py`` driven through gradio_client
(cold_start.py, load.py) and a ``chroma run`` server (latency.py --server). Each binds 127.0.0.1
and a free port and is stopped on exit."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import ROOT, free_port, peak_rss_mb


def stop_process(proc: subprocess.Popen, *steps: tuple[int, float]) -> None:
    """Stop a child: each (signal, seconds to wait) in turn while it runs, then SIGKILL."""
    for sig, seconds in steps:
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=seconds)
            return
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------------------------ the app
def respond_args(question: str, mode: str = "extractive", top_k: int = 8) -> tuple:
    """Inputs of the ``/respond`` endpoint after the session ``gr.State`` (kept server-side per client):
    question, mode, top_k, sources, documents, date_from, date_to."""
    return (question, mode, top_k, [], [], "", "")


def answer_json(result) -> dict | None:
    """The answer's JSON (the ``answer_json`` output) among the endpoint's outputs."""
    for value in result if isinstance(result, (list, tuple)) else [result]:
        if isinstance(value, dict) and "value" in value and isinstance(value["value"], dict):
            value = value["value"]
        if isinstance(value, dict) and "standalone_question" in value and "answer" in value:
            return value
    return None


def html_value(value) -> str:
    if isinstance(value, dict):
        value = value.get("value")
    return value if isinstance(value, str) else ""


def transcript_html(result) -> str:
    """The conversation transcript (``render.render_transcript``: ``<div class="qa-transcript">``)."""
    for value in result if isinstance(result, (list, tuple)) else [result]:
        text = html_value(value)
        if 'class="qa-transcript"' in text:
            return text
    return ""


def error_html(result) -> str:
    """An error message among the outputs (``render.render_message(..., "error")``), or ''."""
    for value in result if isinstance(result, (list, tuple)) else [result]:
        text = html_value(value)
        if 'class="qa-message qa-bad"' in text and 'class="qa-transcript"' not in text:
            return text
    return ""


class PortTaken(Exception):
    pass


class App:
    """``python app.py`` on 127.0.0.1 and a free port; its stderr lines timestamped from launch."""

    def __init__(self, index: Path, port: int | None = None, no_ingest: bool = False,
                 extra_env: dict[str, str] | None = None) -> None:
        self.index = index
        self.port = port or free_port()
        self.no_ingest = no_ingest
        self.extra_env = extra_env or {}
        self.lines: list[tuple[float, str]] = []
        self.proc: subprocess.Popen | None = None
        self.t0 = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> "App":
        env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
        env.update({"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "ANONYMIZED_TELEMETRY": "False", "PYTHONUNBUFFERED": "1", **self.extra_env})
        cmd = [sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(self.port),
               "--index", str(self.index)]
        if self.no_ingest:
            cmd.append("--no-ingest")
        self.t0 = time.perf_counter()
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.perf_counter() - self.t0, line.rstrip("\n")))

    def when(self, text: str) -> float | None:
        return next((round(t, 2) for t, line in self.lines if text in line), None)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(line for _, line in self.lines[-n:])

    def rss_mb(self) -> float | None:
        return peak_rss_mb(self.proc.pid) if self.proc is not None else None

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, (signal.SIGINT, 15), (signal.SIGTERM, 10))

    def __enter__(self) -> "App":
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def client(url: str):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False, analytics_enabled=False)


def wait_for_client(app: App, timeout: float):
    """Poll until gradio_client connects; returns (client, seconds since launch)."""
    deadline = time.perf_counter() + timeout
    last = None
    while time.perf_counter() < deadline:
        if not app.alive():
            time.sleep(0.2)  # let the reader thread collect the last lines
            if any("Cannot find empty port" in line for _, line in app.lines):
                raise PortTaken(app.port)
            raise SystemExit(f"app.py exited ({app.proc.returncode}):\n{app.log_tail()}")
        try:
            c = client(app.url)
            return c, time.perf_counter() - app.t0
        except Exception as exc:  # not listening yet
            last = exc
            time.sleep(0.1)
    raise SystemExit(f"app.py did not serve within {timeout:.0f} s ({last}):\n{app.log_tail()}")


def start_app(index: Path, no_ingest: bool = False, timeout: float = 300, tries: int = 3):
    """Launch the app and wait for gradio_client to connect; a port taken meanwhile is retried."""
    for attempt in range(tries):
        app = App(index, no_ingest=no_ingest).start()
        try:
            c, up = wait_for_client(app, timeout)
            return app, c, up
        except PortTaken:
            app.stop()
            if attempt == tries - 1:
                raise SystemExit("could not find a free port for app.py") from None
        except BaseException:
            app.stop()
            raise
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------- chroma server
class ChromaServer:
    """``chroma run`` on 127.0.0.1 and a free port; stopped (terminate, then kill) on exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = path.parent / "chroma-server.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "ChromaServer":
        exe = Path(sys.executable).with_name("chroma")
        self.path.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "ANONYMIZED_TELEMETRY": "False"}
        self.proc = subprocess.Popen([str(exe), "run", "--path", str(self.path), "--host", "127.0.0.1",
                                      "--port", str(self.port)], stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT, env=env)
        import urllib.request

        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"chroma run exited ({self.proc.returncode}); see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        self.__exit__()
        raise SystemExit(f"chroma run did not answer within 120 s; see {self.log}")

    def peak_rss_mb(self) -> float | None:
        return peak_rss_mb(self.proc.pid) if self.proc is not None else None

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            stop_process(self.proc, (signal.SIGTERM, 20))
