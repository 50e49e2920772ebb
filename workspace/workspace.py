"""The analyst workspace's behaviour, without Gradio: everything ``workspace/ui`` shows comes from here.

``Workspace`` is what the UI calls: corpus overview, asking (with the session's history),
citation context and source views, and — through ``Library`` (``workspace/library.py``) and
``Exports`` (``workspace/exports.py``) — uploads, deletions and exports. Nothing here returns
markup: HTML lives in ``workspace/ui/render.py``.
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from chatbot.retrieve import TOP_K_MAX
from chatbot.service import AskOptions, QAService
from chatbot.types import ANSWER_MODES, Answer, Citation, Filters, QAError
from ingest.store import DocRecord
from ingest.records import published_day
from workspace.brief import BriefStatus, Briefs, brief_citations, parse_key
from workspace.exports import Exports
from workspace.library import Library, Progress, StagedUpload, UploadResult
from workspace.overview import DocSummary, Overview, example_questions
from workspace.session import Session, Turn, now_iso
from workspace.settings import DEFAULT_UPLOAD_DIR, UploadLimits
from workspace.sources import QuoteContext, SourceView, Span, quote_context

SOURCE_WINDOW = 40_000  # characters of a long document the source viewer shows around a quote
TEXT_CACHE_SIZE = 64  # stored texts kept in memory (evidence panels, exports)
FILTER_TITLE_CHARS = 90  # a longer title is shortened in the Settings filters


class Workspace:
    def __init__(
        self,
        service: QAService,
        upload_dir: Path = DEFAULT_UPLOAD_DIR,
        limits: UploadLimits | None = None,
        ingest_progress: bool = False,
        source_window: int = SOURCE_WINDOW,
    ) -> None:
        self.service = service
        self.source_window = source_window
        self.library = Library(service, upload_dir, limits or UploadLimits(),
                               ingest_progress, on_change=self._changed)
        self.exports = Exports(self)
        self.briefs = Briefs(lambda progress: service.brief(progress=progress),
                             lambda: service.index_info()["state"])
        self._texts: dict[str, str | None] = {}
        self.generation = 0  # bumped when documents are added or deleted (export entries are redone)

    @property
    def upload_dir(self) -> Path:
        return self.library.upload_dir

    @property
    def limits(self) -> UploadLimits:
        return self.library.limits

    def _changed(self, doc_id: str | None) -> None:
        self.generation += 1
        if doc_id is not None:
            self._texts.pop(doc_id, None)

    # ----------------------------------------------------------------- corpus
    def documents(self) -> list[DocRecord]:
        return sorted(self.service.documents(), key=lambda r: (re.sub(r"^\W+", "", r.title).lower(), r.doc_id))

    def text(self, doc_id: str) -> str | None:
        """Stored text of a document (cached: ids are content hashes, so a text never changes)."""
        if doc_id not in self._texts:
            if len(self._texts) > TEXT_CACHE_SIZE:
                self._texts.clear()
            record = self.service.document(doc_id)
            self._texts[doc_id] = record.text if record else None
        return self._texts[doc_id]

    def summaries(self, records: Sequence[DocRecord] | None = None) -> list[DocSummary]:
        records = self.documents() if records is None else records
        manifest = self.library.manifest()
        out = []
        for r in records:
            filename, uploaded = self.library.file_name(r, manifest)
            out.append(DocSummary(
                doc_id=r.doc_id, title=r.title or filename or r.doc_id, source=str(r.meta.get("source") or ""),
                published=str(r.meta.get("published") or "")[:10], kind=str(r.meta.get("kind") or ""),
                url=str(r.meta.get("url") or ""), n_chunks=r.n_chunks, n_pages=len(r.pages), filename=filename,
                uploaded=uploaded,
            ))
        return out

    def summary(self, doc_id: str) -> DocSummary | None:
        record = next(iter(self.service.documents_by_id([doc_id])), None)
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

    def filter_choices(self, docs: Sequence[DocSummary] | None = None) -> dict[str, list]:
        """Values the Settings filters can take: sources and (title, doc_id) pairs (``docs``: the
        documents' summaries when the caller has them, e.g. ``Overview.documents``)."""
        docs = self.summaries() if docs is None else docs
        return {
            "sources": sorted({d.source for d in docs if d.source}, key=str.lower),
            "documents": [(d.title if len(d.title) <= FILTER_TITLE_CHARS else d.title[:FILTER_TITLE_CHARS - 3] + "…",
                           d.doc_id) for d in docs],
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

    def more_evidence(self, session: Session, options: AskOptions) -> tuple[str, AskOptions]:
        """The latest question (as it was understood, standalone) and ``options`` with twice the
        passages it was answered from; the quoting budget grows with them (``ExtractiveAnswerer._quoting``)."""
        if not session.turns:
            raise QAError("Ask a question first: “More evidence” asks the latest question again with more passages.")
        last = session.turns[-1]
        k = last.options.top_k or self.service.default_top_k
        return last.answer.standalone_question or last.question, replace(options, top_k=min(TOP_K_MAX, 2 * k))

    @staticmethod
    def options(mode: str | None, top_k: float | int | None, sources: Sequence[str] | None = None,
                doc_ids: Sequence[str] | None = None, date_from: str | None = None,
                date_to: str | None = None) -> AskOptions:
        """Settings-panel values -> ``AskOptions``; a bad value is a ``QAError`` naming the field."""
        mode = mode or "extractive"
        if mode not in ANSWER_MODES:
            raise QAError(f"Answer mode must be 'extractive' or 'llm' (got {mode!r}).")
        k = None
        if top_k not in (None, ""):
            k = int(round(float(top_k)))
            if not 1 <= k <= TOP_K_MAX:
                raise QAError(f"Passages to retrieve must be between 1 and {TOP_K_MAX} (got {k}).")
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
        return self.quote_view(citation, turn.answer.citations + turn.answer.evidence)

    def quote_view(self, citation: Citation, others: Sequence[Citation] = ()) -> SourceView:
        """``citation``'s document (a window of a long one, never cutting the quote) with the quote
        highlighted and those of ``others`` in the same document that fit beside it marked."""
        text = self.text(citation.doc_id)
        doc = self.summary(citation.doc_id)
        if text is None:
            return SourceView(doc, citation.title, "", 0, 0, [], citation, missing=True)
        others = [c for c in others
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

    # ------------------------------------------------------------------ brief
    def brief_status(self, retry: bool = False) -> BriefStatus:
        """The index's brief, or a background build of it under way (``workspace/brief.py``);
        ``retry``: build again even if the last build failed for this index state."""
        return self.briefs.retry() if retry else self.briefs.ensure()

    def brief_quotes(self, brief: Mapping[str, Any] | None, key: str) -> tuple[Citation, list[Citation]] | None:
        """``key``'s quote of ``brief`` (the brief a page shows) and the quotes of its line."""
        parsed = parse_key(key) if brief else None
        if parsed is None:
            return None
        n, line = parsed
        quotes = brief_citations(brief, line)
        clicked = next((c for c in quotes if c.n == n), None)
        return (clicked, quotes) if clicked else None

    # ------------------------------------------------------- library, exports
    def upload(self, files: Sequence[tuple[str, Path | bytes]], progress: Progress | None = None) -> UploadResult:
        return self.library.upload(files, progress)

    def stage(self, files: Sequence[tuple[str, Path | bytes]]) -> StagedUpload:
        return self.library.stage(files)

    def ingest(self, staged: StagedUpload, progress: Progress | None = None) -> UploadResult:
        return self.library.ingest(staged, progress)

    def delete(self, doc_id: str, on_wait: Callable[[str], None] | None = None) -> str:
        return self.library.delete(doc_id, on_wait)

    def upload_file(self, doc_id: str) -> tuple[Path, str] | None:
        return self.library.upload_file(doc_id)

    def versions(self) -> dict[str, Any]:
        return self.exports.versions()

    def export_data(self, session: Session, scope: str = "conversation") -> dict[str, Any]:
        return self.exports.export_data(session, scope)

    def export_markdown(self, session: Session, scope: str = "conversation") -> str:
        return self.exports.export_markdown(session, scope)

    def write_exports(self, session: Session, folder: Path) -> dict[str, Path]:
        return self.exports.write_exports(session, folder)
