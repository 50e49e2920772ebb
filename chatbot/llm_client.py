"""Talking to the configured LLM: settings, the LangChain chat model, one call with a deadline.

Providers (``QA_LLM``):

- ``openai``   — any OpenAI-compatible endpoint (vLLM, llama.cpp's server, LM Studio, Ollama's /v1,
  OpenAI itself) through ``langchain_openai.ChatOpenAI``;
- ``ollama``   — ``langchain_ollama.ChatOllama``;
- ``llamacpp`` — a local GGUF file run by llama.cpp in a supervised child process
  (``chatbot/llm_server.py``: llama-cpp-python's OpenAI-compatible server on 127.0.0.1), reached
  through ``ChatOpenAI``; native code never runs in this process. Optional:
  ``pip install -r requirements-llm.txt``.

Settings (``LLMConfig`` in ``chatbot/settings.py``, from the ``QA_*`` environment variables):

==================  ===========================================================================
QA_LLM              openai | ollama | llamacpp (unset, ``none`` or ``off``: no LLM)
QA_LLM_MODEL        model name (openai, ollama) or path to a .gguf file (llamacpp); required
QA_LLM_BASE_URL     openai: endpoint incl. /v1 (default https://api.openai.com/v1);
                    ollama: default http://127.0.0.1:11434
QA_LLM_API_KEY      openai only (default: a dummy key, enough for local servers)
QA_LLM_TIMEOUT      seconds per answer (default 60; for llamacpp, not counting the model's start)
QA_LLM_MAX_TOKENS   longest answer in tokens (default 300)
QA_LLM_CTX          context window in tokens (llamacpp default 4096; ollama: server default)
QA_LLM_PASSAGES     passages put in the prompt, best first (default 5)
QA_LLM_MIN_SUPPORT  support a sentence needs to count as supported (default 0.6)
QA_LLM_LOG          llamacpp: the server process's log (default .logs/llm-server.log)
==================  ===========================================================================

Failures (unreachable server, crashed llama.cpp process, timeout, model error) raise
``LLMUnavailable`` with a one-line reason; the service then shows the extractive answer with it.
"""
from __future__ import annotations

import importlib.util
import logging
import threading
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Iterator, Sequence

from chatbot.settings import PROVIDERS, LLMConfig, LLMConfigError

log = logging.getLogger(__name__)


INSTALL_HINT = "pip install -r requirements-llm.txt"
# What QA_LLM=llamacpp needs, checked without importing anything (find_spec of top-level names).
LLAMACPP_PACKAGES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context",
                     "pydantic_settings", "langchain_openai")


class LLMUnavailable(Exception):
    """The LLM could not answer (unreachable, crashed, failing, timed out). The message is one short line."""


def check_provider(config: LLMConfig) -> None:
    """The packages ``config`` needs are installed and a GGUF path exists (``LLMConfigError`` if not)."""
    needed = {"openai": ["langchain_openai"], "ollama": ["langchain_ollama"],
              "llamacpp": list(LLAMACPP_PACKAGES)}[config.provider]
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        extra = f" (`{INSTALL_HINT}`)" if config.provider == "llamacpp" else " (`pip install -r requirements.txt`)"
        raise LLMConfigError(f"QA_LLM={config.provider} needs the Python package(s) "
                             f"{', '.join(missing)}, which are not installed{extra}.")
    if config.provider == "llamacpp":
        path = Path(config.model).expanduser()
        if not path.is_file():
            raise LLMConfigError(f"QA_LLM_MODEL must be the path of a .gguf file for QA_LLM=llamacpp "
                                 f"(not found: {path}).")


def make_chat_model(config: LLMConfig, base_url: str | None = None, api_key: str | None = None,
                    model: str | None = None):
    """The LangChain chat model for ``config``. For llamacpp, ``base_url``/``api_key``/``model``
    name the running child server (``LlamaServer.endpoint()``)."""
    if config.provider in ("openai", "llamacpp"):
        from langchain_openai import ChatOpenAI

        kwargs: dict[str, Any] = {}
        if config.provider == "llamacpp":
            import httpx

            # 127.0.0.1 never goes through an HTTP proxy from the environment; no retries: a
            # crashed server is restarted by its supervisor, not hammered.
            kwargs = {"http_client": httpx.Client(trust_env=False, timeout=config.timeout), "seed": 0}
        return ChatOpenAI(model=model or config.model, base_url=base_url or config.base_url,
                          api_key=api_key or config.api_key, temperature=config.temperature,
                          max_tokens=config.max_tokens, timeout=config.timeout,
                          max_retries=0 if config.provider == "llamacpp" else 1, **kwargs)
    if config.provider == "ollama":
        from langchain_ollama import ChatOllama

        kwargs = {"num_ctx": config.n_ctx} if config.n_ctx else {}
        return ChatOllama(model=config.model, base_url=config.base_url, temperature=config.temperature,
                          num_predict=config.max_tokens, client_kwargs={"timeout": config.timeout}, **kwargs)
    raise LLMConfigError(f"QA_LLM must be one of {', '.join(PROVIDERS)} (got {config.provider!r}).")


class ChatClient:
    """One conversation turn with the model: text pieces as they arrive, within ``config.timeout``.

    For llamacpp the model runs in a ``LlamaServer`` child (shared when given); requests go one at
    a time, always streamed so that a timed-out answer is stopped (the server stops generating
    when the client disconnects). When the child dies mid-answer the error says so and the
    server restarts it; the next call uses the new process."""

    def __init__(self, config: LLMConfig, chat_model=None, server=None) -> None:
        self.config = config
        self.server = server
        if server is None and config.provider == "llamacpp" and chat_model is None:
            from chatbot.llm_server import LlamaServer

            self.server = LlamaServer(Path(config.model).expanduser(), n_ctx=config.n_ctx or 4096,
                                      log_path=config.log_path)
        self._given = chat_model
        self._model_cache: tuple[Any, Any] | None = None  # (endpoint generation or None, chat model)
        self._lock = threading.Lock() if config.provider == "llamacpp" else None

    @property
    def where(self) -> str:
        c = self.config
        return f"{c.provider} ({c.base_url or c.model})"

    def warm_up(self) -> None:
        """Start the model now (llamacpp: start the server process and wait until it answers)."""
        self._model()

    def close(self) -> None:
        """Stop the llama.cpp server process, if this client runs one."""
        if self.server is not None:
            self.server.close()

    def _model(self):
        if self._given is not None:
            return self._given
        endpoint = self.server.endpoint() if self.server is not None else None
        key = endpoint.generation if endpoint is not None else None
        if self._model_cache is None or self._model_cache[0] != key:
            old = self._model_cache[1] if self._model_cache else None
            try:
                if endpoint is not None:
                    model = make_chat_model(self.config, endpoint.base_url, endpoint.api_key, endpoint.model)
                else:
                    model = make_chat_model(self.config)
            except LLMConfigError:
                raise
            except Exception as exc:
                raise LLMUnavailable(f"cannot set up {self.where}: {one_line(exc)}") from exc
            self._model_cache = (key, model)
            _close_http_client(old)
        return self._model_cache[1]

    def stream(self, messages: Sequence[tuple[str, str]], stream: bool = True) -> Iterator[str]:
        """Pieces of the reply (one piece when not streaming); ``LLMUnavailable`` on any failure."""
        local = self.server is not None
        with self._lock or nullcontext():
            model = self._model()
            deadline = time.monotonic() + self.config.timeout
            timed_out = False
            try:
                lc_messages = to_langchain(messages)
                if stream or local:
                    chunks = model.stream(lc_messages)
                    try:
                        for chunk in chunks:
                            piece = content_text(chunk)
                            if piece:
                                yield piece
                            if time.monotonic() > deadline:
                                timed_out = True
                                break
                    finally:
                        chunks.close()  # a local server sees the disconnect and stops generating
                else:
                    yield content_text(model.invoke(lc_messages))
            except (LLMUnavailable, GeneratorExit):
                raise
            except Exception as exc:
                raise LLMUnavailable(self._failure(exc)) from exc
        if timed_out:
            raise LLMUnavailable(f"{self.where} timed out after {self.config.timeout:g} s")
        if local:
            self.server.mark_ok()

    def _failure(self, exc: Exception) -> str:
        if self.server is not None and not _is_timeout(exc):
            crashed = self.server.report_failure()
            if crashed:
                return crashed
        return f"{self.where} failed: {one_line(exc)}"


def _is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__


def _close_http_client(model) -> None:
    client = getattr(model, "http_client", None)
    if client is not None:
        try:
            client.close()
        except Exception:  # an old connection pool: nothing depends on closing it cleanly
            log.debug("Closing an HTTP client failed", exc_info=True)


def to_langchain(messages: Sequence[tuple[str, str]]):
    from langchain_core.messages import HumanMessage, SystemMessage

    return [SystemMessage(content) if role == "system" else HumanMessage(content) for role, content in messages]


def content_text(message) -> str:
    content = getattr(message, "content", message)
    if isinstance(content, list):  # content blocks
        return "".join(b.get("text", "") if isinstance(b, dict) else str(b) for b in content)
    return str(content or "")


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    name = type(exc).__name__
    text = text if text.startswith(name) else f"{name}: {text}"
    return text if len(text) <= 200 else text[:197] + "..."
