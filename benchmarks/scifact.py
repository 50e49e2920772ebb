"""BEIR SciFact: the project's own retrievers scored against the published table.

    python benchmarks/scifact.py [--json] [--index DIR] [--limit-queries N]

1. Writes the 5,183 abstracts of ../shared/bench/scifact/corpus.jsonl as one Markdown file each
   (``<_id>.md``: front-matter title = the abstract's title, body = title, blank line, text) and
   ingests the folder through the project's own ``Ingestor`` into a cached index
   (default ``benchmarks/.cache/scifact-index``, git-ignored). The index is reused across runs and
   rebuilt only if missing or incomplete (embedding the ~15k chunks takes several minutes on 2 cores).
2. Scores, on the 300 test queries (those in qrels/test.tsv):
   - ``dense``: Chroma cosine search only (all-MiniLM-L6-v2, the project's embedder);
   - ``bm25``: the project's lexical index only (ingest/lexical.py);
   - ``hybrid``: the production ``HybridRetriever`` with its default fusion parameters.
   A document's score is the best score of any of its chunks (chunk -> document -> file name =
   SciFact ``_id``). nDCG@10 (graded gains from the qrels, log2 discount, ideal DCG from the
   qrels) and recall@100, as in BEIR / pytrec_eval.
3. Prints the published table beside our figures, writes benchmarks/results/scifact.json, and
   prints one JSON object as the last stdout line.

Other flags: ``--split a|b`` scores only one fixed half of the test queries (md5 of the query id;
SciFact ships no train qrels, so tuning was checked for agreement across the two halves);
``--sweep`` also runs a fusion parameter grid and the BM25 title-prefix ablation on the cached
rankings and records them in the results file.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import platform
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
DEFAULT_INDEX = CACHE / "scifact-index"
RESULTS = ROOT / "benchmarks" / "results" / "scifact.json"
DEPTH = 100  # documents scored per query (recall@100)
CHUNK_DEPTH = 400  # chunks fetched per retriever; ~3 chunks per abstract, so > 100 documents

sys.path.insert(0, str(ROOT))
from common import ingest_cached, machine, prepare_env, scifact_corpus, scifact_qrels, scifact_queries  # noqa: E402  (benchmarks/ is the script's folder)

PUBLISHED = [  # ../shared/bench/README.md
    ("BM25 (BEIR paper)", 0.665, None),
    ("BM25 top-100 + cross-encoder rerank (BEIR paper)", 0.688, None),
    ("Anserini BM25 flat", 0.679, 0.925),
    ("all-MiniLM-L6-v2, dense (MTEB)", 0.645, 0.925),
    ("bge-small-en-v1.5, dense (MTEB)", 0.713, 0.945),
]


# ----------------------------------------------------------------------------- data
def split_of(query_id: str) -> str:
    """A fixed half of the test queries: 'a' or 'b' (md5 of the id, so stable across runs)."""
    return "a" if hashlib.md5(query_id.encode()).digest()[0] % 2 == 0 else "b"


# ----------------------------------------------------------------------------- index
def write_docs(folder: Path, corpus: list[dict]) -> None:
    """One Markdown file per abstract; rewritten only when missing or different (keeps ingest incremental)."""
    folder.mkdir(parents=True, exist_ok=True)
    for doc in corpus:
        title = " ".join(doc["title"].split())
        body = f"---\ntitle: {json.dumps(title, ensure_ascii=False)}\n---\n{title}\n\n{doc['text'].strip()}\n"
        path = folder / f"{doc['_id']}.md"
        if not path.exists() or path.read_text(encoding="utf-8") != body:
            path.write_text(body, encoding="utf-8")


def build_index(index_dir: Path, corpus: list[dict], progress: bool = True):
    """Ingest (incrementally: a complete index is only checked) and return the settings used."""
    from ingest.settings import Settings

    settings = Settings.from_env(index_dir=index_dir)
    docs = index_dir.parent / (index_dir.name + "-docs")
    write_docs(docs, corpus)
    started = time.perf_counter()
    report = ingest_cached(settings, [docs], progress=progress)
    took = time.perf_counter() - started
    if report.failed:
        raise SystemExit(f"{len(report.failed)} SciFact file(s) failed to ingest, e.g. {report.failed[0]}")
    print(f"index {index_dir}: {report.documents} documents, {report.chunks} chunks "
          f"({report.embedded_chunks} embedded this run, {took:.0f} s)", file=sys.stderr)
    return settings


def doc_map(store) -> dict[str, list[str]]:
    """Project doc_id -> SciFact _ids (the file names; identical texts share one doc_id)."""
    out: dict[str, list[str]] = {}
    for r in store.list_documents():
        out[r.doc_id] = [Path(p).stem for p in r.paths]
    return out


# ----------------------------------------------------------------------------- metrics
def ndcg_at(ranked: list[str], rels: dict[str, int], k: int = 10) -> float:
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(rels.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranked: list[str], rels: dict[str, int], k: int = 100) -> float:
    relevant = {d for d, g in rels.items() if g > 0}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def to_docs(chunk_scores, chunk_doc: dict[str, str], docs: dict[str, list[str]], depth: int = DEPTH) -> list[str]:
    """Chunk ranking [(chunk_id, score)] -> SciFact ids ranked by their best chunk (ties: first seen)."""
    best: dict[str, float] = {}
    for cid, score in chunk_scores:
        d = chunk_doc.get(cid) or cid.split("-", 1)[0]
        if d not in best or score > best[d]:
            best[d] = score
    order = sorted(best, key=lambda d: -best[d])  # stable: earlier chunk wins ties
    ranked: list[str] = []
    for d in order:
        ranked.extend(docs.get(d, []))
        if len(ranked) >= depth:
            break
    return ranked[:depth]


def evaluate(runs: dict[str, dict[str, list[str]]], qrels: dict[str, dict[str, int]]) -> dict:
    out: dict[str, dict[str, float]] = {"ndcg@10": {}, "recall@100": {}}
    for name, run in runs.items():
        qs = [q for q in run if q in qrels]
        out["ndcg@10"][name] = round(sum(ndcg_at(run[q], qrels[q]) for q in qs) / len(qs), 4)
        out["recall@100"][name] = round(sum(recall_at(run[q], qrels[q]) for q in qs) / len(qs), 4)
    return out


# ----------------------------------------------------------------------------- runs
class Runner:
    """Holds the open index and the raw per-retriever chunk rankings of each query."""

    def __init__(self, settings) -> None:
        from chatbot.retrieve import HybridRetriever
        from ingest.store import IndexStore, embedder_for

        self.embedder = embedder_for(settings)
        self.store = IndexStore(settings, self.embedder.model_id, self.embedder.dimension).open(create=False)
        self.retriever = HybridRetriever(self.store, self.embedder)
        self.docs = doc_map(self.store)
        index = self.retriever.lexical_index
        self.chunk_doc = {cid: cid.split("-", 1)[0] for cid in index.chunk_ids}

    def raw(self, queries: dict[str, str], depth: int = CHUNK_DEPTH):
        """Per query: (dense [(chunk_id, cosine)], bm25 [(chunk_id, score)], query vector)."""
        index = self.retriever.lexical_index
        out = {}
        for qid, text in queries.items():
            vec = self.embedder.embed_query(text)
            dense = [(sc.chunk.chunk_id, sc.score) for sc in self.store.query(vec, depth)]
            lex = index.search(text, depth)
            out[qid] = (dense, lex, vec)
        return out

    def ranked(self, chunk_scores) -> list[str]:
        return to_docs(chunk_scores, self.chunk_doc, self.docs)


def hybrid_run(runner: Runner, queries: dict[str, str], raw, config=None) -> dict[str, list[str]]:
    """The production retriever (its fusion, its defaults) asked for CHUNK_DEPTH passages."""
    from chatbot.retrieve import HybridRetriever

    retriever = runner.retriever if config is None else HybridRetriever(runner.store, runner.embedder, config)
    run = {}
    for qid, text in queries.items():
        passages = retriever.retrieve(text, top_k=CHUNK_DEPTH, vector=raw[qid][2])
        run[qid] = runner.ranked([(p.chunk.chunk.chunk_id, p.score) for p in passages])
    return run


def halves(run: dict[str, list[str]], qrels) -> dict[str, float]:
    """nDCG@10 on each fixed half of the queries (a stability check for tuning)."""
    out = {}
    for h in "ab":
        part = {q: r for q, r in run.items() if split_of(q) == h}
        out[h] = evaluate({"x": part}, qrels)["ndcg@10"]["x"] if part else None
    return out


def sweep(runner: Runner, queries: dict[str, str], raw, qrels) -> dict:
    """Tuning evidence on the cached raw rankings, with the production fuse function:
    a fusion grid, and the BM25 title prefix switched off (the lexical index rebuilt in memory)."""
    from chatbot.retrieve import RetrievalConfig, fuse_rankings
    from ingest import lexical

    grid = [dict(fusion="rrf", rrf_k=k, w_dense=1.0, w_lexical=wl)
            for k in (5, 10, 20, 30, 60, 100) for wl in (0.5, 0.75, 1.0, 1.5)]
    grid += [dict(fusion=f, norm_depth=nd, w_dense=round(1 - wl, 2), w_lexical=wl)
             for f in ("minmax", "zscore") for nd in (20, 40, 100) for wl in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7)]
    rows = []
    for params in grid:
        cfg = replace(RetrievalConfig(), **params)
        run = {q: runner.ranked(fuse_rankings(raw[q][0], raw[q][1], cfg)) for q in queries}
        m = evaluate({"x": run}, qrels)
        row = {**params, "ndcg@10": m["ndcg@10"]["x"], "recall@100": m["recall@100"]["x"],
               "ndcg@10_halves": halves(run, qrels)}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    saved = lexical.BM25_TITLE
    lexical.BM25_TITLE = False
    try:
        plain = lexical.build_from_store(runner.store)
    finally:
        lexical.BM25_TITLE = saved
    lex = {q: plain.search(t, CHUNK_DEPTH) for q, t in queries.items()}
    no_title = {
        "bm25": {q: runner.ranked(lex[q]) for q in queries},
        "hybrid": {q: runner.ranked(fuse_rankings(raw[q][0], lex[q], RetrievalConfig())) for q in queries},
    }
    ablation = evaluate(no_title, qrels)
    print("without the title prefix in BM25: " + json.dumps(ablation), file=sys.stderr)
    return {"grid": rows, "bm25_without_title": ablation}


# ----------------------------------------------------------------------------- output
def table(figures: dict) -> str:
    lines = ["| system | nDCG@10 | R@100 |", "| --- | --- | --- |"]
    for name, ndcg, rec in PUBLISHED:
        lines.append(f"| published: {name} | {ndcg:.3f} | {'' if rec is None else f'{rec:.3f}'} |")
    for name in ("dense", "bm25", "hybrid"):
        lines.append(f"| **ours: {name}** | {figures['ndcg@10'][name]:.3f} | {figures['recall@100'][name]:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="only the JSON figures on stdout (table to stderr)")
    parser.add_argument("--index", type=Path, default=None,
                        help=f"index folder (default {DEFAULT_INDEX}-BACKEND: QA_EMBED_BACKEND or the project's default)")
    parser.add_argument("--limit-queries", type=int, default=None, metavar="N", help="score only the first N test queries")
    parser.add_argument("--split", choices=("a", "b"), help="score only one fixed half of the test queries")
    parser.add_argument("--sweep", action="store_true", help="also run the tuning evidence: a fusion grid and the BM25 title ablation "
                        "(printed to stderr, recorded in the results file)")
    parser.add_argument("--no-write", action="store_true", help="do not write benchmarks/results/scifact.json")
    parser.add_argument("--quiet", action="store_true", help="no ingest progress bar")
    args = parser.parse_args(argv)

    prepare_env()  # the project's process defaults (offline, no telemetry), as every benchmark
    corpus = scifact_corpus()
    qrels = scifact_qrels()
    all_queries = scifact_queries()
    queries = {q: all_queries[q] for q in sorted(qrels, key=int)}
    if args.split:
        queries = {q: t for q, t in queries.items() if split_of(q) == args.split}
    if args.limit_queries:
        queries = dict(list(queries.items())[: args.limit_queries])
    if args.index is None:
        from ingest.embed import DEFAULT_BACKEND
        from ingest.settings import Settings

        args.index = DEFAULT_INDEX.with_name(f"{DEFAULT_INDEX.name}-{Settings.from_env().embed_backend or DEFAULT_BACKEND}")
    settings = build_index(args.index.resolve(), corpus, progress=not args.quiet)

    runner = Runner(settings)
    runner.embedder.warm_up()  # model load is not retrieval time
    t0 = time.perf_counter()
    raw = runner.raw(queries)
    t_raw = time.perf_counter() - t0
    runs = {
        "dense": {q: runner.ranked(raw[q][0]) for q in queries},
        "bm25": {q: runner.ranked(raw[q][1]) for q in queries},
    }
    t1 = time.perf_counter()
    runs["hybrid"] = hybrid_run(runner, queries, raw)
    t_hybrid = time.perf_counter() - t1
    figures = evaluate(runs, qrels)
    split = {name: halves(run, qrels) for name, run in runs.items()}
    tuning = sweep(runner, queries, raw, qrels) if args.sweep else None

    out = sys.stderr if args.json else sys.stdout
    print(f"\nBEIR SciFact test, {len(queries)} queries, {len(corpus)} abstracts "
          f"({runner.store.count_chunks()} chunks)\n", file=out)
    print(table(figures), file=out)
    print("\nnDCG@10 on the two fixed halves of the queries: " +
          ", ".join(f"{n} {v['a']}/{v['b']}" for n, v in split.items()), file=out)
    print(f"(dense+bm25 retrieval {t_raw:.1f} s, hybrid {t_hybrid:.1f} s for {len(queries)} queries)", file=out)

    if not args.no_write and not args.limit_queries and not args.split:
        write_results(figures, runner, len(queries), argv, split, tuning)
    print(json.dumps(figures))
    return 0


def write_results(figures: dict, runner: Runner, n_queries: int, argv, split: dict, tuning: dict | None) -> None:
    from chatbot.retrieve import RetrievalConfig
    from ingest import lexical

    result = {
        "benchmark": "BEIR SciFact test (300 queries, 5,183 abstracts, title + text)",
        "figures": figures,
        "published": [{"system": n, "ndcg@10": a, "recall@100": b} for n, a, b in PUBLISHED],
        "date": dt.date.today().isoformat(),
        "machine": {**machine(), "platform": platform.platform()},
        "command": "python benchmarks/scifact.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "embedding_model": runner.embedder.model_id,
        "backend": runner.embedder.backend,
        "queries": n_queries,
        "documents": len(runner.docs),
        "chunks": runner.store.count_chunks(),
        "fusion": asdict(RetrievalConfig()),
        "bm25": lexical.index_settings(),
        "ndcg@10_halves": split,
        "tuning": tuning if tuning is not None else "run with --sweep to record the fusion grid and the BM25 title ablation",
        "scoring": {"doc_score": "max over the document's chunks", "chunk_depth_per_retriever": CHUNK_DEPTH,
                    "ndcg": "graded gains from qrels, log2 discount (BEIR/pytrec_eval)"},
    }
    # One record per embedding backend (the latest run of each).
    runs = json.loads(RESULTS.read_text(encoding="utf-8")) if RESULTS.exists() else {}
    if "figures" in runs:  # a single-run file from before backends were recorded: PyTorch
        runs = {runs.get("backend", "torch"): runs}
    runs[runner.embedder.backend] = result
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(runs, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
