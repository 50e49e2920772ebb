"""The brief of an index, built once per index state and cached beside the index; spaCy's parses
cached per document. The key of a brief is the index state, the brief's settings, the algorithm
version and the model versions; a parse's is the document's id (a content hash) and the pipeline's
version, so after an ingest only new documents are parsed.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
from importlib import metadata
from pathlib import Path
from typing import Callable, Sequence

from chatbot.brief import nlp
from chatbot.brief.build import ALGORITHM_VERSION, NER_PACKAGE, BriefConfig, BriefError, Doc, build_brief
from chatbot.provenance import index_provenance

log = logging.getLogger(__name__)


def ner_version() -> str:
    try:
        return f"{NER_PACKAGE}=={metadata.version(NER_PACKAGE)}"
    except metadata.PackageNotFoundError:
        return f"{NER_PACKAGE} (not installed)"


class ParseCache:
    """Parses by document id (ids are content hashes, so an entry never goes stale), per pipeline
    version: after an ingest only new documents are parsed. Gzipped JSON, one file per document."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder / ner_version().replace("==", "-")

    def get(self, doc: Doc) -> tuple[nlp.Parsed, str] | None:
        path = self.folder / f"{doc.doc_id}.json.gz"
        try:
            data = json.loads(gzip.decompress(path.read_bytes()))
            return nlp.Parsed.from_json(doc.text, data["parse"]), data["model"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError):
            log.warning("Damaged parse cache entry %s: the document is parsed again", path, exc_info=True)
            return None

    def put(self, doc: Doc, parsed: nlp.Parsed, model: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{doc.doc_id}.json.gz"
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(gzip.compress(json.dumps({"model": model, "parse": parsed.to_json()}).encode(), 5))
        os.replace(tmp, path)

    def keep_only(self, docs: Sequence[Doc]) -> None:
        """Forget documents that left the index."""
        wanted = {f"{d.doc_id}.json.gz" for d in docs}
        for path in self.folder.glob("*.json.gz"):
            if path.name not in wanted:
                path.unlink(missing_ok=True)


def _docs_from_store(store) -> list[Doc]:
    from ingest.store import COMPLETE

    records = [r for r in store.list_documents(with_text=True) if r.status == COMPLETE and r.text]
    records.sort(key=lambda r: (str(r.meta.get("published") or ""), r.title, r.doc_id))
    return [Doc(r.doc_id, r.title, r.text or "", dict(r.meta),
                r.meta.get("filename") or (Path(r.paths[0]).name if r.paths else None), tuple(r.pages))
            for r in records]


def cache_dir(store) -> Path:
    """Beside the index (local even when the index is on a Chroma server, like the BM25 cache)."""
    return store.lexical_dir().with_name(store.lexical_dir().name.replace("lexical-", "brief-", 1))


def cache_path(store, config: BriefConfig, embedding_model: str) -> Path:
    state = store.published_state() or store.state_token()
    key = hashlib.sha256("|".join([state, config.key(), str(ALGORITHM_VERSION), embedding_model, ner_version()])
                         .encode()).hexdigest()[:16]
    return cache_dir(store) / f"{key}.json"


def _stable_docs(store, path: Path, config: BriefConfig, embedding_model: str,
                 attempts: int = 3) -> tuple[list[Doc], Path | None]:
    """The documents and the cache path of the index state they were read in: an ingest that
    finishes while they are read changes the state, and they are read again (None: it kept
    changing), so a cached brief never holds another state's documents."""
    for _ in range(attempts):
        docs = _docs_from_store(store)
        after = cache_path(store, config, embedding_model)
        if after == path:
            return docs, path
        path = after
    return docs, None


def brief_for_index(store, embedder, config: BriefConfig | None = None, refresh: bool = False,
                    progress: Callable[[str], None] | None = None, worker: nlp.Worker | None = None) -> dict:
    """The brief of an open index: from the cache when the index has not changed, else built and
    cached. ``refresh`` rebuilds the brief (parses of unchanged documents are still reused).
    ``worker``: an early-started spaCy process (closed as soon as it is known not to be needed)."""
    config = config or BriefConfig()
    path = cache_path(store, config, embedder.model_id)
    if path.exists() and not refresh:
        try:
            brief = json.loads(path.read_text(encoding="utf-8"))
            if worker is not None:
                worker.close()
            return brief
        except (OSError, json.JSONDecodeError):  # a damaged cache entry is rebuilt
            log.warning("Damaged brief cache %s: building it again", path, exc_info=True)
    docs, path = _stable_docs(store, path, config, embedder.model_id)
    if not docs:
        raise BriefError(f"The index at {store.location} has no documents. Run `python -m ingest` to add articles.")
    brief = build_brief(docs, embedder, config, parse=worker.parse if worker else nlp.parse, progress=progress,
                        parse_cache=ParseCache(cache_dir(store) / "parsed"), release=worker.close if worker else None)
    brief["provenance"] = index_provenance(store, {**brief["models"], "ner_package": ner_version()})
    if path is None:
        return brief  # the index kept changing while it was read: not cached under any state
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(brief, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)
    for old in sorted(path.parent.glob("*.json"), key=lambda p: p.stat().st_mtime)[:-3]:
        old.unlink(missing_ok=True)  # keep the latest three index states
    return brief
