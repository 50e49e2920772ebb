"""Talking to the configured LLM: settings, the LangChain chat model, one call with a deadline.

Providers (``QA_LLM``):

- ``openai``   — any OpenAI-compatible endpoint (vLLM, llama.cpp's server, LM Studio, Ollama's /v1,
  OpenAI itself) through ``langchain_openai.ChatOpenAI``;
- ``ollama``   — ``langchain_ollama.ChatOllama``;
- ``llamacpp`` — a local GGUF file run by llama.cpp in a supervised child process
  (``chatbot/llm_server.py``: llama-cpp-python's OpenAI-compatible server on 127.0.0.1), reached
  through ``ChatOpenAI``; native code never runs in this process. Optional:
  ``pip install -r requirements-llm.txt``.

Settings (read from ``Settings.extra``, i.e. the ``QA_*`` environment variables):

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
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from chatbot.types import QAError

PROVIDERS = ("openai", "ollama", "llamacpp")
INSTALL_HINT = "pip install -r requirements-llm.txt"
DUMMY_API_KEY = "sk-no-key-required"
OLLAMA_URL = "http://127.0.0.1:11434"
OPENAI_URL = "https://api.openai.com/v1"
# What QA_LLM=llamacpp needs, checked without importing anything (find_spec of top-level names).
LLAMACPP_PACKAGES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context",
                     "pydantic_settings", "langchain_openai")


class LLMUnavailable(Exception):
    """The LLM could not answer (unreachable, crashed, failing, timed out). The message is one short line."""


class LLMConfigError(QAError):
    """A QA_LLM* setting is wrong or a required package is missing (a clear one-sentence message)."""


@dataclass(frozen=True)
class LLMConfig:
    provider: str
    model: str
    base_url: str | None = None
    api_key: str = DUMMY_API_KEY
    timeout: float = 60.0
    max_tokens: int = 300
    n_ctx: int | None = None
    max_passages: int = 5
    min_support: float = 0.6
    temperature: float = 0.0
    log_path: Path | None = None  # llamacpp: the server process's log (None: llm_server.DEFAULT_LOG)

    @classmethod
    def from_settings(cls, settings) -> "LLMConfig | None":
        env: Mapping[str, str] = getattr(settings, "extra", None) or {}
        provider = (env.get("QA_LLM") or "").strip().lower()
        if provider in ("", "none", "off", "no", "0", "false"):
            return None
        if provider not in PROVIDERS:
            raise LLMConfigError(f"QA_LLM must be one of {', '.join(PROVIDERS)} (got {env.get('QA_LLM')!r}).")
        model = (env.get("QA_LLM_MODEL") or "").strip()
        if not model:
            what = "the path of a .gguf file" if provider == "llamacpp" else "the model name the server expects"
            raise LLMConfigError(f"QA_LLM={provider} needs QA_LLM_MODEL: set it to {what}.")
        base_url = (env.get("QA_LLM_BASE_URL") or "").strip().rstrip("/") or None
        if provider == "openai":
            base_url = base_url or OPENAI_URL
        elif provider == "ollama":
            base_url = base_url or OLLAMA_URL
        if base_url and not base_url.startswith(("http://", "https://")):
            raise LLMConfigError(f"QA_LLM_BASE_URL must look like http://host:port (got {base_url!r}).")
        n_ctx = _number(env, "QA_LLM_CTX", int, None, 256, 1_000_000)
        if provider == "llamacpp" and n_ctx is None:
            n_ctx = 4096
        log = (env.get("QA_LLM_LOG") or "").strip()
        return cls(
            provider=provider,
            model=model,
            base_url=base_url if provider != "llamacpp" else None,
            api_key=(env.get("QA_LLM_API_KEY") or "").strip() or DUMMY_API_KEY,
            timeout=_number(env, "QA_LLM_TIMEOUT", float, 60.0, 0.1, 3600),
            max_tokens=_number(env, "QA_LLM_MAX_TOKENS", int, 300, 8, 8192),
            n_ctx=n_ctx,
            max_passages=_number(env, "QA_LLM_PASSAGES", int, 5, 1, 20),
            min_support=_number(env, "QA_LLM_MIN_SUPPORT", float, 0.6, 0.0, 1.0),
            log_path=Path(log).expanduser() if log else None,
        )


def _number(env: Mapping[str, str], name: str, kind, default, lo, hi):
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise LLMConfigError(f"{name} must be a{'n integer' if kind is int else ' number'} (got {raw!r}).") from None
    if not lo <= value <= hi:
        raise LLMConfigError(f"{name} must be between {lo} and {hi} (got {raw!r}).")
    return value


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
        except Exception:
            pass


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
