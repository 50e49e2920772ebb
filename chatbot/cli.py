"""`python -m chatbot ask|eval|brief|verify` — the command-line edge (a stable contract for scripts)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from chatbot.brief import command as brief_command
from chatbot.types import ANSWER_MODES, Answer, QAError
from chatbot.retrieve import TOP_K_MAX, RetrievalConfig
from chatbot.settings import QASettings
from ingest.environment import prepare_process
from ingest.settings import DEFAULT_INDEX
from ingest.types import UserError

EPILOG = f"""\
Environment:
  QA_INDEX_DIR    index folder (default: {DEFAULT_INDEX}); build it with `python -m ingest`
  QA_CHROMA_URL   use a Chroma server, e.g. http://127.0.0.1:8000
  QA_LLM          openai | ollama | llamacpp (optional; --mode llm uses it)
  QA_LLM_MODEL, QA_LLM_BASE_URL, QA_LLM_API_KEY   model name/path, endpoint, key

Without an LLM the answer is extractive: the best sentences of the sources, best first, each with
an exact citation. "The sources don't say" means nothing in the index answers the question; with
citations after it ("What they say: ...") the sources cover the topic but not the detail asked.
--json reports this as "support_level": answered | partial | none ("supported" is true only for
answered). QA_ANSWER_THRESHOLD (default 0.3) is the judge's probability needed to answer.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m chatbot", description="Ask the indexed documents; every answer "
                                     "cites exact passages.", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    ask = sub.add_parser("ask", help="answer questions", epilog=EPILOG,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    ask.add_argument("questions", nargs="*", metavar="QUESTION")
    ask.add_argument("--file", type=Path, metavar="QUESTIONS.txt", help="one question per line")
    _common(ask)
    ev = sub.add_parser("eval", help="score answers on a QA file (dev_qa.jsonl format)")
    ev.add_argument("qa_file", type=Path, metavar="QA.jsonl")
    _common(ev)
    ev.add_argument("--out", type=Path, metavar="FILE", help="also write the full JSON result here")
    brief_command.add_parsers(sub)
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", type=Path, metavar="DIR", help="index folder (overrides QA_INDEX_DIR)")
    p.add_argument("--json", action="store_true", help="JSON output (ask: one object per question per line)")
    p.add_argument("--mode", choices=ANSWER_MODES, default=None,
                   help="answer mode (default: llm when QA_LLM is set, else extractive)")
    p.add_argument("--top-k", type=int, default=None, metavar="N",
                   help=f"passages to retrieve (1 to {TOP_K_MAX}; default {RetrievalConfig.top_k}); more also quotes "
                        "more evidence")


def make_service(args, settings: QASettings) -> tuple:
    from chatbot.service import AskOptions, QAService

    mode = args.mode or ("llm" if settings.llm is not None else "extractive")
    if mode == "llm" and settings.llm is None:
        raise QAError("--mode llm needs an LLM: set QA_LLM to openai, ollama or llamacpp (see --help).")
    service = QAService.from_settings(settings).open()
    return service, AskOptions(mode=mode, top_k=args.top_k)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    prepare_process()  # before the model's libraries are imported
    try:
        settings = QASettings.from_env(index_dir=args.index)  # the settings tree, once
        if args.command in brief_command.COMMANDS:
            return brief_command.run(args, settings)
        if args.top_k is not None and not 1 <= args.top_k <= TOP_K_MAX:
            raise QAError(f"--top-k must be between 1 and {TOP_K_MAX} (got {args.top_k}).")
        if args.command == "ask":
            return _ask(args, settings)
        return _eval(args, settings)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _ask(args, settings: QASettings) -> int:
    questions = list(args.questions)
    if args.file:
        try:
            questions += [q.strip() for q in args.file.read_text(encoding="utf-8").splitlines() if q.strip()]
        except (OSError, UnicodeDecodeError) as exc:
            raise QAError(f"cannot read {args.file}: {exc}") from None
    if not questions or not all(q.strip() for q in questions):
        raise QAError("The question is empty: give a QUESTION or --file QUESTIONS.txt.")
    service, options = make_service(args, settings)
    provenance = service.provenance() if args.json else None
    for question in questions:
        answer = service.answer(question, options=options)
        if args.json:
            print(json.dumps(verifiable_json(answer, service, provenance), ensure_ascii=False), flush=True)
        else:
            print(render_text(answer), flush=True)
    return 0


def verifiable_json(answer: Answer, service, provenance: dict) -> dict:
    """``answer.to_json()`` with each quote's record (document and quote hashes, file) and the index
    state and model ids: `python -m chatbot verify` re-checks the output."""
    from chatbot.provenance import quote_record

    data = answer.to_json()
    docs = {d: service.doc_text_and_file(d) for d in {c.doc_id for c in answer.citations + answer.evidence}}
    for key, citations in (("citations", answer.citations), ("evidence", answer.evidence)):
        data[key] = [{**c.to_json(), **quote_record(c, *docs[c.doc_id]).to_json()} for c in citations]
    return {**data, "provenance": provenance}


def render_text(answer: Answer) -> str:
    lines = [f"Q: {answer.question}", f"A: {answer.text}"]
    for conflict in answer.conflicts:
        lines.append(f"   {conflict.text()}")
    if answer.notice:
        lines.append(f"   ({answer.notice})")
    for c in answer.citations:
        where = f"chars {c.start}-{c.end}" + (f", page {c.page}" if c.page else "")
        lines.append(f"  [{c.n}] {c.title} ({where}):\n      “{c.quote}”")
    if answer.evidence:
        lines.append("  Nearest evidence (not an answer):")
        for c in answer.evidence:
            lines.append(f"   - {c.title} (chars {c.start}-{c.end}): “{c.quote}”")
    return "\n".join(lines) + "\n"


def _eval(args, settings: QASettings) -> int:
    from chatbot.evaluate import load_items, score, table

    try:
        items = load_items(args.qa_file)
    except (OSError, ValueError) as exc:
        raise QAError(f"cannot read {args.qa_file}: {exc}") from None
    service, options = make_service(args, settings)
    answers = [service.answer(item.question, options=options).to_json() for item in items]
    texts: dict[str, str | None] = {}

    def doc_text(doc_id: str):
        if doc_id not in texts:
            texts[doc_id] = service.doc_text(doc_id)
        return texts[doc_id]

    result = score(items, answers, doc_text)
    if args.out:
        args.out.write_text(json.dumps({**result, "answers": answers}, ensure_ascii=False, indent=1))
    if args.json:
        print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    else:
        print(table(result))
    return 0
