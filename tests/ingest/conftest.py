"""Fixtures for the ingest suite. Every test runs with no QA_* variables from the caller's shell.

`real_embedder` (the real model, loaded once per session) comes from tests/conftest.py.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ingest.settings import Settings
from tests.servers import chroma_server as run_chroma
from tests.ingest.helpers import REPO_ROOT, SEED_MD, SEED_RAW, FakeEmbedder


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("QA_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("ANONYMIZED_TELEMETRY", "False")


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(index_dir=tmp_path / "index")


@pytest.fixture
def seed_raw() -> str:
    """The seed article as published (publisher footer included), from ../shared."""
    if not SEED_RAW.exists():
        pytest.skip(f"{SEED_RAW} not available")
    return SEED_RAW.read_text(encoding="utf-8")


@pytest.fixture
def seed_corpus(tmp_path) -> Path:
    """A private copy of the project's corpus/ folder (tests change files in it)."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    for path in (REPO_ROOT / "corpus").iterdir():
        if path.is_file() and not path.name.startswith("."):
            (folder / path.name).write_bytes(path.read_bytes())
    assert (folder / SEED_MD.name).exists()
    return folder


@pytest.fixture
def chroma_server(tmp_path):
    """`chroma run` on 127.0.0.1 and a free port; yields its URL; stopped at teardown."""
    with run_chroma(tmp_path / "chroma-server", tmp_path / "chroma.log") as url:
        yield url
