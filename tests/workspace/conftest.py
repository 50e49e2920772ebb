"""The workspace without Gradio, on a real Chroma index in a temp folder with the deterministic fake
embedder: fast, and exact enough for the logic here (answer quality on the real model is tested in
tests/chatbot/test_answers.py and tests/ui)."""
from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.service import AskOptions, QAService
from chatbot.types import Answer, Citation, Claim
from ingest.pipeline import Ingestor
from ingest.settings import Settings
from workspace.session import Turn
from workspace.settings import UploadLimits
from workspace.workspace import Workspace
from tests.ingest.helpers import FakeEmbedder

XSS_TITLE = '<script>window.__xss=1</script> Harbour notes <img src=x onerror="window.__xss=1">'

LIGHTHOUSE = """---
title: The Brelloway lighthouse ledger
source: Coastal Gazette
published: 2031-03-04
questions:
  - Who keeps the Brelloway lighthouse?
  - When was the lamp replaced?
---
The Brelloway lighthouse is kept by Oriel Fenwick, who has tended the lamp for nine winters.

The lamp was replaced in March 2031 after a storm cracked the lens. Fenwick logged every ship that passed.
"""

ORCHARD = """---
source: Valley Courier
published: 2029-09-01
---
# Quillmere orchard cooperative

The Quillmere Orchard Cooperative harvested eleven tonnes of pears this season. Its chair, Tamsin Rook, credited the new irrigation canal.
"""


@pytest.fixture
def corpus(tmp_path) -> Path:
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name, text in (("lighthouse.md", LIGHTHOUSE), ("orchard.md", ORCHARD)):
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def ws(tmp_path, corpus) -> Workspace:
    settings = Settings(index_dir=tmp_path / "index")
    embedder = FakeEmbedder()
    report = Ingestor(settings, embedder=embedder, progress=False).run([corpus])
    assert report.added == 2 and not report.failed
    service = QAService(settings, embedder=embedder).open()
    return Workspace(service, upload_dir=tmp_path / "uploads", limits=UploadLimits(max_bytes=4096, max_files=5))


def titles(ws: Workspace) -> set[str]:
    return {d.title for d in ws.summaries()}


def hostile_turn() -> Turn:
    quote = 'He wrote <img src=x onerror="window.__xss=1"> in the log.'
    c = Citation(1, "d1", XSS_TITLE, 10, 10 + len(quote), quote, 0.7)
    answer = Answer(question="<b>q</b>", text=f"{quote} [1]", supported=True, citations=[c],
                    claims=[Claim(quote, (1,), 0.7, True)])
    return Turn("<script>alert(1)</script>?", answer, "2031-01-01T00:00:00Z", AskOptions())


def assert_inert(html: str) -> None:
    lowered = html.lower()
    for raw in ("<script", "<img", "<b>q</b>", "<i>src</i>"):
        assert raw not in lowered, raw
    assert "&lt;" in html
