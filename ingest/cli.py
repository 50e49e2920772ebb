"""`python -m ingest` — the command-line edge: parse arguments, run, turn errors into messages."""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from ingest.environment import prepare_process
from ingest.loaders import SUPPORTED_EXTENSIONS
from ingest.settings import DEFAULT_CORPUS, DEFAULT_INDEX, Limits, Settings
from ingest.types import IngestError, IngestReport

log = logging.getLogger(__name__)

def _limits_help() -> str:
    defaults = Limits()
    items = [f"{env} {getattr(defaults, name):g}" for env, name in Limits.ENV.items()]
    return "\n".join("  " + ", ".join(items[i : i + 4]) for i in range(0, len(items), 4))


EPILOG = f"""\
Formats: {', '.join(SUPPORTED_EXTENSIONS)} (Markdown/text may start with YAML front matter).

Re-running is incremental: unchanged files are skipped without loading the model, changed files
replace their old chunks, and files deleted from a scanned folder are removed from the index.
An interrupted run is repaired by running again.

One writer per index at a time: a run holds the index's writer lock (a lock file in the index
folder; a lease on a Chroma server), and a second writer (another ingest, the app's upload or
delete) waits for it with a message, then fails naming the other writer.

Environment:
  QA_INDEX_DIR      index folder (default: {DEFAULT_INDEX})
  QA_CHROMA_URL     use a Chroma server instead, e.g. http://127.0.0.1:8000 (`chroma run`)
  QA_CHUNK_SIZE     chunk size in characters (default 600)
  QA_CHUNK_OVERLAP  overlap in characters of whole sentences (default 150)
  QA_LOCK_WAIT      seconds to wait for another writer of the same index (default 600)
  QA_EMBED_BACKEND  onnx-int8 (default for a new index), onnx or torch; unset, an existing
                    index keeps the backend it was built with (see README)
  QA_CHUNK_VECTORS  chunk-run (default): each chunk is embedded whole, besides its sentences;
                    sentence-mean: a chunk's vector is pooled from its sentences' runs, for
                    a 1.5-2x faster ingest and slightly worse retrieval (README). For a new
                    index or --rebuild: an existing index keeps the way it was built

Files: only regular files are read (FIFOs, sockets and devices are reported, never opened);
symbolic links are followed only to files inside the scanned folder (a file named explicitly is
read even if it is a link); names that are not valid UTF-8 are reported. Each file is read in a
separate reader process under the limits below; a file over a limit, or one that fails in any
way, is reported and the run goes on.

Limits per file (environment variable and default; see README "Limits"):
{_limits_help()}

Exit status: 0 all files ingested or unchanged, 1 some files failed, 2 usage error or an index
that cannot be used (busy with another writer past --lock-wait, built with other settings).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description="Turn a folder of articles into a persistent, citable search index (Chroma + BM25).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                        help=f"files or folders to ingest (default: {DEFAULT_CORPUS})")
    parser.add_argument("--index", type=Path, metavar="DIR", help="index folder (overrides QA_INDEX_DIR)")
    parser.add_argument("--rebuild", action="store_true",
                        help="delete the index and build it again from PATH (needed after changing model or chunking)")
    parser.add_argument("--chunk-size", type=int, metavar="N", help="chunk size in characters")
    parser.add_argument("--chunk-overlap", type=int, metavar="N", help="overlap between chunks in characters")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON summary object as the last line of stdout")
    parser.add_argument("--lock-wait", type=float, metavar="SECONDS",
                        help="how long to wait for another process writing the same index (default 600; "
                             "QA_LOCK_WAIT)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


class _Interrupt:
    """Remembers a Ctrl-C. It normally arrives as KeyboardInterrupt, but one that lands while a
    native library initialises comes out as that library's error (onnxruntime: "ImportError:
    initialization failed"); either way the run was interrupted, not broken."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, signum, frame) -> None:
        self.seen = True
        raise KeyboardInterrupt


INTERRUPTED = "Interrupted. Run the same command again to finish: the index is repaired on the next run."


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    interrupt = _Interrupt()
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.default_int_handler:
        signal.signal(signal.SIGINT, interrupt)
    prepare_process()  # before the model's libraries are imported
    try:
        return _run(args)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except Exception:
        if not interrupt.seen:
            raise
        log.debug("error after Ctrl-C (reported as the interruption)", exc_info=True)
        print(INTERRUPTED, file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)


def _run(args: argparse.Namespace) -> int:
    from ingest.pipeline import Ingestor

    try:
        settings = Settings.from_env(
            index_dir=args.index, chunk_size=args.chunk_size, chunk_overlap=args.chunk_overlap,
            lock_wait=args.lock_wait,
        )
        paths = args.paths or [DEFAULT_CORPUS]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise IngestError(f"{missing[0]} does not exist (give a file or a folder of articles).")
        report = Ingestor(settings, progress=not args.quiet).run(paths, rebuild=args.rebuild)
    except IngestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False))
    else:
        print(summary(report, settings))
    return 1 if report.failed else 0


def summary(report: IngestReport, settings: Settings) -> str:
    where = settings.chroma_url or settings.index_dir
    lines = [
        f"Index {where}: {report.documents} document(s), {report.chunks} chunk(s).",
        f"This run: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.removed} removed, {len(report.failed)} failed; {report.embedded_chunks} chunk(s) embedded "
        f"in {report.seconds:.1f} s.",
    ]
    for dup in report.duplicates:
        lines.append(f"  duplicate: {dup['path']} has the same text as {dup['same_as']} (indexed once)")
    for failure in report.failed:
        lines.append(f"  failed: {failure.path}: {failure.reason}")
    return "\n".join(lines)
