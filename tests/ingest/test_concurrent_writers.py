"""Two writers on one local index, on the real stack (real `python -m ingest`, real model, real
Chroma): the second waits for the first, and the index ends with every document of both, no
pending document and no orphan chunk (issue 9: before the writer lock, a second run "repaired" the
first one's live work and both reported success).

The first writer is held at a known point (SIGSTOP once its progress bar shows, at a moment it has
no SQLite transaction open; or an embedder that blocks), never raced with sleeps.

Not tested, and documented: a writer stopped *inside* a transaction (Ctrl-Z at the wrong moment)
stalls every process using that local index until it resumes; that is SQLite's locking."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from ingest.pipeline import Ingestor
from ingest.settings import Settings
from tests.ingest.helpers import IngestProcess, index_health, last_json, stop_between_transactions, synthetic_corpus

pytestmark = pytest.mark.slow

CHUNK_SIZE, CHUNK_OVERLAP = 50, 10  # tiny chunks: a run embeds for a few seconds
CHUNK_ARGS = ("--chunk-size", str(CHUNK_SIZE), "--chunk-overlap", str(CHUNK_OVERLAP))
WAITING = "Waiting for another writer"


def folders(tmp_path: Path, n_a: int = 40, n_b: int = 25) -> tuple[Path, Path]:
    a, b = tmp_path / "folder-a", tmp_path / "folder-b"
    synthetic_corpus(a, n_docs=n_a, sentences_per_doc=5, seed=11)
    synthetic_corpus(b, n_docs=n_b, sentences_per_doc=5, seed=12)
    for path in sorted(b.iterdir()):  # texts of their own, so no document of B equals one of A
        path.write_text(f"# Folder B: {path.stem}\n\nA note filed under {path.stem}.\n\n" + path.read_text())
    return a, b


def stopped_after_progress(run: IngestProcess, index: Path) -> None:
    """Freeze a CLI run mid-ingest (between two transactions): it holds the writer lock and its
    documents are pending in the index."""
    run.wait_for(lambda: run.progress() is not None, "the progress bar")
    stop_between_transactions(run.proc, index)


def check_both_landed(settings: Settings, embedder, expected: int) -> None:
    state = index_health(settings, embedder)
    assert state["documents"] == expected and state["pending"] == 0, state
    assert state["orphan_chunks"] == 0 and state["short_documents"] == [] and state["unfindable_chunks"] == 0, state
    assert state["bm25_matches"], state


def test_two_cli_ingests_of_different_folders_both_land(tmp_path, real_embedder):
    folder_a, folder_b = folders(tmp_path)
    index = tmp_path / "index"
    first = IngestProcess(folder_a, index, *CHUNK_ARGS)
    stopped_after_progress(first, index)
    try:
        second = IngestProcess(folder_b, index, *CHUNK_ARGS)
        second.wait_for(lambda: second.said(WAITING), "the second run to wait")
        assert f"pid {first.proc.pid}" in second.stderr and "python -m ingest" in second.stderr
    finally:
        first.proc.send_signal(signal.SIGCONT)
    code_a, out_a = first.finish()
    code_b, out_b = second.finish()
    assert (code_a, code_b) == (0, 0), (first.stderr[-2000:], second.stderr[-2000:])
    report_a, report_b = last_json(out_a), last_json(out_b)
    assert report_a["added"] == 40 and report_b["added"] == 25 and report_b["documents"] == 65
    assert "Repairing" not in second.stderr
    check_both_landed(Settings(index_dir=index, chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP), real_embedder, 65)


class HeldEmbedder:
    """The real embedder, stopped at its first call until released (an upload being embedded)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.model_id, self.dimension = inner.model_id, inner.dimension
        self.embedding = threading.Event()
        self.release = threading.Event()

    def embed_documents(self, texts):
        if not self.embedding.is_set():
            self.embedding.set()
            assert self.release.wait(300)
        return self.inner.embed_documents(texts)

    def embed_query(self, text):
        return self.inner.embed_query(text)


def test_app_upload_path_and_cli_ingest_take_turns(tmp_path, real_embedder):
    """The app's upload/delete path is ``Ingestor.run`` / ``delete_document`` in the app process:
    a CLI ingest waits for it, and it waits for a CLI ingest."""
    folder_a, folder_b = folders(tmp_path, n_a=30, n_b=10)
    uploads = tmp_path / "uploads"
    synthetic_corpus(uploads, n_docs=3, sentences_per_doc=5, seed=13)
    for path in sorted(uploads.iterdir()):
        path.write_text(f"# Upload {path.stem}\n\nUploaded as {path.stem}.\n\n" + path.read_text())
    index = tmp_path / "index"
    settings = Settings(index_dir=index, chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP, lock_wait=300)

    # 1. The app is embedding an upload (lock held, pending documents stored); a CLI ingest starts.
    held = HeldEmbedder(real_embedder)
    app = Ingestor(settings, embedder=held, progress=False)
    result: dict = {}
    upload = threading.Thread(target=lambda: result.update(upload=app.run([uploads / "article-000.md"])))
    upload.start()
    try:
        assert held.embedding.wait(120)
        cli = IngestProcess(folder_a, index, *CHUNK_ARGS)
        cli.wait_for(lambda: cli.said(WAITING), "the CLI to wait for the app")
        assert f"pid {os.getpid()}" in cli.stderr
    finally:
        held.release.set()
    upload.join(timeout=300)
    code, out = cli.finish()
    assert code == 0, cli.stderr[-2000:]
    assert "Repairing" not in cli.stderr  # the app's pending upload was not "repaired" away
    assert result["upload"].added == 1 and last_json(out)["added"] == 30

    # 2. A CLI ingest is running; the app's upload and a delete wait for it, then go on.
    said: list[str] = []
    app = Ingestor(settings, embedder=real_embedder, progress=False, on_wait=said.append)
    victim = sorted(app.store.list_documents(), key=lambda r: r.paths)[0]
    assert "folder-a" in victim.paths[0]
    cli = IngestProcess(folder_b, index, *CHUNK_ARGS)
    stopped_after_progress(cli, index)
    work = threading.Thread(target=lambda: result.update(
        upload=app.run([uploads / "article-001.md", uploads / "article-002.md"]),
        deleted=app.delete_document(victim.doc_id)))
    work.start()
    try:
        deadline = time.monotonic() + 60
        while not said and time.monotonic() < deadline:
            time.sleep(0.05)
        assert said and f"pid {cli.proc.pid}" in said[0] and work.is_alive()
    finally:
        cli.proc.send_signal(signal.SIGCONT)
    code, out = cli.finish()
    work.join(timeout=300)
    assert code == 0, cli.stderr[-2000:]
    assert last_json(out)["added"] == 10
    assert result["upload"].added == 2 and result["deleted"] is True
    check_both_landed(settings, real_embedder, 3 + 30 + 10 - 1)


def test_the_app_keeps_answering_while_a_cli_ingest_writes_and_then_sees_it(tmp_path, real_embedder, seed_corpus):
    """A reader (the app's QAService) on a local index answers during another process's ingest,
    from complete documents only, and answers from the new documents once that run has finished."""
    from chatbot.service import QAService

    settings = Settings(index_dir=tmp_path / "index")
    Ingestor(settings, embedder=real_embedder, progress=False).run([seed_corpus])
    service = QAService(settings, embedder=real_embedder).open()
    before = service.answer("Who offered sanctuary to Ahmad Massoud?")
    assert before.supported and before.citations

    new = tmp_path / "new"
    synthetic_corpus(new, n_docs=150, sentences_per_doc=4, seed=21)  # a few seconds of embedding
    (new / "observatory.md").write_text(
        "# The Zarafshan glacier observatory\n\nThe Zarafshan glacier observatory opened in 2031 near Panjakent. "
        "It measures how fast the glacier that feeds the Zarafshan river is melting.\n")
    cli = IngestProcess(new, settings.index_dir)
    cli.wait_for(lambda: cli.progress() is not None, "the progress bar")
    answered = 0
    while cli.proc.poll() is None and answered < 20:  # ask while it writes
        answer = service.answer("Who offered sanctuary to Ahmad Massoud?")
        assert answer.supported and {c.doc_id for c in answer.citations} <= {d.doc_id for d in service.documents()}
        answered += 1
        time.sleep(0.2)  # an analyst's pace, not a CPU hog competing with the ingest
    code, out = cli.finish()
    assert code == 0, cli.stderr[-2000:]
    assert answered >= 1 and last_json(out)["added"] == 151

    after = service.answer("When did the Zarafshan glacier observatory open?")
    assert after.supported and "2031" in after.text, after.text
    assert any("Zarafshan" in c.title for c in after.citations)
    assert service.answer("Who offered sanctuary to Ahmad Massoud?").supported
