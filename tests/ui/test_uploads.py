"""Uploads are ingested off the request path, behind any other writer of the index (real app in a
subprocess, real CLI ingest, real browser, real model)."""
from __future__ import annotations

import signal
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.settings import Settings
from ingest.store import embedder_for
from tests.ingest.helpers import IngestProcess, index_health, last_json, synthetic_corpus
from tests.ui.conftest import Page, running_app

pytestmark = pytest.mark.slow

ARTICLE = """---
title: The Hesketh Marr ferry
source: Test Desk
---
The Hesketh Marr ferry crosses the estuary four times a day.

Its captain, Odile Varga, has kept the crossing log since 2029.
"""


@dataclass(frozen=True)
class App:
    url: str
    index: Path


@pytest.fixture(scope="module")
def small_app(tmp_path_factory):
    """An app on a one-article corpus (quick to start), for tests that may hurt it."""
    root = tmp_path_factory.mktemp("small-app")
    corpus = root / "corpus"
    corpus.mkdir()
    (corpus / "ferry.md").write_text(ARTICLE, encoding="utf-8")
    with running_app(root, "--corpus", str(corpus)) as url:
        yield App(url, root / "index")


def test_cli_ingest_and_app_upload_at_once_both_land(small_app, browser, tmp_path):
    """A CLI ingest holds the index's writer lock (frozen mid-embedding with SIGSTOP); an upload
    made meanwhile waits for it in the background, says so in the Library, and both land: every
    document of both, nothing pending, no orphan chunk."""
    index = small_app.index
    cli_docs = synthetic_corpus(tmp_path / "cli", n_docs=60, sentences_per_doc=6, seed=21)
    uploads = []
    for i in range(3):
        path = tmp_path / f"upload-{i}.md"
        path.write_text(f"# Uploaded note {i}\n\nThe Quorvane tide gauge {i} was read at dawn on day {i + 3}.\n",
                        encoding="utf-8")
        uploads.append(str(path))

    run = IngestProcess(tmp_path / "cli", index)
    ui = Page(browser, small_app.url)
    try:
        run.wait_for(lambda: run.progress() is not None, "the CLI's progress bar")
        run.proc.send_signal(signal.SIGSTOP)  # it holds the writer lock, with pending documents
        assert run.proc.poll() is None, "the CLI ingest finished before it could be held"
        page = ui.page
        page.get_by_role("tab", name="Library").click()
        page.locator("#qa-upload input[type=file]").set_input_files(uploads)
        page.locator("#qa-upload-result .qa-job-pending", has_text="Waiting for another writer").wait_for(timeout=120_000)
        assert f"pid {run.proc.pid}" in page.inner_text("#qa-upload-result")
        ui.shot("upload-waits-for-cli")
        t0 = time.monotonic()
        with urllib.request.urlopen(small_app.url + "config", timeout=30):
            assert time.monotonic() - t0 < 2.0  # the app serves while its upload waits
    finally:
        run.proc.send_signal(signal.SIGCONT)
    try:
        code, out = run.finish()
        assert code == 0, run.stderr[-3000:]
        assert last_json(out)["added"] == len(cli_docs)
        ui.page.locator("#qa-upload-result .qa-upload-result").wait_for(timeout=300_000)
        outcome = ui.page.inner_text("#qa-upload-result")
        assert "3 of 3 file(s) ingested" in outcome, outcome
        library = ui.page.inner_text("#qa-library")
        assert "Uploaded note 2" in library and "Synthetic article 59" in library  # the app sees both
    finally:
        ui.context.close()
    settings = Settings(index_dir=index)
    state = index_health(settings, embedder_for(settings))
    assert state["documents"] == 1 + len(cli_docs) + 3 and state["pending"] == 0, state
    assert state["orphan_chunks"] == 0 and state["short_documents"] == [] and state["bm25_matches"], state

