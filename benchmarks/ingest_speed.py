"""Ingest throughput of the real pipeline against plain ``SentenceTransformer.encode``.

    python benchmarks/ingest_speed.py [--json] [--limit N] [--backend torch|onnx|onnx-int8] [--out FILE]
    (default backend: the project's default, ingest.embed.DEFAULT_BACKEND)

1. Writes the 7,600 AG News test items (../shared/bench/ag_news/test.csv; front-matter title,
   body = description) and the 5,183 SciFact abstracts (front-matter title, body = title, blank
   line, text; as benchmarks/scifact.py) as one Markdown file each into a temporary folder.
   ``--limit N`` takes the first N items of each source (for quick runs).
2. Runs the real pipeline, ``ingest.pipeline.Ingestor`` with a fresh temporary index (progress on
   stderr), and times the whole of ``Ingestor.run`` (scan, load, clean, chunk, model load, embed,
   Chroma writes, BM25 build): ``pipeline_chunks_per_s = chunks embedded / that time``.
3. In the same process, reads the stored chunk texts back from the index and times a separately
   loaded plain ``SentenceTransformer(model_path())`` encoding exactly those texts with the same
   batch size and ``normalize_embeddings=True`` (after a short warm-up; model load not timed):
   ``raw_encode_chunks_per_s``.

4. With an ONNX backend (the default is onnx-int8), also times that backend's own plain encoder
   on the same texts (``raw_same_backend_chunks_per_s``), so ``overhead_ratio`` = pipeline / that
   isolates what the pipeline costs beyond embedding, while ``ratio`` (against PyTorch
   ``SentenceTransformer.encode``, as the ingest issue asks) includes the backend's gain.

The last stdout line is one JSON object:
``{"pipeline_chunks_per_s": x, "raw_encode_chunks_per_s": y, "ratio": x/y, ...}``; the figures
are also kept in benchmarks/results/ingest_speed.json (latest run per backend and size, with the
machine, the date, the command and the load average, since these 2-core machines are shared).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    RESULTS_DIR, ag_news, children_cpu, command_line, loadavg, machine_info, markdown_file, prepare_env, scifact_corpus,
    update_results,
)
from ingest.embed import BACKENDS, DEFAULT_BACKEND  # noqa: E402
from ingest.settings import CHUNK_RUN  # noqa: E402  (common puts the project on sys.path)



def write_corpus(folder: Path, limit: int | None) -> int:
    n = 0
    news = folder / "ag_news"
    news.mkdir(parents=True)
    for i, (_cls, title, description) in enumerate(ag_news(limit)):
        # AG News escapes line breaks as a literal backslash; keep the text as it is otherwise.
        (news / f"{i:05d}.md").write_text(markdown_file(title, description.replace("\\", " ")), encoding="utf-8")
        n += 1
    sci = folder / "scifact"
    sci.mkdir(parents=True)
    for doc in scifact_corpus(limit):
        title = " ".join(doc["title"].split())
        (sci / f"{doc['_id']}.md").write_text(markdown_file(title, f"{title}\n\n{doc['text'].strip()}"), encoding="utf-8")
        n += 1
    return n


class _TimedEmbedder:
    """Wraps the pipeline's embedder to split the wall time into 'embedding' and 'the rest'."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.model_id, self.dimension = inner.model_id, inner.dimension
        self.seconds = 0.0
        self.load_seconds = 0.0

    def _timed(self, method, texts):
        if not getattr(self.inner, "loaded", True):
            t = time.perf_counter()
            self.inner.warm_up()
            self.load_seconds += time.perf_counter() - t
        t = time.perf_counter()
        try:
            return method(texts)
        finally:
            self.seconds += time.perf_counter() - t

    def embed_documents(self, texts):
        return self._timed(self.inner.embed_documents, texts)

    def embed_pooled(self, texts):  # sentence vectors + pooling weights (QA_CHUNK_VECTORS=sentence-mean)
        return self._timed(self.inner.embed_pooled, texts)

    def embed_query(self, text):
        return self.inner.embed_query(text)


def run(limit: int | None, backend: str, batch_size: int | None) -> dict:
    from ingest.embed import SentenceTransformerEmbedder, model_path
    from ingest.pipeline import Ingestor
    from ingest.settings import Settings

    result: dict = {"backend": backend, "limit": limit}
    with tempfile.TemporaryDirectory(prefix="ingest-speed-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        result["files"] = write_corpus(tmp / "docs", limit)
        print(f"wrote {result['files']} files in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        # QA_CHUNK_VECTORS chooses how chunk vectors are made, as for ingest
        settings = Settings(index_dir=tmp / "index", chunk_vectors=Settings.from_env().chunk_vectors)
        result["chunk_vectors"] = settings.chunk_vectors
        if batch_size:
            settings = settings.with_(embed_batch_size=batch_size)
        embedder = _TimedEmbedder(SentenceTransformerEmbedder(settings.embed_batch_size, backend))
        ingestor = Ingestor(settings, embedder=embedder, progress=True)
        result["load_before"] = loadavg()
        started, cpu_started, children_started = time.perf_counter(), time.process_time(), children_cpu()
        report = ingestor.run([tmp / "docs"])
        pipeline_s = time.perf_counter() - started
        pipeline_cpu = time.process_time() - cpu_started
        reader = getattr(ingestor, "reader", None)  # files are read in a child process: count its CPU too
        if hasattr(reader, "close"):
            reader.close()
        reader_cpu = children_cpu() - children_started
        pipeline_cpu += reader_cpu
        result["load_after_pipeline"] = loadavg()
        if report.failed:
            print(f"{len(report.failed)} file(s) failed, e.g. {report.failed[0]}", file=sys.stderr)
        chunks = report.embedded_chunks
        result.update(
            documents=report.documents, failed=len(report.failed), chunks=chunks,
            pipeline_seconds=round(pipeline_s, 2),
            pipeline_embed_seconds=round(embedder.seconds, 2),
            pipeline_model_load_seconds=round(embedder.load_seconds, 2),
            pipeline_other_seconds=round(pipeline_s - embedder.seconds - embedder.load_seconds, 2),
        )
        texts = [text for _cid, text, _meta in ingestor.store.iter_chunks()]
        if len(texts) != chunks:
            print(f"note: {len(texts)} chunks stored, {chunks} embedded", file=sys.stderr)

    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(model_path(), device="cpu")
    bs = settings.embed_batch_size
    model.encode(texts[:bs], batch_size=bs, normalize_embeddings=True, show_progress_bar=False)  # warm-up
    print(f"raw encode of {len(texts)} chunks (batch {bs})…", file=sys.stderr)
    t, cpu_started = time.perf_counter(), time.process_time()
    model.encode(texts, batch_size=bs, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
    raw_s = time.perf_counter() - t
    raw_cpu = time.process_time() - cpu_started
    result["load_after_raw"] = loadavg()
    result["raw_encode_seconds"] = round(raw_s, 2)
    if backend != "torch":
        from ingest.onnx_backend import load_encoder

        encoder = load_encoder(model_path(), "int8" if backend == "onnx-int8" else "fp32")
        encoder.encode(texts[:bs], normalize_embeddings=True)  # warm-up
        print(f"raw {backend} encode of {len(texts)} chunks…", file=sys.stderr)
        t = time.perf_counter()
        encoder.encode(texts, batch_size=bs, normalize_embeddings=True)
        same_s = time.perf_counter() - t
        result["raw_same_backend_seconds"] = round(same_s, 2)
        result["raw_same_backend_chunks_per_s"] = round(len(texts) / same_s, 2)
        result["overhead_ratio"] = round((chunks / pipeline_s) / (len(texts) / same_s), 3)
        result["load_after_raw_same_backend"] = loadavg()
    result["batch_size"] = bs
    result["embed_group"] = __import__("ingest.pipeline", fromlist=["EMBED_GROUP"]).EMBED_GROUP
    pipeline_rate = chunks / pipeline_s if pipeline_s else 0.0
    raw_rate = len(texts) / raw_s if raw_s else 0.0
    # CPU seconds of this process (all threads): less sensitive than wall time to other processes'
    # load on a shared machine, though not to everything (cache, spinning threads).
    result["pipeline_cpu_seconds"] = round(pipeline_cpu, 2)  # includes the file reader process
    result["reader_process_cpu_seconds"] = round(reader_cpu, 2)
    result["raw_encode_cpu_seconds"] = round(raw_cpu, 2)
    result["cpu_ratio"] = round((chunks / pipeline_cpu) / (len(texts) / raw_cpu), 3) if pipeline_cpu and texts else None
    result["pipeline_embed_only_chunks_per_s"] = round(chunks / embedder.seconds, 2) if embedder.seconds else None
    return {
        "pipeline_chunks_per_s": round(pipeline_rate, 2),
        "raw_encode_chunks_per_s": round(raw_rate, 2),
        "ratio": round(pipeline_rate / raw_rate, 3) if raw_rate else None,
        **result,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print only the JSON result on stdout")
    parser.add_argument("--limit", type=int, default=None, help="first N items of each source (default: all)")
    parser.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND)
    parser.add_argument("--batch-size", type=int, default=None, help="embedding batch size (default: the settings')")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "ingest_speed.json", help="results file to update")
    args = parser.parse_args(argv)
    prepare_env()

    result = run(args.limit, args.backend, args.batch_size)
    record = {**result, "machine": machine_info(), "command": command_line()}
    key = f"{args.backend}-{'full' if args.limit is None else f'limit{args.limit}'}"
    if record.get("chunk_vectors", CHUNK_RUN) != CHUNK_RUN:
        key += f"-{record['chunk_vectors']}"
    update_results(args.out, key, record)
    if not args.json:
        print(
            f"pipeline {result['pipeline_chunks_per_s']} chunks/s ({result['chunks']} chunks in "
            f"{result['pipeline_seconds']} s: embed {result['pipeline_embed_seconds']} s, model load "
            f"{result['pipeline_model_load_seconds']} s, rest {result['pipeline_other_seconds']} s)\n"
            f"raw encode {result['raw_encode_chunks_per_s']} chunks/s -> ratio {result['ratio']} (target >= 0.85); "
            f"by CPU time {result['cpu_ratio']}\n"
            + (f"raw {args.backend} encode {result['raw_same_backend_chunks_per_s']} chunks/s -> overhead ratio "
               f"{result['overhead_ratio']}\n" if "overhead_ratio" in result else "") +
            f"load average before/after: {result['load_before']} / {result['load_after_raw']}"
        )
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
