"""``python -m chatbot verify EXPORT.json``: re-check every quote an export records.

Each quote record (chatbot/provenance.py) is looked up in the index (by document id, else by the
file it came from, so a re-ingested edited file is found) or in a folder of source files
(``--sources DIR``, cleaned exactly as ingest cleans them), and gets one status:

- ``ok``: the text at those offsets is the quote, and the quote matches its recorded hash;
- ``changed``: the source text at those offsets differs from the recorded quote, or the quote in
  the export was edited (it no longer matches its own hash);
- ``missing``: the document is gone.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

from chatbot.provenance import QuoteRecord, is_record, text_hash
from chatbot.types import QAError

OK, CHANGED, MISSING = "ok", "changed", "missing"


@dataclass(frozen=True)
class QuoteCheck:
    record: QuoteRecord
    status: str
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        r = self.record
        return {"n": r.n, "status": self.status, "reason": self.reason, "doc_id": r.doc_id, "title": r.title,
                "file": r.file, "start": r.start, "end": r.end, "quote": r.quote}

    def line(self) -> str:
        r = self.record
        quote = r.quote if len(r.quote) <= 90 else r.quote[:87] + "…"
        where = f"{r.title or r.doc_id}" + (f" ({r.file})" if r.file else "") + f", chars {r.start}-{r.end}"
        return f"{self.status:8} [{r.n}] {where}: “{quote}”" + (f"\n         {self.reason}" if self.reason else "")


class Texts(Protocol):
    def text(self, record: QuoteRecord) -> str | None: ...


def load_records(path: Path) -> list[QuoteRecord]:
    try:
        raw = path.read_text(encoding="utf-8")
        data = json.loads(raw)
    except (OSError, UnicodeDecodeError) as exc:
        raise QAError(f"cannot read {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        try:  # JSON Lines: `ask --json` prints one object per question
            data = [json.loads(line) for line in raw.splitlines() if line.strip()]
        except json.JSONDecodeError:
            raise QAError(f"{path} is not JSON ({exc.msg} at line {exc.lineno}); give an export's .json file.") from None
    seen, out = set(), []
    for item in _walk(data):
        try:
            record = QuoteRecord.from_json(item)
        except (KeyError, TypeError, ValueError):
            raise QAError(f"{path} has a malformed quote record (near “{str(item.get('quote', ''))[:40]}”).") from None
        key = (record.doc_id, record.start, record.end, record.quote, record.n)
        if key not in seen:
            seen.add(key)
            out.append(record)
    if not out:
        raise QAError(f"{path} records no quotes with hashes: it is not an export made by this version "
                      "(an answer or conversation export's .json, `ask --json` or `brief --json` output).")
    return out


def _walk(value: Any) -> Iterator[dict]:
    if is_record(value):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)


def check(record: QuoteRecord, text: str | None) -> QuoteCheck:
    if text is None:
        return QuoteCheck(record, MISSING, "the document is no longer there")
    actual = text[record.start:record.end]
    if actual == record.quote and text_hash(actual) == record.quote_hash:
        note = "" if text_hash(text) == record.doc_hash else "(the document changed elsewhere; this quote still holds)"
        return QuoteCheck(record, OK, note)
    if text_hash(actual) == record.quote_hash:
        return QuoteCheck(record, CHANGED, "the quote in the export was edited: it is not the source text at "
                          "these offsets")
    now = actual if len(actual) <= 90 else actual[:87] + "…"
    return QuoteCheck(record, CHANGED, f"the source text at these offsets is now “{now}”")


def verify(records: list[QuoteRecord], texts: Texts) -> list[QuoteCheck]:
    return [check(r, texts.text(r)) for r in records]


class IndexTexts:
    """Document texts from an index: by id, else the document now stored for the same file."""

    def __init__(self, settings) -> None:
        from ingest.store import IndexStore, embedder_for
        from ingest.types import IngestError

        embedder = embedder_for(settings)  # lazy: only its model id is used
        self.store = IndexStore(settings, embedder.model_id, embedder.dimension)
        try:
            self.store.open(create=False)
        except IngestError as exc:
            raise QAError(str(exc)) from None
        self._by_file: dict[str, str] | None = None

    def text(self, record: QuoteRecord) -> str | None:
        doc = self.store.get_document(record.doc_id)
        if doc is None and record.file:
            if self._by_file is None:
                self._by_file = {}
                for r in self.store.list_documents():
                    for name in [Path(p).name for p in r.paths] + [str(r.meta.get("filename", ""))]:
                        self._by_file.setdefault(name, r.doc_id)
            other = self._by_file.get(record.file)
            doc = self.store.get_document(other) if other else None
        return doc.text if doc is not None else None


class FolderTexts:
    """Document texts re-read from source files, cleaned as ingest cleans them."""

    def __init__(self, folder: Path) -> None:
        from ingest.pipeline import scan
        from ingest.types import IngestError

        if not folder.is_dir():
            raise QAError(f"--sources {folder} is not a folder.")
        try:
            self.files = scan([folder])
        except IngestError as exc:
            raise QAError(str(exc)) from None
        self._texts: dict[Path, str | None] = {}

    def _text_of(self, path: Path) -> str | None:
        if path not in self._texts:
            from ingest.documents import build_document
            from ingest.types import BadFile

            try:
                self._texts[path] = build_document(path).text
            except (BadFile, OSError):
                self._texts[path] = None
        return self._texts[path]

    def text(self, record: QuoteRecord) -> str | None:
        named = [p for p in self.files if p.name == record.file] if record.file else []
        for path in named or self.files:
            text = self._text_of(path)
            if text is not None and (named or text_hash(text) == record.doc_hash):
                return text
        return None
