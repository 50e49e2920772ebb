"""Uploads and deletions: files checked against the limits, stored under generated names inside
the upload folder (with a manifest of their original names), indexed, and removed with their
document. One writer at a time (``workspace/jobs.py`` runs them off the request path)."""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from chatbot.service import QAService
from chatbot.types import QAError
from ingest.store import DocRecord
from ingest.types import IngestError, IngestReport
from workspace.session import now_iso
from workspace.settings import UploadLimits

log = logging.getLogger(__name__)


MANIFEST = ".manifest.json"
Progress = Callable[[float, str], None]


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



class Library:
    """The upload folder and what the app writes to the index (uploads, deletions).

    ``on_change(doc_id)`` hears that documents were added (``None``) or one was deleted."""

    def __init__(self, service: QAService, upload_dir: Path, limits: UploadLimits, ingest_progress: bool = False,
                 on_change: Callable[[str | None], None] = lambda doc_id: None) -> None:
        self.service = service
        self.upload_dir = Path(upload_dir).expanduser().resolve()
        self.limits = limits
        self.ingest_progress = ingest_progress
        self._changed = on_change
        self._write_lock = threading.RLock()  # uploads and deletions, one at a time

    def file_name(self, record: DocRecord, manifest: Mapping[str, dict]) -> tuple[str, bool]:
        """(what the user knows the document's file as, whether it was uploaded): the original name
        of an upload (``manifest``: ``self.manifest()``), else the file's name."""
        upload = next((p for p in record.paths if self._inside_uploads(Path(p))), None)
        if upload is not None:
            entry = manifest.get(self._relative(Path(upload)), {})
            return str(entry.get("original") or Path(upload).name), True
        return (Path(record.paths[0]).name if record.paths else str(record.meta.get("filename", ""))), False

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
                report = self.service.ingest([dest for _, dest in staged.saved.values()], self.ingest_progress,
                                             on_wait=lambda message: say(0.2, message))
            except BaseException as exc:
                for _, dest in staged.saved.values():
                    self._discard(dest)
                if isinstance(exc, IngestError):
                    return staged.failed(f"not ingested: {exc}")
                raise
            finally:
                self._changed(None)
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
                entry = self.manifest().get(self._relative(p), {})
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
        for r in self.service.documents():
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
            try:
                self.service.delete_document(doc_id, on_wait)
            finally:
                self._changed(doc_id)
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

    def manifest(self) -> dict[str, dict]:
        """Original names of the uploaded files, by path in the upload folder (empty if unreadable:
        the files are then shown under their stored names)."""
        try:
            data = json.loads((self.upload_dir / MANIFEST).read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            log.warning("Cannot read the upload manifest in %s", self.upload_dir, exc_info=True)
            return {}

    def _update_manifest(self, add: Mapping[str, dict] | None = None, remove: Sequence[str] = ()) -> None:
        data = self.manifest()
        data.update(add or {})
        for key in remove:
            data.pop(key, None)
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.upload_dir / f"{MANIFEST}.{uuid.uuid4().hex[:8]}.tmp"
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self.upload_dir / MANIFEST)

