"""files -> SourceDoc -> Chunk -> vectors -> store, incrementally and safely.

How a run decides what to do, per file path (``PATH`` arguments are files or folders, scanned
recursively; hidden files are skipped):

- *unchanged*: the path is recorded with the same file hash -> nothing is read or embedded.
- *added*: a new path with new content -> chunked, embedded, stored.
- *updated*: a recorded path whose content changed -> the new version is stored first, then the
  old document is deleted (if no other path still holds it).
- *removed*: a recorded path inside one of the scanned folders that no longer exists -> its
  document is deleted with its chunks (if no other path still holds it). Files outside the
  scanned folders are never touched: removing a folder's documents means re-running ingest on
  that folder after deleting the files (or ``--rebuild``).
- the same content under two names is stored once; the second path is reported as a duplicate.
  A renamed or moved file (same content, old path gone) is neither a duplicate nor removed.
- ``removed`` counts documents deleted because their files are gone (a document still held by
  another file stays).
- a file that fails to load is reported and, if an older version was ingested, that version is kept.

Public API (the CLI and the app use only this):

- ``Ingestor(settings, embedder=None, store=None, progress=True, on_wait=None, reader=None)``
  ``.run(paths, rebuild=False)``
  -> ``IngestReport``; ``Ingestor.delete_document(doc_id)`` -> bool.
- Both take the index's writer lock themselves (``ingest.lock``): one writer per index at a time,
  across processes (CLI ingest, the app's uploads and deletes) and threads. A second writer waits
  up to ``settings.lock_wait`` seconds (``on_wait`` gets one "Waiting for another writer (pid …,
  since …)" line; default: stderr), then raises ``IngestError`` naming the other writer.
- A failure of one file (reading, parsing, cleaning, chunking; a limit; an unexpected error) is
  that file's ``FileFailure`` in the report, and the run goes on. Files are read in a supervised
  reader process (``ingest.reader``; ``reader=InProcessReader()`` reads in this process).
- ``IngestError`` is for the run as a whole (bad settings, busy or incompatible index);
  ``IndexBusy`` (a subclass) when another writer held the lock too long.

Crash safety: new documents are written ``pending`` before their chunks and marked ``complete``
when their last chunk is stored; each run starts by deleting ``pending`` documents and their chunks,
holding the writer lock, so the writer that left them is gone (never another process's live work).
Deletions remove chunks before the document row. So any interrupted run is repaired by re-running.
"""
from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ingest import lexical
from ingest.files import read_file, scan_files
from ingest.loaders import safe_text
from ingest.lock import WriterLock
from ingest.protocols import Embedder, Store
from ingest.reader import FileReader, ReaderError, shared_reader
from ingest.settings import SENTENCE_MEAN, Settings
from ingest.store import COMPLETE, PENDING, DocRecord, IndexStore, embedder_for
from ingest.records import encode_sentence_vectors
from ingest.types import BadFile, Chunk, FileFailure, IngestReport

log = logging.getLogger(__name__)
EMBED_GROUP = 512  # chunks per encode call: large enough for length-sorting to cut padding


def embed_group(embedder: Embedder, chunks: Sequence[Chunk], pooled: bool = False) -> tuple[np.ndarray, list[str]]:
    """The chunks' vectors, and each chunk's sentence vectors encoded for its metadata
    (``records.encode_sentence_vectors``; the answerer scores sentences by meaning with them,
    chatbot/relevance.py).

    Every distinct sentence of the group is embedded alone, once (overlapping chunks share
    sentences). A chunk is embedded whole too (a chunk that is one sentence takes that sentence's
    vector: the same text alone in its own run, so the same vector), unless ``pooled`` (the
    index's ``chunk_vectors`` is ``SENTENCE_MEAN``, ``QA_CHUNK_VECTORS``): then its vector is pooled from its sentences' runs,
    each weighted by the norm of its token states' sum (``embed_pooled``; an embedder without it,
    such as a test fake, weighs them equally), and the chunk costs no model run of its own
    (benchmarks/RESULTS.md, "Chunk vectors pooled from the sentence runs")."""
    texts = [[c.text[s - c.start : e - c.start] for s, e in c.sentences] for c in chunks]
    unique = list(dict.fromkeys(t for sentences in texts for t in sentences))
    if pooled and unique and hasattr(embedder, "embed_pooled"):
        units, weights = embedder.embed_pooled(unique)
    else:
        units = embedder.embed_documents(unique) if unique else np.zeros((0, embedder.dimension), np.float32)
        weights = np.ones(len(unique), dtype=np.float32)
    row = {t: i for i, t in enumerate(unique)}
    rows = [[row[t] for t in sentences] for sentences in texts]  # per chunk, its sentences' rows
    encoded = [encode_sentence_vectors(units[r]) if r else "" for r in rows]
    vectors = np.zeros((len(chunks), embedder.dimension), dtype=np.float32)
    whole = [i for i, r in enumerate(rows) if not pooled or not r]
    alone = {i: rows[i][0] for i in whole if len(rows[i]) == 1 and texts[i][0] == chunks[i].text}
    run = [i for i in whole if i not in alone]
    if run:
        vectors[run] = embedder.embed_documents([chunks[i].text for i in run])
    for i, r in alone.items():
        vectors[i] = units[r]
    for i, r in enumerate(rows):
        if pooled and r:
            total = weights[r] @ units[r]
            vectors[i] = total / max(float(np.linalg.norm(total)), 1e-12)
    return vectors, encoded


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:20]


def scan(paths: Sequence[Path]) -> list[Path]:
    """The regular files a run over ``paths`` reads (``ingest.files.scan_files`` has the rules)."""
    return scan_files(paths)[0]


def failure_reason(exc: Exception, path: str) -> str:
    """One line for a file that could not be read. A BadFile says why; anything else (a bug, or
    a parser's own error) is named by its type, and its traceback logged at debug level."""
    if isinstance(exc, BadFile):
        return str(exc)
    log.debug("reading %s failed", path, exc_info=(type(exc), exc, exc.__traceback__))
    if isinstance(exc, ReaderError):
        log.debug("traceback in the reader process:\n%s", exc.child_traceback)
        detail = str(exc)  # already "Type: message"
    else:
        detail = f"{type(exc).__name__}: {exc}"
    first = detail.strip().splitlines() or [type(exc).__name__]
    return f"unexpected error while reading it ({first[0][:300]})"


@dataclass
class _Pending:
    record: DocRecord
    chunks: list[Chunk]


class Ingestor:
    def __init__(
        self,
        settings: Settings,
        embedder: Embedder | None = None,
        store: Store | None = None,
        progress: bool = True,
        on_wait: Callable[[str], None] | None = None,
        reader: FileReader | None = None,
    ) -> None:
        self.settings = settings
        self.reader = reader or shared_reader()  # reads files in a supervised child process
        self.on_wait = on_wait  # gets "waiting for another writer…" (default: printed to stderr)
        self._lock: WriterLock | None = None
        self._own_embedder = embedder is None and store is None
        # Without an embedder, the index decides which backend to use: it is read only once this
        # run holds the writer lock (``_resolve``), so a waiting writer never touches the index.
        self.embedder = embedder
        self.store = store if store is not None or embedder is None else IndexStore(
            settings, embedder.model_id, embedder.dimension)
        self.progress = progress

    # ------------------------------------------------------------------ public
    def run(self, paths: Sequence[Path], rebuild: bool = False) -> IngestReport:
        """Ingest ``paths`` (files or folders) incrementally, holding the index's writer lock."""
        started = time.perf_counter()
        files, skipped = scan_files(paths)  # raises IngestError before anything is touched
        roots = [Path(p).resolve() for p in paths if Path(p).is_dir()]
        with self._writer_lock("rebuild" if rebuild else "ingest"):
            self._resolve()
            if rebuild:
                self.store.drop()
                if self._own_embedder:  # the old index chose the backend; a new one gets the default
                    self.embedder = embedder_for(self.settings, new_index=True)
                    self.store = IndexStore(self.settings, self.embedder.model_id, self.embedder.dimension)
            self.store.open(create=True)
            report = IngestReport(files=len(files) + len(skipped), failed=list(skipped))
            records = self.store.list_documents()  # listed once: at 100k chunks each listing costs seconds
            changed = self._recover(records)
            complete = [r for r in records if r.status == COMPLETE]
            changed |= self._ingest_files(files, roots, report, complete)
            self._finish(report, None if changed else complete, started)
        return report

    def delete_document(self, doc_id: str) -> bool:
        """Delete one document and its chunks (the library's delete button), holding the writer lock."""
        with self._writer_lock("delete a document"):
            self._resolve()
            if self.store.get_document(doc_id) is None:
                return False
            self.store.delete_documents([doc_id])
            lexical.rebuild(self.store)
        return True

    # ---------------------------------------------------------------- internals
    def _resolve(self) -> None:
        if self.embedder is None:
            self.embedder = embedder_for(self.settings)
        if self.store is None:
            self.store = IndexStore(self.settings, self.embedder.model_id, self.embedder.dimension)

    @contextmanager
    def _writer_lock(self, purpose: str) -> Iterator[WriterLock]:
        lock = WriterLock(self.settings, purpose, on_wait=self.on_wait)
        with lock:
            self._lock = lock
            try:
                yield lock
            finally:
                self._lock = None

    def _check_lock(self) -> None:
        if self._lock is not None:
            self._lock.check()

    def _recover(self, records: list[DocRecord]) -> bool:
        """Delete documents left ``pending``. Runs only with the writer lock held, so their writer
        is gone (a local lock is released by the kernel when its holder dies)."""
        pending = [r.doc_id for r in records if r.status != COMPLETE]
        if pending:
            self._say(f"Repairing {len(pending)} document(s) left unfinished by an interrupted run.")
            self.store.delete_documents(pending)
        return bool(pending)

    def _ingest_files(self, files: list[Path], roots: list[Path], report: IngestReport,
                      complete: list[DocRecord]) -> bool:
        records = {r.doc_id: r for r in complete}
        holders: dict[str, list[DocRecord]] = {}
        for r in records.values():
            for p in r.paths:
                holders.setdefault(p, []).append(r)
        new_docs: dict[str, _Pending] = {}
        touched: dict[str, DocRecord] = {}  # records whose metadata (paths) changed
        seen_paths: set[str] = set()
        replaced: set[str] = set()  # documents whose file changed (the new version replaces them)
        gone: set[str] = set()  # documents that lost a path because the file is gone

        def detach(path: str, keep: str | None = None) -> None:
            for r in holders.get(path, []):
                if r.doc_id != keep and path in r.paths:
                    i = r.paths.index(path)
                    del r.paths[i]
                    del r.hashes[i : i + 1]
                    touched[r.doc_id] = r

        failed: set[str] = set()
        max_bytes = int(self.settings.limits.max_file_mb * 1024 * 1024)

        def to_read() -> Iterator[tuple[tuple[str, str], Path, bytes]]:
            """Every file read and hashed; the new or changed ones yielded for parsing."""
            for path in files:
                key = str(path)
                seen_paths.add(key)
                try:
                    data = read_file(path, max_bytes)
                except BadFile as exc:
                    report.failed.append(FileFailure(safe_text(key), str(exc)))
                    failed.add(key)
                    continue
                digest = file_hash(data)
                same = next((r for r in holders.get(key, []) if r.hashes[r.paths.index(key)] == digest), None)
                if same is not None:
                    report.unchanged += 1
                    detach(key, keep=same.doc_id)  # heal a path left on two records by a crash
                    continue
                yield (key, digest), path, data

        # Parsed in the reader process, which reads ahead while the results are handled here, in order.
        for (key, digest), outcome in self.reader.read_many(to_read(), self.settings):
            if isinstance(outcome, Exception):
                report.failed.append(FileFailure(safe_text(key), failure_reason(outcome, key)))
                failed.add(key)
                continue
            doc, chunks = outcome.doc, outcome.chunks
            known = holders.get(key, [])
            was_known = bool(known)
            replaced.update(r.doc_id for r in known if r.doc_id != doc.doc_id and key in r.paths)
            detach(key, keep=doc.doc_id)
            target = records.get(doc.doc_id) or (new_docs[doc.doc_id].record if doc.doc_id in new_docs else None)
            if target is not None:
                if key in target.paths:  # same text, file bytes changed (e.g. front matter)
                    target.hashes[target.paths.index(key)] = digest
                    changed_meta = target.title != doc.title or target.meta != doc.meta
                    target.title, target.meta = doc.title, dict(doc.meta)
                    if changed_meta:
                        report.updated += 1
                    else:
                        report.unchanged += 1
                else:
                    same_as = next((p for p in target.paths if Path(p).exists()), None)
                    if same_as is not None:  # else the file was renamed or moved: not a duplicate
                        report.duplicates.append({"path": safe_text(key), "same_as": safe_text(same_as)})
                    target.paths.append(key)
                    target.hashes.append(digest)
                    if was_known:
                        report.updated += 1
                    else:
                        report.unchanged += 1
                if target.doc_id in records:
                    touched[target.doc_id] = target
                continue
            record = DocRecord(
                doc_id=doc.doc_id, title=doc.title, meta=dict(doc.meta), paths=[key], hashes=[digest],
                status=PENDING, n_chunks=len(chunks), pages=doc.pages, text=doc.text,
            )
            new_docs[doc.doc_id] = _Pending(record, chunks)
            if was_known:
                report.updated += 1
            else:
                report.added += 1

        # Paths recorded inside a scanned folder that are gone from disk (a file that failed, or was
        # skipped by the scan, keeps its last good version).
        failed |= {f.path for f in report.failed}
        prefixes = tuple(os.path.join(str(root), "") for root in roots)  # paths are stored resolved
        for path, rs in holders.items():
            if path in seen_paths or path in failed or not path.startswith(prefixes):
                continue
            if not Path(path).exists():
                gone.update(r.doc_id for r in rs if path in r.paths)
                detach(path)

        self._write_new(list(new_docs.values()))
        orphans = [r.doc_id for r in touched.values() if not r.paths]
        report.removed += sum(1 for d in orphans if d in gone and d not in replaced)
        survivors = [r for r in touched.values() if r.paths]
        if survivors:
            self.store.update_documents(survivors)
            chunk_updates = [r for r in survivors if r.doc_id in records]
            self.store.set_chunk_titles(chunk_updates)
        if orphans:
            self.store.delete_documents(orphans)
        return bool(new_docs or orphans or survivors)

    def _write_new(self, new_docs: list[_Pending]) -> None:
        if not new_docs:
            return
        self._check_lock()
        remaining = {p.record.doc_id: p.record.n_chunks for p in new_docs}
        by_id = {p.record.doc_id: p.record for p in new_docs}
        items = [(c, p.record) for p in new_docs for c in p.chunks]
        items.sort(key=lambda it: len(it[0].text), reverse=True)  # similar lengths batch with less padding
        empty = [d for d, n in remaining.items() if n == 0]
        bar = self._bar(total=len(items))
        writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chroma-writer")
        # One writer thread, so its jobs run in order: the pending records (the repair marker) are
        # stored before any chunk, while the model loads and encodes the first group meanwhile.
        inflight: Future | None = writer.submit(self.store.put_documents, [p.record for p in new_docs])
        try:
            for i in range(0, len(items), EMBED_GROUP):
                group = items[i : i + EMBED_GROUP]
                vectors, sentence_vectors = embed_group(self.embedder, [c for c, _ in group],
                                                        pooled=self.store.chunk_vectors == SENTENCE_MEAN)
                if inflight is not None:
                    inflight.result()
                inflight = writer.submit(self._write_group, group, vectors, remaining, by_id, sentence_vectors)
                if bar is not None:
                    bar.update(len(group))
            if inflight is not None:
                inflight.result()
        finally:
            writer.shutdown(wait=True)
            if bar is not None:
                bar.close()
        if empty:
            self._complete([by_id[d] for d in empty])
        self.embedded = len(items)

    def _write_group(self, group, vectors, remaining: dict[str, int], by_id: dict[str, DocRecord],
                     sentence_vectors: Sequence[str] | None = None) -> None:
        self._check_lock()
        self.store.upsert_chunks(group, vectors, sentence_vectors)
        done = []
        for chunk, record in group:
            remaining[record.doc_id] -= 1
            if remaining[record.doc_id] == 0:
                done.append(by_id[record.doc_id])
        if done:
            self._complete(done)

    def _complete(self, records: list[DocRecord]) -> None:
        finished = [replace(r, status=COMPLETE, text=None) for r in records]
        self.store.update_documents(finished)

    def _finish(self, report: IngestReport, unchanged: list[DocRecord] | None, started: float) -> None:
        """Bring the BM25 index and the published state up to date. ``unchanged``: the complete
        records when this run changed nothing (saves listing them again), else None."""
        records = unchanged if unchanged is not None else [
            r for r in self.store.list_documents() if r.status == COMPLETE]
        token = self.store.state_token(records)
        if unchanged is None or lexical.LexicalIndex.saved_token(self.store.lexical_dir()) != token:
            self._say("Updating the keyword (BM25) index…")
            lexical.rebuild(self.store, token)
        elif self.store.published_state() != token:
            self.store.publish_state(token)
        report.embedded_chunks = getattr(self, "embedded", 0)
        self.embedded = 0
        report.documents = len(records)
        report.chunks = self.store.count_chunks()
        report.seconds = time.perf_counter() - started

    # ------------------------------------------------------------------- output
    def _bar(self, total: int):
        if not self.progress or total == 0:
            return None
        from tqdm import tqdm

        return tqdm(total=total, unit="chunk", desc="Embedding", file=sys.stderr, dynamic_ncols=True, smoothing=0.1)

    def _say(self, message: str) -> None:
        if self.progress:
            print(message, file=sys.stderr)
