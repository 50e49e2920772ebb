"""BM25 over the stored chunks (bm25s), kept in step with Chroma.

Built from the chunks stored in Chroma at the end of every ingest run that changed something, and
saved next to the index under a *state token* (a hash of the set of complete documents). Readers
load it once; if the token no longer matches the index (a run was interrupted before the rebuild),
``load_or_build`` rebuilds it once and saves it. It is never rebuilt per query.

Scoring: BM25 (Lucene variant) with ``BM25_PARAMS``. Each chunk is indexed with its document's
title in front (``BM25_TITLE``; not when the chunk already starts with it), so a chunk that never
repeats the subject its document is about still matches it. A saved index built with other
settings is treated as missing, so changing them here rebuilds the index once, on the next ingest
or query. The values were chosen on BEIR SciFact and checked on the QA evals (benchmarks/RESULTS.md).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np

BM25_PARAMS = {"method": "lucene", "k1": 1.5, "b": 0.75}
BM25_TITLE = True  # prefix each chunk's indexed text with its document title
_WORD = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    """a an and are as at be been being but by did do does doing for from had has have having he her
    hers him his how i if in into is it its itself me my of on or our ours she so than that the their
    theirs them then there these they this those to too was we were what when where which while who
    whom why will with would you your yours also can could should may might must shall about over
    under again further once here each few more most other some such no nor not only own same very
    s t just don now""".split()
)


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


def tokenize(text: str) -> list[str]:
    """Lower-cased, stop-worded, Snowball-stemmed word tokens (shared by BM25 and sentence scoring)."""
    words = [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]
    return _stemmer().stemWords(words) if words else []


class LexicalIndex:
    def __init__(self, chunk_ids: list[str], retriever, token: str) -> None:
        self.chunk_ids = chunk_ids
        self.token = token
        self._retriever = retriever
        self._position = {cid: i for i, cid in enumerate(chunk_ids)}
        vocab = getattr(retriever, "vocab_dict", None) or {}
        self._vocab = vocab

    def __len__(self) -> int:
        return len(self.chunk_ids)

    @classmethod
    def build(cls, items: Iterable[tuple[str, str]], token: str, params: dict | None = None) -> "LexicalIndex":
        import bm25s

        chunk_ids: list[str] = []
        corpus: list[list[str]] = []
        for chunk_id, text in items:
            chunk_ids.append(chunk_id)
            corpus.append(tokenize(text) or ["\u2205"])  # bm25s needs a token per document
        retriever = bm25s.BM25(**(params or BM25_PARAMS))
        if corpus:
            retriever.index(corpus, show_progress=False)
        return cls(chunk_ids, retriever if corpus else None, token)

    def mask(self, allowed_ids: Iterable[str]) -> np.ndarray:
        mask = np.zeros(len(self.chunk_ids), dtype=np.float32)
        for cid in allowed_ids:
            i = self._position.get(cid)
            if i is not None:
                mask[i] = 1.0
        return mask

    def search(self, query: str, k: int, mask: np.ndarray | None = None) -> list[tuple[str, float]]:
        if self._retriever is None or k <= 0:
            return []
        tokens = [t for t in tokenize(query) if t in self._vocab]
        if not tokens:
            return []
        scores = self._retriever.get_scores(tokens)
        if mask is not None:
            scores = scores * mask
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.chunk_ids[i], float(scores[i])) for i in top if scores[i] > 0]

    def idf(self, term: str) -> float:
        """BM25 idf of a (tokenized) term in the chunk collection; unseen terms get the maximum."""
        n = max(1, len(self.chunk_ids))
        df = self._df().get(term, 0)
        return float(np.log(1 + (n - df + 0.5) / (df + 0.5)))

    def contains(self, term: str) -> bool:
        return self._df().get(term, 0) > 0

    def _df(self) -> dict[str, int]:
        if not hasattr(self, "_df_cache"):
            if self._retriever is None:
                self._df_cache = {}
            else:
                indptr = self._retriever.scores["indptr"]
                counts = np.diff(indptr)
                self._df_cache = {t: int(counts[i]) for t, i in self._vocab.items() if i < len(counts)}
        return self._df_cache

    # ------------------------------------------------------------ persistence
    def save(self, directory: Path) -> None:
        """Write atomically: a crash leaves either the old index or the new one."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".lexical-", dir=directory.parent))
        if self._retriever is not None:
            self._retriever.save(str(tmp / "bm25"), show_progress=False)
        (tmp / "chunk_ids.json").write_text(json.dumps(self.chunk_ids))
        (tmp / "token").write_text(self.token)
        (tmp / "settings.json").write_text(json.dumps(index_settings()))
        old = directory.with_name(directory.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)

    @staticmethod
    def saved_token(directory: Path) -> str | None:
        """The state token of the index saved in ``directory`` if it can be reused, without loading it."""
        directory = Path(directory)
        try:
            if json.loads((directory / "settings.json").read_text()) != index_settings():
                return None
            return (directory / "token").read_text()
        except (OSError, ValueError):
            return None

    @classmethod
    def load(cls, directory: Path) -> "LexicalIndex | None":
        import bm25s

        directory = Path(directory)
        token = cls.saved_token(directory)
        if token is None:  # missing, or built with other BM25 settings: rebuild
            return None
        try:
            chunk_ids = json.loads((directory / "chunk_ids.json").read_text())
            retriever = bm25s.BM25.load(str(directory / "bm25"), show_progress=False) if chunk_ids else None
        except (OSError, ValueError):
            return None
        return cls(chunk_ids, retriever, token)


def index_settings() -> dict:
    """What a saved index must have been built with to be reused (saved beside it)."""
    return {"bm25": dict(BM25_PARAMS), "title": BM25_TITLE}


def indexed_text(text: str, meta: dict | None) -> str:
    """The text BM25 indexes for a stored chunk: its document title, then the chunk."""
    title = str((meta or {}).get("title") or "").strip()
    if BM25_TITLE and title and not text.startswith(title):
        return f"{title}\n{text}"
    return text


def build_from_store(store, token: str | None = None) -> LexicalIndex:
    """Build (without saving) from every chunk in the store."""
    items = ((cid, indexed_text(text, meta)) for cid, text, meta in store.iter_chunks())
    return LexicalIndex.build(items, token or store.state_token())


def rebuild(store, token: str | None = None) -> LexicalIndex:
    """Build from every chunk in the store and save it under the store's current state token
    (``token`` if the caller has just computed it)."""
    index = build_from_store(store, token)
    index.save(store.lexical_dir())
    store.publish_state(index.token)
    return index


def load_or_build(store, token: str | None = None) -> LexicalIndex:
    """The saved index if it matches ``token`` (default: the store's computed state), else a rebuild
    (after an interrupted run), saved and published only if no writer is at work: a reader takes
    the writer lock without waiting for that, or else builds in memory, under ``token``, until the
    writer publishes its own."""
    from ingest.lock import WriterLock
    from ingest.types import IndexBusy

    token = token or store.state_token()
    index = LexicalIndex.load(store.lexical_dir())
    if index is not None and index.token == token:
        return index
    try:
        with WriterLock(store.settings, "rebuild the keyword index", wait=0, on_wait=lambda _m: None):
            return rebuild(store)
    except IndexBusy:
        return build_from_store(store, token)
