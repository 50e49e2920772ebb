"""The app's writer thread: uploads and deletions off the request path, one at a time, in order,
with every outcome (even a bug's) reported per file and the stored files cleaned up."""
from __future__ import annotations

import threading

import pytest

from workspace.jobs import DONE, WriteQueue
from workspace.ui import render
from tests.workspace.conftest import titles

NOTE = b"# Queued note\n\nThe Marrow lift carries six passengers."


@pytest.fixture
def writer(ws):
    q = WriteQueue(ws)
    yield q
    q.close()


def test_upload_runs_in_the_background_and_reports_each_file(ws, writer):
    gate = threading.Event()
    real = ws.ingest
    ws.ingest = lambda staged, progress=None: (gate.wait(30), real(staged))[1]
    staged = ws.stage([("note.md", NOTE), ("bad.exe", b"x")])
    job = writer.submit_upload("s1", staged)
    second = writer.submit_upload("s2", ws.stage([("other.md", b"# Second\n\nThe Tolley bell rings at noon.")]))
    assert job.label == "1 file: note.md" and job.kind == "upload"
    assert not job.done.wait(0.2)  # submit returned while the ingest waits
    assert writer.ahead(second) == 1 and writer.jobs("s1") == [job] and writer.jobs("s2") == [second]
    html = render.render_jobs(writer.jobs("s2"), writer.ahead, 0.0)
    assert "qa-job-pending" in html and "waiting for 1 earlier job" in html
    gate.set()
    assert job.done.wait(60) and second.done.wait(60)
    assert job.state == DONE and not job.ok  # one of its files failed
    assert [o.ok for o in job.upload.outcomes] == [True, False]
    assert {"Queued note", "Second"} <= titles(ws)
    assert "1 of 2 file(s) ingested" in render.render_jobs(writer.jobs("s1"), writer.ahead, 0.0)


def test_a_bug_in_a_job_is_that_jobs_outcome_and_the_next_job_runs(ws, writer, caplog):
    staged = ws.stage([("note.md", NOTE)])
    (dest,) = [d for _, d in staged.saved.values()]

    def broken(paths, progress=False, on_wait=None):
        raise TypeError("metadata value must be str")

    real = ws.service.ingest
    ws.service.ingest = broken
    job = writer.submit_upload("s1", staged)
    assert job.done.wait(60)
    (outcome,) = job.upload.outcomes
    assert not outcome.ok and "unexpected error (TypeError: metadata value must be str)" in outcome.message
    assert not dest.exists() and "Queued note" not in titles(ws)
    assert "Ingesting upload" in caplog.text  # the traceback is in the log

    ws.service.ingest = real
    doc = next(d for d in ws.summaries() if d.title == "The Brelloway lighthouse ledger")
    deletion = writer.submit_delete("s1", doc.doc_id, doc.title)
    assert deletion.done.wait(60) and deletion.ok and "Deleted “The Brelloway lighthouse ledger”" in deletion.message
    again = writer.submit_delete("s1", doc.doc_id, doc.title)
    assert again.done.wait(60) and not again.ok and "not in the index" in again.message
    assert writer.jobs("s1")[0] is again  # newest first


def test_finished_jobs_are_bounded_and_forgotten_with_their_session(ws):
    writer = WriteQueue(ws, keep=2)
    try:
        jobs = [writer.submit_delete("s1", "0" * 20, "nothing") for _ in range(4)]
        assert all(j.done.wait(60) for j in jobs)
        writer.submit_delete("s1", "0" * 20, "nothing").done.wait(60)
        assert len(writer.jobs("s1")) <= 3
        writer.forget("s1")
        assert writer.jobs("s1") == []
    finally:
        writer.close()


def test_embedding_progress_is_read_from_the_running_ingest_bar():
    import io

    from tqdm import tqdm

    from workspace.jobs import embedding_progress

    assert embedding_progress() is None
    with tqdm(total=40, desc="Embedding", file=io.StringIO()) as bar:
        bar.update(15)
        assert embedding_progress() == (15, 40)
        html = render.render_jobs([_running()], lambda j: 0, 12.0, embedding_progress())
        assert "embedding 15 of 40 passages" in html and 'style="width:38%"' in html
    assert embedding_progress() is None


def _running():
    from workspace.jobs import RUNNING, Job

    return Job("j1", "upload", "s1", "1 file: a.md", 0.0, state=RUNNING, started=2.0)
