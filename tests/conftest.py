"""Fixtures shared by every test package: the real model and a real index of corpus/, built once."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def real_embedder():
    """The real packaged model, loaded once per test session."""
    from ingest.embed import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    embedder.warm_up()
    return embedder


@pytest.fixture(scope="session")
def seed_settings(tmp_path_factory):
    """A real Chroma index of the project's corpus/ folder (real model), built once per session."""
    from ingest.settings import Settings

    return Settings(index_dir=tmp_path_factory.mktemp("seed-index"))


@pytest.fixture(scope="session")
def seed_index(seed_settings, real_embedder):
    from ingest.pipeline import Ingestor

    report = Ingestor(seed_settings, embedder=real_embedder, progress=False).run([REPO_ROOT / "corpus"])
    assert report.added >= 1 and not report.failed
    return seed_settings


@pytest.fixture(scope="session")
def seed_service(seed_index, real_embedder):
    from chatbot.service import QAService

    return QAService(seed_index, embedder=real_embedder).open()
