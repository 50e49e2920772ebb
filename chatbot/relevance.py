"""Sentence meaning: cosine between the question and each candidate sentence (packaged MiniLM).

Where a sentence's vector comes from:
- stored with its chunk at ingest (chunk metadata ``svec``, see ``ingest.store``): free at query time;
- otherwise (an index built before sentence vectors were stored) it is computed for the
  candidate when first needed and kept in an LRU cache keyed by the sentence text. On the 2-core
  test machine that costs 7-15 ms per sentence with the int8 backend (16-40 tokens; 25-30
  candidates per question), so it is the fallback, not the plan (benchmarks/RESULTS.md,
  "Answer, partial or refuse").
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Sequence

import numpy as np

from ingest.lexical import STOPWORDS
from ingest.records import sentence_vectors_of


class SentenceVectors:
    """Vectors of candidate sentences (the stored ones, else computed once and cached) and of other
    texts, such as a long sentence's clauses (computed once and cached)."""

    def __init__(self, embedder, cache_size: int = 20_000) -> None:
        self.embedder = embedder
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.computed = 0  # sentences that had no stored vector and were embedded here
        self.texts_computed = 0  # other texts (clauses, ``of_texts``) embedded here

    def of(self, candidates: Sequence) -> np.ndarray:
        """One unit vector per candidate (``chatbot.extractive.Candidate``), in order."""
        return self.of_spans([(c.passage, c.start, c.end, c.text) for c in candidates])

    def of_spans(self, spans: Sequence[tuple]) -> np.ndarray:
        """One unit vector per ``(passage, start, end, text)`` sentence span, in order (the claim
        checks of chatbot.generative use it too)."""
        out = np.zeros((len(spans), self.embedder.dimension), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        stored_by_chunk: dict[str, dict[tuple[int, int], np.ndarray]] = {}
        for i, (passage, start, end, text) in enumerate(spans):
            chunk_id = passage.chunk.chunk.chunk_id
            stored = stored_by_chunk.get(chunk_id)
            if stored is None:
                stored = stored_by_chunk[chunk_id] = sentence_vectors_of(passage.chunk)
            vec = stored.get((start, end))
            if vec is None:
                with self._lock:
                    vec = self._cache.get(text)
                    if vec is not None:
                        self._cache.move_to_end(text)
            if vec is None:
                missing.setdefault(text, []).append(i)
            else:
                out[i] = vec
        if missing:
            self.computed += len(missing)
            self._fill(out, missing)
        return out

    def of_texts(self, texts: Sequence[str]) -> np.ndarray:
        """One unit vector per text that is no stored sentence (a clause of one), cached."""
        out = np.zeros((len(texts), self.embedder.dimension), dtype=np.float32)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                vec = self._cache.get(text)
                if vec is None:
                    missing.setdefault(text, []).append(i)
                else:
                    self._cache.move_to_end(text)
                    out[i] = vec
        if missing:
            self.texts_computed += len(missing)
            self._fill(out, missing)
        return out

    def _fill(self, out: np.ndarray, missing: dict[str, list[int]]) -> None:
        """Embed the ``missing`` texts (one batch), write each to its rows of ``out``, cache them."""
        texts = list(missing)
        vectors = np.asarray(self.embedder.embed_documents(texts), dtype=np.float32)
        with self._lock:
            for text, vec in zip(texts, vectors):
                out[missing[text]] = vec
                self._cache[text] = vec
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)


def similarities(question_vector: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Cosine of unit vectors (the stored ones are int8-rounded: error below 0.005)."""
    if len(vectors) == 0:
        return np.zeros(0, dtype=np.float32)
    return vectors @ np.asarray(question_vector, dtype=np.float32)


_SKIP_TOKENS = frozenset("[CLS] [SEP] what which who whom whose when where why how did does do is are was were".split())


class TokenAligner:
    """How well every content word of the question is matched in a sentence, in context.

    MiniLM's token vectors (before pooling) of the question and of the sentence; each question
    content token takes its best cosine to any sentence token; the score is the mean of the two
    lowest (the question's worst-matched words). A swapped entity or an added detail the
    sentence lacks leaves a question word with no good match; a paraphrase still finds one.
    Costs one model run per text (7-15 ms on the 2-core test machine), so it is computed for the
    best sentence only, with an LRU cache.
    """

    def __init__(self, embedder, cache_size: int = 500) -> None:
        self.embedder = embedder
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[list[str], np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def available(self) -> bool:
        return hasattr(self.embedder, "warm_up")

    def question_vector(self, text: str) -> np.ndarray | None:
        """The text's unit vector (mean pooling, exactly what ``embed_query`` computes) from the same
        model run whose token vectors ``alignment`` uses, so the question costs one run, not two.
        None when the embedder has no token vectors."""
        if not self.available():
            return None
        tokens, hidden = self._run(text)
        self._keep(text, tokens, hidden)
        vector = hidden.mean(axis=0)
        return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)

    def _run(self, text: str) -> tuple[list[str], np.ndarray]:
        """Tokens and raw (unpooled, unnormalised) hidden states of one text."""
        model = self.embedder.warm_up()
        if hasattr(model, "token_states"):  # ingest.onnx_backend.OnnxSentenceEncoder: one unpadded run
            enc = model.tokenizer.encode(text)
            return list(enc.tokens), np.asarray(model.token_states(enc.ids), dtype=np.float32)
        # sentence-transformers (PyTorch backend)
        hidden = np.asarray(model.encode(text, output_value="token_embeddings", convert_to_numpy=True))
        tokens = model.tokenizer.convert_ids_to_tokens(model.tokenizer(text, truncation=True)["input_ids"])
        return tokens, hidden[: len(tokens)].astype(np.float32)

    def _keep(self, text: str, tokens: list[str], hidden: np.ndarray) -> tuple[list[str], np.ndarray]:
        out = (tokens, hidden / np.maximum(np.linalg.norm(hidden, axis=1, keepdims=True), 1e-12))
        with self._lock:
            self._cache[text] = out
            self._cache.move_to_end(text)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return out

    def _tokens(self, text: str) -> tuple[list[str], np.ndarray]:
        """Tokens and unit token vectors of a text (cached)."""
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
        return self._keep(text, *self._run(text))

    def alignment(self, question: str, sentence: str) -> tuple[float, float]:
        """(mean of the two worst-matched question words' best cosines, mean over all content words).
        An embedder without token vectors (a test fake) gives (1, 1): no evidence against answering."""
        if not self.available():
            return 1.0, 1.0
        q_tokens, q_vecs = self._tokens(question)
        _, s_vecs = self._tokens(sentence)
        keep = [i for i, t in enumerate(q_tokens) if _content_token(t)]
        if not keep or not len(s_vecs):
            return 1.0, 1.0
        best = (q_vecs[keep] @ s_vecs.T).max(axis=1)
        return float(np.sort(best)[:2].mean()), float(best.mean())


def _content_token(token: str) -> bool:
    bare = token.lstrip("#").lower()
    return bool(bare) and bare[0].isalnum() and token not in _SKIP_TOKENS and bare not in _SKIP_TOKENS \
        and bare not in STOPWORDS
