"""End-to-end cited-QA quality: the project's answerer vs the LangChain tutorial recipe.

    python benchmarks/qa_eval.py [--json] [--sets dev,analyst,seed,blind,blind2,blind3,xquad,squad2] [--no-baseline]

For each QA set (dev_qa.jsonl format) it ingests the set's corpus into a cached index
(benchmarks/.cache/qa-<index>, rebuilt when missing) through the project's own ingest path and
scores `QAService.answer()` with chatbot.evaluate. squad2 indexes the SQuAD 2.0 "Normans" article
together with the 24 XQuAD articles (distractors), as issue 10 asks. The baseline is the LangChain tutorial
recipe on the same corpus: RecursiveCharacterTextSplitter(1000, 200), the same MiniLM model,
Chroma similarity_search k=4, the best sentence of those chunks (by cosine) as the answer, the
four whole chunks as the quotes, never refusing.
Last stdout line: one JSON object with every figure; also written to benchmarks/results/qa_eval.json
(with ``QA_CHUNK_VECTORS=sentence-mean``, indexes with that recipe and qa_eval-sentence-mean.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared"
CACHE = ROOT / "benchmarks" / ".cache"
XQUAD = SHARED / "bench" / "xquad_dev"
SQUAD2 = SHARED / "bench" / "squad2_dev"
# name: (index key, corpus folders, QA file). Sets with the same key share one cached index.
SETS = {
    "dev": ("seed", (ROOT / "corpus",), SHARED / "eval" / "dev_qa.jsonl"),
    "analyst": ("seed", (ROOT / "corpus",), SHARED / "eval" / "analyst_dev.jsonl"),
    "seed": ("seed", (ROOT / "corpus",), ROOT / "tests" / "data" / "seed_qa.jsonl"),
    # Written blind (2026-12-02: by an engineer who read only the article and the dev files' format,
    # never the code or its answers). "blind" has since become a dev set: the figure-about-what-is-
    # named and length-unit rules of chatbot.judge were written from its misses (benchmarks/RESULTS.md).
    # "blind2" (36 more, written the same way) is the held-out estimate of 2026-12-02; its figures have
    # been read four times (benchmarks/RESULTS.md). "blind3" (36 more, 2026-12-03, written the same
    # way by another author) is the fresh held-out estimate. Nothing is fitted, tuned or chosen on
    # either: tuning on one would make it one more dev set, so say so if you do.
    "blind": ("seed", (ROOT / "corpus",), ROOT / "tests" / "data" / "analyst_blind.jsonl"),
    "blind2": ("seed", (ROOT / "corpus",), ROOT / "tests" / "data" / "analyst_blind2.jsonl"),
    "blind3": ("seed", (ROOT / "corpus",), ROOT / "tests" / "data" / "analyst_blind3.jsonl"),
    "xquad": ("xquad", (XQUAD / "corpus",), XQUAD / "qa.jsonl"),
    # SQuAD 2.0 "Normans" indexed together with the 24 XQuAD articles (distractors), as in issue 10.
    "squad2": ("squad2", (SQUAD2 / "corpus", XQUAD / "corpus"), SQUAD2 / "qa.jsonl"),
}
KEYS = ("evidence", "answer_terms", "supported_correct", "answered_answerable", "refused_unanswerable", "verbatim",
        "quoted_chars")


def index_for(name: str, embedder):
    """Settings of the cached index of set ``name`` (built through the project's ingest when missing
    or when its corpus changed; an unchanged corpus costs a scan)."""
    from common import ingest_cached
    from ingest.settings import Settings

    key, folders, _ = SETS[name]
    # QA_CHUNK_VECTORS chooses how chunk vectors are made, as for ingest
    settings = Settings(index_dir=CACHE / f"qa-{key}-{embedder.backend}", chunk_vectors=Settings.from_env().chunk_vectors)
    ingest_cached(settings, folders, embedder)
    return settings


def ours(name: str, embedder) -> dict:
    from chatbot.evaluate import load_items, score
    from chatbot.service import QAService

    service = QAService(index_for(name, embedder), embedder=embedder).open()
    items = load_items(SETS[name][2])
    started = time.perf_counter()
    answers = [service.answer(i.question).to_json() for i in items]
    elapsed = time.perf_counter() - started
    texts: dict = {}
    result = score(items, answers, lambda d: texts.setdefault(d, service.doc_text(d)))
    out = {k: result[k] for k in KEYS if k in result}
    out["ms_per_question"] = round(elapsed / len(items) * 1000, 1)
    return out


def baseline(name: str, embedder) -> dict:
    import chromadb
    import numpy as np
    from chromadb.config import Settings as ChromaSettings
    from langchain_chroma import Chroma
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from chatbot.evaluate import load_items, score
    from ingest.chunking import split_sentences
    from ingest.documents import build_document
    from ingest.embed import model_path

    _, folders, qa = SETS[name]
    docs = {}
    for corpus in folders:
        for path in sorted(corpus.iterdir()):
            if path.is_file():
                d = build_document(path)
                docs[d.doc_id] = d
    splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200, add_start_index=True)
    pieces = splitter.split_documents([Document(d.text, metadata={"doc_id": d.doc_id}) for d in docs.values()])
    emb = HuggingFaceEmbeddings(model_name=model_path(), encode_kwargs={"normalize_embeddings": True})
    with tempfile.TemporaryDirectory() as tmp:
        client = chromadb.PersistentClient(tmp, settings=ChromaSettings(anonymized_telemetry=False))
        store = Chroma(client=client, collection_name="tutorial", embedding_function=emb)
        store.add_documents(pieces)
        items = load_items(qa)
        answers = []
        for item in items:
            hits = store.similarity_search(item.question, k=4)
            sentences = [h.page_content[s:e] for h in hits for s, e in split_sentences(h.page_content)]
            q = np.asarray(emb.embed_query(item.question))
            best = ""
            if sentences:
                vecs = np.asarray(emb.embed_documents(sentences))
                best = sentences[int(np.argmax(vecs @ q))]
            cites = []
            for n, h in enumerate(hits, 1):
                start = h.metadata["start_index"]
                cites.append({"n": n, "doc_id": h.metadata["doc_id"], "start": start,
                              "end": start + len(h.page_content), "quote": h.page_content})
            answers.append({"answer": best, "supported": True, "citations": cites})
        result = score(items, answers, lambda d: docs[d].text if d in docs else None)
    return {k: result[k] for k in KEYS if k in result}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print only the JSON summary")
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of: {', '.join(SETS)}")
    parser.add_argument("--no-baseline", action="store_true", help="skip the tutorial-recipe baseline")
    args = parser.parse_args()
    from common import prepare_env

    prepare_env()  # the project's process defaults (offline, no telemetry), as every benchmark
    from ingest.embed import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    figures: dict = {}
    for name in args.sets.split(","):
        qa = SETS[name][2]
        if not qa.exists():
            print(f"skipping {name}: {qa} not found", file=sys.stderr)
            continue
        figures[name] = {"ours": ours(name, embedder)}
        if not args.no_baseline:
            figures[name]["tutorial_recipe"] = baseline(name, embedder)
        if not args.json:
            for system, row in figures[name].items():
                print(f"{name:7s} {system:16s} " + "  ".join(f"{k}={row[k]:.3f}" for k in KEYS if row.get(k) is not None))
    from ingest.settings import CHUNK_RUN, Settings

    recipe = Settings.from_env().chunk_vectors  # QA_CHUNK_VECTORS: figures of that recipe, in their own file
    out = ROOT / "benchmarks" / "results" / ("qa_eval.json" if recipe == CHUNK_RUN else f"qa_eval-{recipe}.json")
    if args.no_baseline and out.exists():  # keep the recipe's last figures (it does not change)
        previous = json.loads(out.read_text()).get("figures", {})
        for name, rows in figures.items():
            if "tutorial_recipe" in previous.get(name, {}):
                rows["tutorial_recipe"] = previous[name]["tutorial_recipe"]
    record = {"figures": figures, "embedding_model": embedder.model_id, "chunk_vectors": recipe, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(),
              "nproc": os.cpu_count(), "command": "python benchmarks/qa_eval.py " + " ".join(sys.argv[1:])}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
