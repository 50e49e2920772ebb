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


def ensure_index(service, corpus: Path) -> None:
    """Bring the index up to date with ``corpus`` (incremental; cheap when nothing changed)."""
    from ingest.cli import summary
    from ingest.types import IngestError

    if not corpus.is_dir():
        raise IngestError(f"the corpus folder {corpus} does not exist (give --corpus DIR, or --no-ingest).")
    print(f"Checking {corpus} against the index…", file=sys.stderr, flush=True)
    report = service.ingest([corpus], progress=True)
    print(summary(report, service.settings), file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prepare_process()  # before anything imports torch, ONNX Runtime or gradio
    from chatbot.service import QAService
    from ingest.types import UserError
    from workspace.settings import AppSettings
    from workspace.workspace import Workspace

    try:
        settings = AppSettings.from_env(index_dir=args.index, host=args.host, port=args.port)  # the tree, once
        service = QAService.from_settings(settings.qa)
        if not args.no_ingest:
            ensure_index(service, args.corpus)
        service.open()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("Interrupted. Start again to finish: the index is repaired on the next run.", file=sys.stderr)
        return 130
    threading.Thread(target=service.warm_up, name="warm-up", daemon=True).start()

    from workspace.ui.app import build_ui

    server = settings.server
    workspace = Workspace(service, settings.upload_dir, settings.uploads, ingest_progress=True)
    ui = build_ui(workspace, llm_available=service.llm is not None)
    if not server.local and server.auth is None:
        print(f"warning: listening on {server.host} without a login; set QA_AUTH=user:password.", file=sys.stderr)
    print(f"Serving the workspace on http://{server.host}:{server.port} (Ctrl-C to stop).", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, _interrupt)  # a service manager's stop: shut down like Ctrl-C
    try:
        ui.demo.queue(default_concurrency_limit=2).launch(
            server_name=server.host, server_port=server.port, show_error=False, quiet=True,
            **ui.launch_options(server.auth)
        )
    finally:
        ui.close()
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
