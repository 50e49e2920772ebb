"""`python -m chatbot brief` and `python -m chatbot verify` (wired into chatbot/cli.py)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chatbot.settings import QASettings
from chatbot.types import QAError

COMMANDS = ("brief", "verify")

BRIEF_EPILOG = """\
The brief maps the indexed documents before you ask anything:
  actors     states, organisations and people most discussed, aliases merged (Tashkent, Uzbek ->
             Uzbekistan), with the people and bodies the documents tie to each state
  positions  each state's stance and motive sentences under themes (matched by meaning)
  timeline   dated events in order; dates without a year are resolved against the document's
             date (front matter `published:`) and marked as resolved
  conflicts  figures the documents give differently, side by side; claims are marked
Every line cites exact passages ([n]); `--json` output lists them with hashes, so
`python -m chatbot verify BRIEF.json` can re-check them later.

The brief is built once per index state and cached beside the index (a few seconds for a
handful of articles). Themes are a setting: --themes FILE or QA_BRIEF_THEMES, a JSON or YAML
file mapping each theme's name to a one-sentence description.
"""

VERIFY_EPILOG = """\
Prints one line per quote: ok, changed (the source text at those offsets differs, or the
quote in the export was edited) or missing (the document is gone). Exit status: 0 when every
quote is ok, 1 otherwise, 2 on a usage error.
"""


def add_parsers(sub) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    b = sub.add_parser("brief", help="onboarding brief: actors, positions, timeline, conflicting figures",
                       description="Build (or reuse) the cited onboarding brief of the indexed documents.",
                       epilog=BRIEF_EPILOG, formatter_class=raw)
    b.add_argument("--index", type=Path, metavar="DIR", help="index folder (overrides QA_INDEX_DIR)")
    b.add_argument("--json", action="store_true", help="print the brief as JSON (a verifiable export)")
    b.add_argument("--out", type=Path, metavar="FILE.md", help="also write it to FILE (.json: JSON, else Markdown)")
    b.add_argument("--themes", type=Path, metavar="FILE", help="themes file (JSON/YAML: name -> description)")
    b.add_argument("--refresh", action="store_true", help="rebuild even if this index state's brief is cached")
    v = sub.add_parser("verify", help="re-check every quote of an export against the sources",
                       description="Re-check every quote an export (brief --json, answer/conversation JSON) "
                                   "records.", epilog=VERIFY_EPILOG, formatter_class=raw)
    v.add_argument("export", type=Path, metavar="EXPORT.json")
    where = v.add_mutually_exclusive_group()
    where.add_argument("--index", type=Path, metavar="DIR", help="check against this index (default: QA_INDEX_DIR)")
    where.add_argument("--sources", type=Path, metavar="DIR", help="check against the source files in DIR")
    v.add_argument("--json", action="store_true", help="one JSON object with every quote's status")


def run(args, settings: QASettings) -> int:
    return _brief(args, settings) if args.command == "brief" else _verify(args, settings)


def _brief(args, settings: QASettings) -> int:
    from chatbot.brief.nlp import Worker

    worker = Worker()  # spaCy loads in its own process while the index is opened and read
    try:
        return _brief_with(args, settings, worker)
    finally:
        worker.close()


def _brief_with(args, qa_settings: QASettings, worker) -> int:
    from chatbot.brief.build import BriefConfig, BriefError
    from chatbot.brief.cache import brief_for_index
    from chatbot.brief.render import brief_markdown
    from chatbot.brief.themes import DEFAULT_THEMES, ThemeError, load_themes
    from ingest.store import IndexStore, embedder_for
    from ingest.types import IngestError

    settings = qa_settings.index
    themes_file = args.themes or qa_settings.brief_themes
    try:
        config = BriefConfig(themes=load_themes(themes_file) if themes_file else DEFAULT_THEMES)
    except (ThemeError, BriefError) as exc:
        raise QAError(str(exc)) from None
    embedder = embedder_for(settings)
    store = IndexStore(settings, embedder.model_id, embedder.dimension)
    try:
        store.open(create=False)
    except IngestError as exc:
        raise QAError(str(exc)) from None
    if store.count_chunks() == 0:
        raise QAError(f"The index at {store.location} is empty. Run `python -m ingest` to add articles.")
    try:
        brief = brief_for_index(store, embedder, config, refresh=args.refresh, worker=worker,
                                progress=lambda msg: print(f"brief: {msg}", file=sys.stderr, flush=True))
    except BriefError as exc:
        raise QAError(str(exc)) from None
    as_json = json.dumps(brief, ensure_ascii=False, indent=1)
    markdown = brief_markdown(brief)
    if args.out:
        try:
            args.out.write_text(as_json if args.out.suffix.lower() == ".json" else markdown, encoding="utf-8")
        except OSError as exc:
            raise QAError(f"cannot write {args.out}: {exc.strerror or exc}") from None
    print(as_json if args.json else markdown)
    return 0


def _verify(args, settings: QASettings) -> int:
    from chatbot.verify import CHANGED, MISSING, OK, FolderTexts, IndexTexts, load_records, verify

    records = load_records(args.export)
    texts = FolderTexts(args.sources) if args.sources else IndexTexts(settings.index)
    checks = verify(records, texts)
    counts = {s: sum(c.status == s for c in checks) for s in (OK, CHANGED, MISSING)}
    if args.json:
        print(json.dumps({"ok": counts[OK] == len(checks), "counts": counts, "quotes": [c.to_json() for c in checks]},
                         ensure_ascii=False))
    else:
        for c in checks:
            print(c.line())
        print(f"{len(checks)} quotes: {counts[OK]} ok, {counts[CHANGED]} changed, {counts[MISSING]} missing")
    return 0 if counts[OK] == len(checks) else 1
