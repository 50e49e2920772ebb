"""File -> SourceDoc: load, clean, identify. The stored text is exactly ``SourceDoc.text``."""
from __future__ import annotations

from pathlib import Path

from ingest.chunking import content_id
from ingest.clean import kept_paragraphs, normalize, paragraphs
from ingest.loaders import load_file, safe_text
from ingest.settings import Limits
from ingest.types import BadFile, SourceDoc


def build_document(path: Path, data: bytes | None = None, limits: Limits | None = None) -> SourceDoc:
    limits = limits or Limits()
    loaded = load_file(path, data, limits)
    meta = dict(loaded.meta)
    boilerplate = meta.pop("boilerplate", []) or []
    # Paragraphs of every page, remembering which page each came from.
    page_texts = loaded.pages if loaded.pages is not None else [loaded.text]
    paras: list[str] = []
    para_page: list[int] = []
    for page_no, page in enumerate(page_texts):
        for para in paragraphs(normalize(page)):
            paras.append(para)
            para_page.append(page_no)
    kept = kept_paragraphs(paras, boilerplate, limits.regex_timeout)
    text_parts: list[str] = []
    page_starts: list[int] = []
    offset = 0
    last_page = -1
    for i in kept:
        if loaded.pages is not None:
            while last_page < para_page[i]:
                last_page += 1
                page_starts.append(offset)
        text_parts.append(paras[i])
        offset += len(paras[i]) + 2
    text = "\n\n".join(text_parts)
    if not text.strip():
        raise BadFile("no text left after cleaning (only boilerplate or whitespace)")
    if loaded.pages is not None:
        while len(page_starts) < len(page_texts):
            page_starts.append(len(text))
    title = str(meta.pop("title", "") or "").strip() or _title_from_name(path)
    meta = {k: v for k, v in meta.items() if v not in (None, "", [])}
    meta["filename"] = safe_text(path.name)
    return SourceDoc(doc_id=content_id(text), title=normalize(title), text=text, meta=meta, pages=tuple(page_starts))


def _title_from_name(path: Path) -> str:
    return safe_text(path.stem.replace("_", " ").replace("-", " ").strip().capitalize() or path.name)
