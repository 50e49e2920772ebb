"""The Q&A core's settings: the index's (``ingest.settings.Settings``) plus answering and the LLM.

``QASettings.from_env`` is called once by an entry point (``python -m chatbot``, ``app.py``, the
benchmarks) and the tree is passed down; nothing else reads the environment. Each setting keeps
its variable's name in its error message.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from chatbot.types import QAError
from ingest.settings import Settings, environment

PROVIDERS = ("openai", "ollama", "llamacpp")
DUMMY_API_KEY = "sk-no-key-required"
OLLAMA_URL = "http://127.0.0.1:11434"
OPENAI_URL = "https://api.openai.com/v1"


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
    def from_env(cls, env: Mapping[str, str]) -> "LLMConfig | None":
        """The LLM the ``QA_LLM*`` variables configure, or None when ``QA_LLM`` is unset or off."""
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


@dataclass(frozen=True)
class AnswerSettings:
    """When the extractive answerer answers (``chatbot.answerer.SupportPolicy``; None: its default)."""

    threshold: float | None = None  # QA_ANSWER_THRESHOLD: the judge's probability needed to answer
    topic_semantic: float | None = None  # QA_TOPIC_SEMANTIC: sentence cosine that makes a question on topic

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "AnswerSettings":
        values = {}
        for key, name in (("QA_ANSWER_THRESHOLD", "threshold"), ("QA_TOPIC_SEMANTIC", "topic_semantic")):
            if env.get(key):
                try:
                    values[name] = float(env[key])
                except ValueError:
                    raise QAError(f"{key} must be a number between 0 and 1 (got {env[key]!r}).") from None
        return cls(**values)

    def policy_values(self) -> dict[str, float]:
        """The values set, as ``SupportPolicy`` keyword arguments."""
        return {k: v for k, v in (("threshold", self.threshold), ("topic_semantic", self.topic_semantic))
                if v is not None}


@dataclass(frozen=True)
class QASettings:
    """The settings tree of the Q&A core: the index, answering, the LLM (None: extractive only) and
    the brief's themes file."""

    index: Settings = field(default_factory=Settings)
    answer: AnswerSettings = field(default_factory=AnswerSettings)
    llm: LLMConfig | None = None
    brief_themes: Path | None = None  # QA_BRIEF_THEMES (--themes): JSON/YAML file, theme -> description

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, index: Settings | None = None,
                 **index_overrides) -> "QASettings":
        """``env`` (default: the process environment) with ``index`` as the index settings, or the
        index settings from ``env`` and ``index_overrides`` (e.g. ``index_dir`` from ``--index``)."""
        env = environment() if env is None else env
        return cls(
            index=index if index is not None else Settings.from_env(env, **index_overrides),
            answer=AnswerSettings.from_env(env),
            llm=LLMConfig.from_env(env),
            brief_themes=Path(env["QA_BRIEF_THEMES"]) if env.get("QA_BRIEF_THEMES") else None,
        )
