"""Cold start: seconds from launching ``python app.py`` to the first answer, with an existing index.

    python benchmarks/cold_start.py [--json] [--chunks N | --index DIR] [--runs R] [--no-ingest]

Launches ``python app.py --port FREE --index DIR`` (127.0.0.1; by default the app first checks the
project's ``corpus/`` against the index, as a user's ``python app.py`` does) and polls it with
``gradio_client`` until the chat endpoint (``/respond``, ``WorkspaceUI.respond``) returns an answer;
then stops the app. The default index is the cached 10,000-chunk index of benchmarks/latency.py
(built if missing; it holds ``corpus/`` under its real paths, so the app's corpus check finds it
unchanged). Repeated ``--runs`` times (default 3; the first run may also pay for a cold disk
cache); the figures are the median and every run, with the phases the app logs (corpus checked,
serving) and when HTTP first answered.

Last stdout line: ``{"cold_start_s": x, "runs_s": [...], "http_up_s": y, ...}``; also kept in
benchmarks/results/cold_start.json (with date, command, CPU and load average).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import latency  # noqa: E402
from common import peak_rss_mb  # noqa: E402
from latency import ROOT, free_port, loadavg, record, say, uptime_load  # noqa: E402

QUESTION = "Which country most recently accredited Taliban envoys, and when?"


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
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

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


def one_run(index: Path, no_ingest: bool, timeout: float) -> dict[str, Any]:
    app, c, http_up = start_app(index, no_ingest, timeout)
    with app:
        t = time.perf_counter()
        result = c.predict(*respond_args(QUESTION), api_name="/respond")
        total = time.perf_counter() - app.t0
        first_answer_s = time.perf_counter() - t
        data = answer_json(result)
        if data is None:
            raise SystemExit(f"/respond returned no answer JSON: {str(result)[:500]}\n{app.log_tail()}")
        run = {"cold_start_s": round(total, 2), "http_up_s": round(http_up, 2),
               "first_answer_call_s": round(first_answer_s, 2),
               "corpus_check_started_s": app.when("against the index"),
               "corpus_checked_s": app.when("This run:"), "corpus_report": next(
                   (line for _, line in app.lines if "This run:" in line), None),
               "serving_line_s": app.when("Serving the workspace"),
               "supported": data.get("supported"), "answer": data.get("answer", "")[:160],
               "app_peak_rss_mb": app.rss_mb()}
        try:
            c.close()
        except Exception:
            pass
        return run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--chunks", type=int, default=10_000, metavar="N",
                   help="use the cached N-chunk index of benchmarks/latency.py (default 10000; built if missing)")
    p.add_argument("--index", type=Path, metavar="DIR", help="an existing index folder instead")
    p.add_argument("--runs", type=int, default=3, metavar="R", help="launches to time (default 3)")
    p.add_argument("--no-ingest", action="store_true", help="pass --no-ingest to app.py (skip the corpus check)")
    p.add_argument("--timeout", type=float, default=300, metavar="S")
    p.add_argument("--json", action="store_true", help="(the last stdout line is always the JSON figures)")
    args = p.parse_args(argv)
    started_uptime, started_load = uptime_load(), loadavg()
    say(f"start: {started_uptime}")
    if args.index is not None:
        index = args.index.resolve()
        if not (index / "chroma.sqlite3").exists():
            p.error(f"no index at {index}")
        label = str(index)
    else:
        index, _ = latency.ensure_index(args.chunks)
        label = f"latency-{args.chunks}"
    runs = []
    for i in range(args.runs):
        run = one_run(index, args.no_ingest, args.timeout)
        say(f"run {i + 1}: {json.dumps(run)}")
        runs.append(run)
    times = [r["cold_start_s"] for r in runs]
    figures = {"cold_start_s": round(statistics.median(times), 2), "runs_s": times,
               "http_up_s": round(statistics.median(r["http_up_s"] for r in runs), 2),
               "first_answer_call_s": round(statistics.median(r["first_answer_call_s"] for r in runs), 2),
               "index": label, "ingest_check": not args.no_ingest, "runs": runs}
    record("cold_start", label + (",no-ingest" if args.no_ingest else ""), figures, started_uptime, started_load)
    return 0


if __name__ == "__main__":
    sys.exit(main())
