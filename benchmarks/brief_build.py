"""Time to build the onboarding brief (chatbot/brief/) on the corpus and on the XQuAD articles.

    python benchmarks/brief_build.py [--collections corpus,xquad] [--repeat 3] [--json]

For each collection, the articles are ingested into a temporary index (not timed), then:

1. ``cli_cold_s``: ``python -m chatbot brief --index DIR --json`` in a fresh process with no
   cache at all, end to end — Python start, imports, the embedding model and spaCy loading,
   parsing (in spaCy's child process), themes, timeline, figures, writing the caches. Median of
   ``--repeat`` runs.
2. ``build_warm_s``: ``brief_for_index`` in this process with the embedding model already loaded
   (what the app pays, since it holds the model) and no cache: median of ``--repeat``;
   ``stages_s`` is the last run's breakdown (``parse`` includes starting spaCy's child process
   and loading its pipeline).
   ``*_cpu_s``: the CPU seconds of the same runs (this process's threads and the child processes):
   on a shared machine wall time grows with the load, CPU time much less, so it is the better
   estimate of the wall time on an idle 2-core machine (the build is mostly one thread).
3. ``refresh_parsed_s``: ``brief --refresh`` in a fresh process when the parses are cached (what
   a rebuild costs after an ingest that changed nothing already parsed).
4. ``cli_cached_s``: the same command on the unchanged index (the brief itself is cached).

The XQuAD articles are the 24 in ../shared/bench/xquad_dev/corpus (the issue names 48; only
these 24 are available locally). Results: benchmarks/results/brief_build.json (latest run per
collection, with the machine, the date and the load average: these 2-core machines are shared).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    BENCH, RESULTS_DIR, ROOT, children_cpu, command_line, loadavg, machine_info, prepare_env, require, update_results,
)

COLLECTIONS = {"corpus": ROOT / "corpus", "xquad": BENCH / "xquad_dev" / "corpus"}


def cli(index: Path, *extra: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the command and its child processes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    cpu, t = children_cpu(), time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "chatbot", "brief", "--index", str(index), "--json", *extra],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"brief failed: {r.stderr.strip()[-500:]}")
    return elapsed, children_cpu() - cpu


def _median(runs: list[tuple[float, float]]) -> tuple[float, float, list[float]]:
    return (round(statistics.median(w for w, _ in runs), 2), round(statistics.median(c for _, c in runs), 2),
            [round(w, 2) for w, _ in runs])


def measure(name: str, folder: Path, repeat: int, embedder) -> dict:
    import shutil

    from chatbot.brief.cache import brief_for_index, cache_dir
    from ingest.pipeline import Ingestor
    from ingest.settings import Settings
    from ingest.store import IndexStore

    require(folder)
    with tempfile.TemporaryDirectory(prefix=f"brief-{name}-") as tmp:
        settings = Settings(index_dir=Path(tmp) / "index")
        report = Ingestor(settings, embedder=embedder, progress=False).run([folder])
        result: dict = {"collection": name, "source": str(folder), "documents": report.documents,
                        "chunks": report.chunks, "load_before": loadavg()}
        store = IndexStore(settings, embedder.model_id, embedder.dimension).open(create=False)
        cold = []
        for _ in range(repeat):
            shutil.rmtree(cache_dir(store), ignore_errors=True)
            cold.append(cli(settings.index_dir))
        result["load_after_cli"] = loadavg()
        warm, brief = [], None
        for _ in range(repeat):
            shutil.rmtree(cache_dir(store), ignore_errors=True)
            cpu, own, t = children_cpu(), time.process_time(), time.perf_counter()
            brief = brief_for_index(store, embedder)
            warm.append((time.perf_counter() - t, time.process_time() - own + children_cpu() - cpu))
        refreshed = [cli(settings.index_dir, "--refresh") for _ in range(repeat)]
        cached = [cli(settings.index_dir) for _ in range(repeat)]
        measured = {}
        for key, runs in (("cli_cold", cold), ("build_warm", warm), ("refresh_parsed", refreshed), ("cli_cached", cached)):
            wall, cpu, all_runs = _median(runs)
            measured.update({f"{key}_s": wall, f"{key}_cpu_s": cpu, f"{key}_runs_s": all_runs})
        result.update({
            **measured,
            "stages_s": brief["timings_s"],
            "counts": {k: len(brief[k]) for k in ("actors", "positions", "timeline", "figures", "conflicts", "quotes")},
            "load_after": loadavg(),
        })
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collections", default="corpus,xquad", help="comma-separated: corpus, xquad")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "brief_build.json")
    args = parser.parse_args()
    prepare_env()
    from ingest.store import embedder_for
    from ingest.settings import Settings

    embedder = embedder_for(Settings(index_dir=Path(tempfile.gettempdir()) / "unused"), new_index=True)
    embedder.warm_up()
    results = {}
    for name in args.collections.split(","):
        result = measure(name, COLLECTIONS[name], args.repeat, embedder)
        results[name] = result
        record = {**result, "machine": machine_info(), "command": command_line(), "embedding_model": embedder.model_id}
        update_results(args.out, name, record)
        if not args.json:
            print(f"{name}: {result['documents']} documents, cold CLI {result['cli_cold_s']} s "
                  f"(CPU {result['cli_cold_cpu_s']} s), warm build {result['build_warm_s']} s "
                  f"(CPU {result['build_warm_cpu_s']} s), refresh with parses cached {result['refresh_parsed_s']} s, "
                  f"cached {result['cli_cached_s']} s; stages {result['stages_s']}; "
                  f"counts {result['counts']}", file=sys.stderr)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
