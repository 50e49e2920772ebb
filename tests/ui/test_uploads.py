"""Uploads are ingested off the request path: a hostile upload being processed never stalls the
app for anyone, a bad file fails alone with its reason, and an upload waits behind any other
writer of the index (real app in a subprocess, real CLI ingest, real browser, real model)."""
from __future__ import annotations

import signal
import threading
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

# Catastrophic backtracking with Python's re: the pattern cannot match the paragraph (a second
# line follows the 40 "a"s), and proving that takes 2^40 steps.
REDOS = """---
title: Catastrophic boilerplate
boilerplate: ['re:^(a+)+$']
---
aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
and a second line the pattern cannot match.

The Quorvane pier was rebuilt in 2031.
"""

STALL_S = 5.0  # a request to the app slower than this while it ingests is a stall (2 cores, Chromium running too)


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


class Prober(threading.Thread):
    """GETs ``/`` and ``/config`` in turn until stopped; records how long each took."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.times: list[tuple[str, float]] = []
        self.started: float | None = None  # of the request in flight
        self.stop = threading.Event()

    def run(self) -> None:
        for i in range(10**9):
            if self.stop.is_set():
                return
            path = ("", "config")[i % 2]
            self.started = t0 = time.monotonic()
            try:
                with urllib.request.urlopen(self.url + path, timeout=60) as resp:
                    resp.read()
                what = f"/{path} {resp.status}"
            except Exception as exc:  # a timeout is a measurement too
                what = f"/{path} failed: {exc!r}"
            self.times.append((what, time.monotonic() - t0))
            self.started = None
            self.stop.wait(0.2)

    def stalled(self) -> float:
        """Seconds the request in flight has taken so far (0 if none)."""
        started = self.started
        return time.monotonic() - started if started else 0.0


def test_a_catastrophic_regex_upload_does_not_stall_the_app(small_app, browser, tmp_path):
    file = tmp_path / "redos.md"
    file.write_text(REDOS, encoding="utf-8")
    ui = Page(browser, small_app.url)
    prober = Prober(small_app.url)
    try:
        page = ui.page
        page.get_by_role("tab", name="Library").click()
        prober.start()  # from the upload on: on a fast machine the job can end within three probes
        page.locator("#qa-upload input[type=file]").set_input_files(str(file))
        page.locator("#qa-upload-result .qa-job-pending, #qa-upload-result .qa-upload-result").first.wait_for(
            timeout=30_000)  # queued, running or (on a fast machine) already done
        done = page.locator("#qa-upload-result .qa-upload-result")
        deadline = time.monotonic() + 300
        while not done.is_visible():  # until its outcome shows; fail as soon as a request stalls
            assert prober.stalled() < STALL_S, f"the app stalled while ingesting the upload: {prober.times}"
            assert time.monotonic() < deadline, "no outcome for the upload within 300 s"
            time.sleep(0.2)
        # and a moment after, until the prober has four timings: on a fast or a loaded machine the job
        # can end within three probes (each took 0.8 s while another build ran on the 2 cores)
        after = time.monotonic() + 1
        while time.monotonic() < after or (len(prober.times) < 4 and time.monotonic() < after + 30):
            time.sleep(0.2)
        prober.stop.set()
        prober.join(60)
        outcome = page.inner_text("#qa-upload-result")
        ui.shot("upload-redos-outcome")
        slow = [(what, round(s, 2)) for what, s in prober.times if s >= STALL_S or " 200" not in what]
        assert len(prober.times) >= 4, prober.times
        assert not slow, f"the app stalled while ingesting the upload: {slow} (outcome: {outcome})"
        assert "redos.md" in outcome
        # and the app still answers
        page.get_by_role("tab", name="Ask").click()
        ui.ask("Who keeps the crossing log of the Hesketh Marr ferry?")
        assert "Odile Varga" in ui.last_answer().inner_text()
    finally:
        prober.stop.set()
        ui.context.close()


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

    settings = Settings(index_dir=index)
    before = index_health(settings, embedder_for(settings))["documents"]  # earlier tests' uploads
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
            assert time.monotonic() - t0 < STALL_S  # the app serves while its upload waits
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
    state = index_health(settings, embedder_for(settings))
    assert state["documents"] == before + len(cli_docs) + 3 and state["pending"] == 0, state
    assert state["orphan_chunks"] == 0 and state["short_documents"] == [] and state["bm25_matches"], state



def test_one_bad_file_fails_alone_with_its_reason_in_the_library(small_app, browser, tmp_path):
    good = tmp_path / "tide-tables.md"
    good.write_text("# Tide tables of Hesketh Marr\n\nHigh water at Hesketh Marr was at 06:12 on 3 May.\n",
                    encoding="utf-8")
    bad = tmp_path / "broken-pattern.md"
    bad.write_text("---\ntitle: Broken pattern\nboilerplate: ['re:(unclosed']\n---\nSome text about the pier.\n",
                   encoding="utf-8")
    ui = Page(browser, small_app.url)
    try:
        page = ui.page
        page.get_by_role("tab", name="Library").click()
        page.locator("#qa-upload input[type=file]").set_input_files([str(good), str(bad)])
        result = page.locator("#qa-upload-result .qa-upload-result").first
        result.wait_for(timeout=300_000)
        outcome = result.inner_text()
        ui.shot("upload-one-bad-file")
        assert "1 of 2 file(s) ingested, 1 failed" in outcome, outcome
        assert "✓ tide-tables.md" in outcome
        bad_line = next(line for line in outcome.splitlines() if "broken-pattern.md" in line)
        assert bad_line.startswith("✗") and "unexpected error" not in bad_line and "(unclosed" in bad_line, bad_line
        assert "Tide tables of Hesketh Marr" in page.inner_text("#qa-library")
        assert "Broken pattern" not in page.inner_text("#qa-library")
    finally:
        ui.context.close()
