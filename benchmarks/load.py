"""Load: concurrent gradio_client sessions against the running app, and proof that they stay apart.

    python benchmarks/load.py [--sessions 20] [--seconds 60] [--json] [--url http://127.0.0.1:PORT/ | --chunks N]

Starts ``python app.py`` on 127.0.0.1 with the cached 10,000-chunk index of benchmarks/bench_index.py
(``--chunks`` picks another; ``--url`` uses an app that is already running, on this machine only),
then runs ``--sessions`` threads, each with its own ``gradio_client.Client`` (so its own Gradio
session and its own ``gr.State`` conversation on the server), for ``--seconds`` (a bounded loop: no
new question starts after the deadline; the questions in flight finish).

Each session asks its own questions, in rounds of two turns on the ``/respond`` endpoint:

1. a question of its own (XQuAD dev questions naming someone or something; the pool is split
   between sessions, so no two sessions ever ask the same question);
2. an elliptical follow-up, ``"And <another name>?"``.

Isolation checks on every follow-up (all must hold, else it counts as a leak):

- the answer JSON's ``standalone_question`` equals ``chatbot.conversation.condense(follow_up,
  [(own previous question, own previous answer)])`` computed here from *this* session's previous
  turn (it names the session's own previous subject, replaced by the new one), and ``question`` is
  the follow-up as sent;
- the transcript HTML returned to this session contains every question this session has asked, in
  order, and none of the questions given to any other session.

Errors: exceptions from the client, an error message in the ``ask_error`` output, or no answer JSON.
Latency is per request as the client sees it (queueing included: the app serves 2 requests at a
time, ``default_concurrency_limit=2``).

Last stdout line: ``{"sessions": 20, "seconds": 60, "errors": 0, "answers": n, "answers_per_s": x,
"p50_ms": y, "p95_ms": z, "followups_checked": k, "leaks": 0, ...}``; also kept in
benchmarks/results/load.json (with date, command, CPU, load average).
"""
from __future__ import annotations

import argparse
import hashlib
import html
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_index import ensure_index  # noqa: E402
from common import BENCH, Run, loadavg, percentile, read_jsonl, say  # noqa: E402
from servers import answer_json, client, error_html, respond_args, start_app, transcript_html  # noqa: E402


# ---------------------------------------------------------------------------------- questions
@dataclass(frozen=True)
class Pair:
    question: str
    follow_up: str


def question_pairs() -> list[Pair]:
    """XQuAD questions that name a subject, each with "And <a name from another question of the
    same article>?" as its follow-up."""
    from chatbot.conversation import _names

    rows = read_jsonl(BENCH / "xquad_dev" / "qa.jsonl")
    by_doc: dict[str, list[str]] = {}
    for r in rows:
        by_doc.setdefault(r["doc"], []).append(r["question"].strip())
    pairs: list[Pair] = []
    seen: set[str] = set()
    def names(q: str) -> list[str]:  # not the capitalised first word of the question
        return [n for n in _names(q) if not q.startswith(n) and len(n) > 3 and "'" not in n and "’" not in n]

    for doc, qs in by_doc.items():
        names_of = {q: names(q) for q in qs}
        for i, q in enumerate(qs):
            own = names_of[q]
            if not own or own[-1] != _names(q)[-1] or q in seen or len(q) > 160:
                continue
            other = None
            for k in range(1, len(qs)):
                cand = [n for n in names_of[qs[(i + k) % len(qs)]] if n not in own and n not in q]
                if cand:
                    other = cand[-1]
                    break
            if other:
                seen.add(q)
                pairs.append(Pair(q, f"And {other}?"))
    # Interleave articles so consecutive pairs (given to different sessions) differ in topic.
    pairs.sort(key=lambda p: hashlib.sha1(p.question.encode()).hexdigest())
    return pairs


# ----------------------------------------------------------------------------------- sessions
@dataclass
class SessionResult:
    index: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    answers: int = 0
    followups: int = 0
    followups_ok: int = 0
    followups_rewritten: int = 0
    checked: int = 0
    leaks: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    readings: set[str] = field(default_factory=set)  # standalone questions the app read them as


def run_session(url: str, idx: int, pairs: list[Pair], others: set[str], deadline: list[float],
                start: threading.Barrier, result: SessionResult, shared=None) -> None:
    """One session's bounded loop; ``deadline[0]`` is set when every client has connected.
    ``shared``: a Client shared by every thread (the negative control: one Gradio session)."""
    from chatbot.conversation import condense

    try:
        c = shared or client(url)
    except Exception as exc:  # noqa: BLE001
        result.errors.append(f"connect: {exc!r}")
        return
    try:
        start.wait(timeout=180)
    except threading.BrokenBarrierError:
        if not deadline[0]:
            result.errors.append("not every session connected within 180 s")
            return
    history: list[tuple[str, str]] = []
    r = 0
    while time.perf_counter() < deadline[0]:
        pair = pairs[r % len(pairs)]
        r += 1
        for turn, question in enumerate((pair.question, pair.follow_up)):
            if time.perf_counter() >= deadline[0]:
                break
            t = time.perf_counter()
            try:
                out = c.predict(*respond_args(question), api_name="/respond")
            except Exception as exc:  # noqa: BLE001
                result.errors.append(f"{question!r}: {exc!r}"[:300])
                break  # the follow-up would have no own first question: start a new round
            result.latencies_ms.append((time.perf_counter() - t) * 1000)
            data = answer_json(out)
            error = error_html(out)
            if data is None or error:
                result.errors.append(f"{question!r}: no answer ({error[:200] or str(out)[:200]})")
                break
            result.answers += 1
            result.asked.append(question)
            expected = condense(question, history)  # from this session's own history only
            problems = []
            if data.get("question") != question:
                problems.append(f"question {data.get('question')!r} != {question!r}")
            if data.get("standalone_question") != expected:
                problems.append(f"standalone {data.get('standalone_question')!r} != expected {expected!r}")
            transcript = html.unescape(transcript_html(out))
            pos = 0
            for q in result.asked:
                found = transcript.find(q, pos)
                if found < 0:
                    problems.append(f"own question {q!r} missing from the transcript (or out of order)")
                    break
                pos = found + len(q)
            # Strip what this session asked and how the app read it (a rewritten follow-up can
            # coincide with another session's question), then look for the other sessions' questions.
            for own in sorted(set(result.asked) | result.readings | {expected}, key=len, reverse=True):
                transcript = transcript.replace(own, "")
            foreign = [q for q in others if q in transcript]
            if foreign:
                problems.append(f"transcript holds other sessions' questions: {foreign[:2]!r}")
            result.checked += 1
            if turn == 1:
                result.followups += 1
                if data.get("standalone_question") == expected and expected != question:
                    result.followups_rewritten += 1
            if problems:
                after = history[-1][0] if history else None
                result.leaks.append(f"session {idx}, {question!r} after {after!r}: " + "; ".join(problems))
            elif turn == 1:
                result.followups_ok += 1
            result.readings.add(str(data.get("standalone_question", "")))
            history.append((question, str(data.get("answer", ""))))
    if shared is None:
        try:
            c.close()
        except Exception:  # noqa: BLE001
            pass


def run_load(url: str, sessions: int, seconds: float, shared_client: bool = False) -> dict[str, Any]:
    pairs = question_pairs()
    if len(pairs) < sessions:
        raise SystemExit(f"only {len(pairs)} question pairs for {sessions} sessions")
    own = [pairs[i::sessions] for i in range(sessions)]
    mine = [{q for p in own[i] for q in (p.question,)} for i in range(sessions)]
    results = [SessionResult(i) for i in range(sessions)]
    deadline = [0.0]
    began: dict[str, Any] = {}

    def go() -> None:  # runs once, when every session has connected, before any is released
        began["t0"] = time.perf_counter()
        began["load"] = loadavg()
        deadline[0] = began["t0"] + seconds

    barrier = threading.Barrier(sessions, action=go)
    threads = []

    shared = client(url) if shared_client else None

    def worker(i: int) -> None:
        others = set().union(*(mine[j] for j in range(sessions) if j != i))
        run_session(url, i, own[i], others, deadline, barrier, results[i], shared)

    for i in range(sessions):
        th = threading.Thread(target=worker, args=(i,), name=f"session-{i}", daemon=True)
        th.start()
        threads.append(th)
    hard_stop = time.perf_counter() + 180 + seconds + 300
    for th in threads:
        th.join(timeout=max(1.0, hard_stop - time.perf_counter()))
    t0 = began.get("t0", time.perf_counter())
    elapsed = time.perf_counter() - t0
    stuck = sum(th.is_alive() for th in threads)
    lat = [x for r in results for x in r.latencies_ms]
    answers = sum(r.answers for r in results)
    errors = [e for r in results for e in r.errors]
    leaks = [x for r in results for x in r.leaks]
    return {
        "sessions": sessions, "seconds": seconds, "elapsed_s": round(elapsed, 1),
        "errors": len(errors) + stuck, "answers": answers, "answers_per_s": round(answers / elapsed, 2),
        "p50_ms": round(percentile(lat, 50), 1), "p95_ms": round(percentile(lat, 95), 1),
        "max_ms": round(max(lat), 1) if lat else None,
        "mean_ms": round(statistics.fmean(lat), 1) if lat else None,
        "turns_checked": sum(r.checked for r in results), "followups_checked": sum(r.followups for r in results),
        "followups_rewritten_from_own_question": sum(r.followups_rewritten for r in results),
        "followups_resolved_own_thread": sum(r.followups_ok for r in results), "leaks": len(leaks),
        "answers_per_session": [r.answers for r in results], "stuck_sessions": stuck,
        "error_samples": errors[:5], "leak_samples": leaks[:5], "load_during": [began.get("load"), loadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=20, metavar="S")
    p.add_argument("--seconds", type=float, default=60, metavar="T")
    p.add_argument("--url", help="a running app on this machine (127.0.0.1/localhost only)")
    p.add_argument("--chunks", type=int, default=10_000, metavar="N",
                   help="start the app on the cached N-chunk index of benchmarks/bench_index.py (default 10000)")
    p.add_argument("--shared-client", action="store_true",
                   help="negative control: every thread shares ONE Client (one Gradio session), so the "
                        "isolation checks must report leaks")
    p.add_argument("--json", action="store_true", help="(the last stdout line is always the JSON figures)")
    args = p.parse_args(argv)
    if not 1 <= args.sessions <= 200 or not 1 <= args.seconds <= 3600:
        p.error("--sessions must be 1..200 and --seconds 1..3600")
    run = Run.start()
    app = None
    try:
        if args.url:
            host = urlparse(args.url).hostname
            if host not in ("127.0.0.1", "localhost", "::1"):
                p.error("--url must be on this machine (127.0.0.1 or localhost)")
            url, target = args.url, args.url
        else:
            index, _ = ensure_index(args.chunks)
            app, c, up = start_app(index)
            say(f"app up in {up:.1f} s at {app.url}; warming up with one question")
            c.predict(*respond_args("Who is Aibek Smadiyarov?"), api_name="/respond")
            url, target = app.url, f"app.py on latency-{args.chunks}"
        say(f"{args.sessions} sessions for {args.seconds:g} s against {url} …")
        figures = run_load(url, args.sessions, args.seconds, args.shared_client)
        figures["target"] = target
        if args.shared_client:
            figures["negative_control"] = "one Client shared by every thread: leaks expected"
        if app is not None:
            figures["app_peak_rss_mb"] = app.rss_mb()
    finally:
        if app is not None:
            app.stop()
    key = f"sessions={args.sessions},seconds={args.seconds:g}," + figures["target"] + (
        ",shared-client" if args.shared_client else "")
    run.record("load", key, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
