"""BM25 over the stored chunks (bm25s), kept in step with Chroma.

Built from the chunks stored in Chroma at the end of every ingest run that changed something, and
saved next to the index under a *state token* (a hash of the set of complete documents). Readers
load it once; if the token no longer matches the index (a run was interrupted before the rebuild),
``load_or_build`` rebuilds it once and saves it. It is never rebuilt per query.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

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
    def build(cls, items: Iterable[tuple[str, str]], token: str) -> "LexicalIndex":
        import bm25s

        chunk_ids: list[str] = []
        corpus: list[list[str]] = []
        for chunk_id, text in items:
            chunk_ids.append(chunk_id)
            corpus.append(tokenize(text) or ["\u2205"])  # bm25s needs a token per document
        retriever = bm25s.BM25()
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
        old = directory.with_name(directory.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if directory.exists():
            os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, directory: Path) -> "LexicalIndex | None":
        import bm25s

        directory = Path(directory)
        try:
            token = (directory / "token").read_text()
            chunk_ids = json.loads((directory / "chunk_ids.json").read_text())
            retriever = bm25s.BM25.load(str(directory / "bm25"), show_progress=False) if chunk_ids else None
        except (OSError, ValueError):
            return None
        return cls(chunk_ids, retriever, token)


def rebuild(store) -> LexicalIndex:
    """Build from every chunk in the store and save it under the store's current state token."""
    index = LexicalIndex.build(((cid, text) for cid, text, _ in store.iter_chunks()), store.state_token())
    index.save(store.lexical_dir())
    store.publish_state(index.token)
    return index


def load_or_build(store, token: str | None = None) -> LexicalIndex:
    """The saved index if it matches ``token`` (default: the store's computed state), else a rebuild."""
    token = token or store.state_token()
    index = LexicalIndex.load(store.lexical_dir())
    if index is not None and index.token == token:
        return index
    return rebuild(store)
