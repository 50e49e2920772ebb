"""The LLM answerer: the model writes from numbered passages (``chatbot/prompt.py``), every sentence
of its answer is checked against the passages it cites (``chatbot/claims.py``) and the ``Answer``
is built from the checked claims.

Providers, settings and the call itself (deadline, the supervised llama.cpp process) live in
``chatbot/llm_client.py`` and ``chatbot/llm_server.py``.

Failures (unreachable server, timeout, model error, empty output) raise ``LLMUnavailable``; the
service then shows the extractive answer with a one-line notice.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from chatbot.answerer import AnswerRequest
from chatbot.claims import CheckedClaim, Match, SupportConfig, check_claims, is_refusal, split_claims
from chatbot.llm_client import ChatClient, LLMConfig, LLMUnavailable, check_provider
from chatbot.prompt import CONDENSE_PROMPT, build_messages, prompt_passages
from chatbot.retrieve import Passage
from chatbot.settings import QASettings
from chatbot.types import NOT_IN_SOURCES, UNSUPPORTED_FLAG, Answer, Citation, Claim

log = logging.getLogger(__name__)
CONDENSE_TURNS = 3  # the latest turns a follow-up is rewritten against
CONDENSE_ANSWER_CHARS = 400  # of each earlier answer shown to the model
MAX_CONDENSED_CHARS = 300  # a longer "question" is the model rambling: the heuristic is used instead


def llm_from_settings(settings: QASettings, embedder=None) -> "LLMAnswerer | None":
    """The configured answerer, or None when QA_LLM is not set. Checks the packages now
    (``LLMConfigError``); models load and servers are contacted on first use."""
    config = settings.llm
    if config is None:
        return None
    check_provider(config)
    return LLMAnswerer(config, embedder=embedder)



# --------------------------------------------------------------------------- the answerer
@dataclass
class LLMAnswerer:
    config: LLMConfig
    embedder: Any = None
    page_of: Any = None  # callable(doc_id, start) -> page | None, set by attach()
    sentence_vectors: Any = None  # chatbot.relevance.SentenceVectors of the service, set by attach()
    client: ChatClient | None = None  # built from config unless given (e.g. sharing a llama.cpp server)

    def __post_init__(self) -> None:
        if self.client is None:
            self.client = ChatClient(self.config)

    @property
    def provider(self) -> str:
        return self.config.provider

    @property
    def name(self) -> str:
        """``provider:model`` (the file name for a GGUF path), for exports and logs."""
        model = Path(self.config.model).name if self.config.provider == "llamacpp" else self.config.model
        return f"{self.config.provider}:{model}"

    @property
    def mode(self) -> str:
        return f"llm:{self.config.provider}"

    @property
    def support(self) -> SupportConfig:
        return SupportConfig(min_support=self.config.min_support)

    def attach(self, service) -> None:
        """Share the service's embedder, stored sentence vectors and page lookup (called by ``QAService``)."""
        if self.embedder is None:
            self.embedder = service.embedder
        if self.sentence_vectors is None:
            self.sentence_vectors = getattr(service, "sentences", None)
        if self.page_of is None:
            self.page_of = getattr(service, "page_at", None)

    def _embedder(self):
        if self.embedder is None:
            from ingest.embed import SentenceTransformerEmbedder

            self.embedder = SentenceTransformerEmbedder()
        return self.embedder

    def warm_up(self) -> None:
        """Get the model ready now instead of on the first question (llamacpp: start its server
        process and wait until it answers; ``LLMUnavailable`` if it cannot start)."""
        self.client.warm_up()

    def close(self) -> None:
        """Stop the llama.cpp server process, if any (it also stops when this process exits)."""
        self.client.close()

    def generate(self, messages: Sequence[tuple[str, str]]) -> str:
        return "".join(self._stream(messages, stream=False))

    def _stream(self, messages: Sequence[tuple[str, str]], stream: bool = True) -> Iterator[str]:
        return self.client.stream(messages, stream=stream)

    # ------------------------------------------------------------- answering
    def answer(self, request: AnswerRequest) -> Answer:
        """The checked answer (raises ``LLMUnavailable`` when the model cannot answer)."""
        result = None
        for item in self.answer_stream(request, stream=False):
            if isinstance(item, Answer):
                result = item
        assert result is not None
        return result

    def answer_stream(self, request: AnswerRequest, stream: bool = True) -> Iterator[str | Answer]:
        """Yields pieces of the model's raw text as they arrive, then the checked ``Answer``. When the
        model's answer cannot be checked, or it refuses, the answer offers ``request.extractive``'s
        evidence."""
        fallback = request.extractive or Answer(request.question, "", False)
        return self._run(request.question, request.standalone, request.passages, fallback, stream=stream)

    def _run(self, question: str, standalone: str, passages: Sequence[Passage], fallback: Answer,
             stream: bool) -> Iterator[str | Answer]:
        chosen = prompt_passages(passages, self.config)
        if not chosen:
            yield self._refusal(question, standalone, fallback, [], None)
            return
        pieces: list[str] = []
        for piece in self._stream(build_messages(standalone, chosen), stream=stream):
            pieces.append(piece)
            yield piece
        raw = "".join(pieces).strip()
        if not raw:
            raise LLMUnavailable(f"{self.client.where} returned an empty answer")
        yield self.finish(question, standalone, chosen, fallback, raw)  # a bug here propagates

    def finish(self, question: str, standalone: str, passages: Sequence[Passage], fallback: Answer,
               raw: str) -> Answer:
        """Check the model's raw answer against ``passages`` and build the ``Answer``."""
        drafts = split_claims(raw)
        checked = check_claims(drafts, passages, self._embedder(), self.support, self.sentence_vectors)
        if any(c.supported for c in checked) and self.relevance(standalone, checked) < self.support.min_relevance:
            # True to the passages but beside the question (e.g. the title copied out): no answer.
            checked = [replace(c, supported=False, matches=[]) for c in checked]
        if not any(c.supported for c in checked):
            refused = not checked or any(c.refusal for c in checked) or is_refusal(raw)
            return self._refusal(question, standalone, fallback, checked,
                                 None if refused else "The model's answer could not be verified against the "
                                 "sources, so it is not shown as an answer (see claims).")
        numbering: dict[tuple[str, int, int], int] = {}
        citations: list[Citation] = []
        claims: list[Claim] = []
        parts: list[str] = []
        for c in checked:
            if c.refusal:
                claims.append(Claim(c.text, (), round(c.support, 4), False, refusal=True))
                parts.append(c.text)
                continue
            numbers: list[int] = []
            for m in c.matches:
                p = passages[m.passage - 1]
                key = (p.chunk.chunk.doc_id, m.sentence.start, m.sentence.end)
                if key not in numbering:
                    numbering[key] = len(citations) + 1
                    citations.append(self._citation(numbering[key], p, m))
                if numbering[key] not in numbers:
                    numbers.append(numbering[key])
            supported = c.supported and bool(numbers)
            claims.append(Claim(c.text, tuple(numbers) if supported else (), round(c.support, 4), supported))
            if supported:
                parts.append(c.text + " " + " ".join(f"[{n}]" for n in numbers))
            else:
                parts.append(f"{c.text} {UNSUPPORTED_FLAG}")
        checked_claims = [c for c in claims if not c.refusal]
        confidence = float(np.mean([c.support for c in checked_claims])) if checked_claims else 0.0
        return Answer(question=question, text=" ".join(parts), supported=True, citations=citations,
                      claims=claims, mode=self.mode, standalone_question=standalone, confidence=confidence)

    def relevance(self, question: str, checked: Sequence[CheckedClaim]) -> float:
        """How close the best supported sentence is to the question (cosine of MiniLM embeddings)."""
        vectors = [c.vector for c in checked if c.supported and c.vector is not None]
        if not vectors:
            return 0.0
        q = np.asarray(self._embedder().embed_query(question), dtype=np.float32)
        return float(max(np.dot(q, v) for v in vectors))

    def _citation(self, n: int, p: Passage, m: Match) -> Citation:
        chunk = p.chunk.chunk
        page = self.page_of(chunk.doc_id, m.sentence.start) if self.page_of is not None else None
        return Citation(n=n, doc_id=chunk.doc_id, title=p.chunk.title, start=m.sentence.start,
                        end=m.sentence.end, quote=m.sentence.text, support=round(float(m.support), 4),
                        page=page, chunk_id=chunk.chunk_id)

    def _refusal(self, question: str, standalone: str, fallback: Answer, checked: Sequence[CheckedClaim],
                 notice: str | None) -> Answer:
        evidence = list(fallback.evidence or fallback.citations)
        claims = [Claim(c.text, (), round(c.support, 4), False) for c in checked if not c.refusal]
        return Answer(question=question, text=f"{NOT_IN_SOURCES} — nothing in the retrieved passages answers "
                      f"“{standalone}” in a way that could be checked.", supported=False, claims=claims,
                      evidence=evidence, mode=self.mode, standalone_question=standalone, notice=notice,
                      confidence=0.0)

    # ------------------------------------------------------------- conversation
    def condense(self, question: str, history: Sequence[tuple[str, str]]) -> str | None:
        """The follow-up rewritten as a standalone question, or None (then the service uses its
        heuristic) when the LLM fails or returns something unusable."""
        turns = _turns(history)[-CONDENSE_TURNS:]
        if not turns:
            return None
        lines = []
        for user, bot in turns:
            lines.append(f"User: {user}")
            if bot:
                bot = re.sub(r"\s*\[\d+\]", "", bot).strip()
                lines.append(f"Assistant: {bot[:CONDENSE_ANSWER_CHARS]}")
        user_msg = ("Conversation:\n" + "\n".join(lines) + f"\n\nFollow-up question: {question.strip()}\n"
                    "Standalone question:")
        try:
            text = self.generate([("system", CONDENSE_PROMPT), ("user", user_msg)])
        except LLMUnavailable as exc:
            log.warning("The LLM could not rewrite the follow-up (%s); using the heuristic", exc)
            return None
        text = (text or "").strip().splitlines()[0].strip() if (text or "").strip() else ""
        text = re.sub(r"^(standalone question|question)\s*:\s*", "", text, flags=re.I).strip().strip('"“”')
        if not text or len(text) > MAX_CONDENSED_CHARS or not re.search(r"\w", text):
            return None
        return text


def _turns(history: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (user, assistant) turns that have a question."""
    return [(str(u or ""), str(a or "")) for u, a in history or () if str(u or "").strip()]
