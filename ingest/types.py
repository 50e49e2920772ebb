"""Plain data flowing between the stages. Shared by `ingest` and `chatbot`.

Invariants:
- ``SourceDoc.text`` is the cleaned text exactly as stored in the index.
- ``doc.text[chunk.start:chunk.end] == chunk.text`` for every chunk of a document.
- ``Chunk.sentences`` are (start, end) spans in *document* offsets, inside the chunk.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SourceDoc:
    doc_id: str
    title: str
    text: str
    meta: dict[str, Any] = field(default_factory=dict)
    # Start offset of every page in ``text`` (PDFs only; empty otherwise).
    pages: tuple[int, ...] = ()

    def page_at(self, offset: int) -> int | None:
        """1-based page number holding ``offset``, or None when the document has no pages."""
        if not self.pages:
            return None
        from bisect import bisect_right

        return max(1, bisect_right(self.pages, offset))


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    doc_id: str
    start: int
    end: int
    text: str
    sentences: tuple[tuple[int, int], ...] = ()


@dataclass
class DocRecord:
    """A stored document: its metadata, the files it came from, and (when asked for) its text."""

    doc_id: str
    title: str
    meta: dict[str, Any]
    paths: list[str]
    hashes: list[str]
    status: str
    n_chunks: int
    pages: tuple[int, ...] = ()
    text: str | None = None

    def to_source_doc(self) -> SourceDoc:
        return SourceDoc(self.doc_id, self.title, self.text or "", dict(self.meta), self.pages)


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as the store returns it; ``score`` is a similarity (higher is better; 0 when the
    chunk was fetched by id rather than found by a search)."""

    chunk: Chunk
    title: str
    meta: dict[str, Any] = field(default_factory=dict)
    score: float = 0.0


@dataclass(frozen=True)
class FileFailure:
    path: str
    reason: str


@dataclass
class IngestReport:
    """What one ingest run did. Counts are documents; ``chunks`` is the total in the index."""

    documents: int = 0
    files: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    chunks: int = 0
    embedded_chunks: int = 0
    failed: list[FileFailure] = field(default_factory=list)
    duplicates: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "documents": self.documents,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "removed": self.removed,
            "chunks": self.chunks,
            "failed": [{"path": f.path, "reason": f.reason} for f in self.failed],
            "duplicates": list(self.duplicates),
            "files": self.files,
            "embedded_chunks": self.embedded_chunks,
            "seconds": round(self.seconds, 3),
        }


class UserError(Exception):
    """A problem the user can fix (bad settings, a missing index, an empty question...): raised in the
    core, turned into one clear sentence at the edge (CLI, app). The message is that sentence.
    ``IngestError`` (ingest) and ``QAError`` (chatbot) are its kinds; anything else is a bug."""


class IngestError(UserError):
    """A user-facing problem while ingesting (bad settings, incompatible index...)."""


class IndexBusy(IngestError):
    """Another writer holds the index's writer lock (``ingest.lock``) longer than we may wait."""


class BadFile(Exception):
    """A single input file cannot be ingested; the message is a one-line reason."""
