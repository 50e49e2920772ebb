"""Which files a run reads, and reading one safely.

Rules (README, "python -m ingest"):

- A folder is scanned recursively; names starting with ``.`` (files and folders) are skipped
  silently.
- Only regular files are read. A FIFO, socket or device file is never opened (reading a FIFO
  blocks forever) and is reported as failed.
- Symbolic links inside a scanned folder are followed only to a file inside that same folder
  (which is then read once, under its real path). A link to anything outside the folder (say,
  ``/etc/passwd``) and a broken link are reported as failed, never read. Links to folders are not
  descended (their files are reached directly when they are inside the folder; one pointing
  outside is reported).
- A path given explicitly (``python -m ingest notes/a.md``) is read even if it is a symbolic
  link: naming it is consent. It must still be a regular file.
- A name that is not valid UTF-8 (a byte such as 0xFF, from an old archive) is reported as failed
  with the name shown in a safe form (``caf\\xff.md``): rename the file to ingest it.
- A file larger than ``Limits.max_file_mb`` is reported as failed without being read.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Sequence

from ingest.loaders import safe_text
from ingest.types import BadFile, FileFailure, IngestError


def _special_kind(mode: int) -> str | None:
    """What a non-regular file is, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def _not_regular(kind: str) -> str:
    return f"{kind}, not a regular file: never read"


def _valid_name(relative: str) -> bool:
    try:
        relative.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(os.path.join(folder, ""))


def scan_files(paths: Sequence[Path]) -> tuple[list[Path], list[FileFailure]]:
    """The files to read under ``paths`` (sorted, real paths) and the entries skipped by the rules
    above (each a FileFailure with its reason). Raises IngestError for a path that does not exist."""
    found: set[Path] = set()
    skipped: list[FileFailure] = []

    def skip(path: str, reason: str) -> None:
        skipped.append(FileFailure(safe_text(path), reason))

    for root in paths:
        root = Path(root)
        if not root.exists():
            if root.is_symlink():
                skip(str(root), "broken symbolic link: never read")
                continue
            raise IngestError(f"{root} does not exist.")
        if not root.is_dir():  # named explicitly: followed if a link, but only a regular file is read
            kind = _special_kind(root.stat().st_mode)
            if kind is not None:
                skip(str(root), _not_regular(kind))
            elif not _valid_name(root.name):
                skip(str(root), _BAD_NAME)
            else:
                found.add(Path(os.path.realpath(root)))
            continue
        base = os.path.realpath(root)

        def unreadable(exc: OSError, base: str = base) -> None:
            skip(exc.filename or base, f"cannot read folder: {exc.strerror or exc}")

        for folder, dirnames, filenames in os.walk(base, onerror=unreadable):  # never descends links to folders
            for name in list(dirnames):
                full = os.path.join(folder, name)
                if name.startswith("."):
                    dirnames.remove(name)
                elif os.path.islink(full):
                    dirnames.remove(name)
                    target = os.path.realpath(full)
                    if not _inside(target, base):
                        skip(full, f"symbolic link to a folder outside {safe_text(base)} ({safe_text(target)}): not followed")
            for name in filenames:
                if name.startswith("."):
                    continue
                full = os.path.join(folder, name)
                relative = os.path.relpath(full, base)
                if not _valid_name(relative):
                    skip(full, _BAD_NAME)
                    continue
                target = os.path.realpath(full)
                if os.path.islink(full):
                    if not os.path.exists(target):
                        skip(full, "broken symbolic link: never read")
                        continue
                    if not _inside(target, base):
                        skip(full, f"symbolic link to a file outside {safe_text(base)} ({safe_text(target)}): not followed")
                        continue
                try:
                    kind = _special_kind(os.stat(target).st_mode)
                except OSError as exc:
                    skip(full, f"cannot read file: {exc.strerror or exc}")
                    continue
                if kind is not None:
                    skip(full, _not_regular(kind))
                    continue
                found.add(Path(target))
    return sorted(found), sorted(skipped, key=lambda f: f.path)


_BAD_NAME = "file name is not valid UTF-8 text (shown with \\x escapes): rename the file to ingest it"


def read_file(path: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path`` (a real path: a symbolic link is refused), at most
    ``max_bytes``. Never blocks on a FIFO (opened non-blocking, checked before reading).
    Raises BadFile with a one-line reason."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise BadFile(f"cannot read file: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        kind = _special_kind(info.st_mode)
        if kind is not None:  # replaced after the scan
            raise BadFile(_not_regular(kind))
        if info.st_size > max_bytes:
            raise BadFile(f"file is too large ({info.st_size / 2**20:.0f} MB; at most {max_bytes / 2**20:g} MB, "
                          "QA_MAX_FILE_MB)")
        parts, total = [], 0
        while True:
            part = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not part:
                break
            parts.append(part)
            total += len(part)
            if total > max_bytes:  # it grew while being read
                raise BadFile(f"file is too large (over {max_bytes / 2**20:g} MB, QA_MAX_FILE_MB)")
        return b"".join(parts)
    except OSError as exc:
        raise BadFile(f"cannot read file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
