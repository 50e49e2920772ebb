"""Same model, three inference backends: PyTorch vs ONNX Runtime fp32 vs ONNX Runtime int8.

    python benchmarks/embed_backends.py [--json] [--speed-docs N] [--backends torch,onnx,onnx-int8] [--no-cache]

For each backend of ``ingest.embed.SentenceTransformerEmbedder`` (the ONNX models are exported
locally from the packaged weights on first use, see ingest/onnx_backend.py):

- speed: the first N SciFact abstracts (default 1,000), split by the project's chunker with the
  default settings, embedded with the ingest batch size; chunks/s (model load not timed). The
  backends take turns on slices of the same texts (``--rounds``), and the load average is recorded.
- agreement with PyTorch: cosine between each backend's vector and PyTorch's for the same
  text, over all 5,183 SciFact documents (title + " " + text) and the 300 test queries.
- quality: SciFact nDCG@10 and recall@100, dense only, on the 300 test queries (qrels/test.tsv):
  brute-force dot products over the 5,183 documents, one vector per document (title + " " + text,
  no chunking: the setting of the published all-MiniLM-L6-v2 figure, 0.645), a document never
  retrieved for a query with the same id (as BEIR does). Document vectors are cached per backend
  in benchmarks/.cache/embed_backends/ (git-ignored; ``--no-cache`` recomputes them) and the
  corpus encode rate is reported too.

The rule (issue 5): a backend >= 1.5x faster than PyTorch with nDCG@10 within 0.01 of it should
become the default. Results go to benchmarks/results/embed_backends.json; the last stdout line
is one JSON object.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    CACHE_DIR, RESULTS_DIR, command_line, loadavg, machine_info, prepare_env, scifact_corpus, scifact_qrels,
    scifact_queries, update_results,
)

BACKENDS = ("torch", "onnx", "onnx-int8")


def ndcg_recall(scores: np.ndarray, doc_ids: list[str], query_ids: list[str], qrels: dict, k: int = 10,
                depth: int = 100) -> tuple[float, float]:
    ndcgs, recalls = [], []
    position = {d: i for i, d in enumerate(doc_ids)}
    for qi, qid in enumerate(query_ids):
        row = scores[qi].copy()
        if qid in position:  # BEIR drops a document with the query's own id
            row[position[qid]] = -np.inf
        top = np.argpartition(-row, depth)[:depth]
        top = top[np.argsort(-row[top], kind="stable")]
        ranked = [doc_ids[i] for i in top]
        rel = qrels[qid]
        dcg = sum(rel.get(d, 0) / math.log2(r + 2) for r, d in enumerate(ranked[:k]))
        ideal = sorted(rel.values(), reverse=True)[:k]
        idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
        ndcgs.append(dcg / idcg if idcg else 0.0)
        relevant = {d for d, g in rel.items() if g > 0}
        recalls.append(len(relevant & set(ranked)) / len(relevant) if relevant else 0.0)
    return float(np.mean(ndcgs)), float(np.mean(recalls))


def make_embedder(backend: str, batch_size: int):
    from ingest.embed import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(batch_size, backend)
    t = time.perf_counter()
    embedder.warm_up()  # first use of an ONNX backend exports the model: not part of the speed
    load_s = time.perf_counter() - t
    embedder.embed_documents(["warm up"] * batch_size)
    return embedder, load_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--speed-docs", type=int, default=1000, help="abstracts chunked for the speed test")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--rounds", type=int, default=4, help="slices the backends take turns on")
    parser.add_argument("--no-quality", action="store_true", help="speed only (skip the SciFact encode)")
    parser.add_argument("--no-cache", action="store_true", help="re-embed the SciFact corpus")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "embed_backends.json")
    args = parser.parse_args(argv)
    prepare_env()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if "torch" not in backends:
        backends.insert(0, "torch")  # the reference
    bad = [b for b in backends if b not in BACKENDS]
    if bad:
        parser.error(f"unknown backend(s) {bad}; choose from {BACKENDS}")

    from ingest.chunking import chunk_text
    from ingest.settings import Settings

    settings = Settings()
    corpus = scifact_corpus()
    chunks = [c.text for d in corpus[: args.speed_docs]
              for c in chunk_text(d["_id"], (d["title"] + "\n\n" + d["text"]).strip(), settings.chunk_size,
                                  settings.chunk_overlap)]
    embedders = {}
    result: dict = {"speed_texts": len(chunks), "speed_docs": args.speed_docs, "batch_size": settings.embed_batch_size,
                    "backends": {}, "load_before": loadavg()}
    for b in backends:
        embedders[b], load_s = make_embedder(b, settings.embed_batch_size)
        result["backends"][b] = {"model_id": embedders[b].model_id, "load_seconds": round(load_s, 2)}
        print(f"{b}: loaded in {load_s:.1f} s", file=sys.stderr)

    # --- speed on chunks -------------------------------------------------------------------
    # The machine is shared: the backends take turns on slices of the texts (rotating who goes
    # first), so a change of load hits them alike.
    slices = [s for s in np.array_split(np.arange(len(chunks)), max(1, args.rounds)) if len(s)]
    parts: dict[str, list] = {b: [] for b in backends}
    seconds = {b: 0.0 for b in backends}
    for r, idx in enumerate(slices):
        texts = [chunks[i] for i in idx]
        for b in backends[r % len(backends):] + backends[: r % len(backends)]:
            t = time.perf_counter()
            parts[b].append(embedders[b].embed_documents(texts))
            seconds[b] += time.perf_counter() - t
        print(f"round {r + 1}/{len(slices)}: " + ", ".join(f"{b} {seconds[b]:.0f} s" for b in backends)
              + f" (load {loadavg()})", file=sys.stderr)
    vectors = {b: np.concatenate(parts[b]) for b in backends}
    for b in backends:
        result["backends"][b]["chunks_per_s"] = round(len(chunks) / seconds[b], 2)
    ref = vectors["torch"]
    for b in backends:
        cos = (vectors[b] * ref).sum(axis=1)
        result["backends"][b]["speedup"] = round(result["backends"][b]["chunks_per_s"]
                                                 / result["backends"]["torch"]["chunks_per_s"], 2)
        result["backends"][b]["cosine_to_torch_chunks"] = {"mean": round(float(cos.mean()), 5),
                                                           "min": round(float(cos.min()), 5)}

    # --- quality: SciFact dense nDCG@10 ---------------------------------------------------------
    if not args.no_quality:
        qrels = scifact_qrels()
        queries = scifact_queries()
        query_ids = [q for q in qrels if q in queries]
        doc_ids = [str(d["_id"]) for d in corpus]
        doc_texts = [(d["title"] + " " + d["text"]).strip() for d in corpus]
        cache = CACHE_DIR / "embed_backends"
        cache.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256("\n".join(doc_texts).encode()).hexdigest()[:10]
        doc_vecs, query_vecs = {}, {}
        for b in backends:
            path = cache / f"scifact-{b}-{key}.npy"
            if path.exists() and not args.no_cache:
                doc_vecs[b] = np.load(path)
            else:
                t = time.perf_counter()
                doc_vecs[b] = embedders[b].embed_documents(doc_texts)
                dt = time.perf_counter() - t
                np.save(path, doc_vecs[b])
                result["backends"][b]["scifact_docs_per_s"] = round(len(doc_texts) / dt, 2)
                print(f"{b}: {len(doc_texts)} SciFact documents in {dt:.0f} s (load {loadavg()})", file=sys.stderr)
            query_vecs[b] = np.stack([embedders[b].embed_query(queries[q]) for q in query_ids])
            ndcg, recall = ndcg_recall(query_vecs[b] @ doc_vecs[b].T, doc_ids, query_ids, qrels)
            result["backends"][b]["ndcg@10"] = round(ndcg, 4)
            result["backends"][b]["recall@100"] = round(recall, 4)
        for b in backends:
            dcos = (doc_vecs[b] * doc_vecs["torch"]).sum(axis=1)
            qcos = (query_vecs[b] * query_vecs["torch"]).sum(axis=1)
            result["backends"][b]["cosine_to_torch_docs"] = {"mean": round(float(dcos.mean()), 5),
                                                             "min": round(float(dcos.min()), 5)}
            result["backends"][b]["cosine_to_torch_queries"] = {"mean": round(float(qcos.mean()), 5),
                                                                "min": round(float(qcos.min()), 5)}
            result["backends"][b]["ndcg_delta_vs_torch"] = round(
                result["backends"][b]["ndcg@10"] - result["backends"]["torch"]["ndcg@10"], 4)
        result["published_all_minilm_l6_v2_ndcg@10"] = 0.645
    result["load_after"] = loadavg()
    qualifies = [b for b in backends if b != "torch" and result["backends"][b]["speedup"] >= 1.5
                 and abs(result["backends"][b].get("ndcg_delta_vs_torch", 1.0)) <= 0.01]
    result["meets_default_rule"] = qualifies

    update_results(args.out, f"speed{args.speed_docs}" + ("" if args.no_quality else "+quality"),
                   {**result, "machine": machine_info(), "command": command_line()})
    if not args.json:
        print(f"{'backend':<10} {'chunks/s':>9} {'speedup':>8} {'nDCG@10':>8} {'R@100':>7} {'cos mean':>9} {'cos min':>8}")
        for b in backends:
            r = result["backends"][b]
            c = r.get("cosine_to_torch_docs") or r["cosine_to_torch_chunks"]
            print(f"{b:<10} {r['chunks_per_s']:>9} {r['speedup']:>8} {r.get('ndcg@10', '-'):>8} "
                  f"{r.get('recall@100', '-'):>7} {c['mean']:>9} {c['min']:>8}")
        print(f"load average before/after: {result['load_before']} / {result['load_after']}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
