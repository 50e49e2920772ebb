"""End-to-end answer latency and peak memory at N chunks, against the LangChain tutorial recipe.

    python benchmarks/latency.py --chunks N [--json] [--server] [--questions Q] [--build-only]

1. **Index**: the cached N-chunk benchmark index (``benchmarks/bench_index.py``: real text through
   the project's own loading, cleaning and chunking; the first ``--base`` chunks embedded for
   real, the rest perturbed copies reusing their originals' vectors), built on first use.

2. **Measure** in one warm process (index opened, model and BM25 loaded, 5 warm-up questions):
   ``QAService.answer()`` in the default (extractive) mode over ``--questions`` questions (default
   240: the 12 dev questions, then XQuAD dev and SciFact test claims alternately), timed one by one;
   then peak RSS (``ru_maxrss``) *before* the baseline is loaded. Then the **baseline**, the
   LangChain tutorial recipe on the same index and questions: ``langchain_chroma.Chroma`` over the
   same chunk collection and Chroma client, ``HuggingFaceEmbeddings`` (same packaged model,
   normalised), ``similarity_search(q, k=4)``, whole chunks joined as context.

3. ``--server``: the same against a Chroma server (``chroma run --path DIR --host 127.0.0.1
   --port FREE`` next to this Python, started and stopped here; its collection is built once, see
   ``bench_index``); the project uses it through
   ``Settings(chroma_url=...)`` (``QA_CHROMA_URL``), the baseline through the same HttpClient.

Also reported: CPU time per answer, the stages the service times (condense / retrieve / answer) and
the parts of an answer timed by wrapping them (query embedding, dense search, BM25, ...).
``--profile FILE`` writes a cProfile of the timed answers. The environment's ``OMP_WAIT_POLICY``
(PyTorch's OpenMP threads spin-wait by default, which costs a lot when the 2 cores are busy) is
recorded and becomes part of the results key, so runs with ``OMP_WAIT_POLICY=PASSIVE`` are kept apart.

Last stdout line: ``{"chunks": N, "p50_ms": x, "p95_ms": y, "rss_mb": z, "baseline_p50_ms": a,
"baseline_p95_ms": b, ...}``. Each run is also kept in ``benchmarks/results/latency.json`` (latest
run per configuration, with date, command, CPU, and the load average: the machine is shared).
Targets on a 2-core machine at N = 100,000: p50 <= 150 ms, p95 <= 400 ms, peak RSS <= 2 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_index import DEFAULT_BASE, JITTER, ensure_index, ensure_server_index, server_dir, settings_for  # noqa: E402
from common import BENCH, SHARED, Run, loadavg, percentile, read_jsonl, say, scifact_qrels, scifact_queries  # noqa: E402
from servers import ChromaServer  # noqa: E402


def questions(limit: int = 240) -> list[str]:
    """The 12 dev questions, then XQuAD dev questions and SciFact test claims alternately."""
    dev = [r["question"] for r in read_jsonl(SHARED / "eval" / "dev_qa.jsonl")]
    xquad = [r["question"] for r in read_jsonl(BENCH / "xquad_dev" / "qa.jsonl")]
    claims = scifact_queries()
    scifact = [claims[q] for q in scifact_qrels() if q in claims]  # test claims, in the qrels' order
    # Spread the picks over each list (XQuAD questions come grouped by article).
    xquad = xquad[::3] + xquad[1::3] + xquad[2::3]
    out = list(dev)
    i = 0
    while len(out) < limit and (i < len(xquad) or i < len(scifact)):
        for pool in (xquad, scifact):
            if i < len(pool) and len(out) < limit and pool[i] not in out:
                out.append(pool[i])
        i += 1
    return out[:limit]


# -------------------------------------------------------------------------------------- measure
def rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure_project(settings, qs: list[str], warmup: int = 5, profile: Path | None = None) -> dict[str, Any]:
    from chatbot.service import QAService

    t0 = time.perf_counter()
    service = QAService(settings)
    service.open()
    service.warm_up()
    service.conflicts.warm_up(wait=True)  # the app starts spaCy at launch too: time answers, not its start-up
    ready = time.perf_counter() - t0
    for q in qs[:warmup]:
        service.answer(q)
    spent = _instrument(service)
    times, cpu, parts, supported = [], [], {"condense": [], "retrieve": [], "answer": [], "conflicts": []}, 0
    inner: dict[str, list[float]] = {k: [] for k in spent}
    profiler = None
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    for q in qs:
        for k in spent:
            spent[k] = 0.0
        t, c = time.perf_counter(), time.process_time()
        ans = service.answer(q)
        times.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
        supported += ans.supported
        for k in parts:
            parts[k].append(ans.timings_ms.get(k, 0.0))
        for k, v in spent.items():
            inner[k].append(v * 1000)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(profile))
    return {
        "service": service,
        "p50_ms": round(percentile(times, 50), 1), "p95_ms": round(percentile(times, 95), 1),
        "mean_ms": round(statistics.fmean(times), 1), "max_ms": round(max(times), 1),
        "cpu_p50_ms": round(percentile(cpu, 50), 1), "cpu_p95_ms": round(percentile(cpu, 95), 1),
        "stages_p50_ms": {k: round(percentile(v, 50), 1) for k, v in parts.items()},
        "stages_p95_ms": {k: round(percentile(v, 95), 1) for k, v in parts.items()},
        "parts_p50_ms": {k: round(percentile(v, 50), 1) for k, v in inner.items()},
        "parts_p95_ms": {k: round(percentile(v, 95), 1) for k, v in inner.items()},
        "supported": supported, "open_and_warm_up_s": round(ready, 2),
    }


def _instrument(service) -> dict[str, float]:
    """Time the parts of an answer (wall seconds per call, summed per answer) without changing them:
    query embedding, the dense search (Chroma), BM25, loading lexical-only winners, the published-state
    check (one Chroma call each time the lexical index is looked at) and the documents list."""
    spent = {"embed_query": 0.0, "dense_query": 0.0, "bm25_search": 0.0, "get_chunks": 0.0,
             "published_state": 0.0, "documents": 0.0}

    def timed(obj, name: str, key: str) -> None:
        fn = getattr(obj, name)

        def wrapper(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[key] += time.perf_counter() - t

        setattr(obj, name, wrapper)

    retriever = service.retriever
    timed(retriever.embedder, "embed_query", "embed_query")
    timed(service.store, "nearest", "dense_query")
    timed(service.store, "get_chunks", "get_chunks")
    timed(service.store, "published_state", "published_state")
    timed(retriever, "documents", "documents")
    timed(retriever.lexical_index, "search", "bm25_search")
    return spent


def measure_baseline(service, qs: list[str], warmup: int = 5) -> dict[str, Any]:
    """The LangChain tutorial recipe on the same Chroma client and chunk collection."""
    from langchain_chroma import Chroma
    from langchain_huggingface import HuggingFaceEmbeddings

    from ingest.embed import model_path

    t0 = time.perf_counter()
    embeddings = HuggingFaceEmbeddings(model_name=model_path(), encode_kwargs={"normalize_embeddings": True})
    store = Chroma(client=service.store._get_client(), collection_name=f"{service.settings.collection}_chunks",
                   embedding_function=embeddings)
    ready = time.perf_counter() - t0
    for q in qs[:warmup]:
        store.similarity_search(q, k=4)
    times, cpu, chars = [], [], 0
    for q in qs:
        t, c = time.perf_counter(), time.process_time()
        docs = store.similarity_search(q, k=4)
        context = "\n\n".join(d.page_content for d in docs)  # whole chunks as the context
        times.append((time.perf_counter() - t) * 1000)
        cpu.append((time.process_time() - c) * 1000)
        chars += len(context)
    return {"baseline_p50_ms": round(percentile(times, 50), 1), "baseline_p95_ms": round(percentile(times, 95), 1),
            "baseline_cpu_p50_ms": round(percentile(cpu, 50), 1), "baseline_cpu_p95_ms": round(percentile(cpu, 95), 1),
            "baseline_mean_ms": round(statistics.fmean(times), 1), "baseline_context_chars_mean": round(chars / len(qs)),
            "baseline_load_s": round(ready, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, required=True, metavar="N", help="chunks in the benchmark index")
    p.add_argument("--questions", type=int, default=240, metavar="Q", help="questions to time (>= 200; default 240)")
    p.add_argument("--base", type=int, default=DEFAULT_BASE, metavar="B",
                   help=f"original (really embedded) chunks; more are perturbed copies (default {DEFAULT_BASE})")
    p.add_argument("--server", action="store_true", help="run against a Chroma server (chroma run, started here)")
    p.add_argument("--no-baseline", action="store_true", help="skip the LangChain baseline")
    p.add_argument("--build-only", action="store_true", help="build (or check) the cached index and stop")
    p.add_argument("--profile", type=Path, metavar="FILE", help="cProfile the timed answers into FILE")
    p.add_argument("--json", action="store_true", help="(the last stdout line is always the JSON figures)")
    args = p.parse_args(argv)
    if args.chunks < 1 or args.base < 1:
        p.error("--chunks and --base must be positive")
    run = Run.start()
    server = None
    try:
        chroma_url = None
        if args.server:
            server = ChromaServer(server_dir(args.chunks)).__enter__()
            chroma_url = server.url
            say(f"chroma run on {chroma_url} (data {server.path})")
            local, info = ensure_server_index(args.chunks, args.base, chroma_url)
        else:
            local, info = ensure_index(args.chunks, args.base)
        if args.build_only:
            figures = {"chunks": args.chunks, "built": True, **{k: info[k] for k in ("documents", "copies")}}
            print(json.dumps(figures))
            return 0
        settings = settings_for(local, chroma_url)
        qs = questions(args.questions)
        if len(qs) < 200:
            say(f"note: only {len(qs)} questions (fewer than 200)")
        load_before = loadavg()
        say(f"timing {len(qs)} questions through QAService.answer() (load {load_before}) …")
        proj = measure_project(settings, qs, profile=args.profile)
        service = proj.pop("service")
        rss = rss_mb()
        figures: dict[str, Any] = {"chunks": args.chunks, "p50_ms": proj["p50_ms"], "p95_ms": proj["p95_ms"],
                                   "rss_mb": rss}
        baseline: dict[str, Any] = {}
        if not args.no_baseline:
            say("timing the LangChain baseline (Chroma similarity_search k=4) …")
            baseline = measure_baseline(service, qs)
            figures.update({"baseline_p50_ms": baseline.pop("baseline_p50_ms"),
                            "baseline_p95_ms": baseline.pop("baseline_p95_ms")})
        figures.update({"mode": "server" if args.server else "embedded", "questions": len(qs),
                        **{k: v for k, v in proj.items() if k not in ("p50_ms", "p95_ms")}, **baseline,
                        "rss_mb_after_baseline": rss_mb() if baseline else None,
                        "server_rss_mb": server.peak_rss_mb() if server else None,
                        "index": {k: info.get(k) for k in ("documents", "original_chunks", "copies", "copy_chunks",
                                                           "base", "jitter")},
                        "load_during": [load_before, loadavg()],
                        "targets_at_100k": {"p50_ms": 150, "p95_ms": 400, "rss_mb": 2048}})
        figures["notes"] = (f"{info.get('copy_chunks', 0)} of the {args.chunks} chunks belong to perturbed copies "
                            f"that reuse their originals' embeddings (plus jitter {JITTER}); the other "
                            f"{info.get('original_chunks')} were embedded for real. rss_mb is the peak RSS of "
                            "this process before the baseline's model was loaded.")
        run.record("latency", f"chunks={args.chunks}" + (",server" if args.server else ""), figures,
                   OMP_WAIT_POLICY_effective=os.environ.get("OMP_WAIT_POLICY"))
        return 0
    finally:
        if server is not None:
            server.__exit__()


if __name__ == "__main__":
    sys.exit(main())
