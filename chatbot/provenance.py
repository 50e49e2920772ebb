"""Quote records: what an export stores so that anyone can re-check each quote later.

One record per quote — the document's id, file name and content hash, the offsets, the quote
and its own hash — plus, once per export, the index state and the model ids that produced it
(``index_provenance``). ``python -m chatbot verify`` (chatbot/verify.py) finds the records in any
export that uses ``QuoteRecord.to_json()``, wherever they sit in the JSON.

Hashes are ``sha256:<hex>`` of the UTF-8 text: the document hash covers the whole stored
(cleaned) text, the quote hash covers ``text[start:end]``.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from chatbot.types import Citation

log = logging.getLogger(__name__)

RECORD_KEYS = ("doc_id", "start", "end", "quote", "doc_hash", "quote_hash")


def text_hash(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class QuoteRecord:
    """``quote == text[start:end]`` of the document whose whole text hashes to ``doc_hash``."""

    n: int
    doc_id: str
    title: str
    start: int
    end: int
    quote: str
    doc_hash: str
    quote_hash: str
    file: str | None = None  # the source file's name, to find the document again after edits
    page: int | None = None

    @classmethod
    def of(cls, citation: Citation, doc_text: str, file: str | None = None) -> "QuoteRecord":
        quote = doc_text[citation.start:citation.end]
        if quote != citation.quote:
            raise ValueError(f"citation [{citation.n}] is not the document's text at {citation.start}-{citation.end}")
        return cls(citation.n, citation.doc_id, citation.title, citation.start, citation.end, quote,
                   text_hash(doc_text), text_hash(quote), file, citation.page)

    def citation(self) -> Citation:
        return Citation(self.n, self.doc_id, self.title, self.start, self.end, self.quote, page=self.page)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "QuoteRecord":
        return cls(int(data.get("n", 0)), str(data["doc_id"]), str(data.get("title", "")), int(data["start"]),
                   int(data["end"]), str(data["quote"]), str(data["doc_hash"]), str(data["quote_hash"]),
                   data.get("file"), data.get("page"))


def quote_record(citation: Citation, doc_text: str | None, file: str | None = None) -> QuoteRecord:
    """The record an export keeps of a citation, whatever happened to its document since the answer:
    ``doc_hash`` is the hash of the text now stored ("" when the document is gone), so ``verify``
    reports such a quote as changed or missing instead of leaving it out."""
    c = citation
    return QuoteRecord(c.n, c.doc_id, c.title, c.start, c.end, c.quote,
                       text_hash(doc_text) if doc_text is not None else "", text_hash(c.quote), file, c.page)


def is_record(value: Any) -> bool:
    return isinstance(value, Mapping) and all(k in value for k in RECORD_KEYS)


def index_info(store, any_state: bool = False) -> dict[str, Any]:
    """Where an open index is, its published state (``any_state``: else its current state token),
    its size and the settings it was built with. A broken index must not stop an export of what was
    already computed: what cannot be read is None (and logged)."""
    try:
        state = store.published_state() or (store.state_token() if any_state else None)
        chunks = store.count_chunks()
    except Exception:
        log.warning("Cannot read the state of the index at %s", store.location, exc_info=True)
        state, chunks = None, None
    return {"location": store.location, "collection": store.settings.collection, "state": state, "chunks": chunks,
            **store.config}


def index_provenance(store, models: Mapping[str, str | None]) -> dict[str, Any]:
    """The index state and model ids an export was made from (``store``: an open IndexStore)."""
    return {
        "index": index_info(store, any_state=True),
        "models": dict(models),
        "hash": "sha256 of the UTF-8 text (doc_hash: the whole stored document; quote_hash: text[start:end])",
    }
