"""End-to-end cited-QA quality: the project's answerer vs the LangChain tutorial recipe.

    python benchmarks/qa_eval.py [--json] [--sets dev,seed,xquad]

For each QA set (dev_qa.jsonl format) it ingests the set's corpus into a cached index
(benchmarks/.cache/qa-<set>, rebuilt when missing) through the project's own ingest path and
scores `QAService.answer()` with chatbot.evaluate. The baseline is the LangChain tutorial
recipe on the same corpus: RecursiveCharacterTextSplitter(1000, 200), the same MiniLM model,
Chroma similarity_search k=4, the best sentence of those chunks (by cosine) as the answer, the
four whole chunks as the quotes, never refusing.
Last stdout line: one JSON object with every figure; also written to benchmarks/results/qa_eval.json.
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
SETS = {
    "dev": (ROOT / "corpus", SHARED / "eval" / "dev_qa.jsonl"),
    "seed": (ROOT / "corpus", ROOT / "tests" / "data" / "seed_qa.jsonl"),
    "xquad": (SHARED / "bench" / "xquad_dev" / "corpus", SHARED / "bench" / "xquad_dev" / "qa.jsonl"),
}
KEYS = ("evidence", "answer_terms", "supported_correct", "verbatim", "quoted_chars")


def ours(name: str, corpus: Path, qa: Path, embedder) -> dict:
    from chatbot.evaluate import load_items, score
    from chatbot.service import QAService
    from ingest.pipeline import Ingestor
    from ingest.settings import Settings

    key = "seed" if corpus == ROOT / "corpus" else name
    settings = Settings(index_dir=CACHE / f"qa-{key}-{embedder.backend}")
    Ingestor(settings, embedder=embedder, progress=False).run([corpus])
    service = QAService(settings, embedder=embedder).open()
    items = load_items(qa)
    started = time.perf_counter()
    answers = [service.answer(i.question).to_json() for i in items]
    elapsed = time.perf_counter() - started
    texts: dict = {}
    result = score(items, answers, lambda d: texts.setdefault(d, service.doc_text(d)))
    out = {k: result[k] for k in KEYS}
    out["ms_per_question"] = round(elapsed / len(items) * 1000, 1)
    return out


def baseline(corpus: Path, qa: Path, embedder) -> dict:
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

    docs = {}
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
    return {k: result[k] for k in KEYS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print only the JSON summary")
    parser.add_argument("--sets", default="dev,seed,xquad", help="comma-separated: dev, seed, xquad")
    parser.add_argument("--no-baseline", action="store_true", help="skip the tutorial-recipe baseline")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from ingest.embed import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    figures: dict = {}
    for name in args.sets.split(","):
        corpus, qa = SETS[name]
        if not qa.exists():
            print(f"skipping {name}: {qa} not found", file=sys.stderr)
            continue
        figures[name] = {"ours": ours(name, corpus, qa, embedder)}
        if not args.no_baseline:
            figures[name]["tutorial_recipe"] = baseline(corpus, qa, embedder)
        if not args.json:
            for system, row in figures[name].items():
                print(f"{name:6s} {system:16s} " + "  ".join(f"{k}={row[k]:.3f}" for k in KEYS))
    record = {"figures": figures, "embedding_model": embedder.model_id, "date": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(),
              "nproc": os.cpu_count(), "command": "python benchmarks/qa_eval.py " + " ".join(sys.argv[1:])}
    out = ROOT / "benchmarks" / "results" / "qa_eval.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
