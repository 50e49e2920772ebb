"""`python app.py` — the analyst workspace: settings once, index brought up to date, then serve."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from ingest.environment import prepare_process

EPILOG = """\
On start, the corpus folder is ingested incrementally: a missing index is built (with a progress
bar here), changed or new articles are indexed, and an unchanged corpus costs a second or two
without loading the model. The model then warms up in the background while the page loads.

Environment (flags win over variables):
  QA_HOST, QA_PORT     where to listen (default 127.0.0.1:7860; 0.0.0.0 exposes the app)
  QA_INDEX_DIR         index folder (default .index/ in the project)
  QA_AUTH              user:password — require a login (set it whenever the app is exposed)
  QA_UPLOAD_DIR        where uploaded files are stored (default .uploads/ in the project)
  QA_MAX_UPLOAD_MB     size limit per uploaded file (default 20)
  QA_UPLOAD_TYPES      allowed upload types, e.g. .md,.pdf (default: every format ingest reads)
  QA_CHROMA_URL, QA_LLM, QA_LLM_MODEL, ...   see README, "Configuration"
"""


def build_parser() -> argparse.ArgumentParser:
    from ingest.settings import DEFAULT_CORPUS

    parser = argparse.ArgumentParser(
        prog="python app.py", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Serve the cited Q&A workspace: chat with exact citations, evidence panel, source viewer, "
                    "library (upload/delete), settings and exports.")
    parser.add_argument("--host", metavar="H", help="interface to listen on (QA_HOST; default 127.0.0.1, local only)")
    parser.add_argument("--port", type=int, metavar="P", help="port to listen on (QA_PORT; default 7860)")
    parser.add_argument("--index", type=Path, metavar="DIR", help="index folder (QA_INDEX_DIR; default .index/)")
    parser.add_argument("--corpus", type=Path, metavar="DIR", default=DEFAULT_CORPUS,
                        help=f"folder ingested incrementally before serving (default {DEFAULT_CORPUS})")
    parser.add_argument("--no-ingest", action="store_true",
                        help="serve the index as it is, without checking the corpus folder first")
    return parser


def parse_auth(value: str | None) -> tuple[str, str] | None:
    from chatbot.types import QAError

    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise QAError("QA_AUTH must look like user:password (both non-empty).")
    return user, password


def ensure_index(ingestor, corpus: Path) -> None:
    """Bring the index up to date with ``corpus`` (incremental; cheap when nothing changed)."""
    from ingest.cli import summary
    from ingest.types import IngestError

    if not corpus.is_dir():
        raise IngestError(f"the corpus folder {corpus} does not exist (give --corpus DIR, or --no-ingest).")
    print(f"Checking {corpus} against the index…", file=sys.stderr, flush=True)
    report = ingestor.run([corpus])
    print(summary(report, ingestor.settings), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prepare_process()  # before anything imports torch, ONNX Runtime or gradio
    from chatbot.generative import llm_from_settings
    from chatbot.service import QAService
    from chatbot.types import QAError
    from workspace.settings import UploadLimits, upload_dir_from
    from workspace.workspace import Workspace
    from ingest.pipeline import Ingestor
    from ingest.settings import Settings
    from ingest.types import IngestError

    try:
        settings = Settings.from_env(index_dir=args.index)
        env = settings.extra
        host = args.host or env.get("QA_HOST") or "127.0.0.1"
        port = _port(str(args.port) if args.port is not None else env.get("QA_PORT") or "7860")
        auth = parse_auth(env.get("QA_AUTH"))
        limits = UploadLimits.from_env(env)
        service = QAService(settings, llm=llm_from_settings(settings))
        if not args.no_ingest:
            ensure_index(Ingestor(settings, embedder=service.embedder, progress=True), args.corpus)
        service.open()
    except (QAError, IngestError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted. Start again to finish: the index is repaired on the next run.", file=sys.stderr)
        return 130
    threading.Thread(target=service.warm_up, name="warm-up", daemon=True).start()

    from workspace.ui.app import build_ui

    workspace = Workspace(service, upload_dir_from(settings), limits, ingest_progress=True)
    ui = build_ui(workspace, llm_available=service.llm is not None)
    if host not in ("127.0.0.1", "localhost", "::1") and auth is None:
        print(f"warning: listening on {host} without a login; set QA_AUTH=user:password.", file=sys.stderr)
    print(f"Serving the workspace on http://{host}:{port} (Ctrl-C to stop).", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop: shut down like Ctrl-C
    try:
        ui.demo.queue(default_concurrency_limit=2).launch(
            server_name=host, server_port=port, show_error=False, quiet=True, **ui.launch_options(auth)
        )
    finally:
        ui.close()
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _port(value: str) -> int:
    from chatbot.types import QAError

    try:
        port = int(value)
    except ValueError:
        raise QAError(f"QA_PORT must be a port number (got {value!r}).") from None
    if not 1 <= port <= 65535:
        raise QAError(f"the port must be between 1 and 65535 (got {port}).")
    return port


if __name__ == "__main__":
    sys.exit(main())
