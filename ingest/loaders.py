"""Read one file into raw text + metadata. Every failure is a ``BadFile`` with a one-line reason.

Formats (see README, "Corpus format"):
- ``.md`` / ``.markdown`` / ``.txt``: UTF-8 text with optional YAML front matter between ``---``
  lines (title, source, url, published, tags, kind, boilerplate, questions).
- ``.html`` / ``.htm``: main text extracted with trafilatura; title/url/date from the page.
- ``.pdf``: text of every page (pypdf); page numbers are kept for citations.
- ``.docx``: paragraphs of the document body (python-docx).
"""
from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ingest.types import BadFile

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's safe loader when built in
TEXT_EXTENSIONS = (".md", ".markdown", ".txt")
SUPPORTED_EXTENSIONS = TEXT_EXTENSIONS + (".html", ".htm", ".pdf", ".docx")
PAGE_SEPARATOR = "\n\n"
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


@dataclass
class Loaded:
    """Raw text of a file before cleaning. ``pages``: the text of each page, for PDFs."""

    text: str
    meta: dict[str, Any] = field(default_factory=dict)
    pages: list[str] | None = None


def load_file(path: Path, data: bytes | None = None) -> Loaded:
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise BadFile(
            f"unsupported file type {ext or '(no extension)'!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if data is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise BadFile(f"cannot read file: {exc.strerror or exc}") from None
    if not data.strip():
        raise BadFile("file is empty" if not data else "file contains only whitespace")
    if ext in TEXT_EXTENSIONS:
        loaded = _load_text(data)
        if "title" not in loaded.meta and ext != ".txt":
            heading = _HEADING.search(loaded.text)
            if heading:
                loaded.meta["title"] = heading.group(1)
    elif ext in (".html", ".htm"):
        loaded = _load_html(data)
    elif ext == ".pdf":
        loaded = _load_pdf(data)
    else:
        loaded = _load_docx(data)
    if not loaded.text.strip():
        raise BadFile("no text found in file")
    return loaded


def decode_text(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            raise BadFile("not valid UTF-16 text despite its byte-order mark") from None
    if b"\x00" in data[:8192]:
        raise BadFile("binary file (contains NUL bytes), not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        head = data[:8192]
        controls = sum(1 for b in head if b < 32 and b not in b"\n\r\t\f" or b == 127)
        if controls > max(8, len(head) // 100):
            raise BadFile("binary file (control bytes), not text") from None
        raise BadFile(f"not UTF-8 text (undecodable byte at position {exc.start}); save it as UTF-8") from None
    controls = sum(1 for ch in text[:8192] if ord(ch) < 32 and ch not in "\n\r\t\f")
    if controls > max(8, len(text[:8192]) // 100):
        raise BadFile("binary file (control characters), not text")
    return text


def _load_text(data: bytes) -> Loaded:
    text = decode_text(data)
    meta: dict[str, Any] = {}
    if text.startswith("---"):
        lines = text.split("\n")
        if lines[0].strip() == "---":
            for i in range(1, len(lines)):
                if lines[i].strip() in ("---", "..."):
                    try:
                        parsed = yaml.load("\n".join(lines[1:i]), Loader=_YAML_LOADER) or {}
                    except yaml.YAMLError as exc:
                        mark = getattr(exc, "problem_mark", None)
                        where = f" (line {mark.line + 2})" if mark else ""
                        raise BadFile(f"invalid YAML front matter{where}") from None
                    if not isinstance(parsed, dict):
                        raise BadFile("front matter must be a YAML mapping (key: value lines)")
                    meta = _normalize_meta(parsed)
                    text = "\n".join(lines[i + 1 :])
                    break
    return Loaded(text=unwrap_lines(text), meta=meta)  # hard-wrapped Markdown/text


def _normalize_meta(meta: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in meta.items():
        key = str(key).strip().lower()
        if isinstance(value, (dt.date, dt.datetime)):
            value = value.isoformat()[:10]
        if key in ("tags", "boilerplate", "questions"):
            if isinstance(value, str):
                value = [value]
            value = [str(v) for v in (value or [])]
        elif value is not None and not isinstance(value, (list, dict)):
            value = str(value).strip()
        out[key] = value
    return out


def _load_html(data: bytes) -> Loaded:
    import trafilatura

    try:
        html = data.decode("utf-8")
    except UnicodeDecodeError:
        html = data.decode("latin-1")
    if "<" not in html:
        raise BadFile("not an HTML document")
    text = trafilatura.extract(html, output_format="txt", include_comments=False, include_tables=True)
    if not text:
        raise BadFile("no main text found in HTML page")
    # trafilatura puts one block (paragraph, heading, list item) per line: make each a paragraph,
    # as in Markdown, so paragraph-level cleaning (trailing appeals) applies to web pages too.
    text = "\n\n".join(line for line in text.split("\n") if line.strip())
    meta: dict[str, Any] = {}
    # No extensive date search: it guesses a date from e.g. a "Copyright 2024" footer; only dates
    # the page declares (meta tags, <time>, date lines) are kept.
    info = trafilatura.extract_metadata(html, extensive=False)
    if info is not None:
        for key, attr in (("title", "title"), ("url", "url"), ("published", "date"), ("source", "sitename")):
            value = getattr(info, attr, None)
            if value:
                meta[key] = str(value)
    return Loaded(text=text, meta=meta)


_WRAPPED = re.compile(r"(?<=\S)[ \t]*\r?\n[ \t]*(?=[a-z])")
_HYPHEN_WRAPPED = re.compile(r"(?<=[A-Za-z]-)\r?\n(?=[a-z])")


def unwrap_lines(text: str) -> str:
    """Join lines wrapped inside a sentence (the next line starts in lower case): PDF lines,
    hard-wrapped Markdown or text.

    Line breaks end sentences in cleaned text, so without this every wrapped line would cut a
    sentence in two. A hyphen at the end of a line is kept as printed. List items, headings and
    lines starting with a capital or a digit are left alone.
    """
    return _WRAPPED.sub(" ", _HYPHEN_WRAPPED.sub("", text))


def _load_pdf(data: bytes) -> Loaded:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        pages = [unwrap_lines(page.extract_text() or "") for page in reader.pages]
        info = reader.metadata
    except (PdfReadError, ValueError, KeyError, TypeError, OSError, AssertionError) as exc:
        raise BadFile(f"corrupt or unreadable PDF ({type(exc).__name__})") from None
    except Exception as exc:  # pypdf raises many kinds of errors on damaged files
        raise BadFile(f"corrupt or unreadable PDF ({type(exc).__name__})") from None
    if not any(p.strip() for p in pages):
        raise BadFile("PDF has no extractable text (scanned images need OCR first)")
    meta: dict[str, Any] = {}
    if info is not None and info.title:
        meta["title"] = str(info.title)
    return Loaded(text=PAGE_SEPARATOR.join(pages), meta=meta, pages=pages)


def _load_docx(data: bytes) -> Loaded:
    import docx

    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises zipfile/KeyError/ValueError on damaged files
        raise BadFile(f"corrupt or unreadable DOCX ({type(exc).__name__})") from None
    meta: dict[str, Any] = {}
    paras = []
    for p in document.paragraphs:
        if not p.text.strip():
            continue
        if "title" not in meta and (p.style is not None and (p.style.name or "").startswith(("Title", "Heading"))):
            meta["title"] = p.text.strip()
        paras.append(p.text)
    title = document.core_properties.title
    if title:
        meta["title"] = title
    return Loaded(text="\n\n".join(paras), meta=meta)
