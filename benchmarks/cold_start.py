"""Cold start: seconds from launching ``python app.py`` to the first answer, with an existing index.

    python benchmarks/cold_start.py [--json] [--chunks N | --index DIR] [--runs R] [--no-ingest]

Launches ``python app.py --port FREE --index DIR`` (127.0.0.1; by default the app first checks the
project's ``corpus/`` against the index, as a user's ``python app.py`` does) and polls it with
``gradio_client`` until the chat endpoint (``/respond``, ``WorkspaceUI.respond``) returns an answer;
then stops the app. The default index is the cached 10,000-chunk index of benchmarks/bench_index.py
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
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_index import ensure_index  # noqa: E402
from common import Run, say  # noqa: E402
from servers import answer_json, respond_args, start_app  # noqa: E402

QUESTION = "Which country most recently accredited Taliban envoys, and when?"


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
                   help="use the cached N-chunk index of benchmarks/bench_index.py (default 10000; built if missing)")
    p.add_argument("--index", type=Path, metavar="DIR", help="an existing index folder instead")
    p.add_argument("--runs", type=int, default=3, metavar="R", help="launches to time (default 3)")
    p.add_argument("--no-ingest", action="store_true", help="pass --no-ingest to app.py (skip the corpus check)")
    p.add_argument("--timeout", type=float, default=300, metavar="S")
    p.add_argument("--json", action="store_true", help="(the last stdout line is always the JSON figures)")
    args = p.parse_args(argv)
    run = Run.start()
    if args.index is not None:
        index = args.index.resolve()
        if not (index / "chroma.sqlite3").exists():
            p.error(f"no index at {index}")
        label = str(index)
    else:
        index, _ = ensure_index(args.chunks)
        label = f"latency-{args.chunks}"
    runs = []
    for i in range(args.runs):
        one = one_run(index, args.no_ingest, args.timeout)
        say(f"run {i + 1}: {json.dumps(one)}")
        runs.append(one)
    times = [r["cold_start_s"] for r in runs]
    figures = {"cold_start_s": round(statistics.median(times), 2), "runs_s": times,
               "http_up_s": round(statistics.median(r["http_up_s"] for r in runs), 2),
               "first_answer_call_s": round(statistics.median(r["first_answer_call_s"] for r in runs), 2),
               "index": label, "ingest_check": not args.no_ingest, "runs": runs}
    run.record("cold_start", label + (",no-ingest" if args.no_ingest else ""), figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
