"""Deterministic fakes for the LLM path, so its tests can assert exact values without llama.cpp.

- ``ScriptedChatModel``: a real LangChain chat model (``BaseChatModel``), handed to the project
  where any chat model goes (``ChatClient(config, chat_model=...)``), so the client's streaming,
  deadline and error handling run unchanged. It replies with a fixed text or a function of the
  prompt, streams it one word per chunk and records every prompt.
- ``WordEmbedder``: implements ``ingest.protocols.Embedder`` with word-count vectors, so a cosine is
  exact arithmetic on shared words: cos("a b c", "a b c d e") = 3 / sqrt(3 * 5).
"""
from __future__ import annotations

import re
from typing import Any, Iterator, Sequence

import numpy as np
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from chatbot.retrieve import Passage
from ingest.types import Chunk, StoredChunk

_WORD = re.compile(r"\w+")


class ScriptedChatModel(BaseChatModel):
    reply: Any = ""  # the reply text, or a function of the prompt's messages returning it
    error: Any = None  # an exception to raise instead of replying
    prompts: list = Field(default_factory=list)  # every prompt received, as lists of messages

    @property
    def _llm_type(self) -> str:
        return "scripted-test-model"

    def _reply(self, messages: list[BaseMessage]) -> str:
        self.prompts.append(list(messages))
        if self.error is not None:
            raise self.error
        return self.reply(messages) if callable(self.reply) else self.reply

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self._reply(messages)))])

    def _stream(self, messages, stop=None, run_manager=None, **kwargs) -> Iterator[ChatGenerationChunk]:
        for piece in pieces(self._reply(messages)):
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))


def pieces(text: str) -> list[str]:
    """How ``ScriptedChatModel`` streams ``text``: each word with the blanks after it."""
    return re.findall(r"\s*\S+\s*", text)


def prompt_text(messages: Sequence[BaseMessage]) -> str:
    return "\n".join(str(m.content) for m in messages)


class WordEmbedder:
    """Unit vectors of word counts (lower-cased ``\\w+`` words, stop words included)."""

    model_id = "test/word-counts"
    dimension = 512

    def __init__(self) -> None:
        self.vocabulary: dict[str, int] = {}

    def _vector(self, text: str) -> np.ndarray:
        v = np.zeros(self.dimension, dtype=np.float32)
        for word in _WORD.findall(text.lower()):
            index = self.vocabulary.setdefault(word, len(self.vocabulary))
            assert index < self.dimension, "WordEmbedder: vocabulary full"
            v[index] += 1.0
        norm = np.linalg.norm(v)
        return v / norm if norm else v

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vector(t) for t in texts]) if texts else np.zeros((0, self.dimension), np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)


def make_passage(doc_id: str, title: str, start: int, sentences: Sequence[str], score: float = 1.0) -> Passage:
    """A retrieved passage of ``sentences`` (joined by one space) starting at document offset
    ``start``, with each sentence's span in document offsets."""
    text = " ".join(sentences)
    spans, at = [], start
    for s in sentences:
        spans.append((at, at + len(s)))
        at += len(s) + 1
    end = start + len(text)
    chunk = Chunk(f"{doc_id}-{start}-{end}", doc_id, start, end, text, tuple(spans))
    return Passage(StoredChunk(chunk, title, {"doc_id": doc_id, "start": start, "end": end}), score)

