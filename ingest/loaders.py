"""Read one file into raw text + metadata. Every failure is a ``BadFile`` with a one-line reason.

Formats (see README, "Corpus format"):
- ``.md`` / ``.markdown`` / ``.txt``: UTF-8 text with optional YAML front matter between ``---``
  lines (title, source, url, published, tags, kind, boilerplate, questions).
- ``.html`` / ``.htm``: main text extracted with trafilatura; title/url/date from the page.
- ``.pdf``: text of every page (pypdf); page numbers are kept for citations.
- ``.docx``: paragraphs of the document body (python-docx).

Limits (``ingest.settings.Limits``): front matter is at most ``front_matter_kb`` and may not use
YAML anchors or aliases (an alias "bomb" expands a few hundred bytes into gigabytes) nor nest
deeper than ``MAX_YAML_DEPTH``; each value is at most ``max_meta_chars`` characters, each list at
most ``MAX_LIST_ITEMS`` items. A DOCX's declared part sizes and compression ratios are checked
before it is unzipped; a PDF's streams are decompressed up to ``max_expanded_mb`` each (pypdf's
limits). Time and memory are bounded around the whole reading of a file (``ingest.reader``).
"""
from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ingest.settings import Limits
from ingest.types import BadFile

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's safe loader when built in
TEXT_EXTENSIONS = (".md", ".markdown", ".txt")
SUPPORTED_EXTENSIONS = TEXT_EXTENSIONS + (".html", ".htm", ".pdf", ".docx")
PAGE_SEPARATOR = "\n\n"
MAX_YAML_DEPTH = 10
MAX_LIST_ITEMS = 500
MAX_ZIP_ENTRIES = 10_000
RATIO_CHECKED_FROM = 1 << 20  # bytes: smaller parts may compress as well as they like
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


@dataclass
class Loaded:
    """Raw text of a file before cleaning. ``pages``: the text of each page, for PDFs."""

    text: str
    meta: dict[str, Any] = field(default_factory=dict)
    pages: list[str] | None = None


def load_file(path: Path, data: bytes | None = None, limits: Limits | None = None) -> Loaded:
    limits = limits or Limits()
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
        loaded = _load_text(data, limits)
        if "title" not in loaded.meta and ext != ".txt":
            heading = _HEADING.search(loaded.text)
            if heading:
                loaded.meta["title"] = heading.group(1)
    elif ext in (".html", ".htm"):
        loaded = _load_html(data)
    elif ext == ".pdf":
        loaded = _load_pdf(data, limits)
    else:
        loaded = _load_docx(data, limits)
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


def _load_text(data: bytes, limits: Limits) -> Loaded:
    text = decode_text(data)
    meta: dict[str, Any] = {}
    if text.startswith("---"):
        lines = text.split("\n")
        if lines[0].strip() == "---":
            for i in range(1, len(lines)):
                if lines[i].strip() in ("---", "..."):
                    meta = _front_matter("\n".join(lines[1:i]), limits)
                    text = "\n".join(lines[i + 1 :])
                    break
    return Loaded(text=unwrap_lines(text), meta=meta)  # hard-wrapped Markdown/text


def _front_matter(source: str, limits: Limits) -> dict[str, Any]:
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > limits.front_matter_kb * 1024:
        raise BadFile(f"front matter is too large ({size // 1024} KB; at most {limits.front_matter_kb:g} KB, "
                      "QA_FRONT_MATTER_KB)")
    try:
        _check_yaml_events(source)
        parsed = yaml.load(source, Loader=_YAML_LOADER) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 2})" if mark else ""
        raise BadFile(f"invalid YAML front matter{where}") from None
    if not isinstance(parsed, dict):
        raise BadFile("front matter must be a YAML mapping (key: value lines)")
    return _normalize_meta(parsed, limits)


def _check_yaml_events(source: str) -> None:
    """Refuse anchors/aliases (``&a`` / ``*a``: the "billion laughs" expansion) and deep nesting,
    from the parser's events, before anything is built."""
    depth = 0
    for event in yaml.parse(source, Loader=_YAML_LOADER):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise BadFile("front matter uses YAML anchors or aliases (&name / *name), which are not allowed")
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise BadFile(f"front matter is nested too deeply (more than {MAX_YAML_DEPTH} levels)")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _normalize_meta(meta: dict[str, Any], limits: Limits) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in meta.items():
        key = safe_text(str(key).strip().lower())
        if isinstance(value, (dt.date, dt.datetime)):
            value = value.isoformat()[:10]
        if key in ("tags", "boilerplate", "questions"):
            if isinstance(value, str):
                value = [value]
            elif not isinstance(value, list):
                value = [] if value is None else [value]
            value = [safe_text(str(v)) for v in value]
        elif value is not None and not isinstance(value, (list, dict)):
            value = safe_text(str(value).strip())
        else:
            value = _plain(value)
        _check_size(key, value, limits)
        out[key] = value
    return out


def _plain(value: Any) -> Any:
    """A nested front-matter value as the index stores it: JSON types, other scalars as text."""
    if isinstance(value, dict):
        return {safe_text(str(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return safe_text(str(value))


def _check_size(key: str, value: Any, limits: Limits) -> None:
    if isinstance(value, str):
        if len(value) > limits.max_meta_chars:
            raise BadFile(f"front matter field {key!r} is too long ({len(value)} characters; at most "
                          f"{limits.max_meta_chars}, QA_MAX_META_CHARS)")
        return
    items = list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else []
    if len(items) > MAX_LIST_ITEMS:
        raise BadFile(f"front matter field {key!r} has too many items ({len(items)}; at most {MAX_LIST_ITEMS})")
    for item in items:
        _check_size(key, item, limits)


def safe_text(text: str) -> str:
    """``text`` as valid Unicode, for storage and display: the undecodable bytes of a file name
    (Python's surrogate escapes) become ``\\xff``, other lone surrogates ``\\ud800``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join(_safe_char(ch) for ch in text)


def _safe_char(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:
        return f"\\x{code - 0xDC00:02x}"
    if 0xD800 <= code <= 0xDFFF:
        return f"\\u{code:04x}"
    return ch


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


def _load_pdf(data: bytes, limits: Limits) -> Loaded:
    from pypdf import PdfReader, apply_configuration, get_configuration

    cap = int(limits.max_expanded_mb * 1024 * 1024)
    base = get_configuration()
    bounded = {name: min(getattr(base, name), cap) for name in _PDF_OUTPUT_LIMITS if hasattr(base, name)}
    try:
        with apply_configuration(**bounded):
            reader = PdfReader(io.BytesIO(data))
            pages = [unwrap_lines(page.extract_text() or "") for page in reader.pages]
            info = reader.metadata
            title = info.title if info is not None else None
    except MemoryError:
        raise
    except Exception as exc:  # pypdf raises many kinds of errors on damaged files (LimitReachedError too)
        raise BadFile(f"corrupt or unreadable PDF ({type(exc).__name__}: {_first_line(exc)})") from None
    if not any(p.strip() for p in pages):
        raise BadFile("PDF has no extractable text (scanned images need OCR first)")
    meta: dict[str, Any] = {}
    if title:
        meta["title"] = safe_text(str(title))
    return Loaded(text=PAGE_SEPARATOR.join(pages), meta=meta, pages=pages)


_PDF_OUTPUT_LIMITS = (
    "maximum_declared_stream_length", "array_based_stream_maximum_output_length", "jbig2_maximum_output_length",
    "lzw_maximum_output_length", "run_length_maximum_output_length", "zlib_maximum_output_length",
    "brotli_maximum_output_length", "image_maximum_buffer_size",
)


def check_zip(data: bytes, limits: Limits, kind: str) -> None:
    """Refuse a zip bomb from its directory, before anything is inflated. The declared sizes are
    what Python's zipfile inflates at most (a part that inflates beyond its declared size is a read
    error), so checking them bounds the expansion."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parts = archive.infolist()
    except Exception as exc:  # BadZipFile, or a damaged directory (ValueError, EOFError...)
        raise BadFile(f"corrupt or unreadable {kind} ({type(exc).__name__})") from None
    if len(parts) > MAX_ZIP_ENTRIES:
        raise BadFile(f"{kind} has too many parts ({len(parts)}; at most {MAX_ZIP_ENTRIES})")
    total = sum(p.file_size for p in parts)
    if total > limits.max_expanded_mb * 1024 * 1024:
        raise BadFile(f"{kind} would expand to {total / 2**20:.0f} MB when unzipped (at most "
                      f"{limits.max_expanded_mb:g} MB, QA_MAX_EXPANDED_MB): refused as a possible zip bomb")
    for p in parts:
        ratio = p.file_size / max(p.compress_size, 1)
        if p.file_size > RATIO_CHECKED_FROM and ratio > limits.max_ratio:
            raise BadFile(f"{kind} part {safe_text(p.filename)!r} would expand {ratio:.0f}x, to "
                          f"{p.file_size / 2**20:.0f} MB (at most {limits.max_ratio:g}x, QA_MAX_RATIO): "
                          "refused as a possible zip bomb")


def _load_docx(data: bytes, limits: Limits) -> Loaded:
    import docx

    check_zip(data, limits, "DOCX")
    try:
        document = docx.Document(io.BytesIO(data))
    except MemoryError:
        raise
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


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else ""
