"""What "The sources differ" costs per question (chatbot/cited_conflicts.py), and what it finds.

    python benchmarks/answer_conflicts.py [--sets dev,analyst,seed,xquad,squad2] [--json]

For each QA set of benchmarks/qa_eval.py (same cached indexes), one QAService answers every
question; per question it records ``timings_ms["conflicts"]`` (the whole check: the parse-free
pre-filter, and for the answers that pass it the documents' texts, spaCy's parse of the cited
quotes and the comparison) against ``timings_ms["total"]``. The spaCy child process starts
on the first answer that needs it; its start is measured separately (``server_start_ms``: start
plus a one-sentence parse) and the figures for parsed answers leave that first answer out.
No brief is built, so the quotes are parsed by the finder's own process (the brief's parse
cache would make them free).
Results: benchmarks/results/answer_conflicts.json (latest run per set list, with the load average).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, command_line, loadavg, machine_info, percentile, prepare_env, update_results  # noqa: E402

import qa_eval  # noqa: E402


def run_set(name: str, embedder) -> dict:
    from chatbot.brief import nlp
    from chatbot.cited_conflicts import worth_parsing
    from chatbot.evaluate import load_items
    from chatbot.service import QAService

    service = QAService(qa_eval.index_for(name, embedder), embedder=embedder).open()
    rows = []
    try:
        for item in load_items(qa_eval.SETS[name][2]):
            answer = service.answer(item.question)
            rows.append({"question": item.question, "ms": answer.timings_ms["conflicts"],
                         "total_ms": answer.timings_ms["total"], "parsed": bool(worth_parsing(answer.citations)),
                         "conflicts": [c.text() for c in answer.conflicts]})
    finally:
        service.conflicts.close()
    t = time.perf_counter()
    server = nlp.Server()
    try:
        server.parse(["The reservoir will hold 420 million cubic metres of water."])
    finally:
        server.close()
    start_ms = (time.perf_counter() - t) * 1000
    parsed = [r for r in rows if r["parsed"]]
    later = [r["ms"] for r in parsed[1:]]
    steady = [r for r in rows if not (parsed and r is parsed[0])]  # without the spaCy process's start
    every = [r["ms"] for r in steady]
    return {
        "questions": len(rows),
        "parsed": len(parsed),
        "parsed_share": round(len(parsed) / len(rows), 3),
        "all_ms": {"median": round(statistics.median(every), 2), "mean": round(statistics.fmean(every), 2),
                   "p90": round(percentile(every, 90), 2)},
        "parsed_ms": {"median": round(statistics.median(later), 1), "p90": round(percentile(later, 90), 1),
                      "max": round(max(later), 1)} if later else None,
        "skipped_ms_median": round(statistics.median([r["ms"] for r in rows if not r["parsed"]]), 3),
        "share_of_answer_time": round(sum(every) / sum(r["total_ms"] for r in steady), 3),
        "server_start_ms": round(start_ms),
        "answers_with_conflicts": [{"question": r["question"], "conflicts": r["conflicts"]} for r in rows if r["conflicts"]],
    }


def main() -> int:
    prepare_env()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="dev,analyst,seed,xquad,squad2", help="comma-separated qa_eval sets")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()
    from ingest.embed import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    load = loadavg()
    result = {"sets": {}, "machine": machine_info(), "load_before": load, "command": command_line()}
    for name in args.sets.split(","):
        result["sets"][name] = run_set(name, embedder)
        if not args.json:
            s = result["sets"][name]
            print(f"{name}: {s['parsed']}/{s['questions']} answers parsed; conflicts check median {s['all_ms']['median']} "
                  f"ms, mean {s['all_ms']['mean']} ms; parsed answers {s['parsed_ms']}; "
                  f"{len(s['answers_with_conflicts'])} with conflicts", flush=True)
    result["load_after"] = loadavg()
    update_results(RESULTS_DIR / "answer_conflicts.json", args.sets, result)
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
