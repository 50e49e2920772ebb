"""The index's writer lock (ingest.lock): one writer at a time across processes and threads, a
clear wait/fail message naming the other writer, and repair that never touches live work.

Fast tests with a fake embedder; the real CLI races are in test_concurrent_writers.py."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ingest.lock import WriterLock, writer_active
from ingest.lock_backends import LOCK_FILE
from ingest.pipeline import Ingestor
from ingest.settings import Settings
from ingest.types import IndexBusy, IngestError
from tests.ingest.helpers import REPO_ROOT, FakeEmbedder, index_health, synthetic_corpus

# Holds the writer lock of the index argv[1]; writes argv[2] once it holds it; releases when argv[3] exists.
HOLD = """
import sys, time
from pathlib import Path
from ingest.lock import WriterLock
from ingest.settings import Settings
settings = Settings(index_dir=Path(sys.argv[1]), chroma_url=sys.argv[4] if len(sys.argv) > 4 else None,
                    lease_ttl=float(sys.argv[5]) if len(sys.argv) > 5 else 30.0)
with WriterLock(settings, "test holder") as lock:
    Path(sys.argv[2]).write_text("held")
    deadline = time.time() + 300
    while not Path(sys.argv[3]).exists() and time.time() < deadline:
        time.sleep(0.05)
    try:
        lock.check()
        print("still held", flush=True)
    except Exception as exc:
        print(f"lost: {exc}", flush=True)
"""

# Ingests argv[2] into the index argv[1] with a fake embedder that stops before embedding, once the
# run's pending documents are in the index (argv[3] written), until argv[4] exists.
BLOCKED_WRITER = """
import json, sys, time
from pathlib import Path
from ingest.pipeline import Ingestor
from ingest.settings import Settings
from ingest.store import COMPLETE
from tests.ingest.helpers import FakeEmbedder

class Blocking(FakeEmbedder):
    def embed_documents(self, texts):
        if self.document_calls == 0:
            while not any(r.status != COMPLETE for r in ingestor.store.list_documents()):
                time.sleep(0.05)
            Path(sys.argv[3]).write_text("pending documents written")
            deadline = time.time() + 300
            while not Path(sys.argv[4]).exists() and time.time() < deadline:
                time.sleep(0.05)
        return super().embed_documents(texts)

settings = Settings(index_dir=Path(sys.argv[1]), chroma_url=sys.argv[5] if len(sys.argv) > 5 else None)
ingestor = Ingestor(settings, embedder=Blocking(), progress=False)
print(json.dumps(ingestor.run([Path(sys.argv[2])]).to_json()), flush=True)
"""

def python(script: str, *args: str, **kw) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"})
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def wait_for_file(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"helper exited with {proc.returncode} before {path.name}:\n{proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {path.name}")
        time.sleep(0.05)


def finish(proc: subprocess.Popen, timeout: float = 300) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


class Holding:
    """A separate process holding the index's writer lock until ``release()``."""

    def __init__(self, tmp_path: Path, settings: Settings, name: str = "holder") -> None:
        self.held, self.go = tmp_path / f"{name}.held", tmp_path / f"{name}.go"
        extra = [settings.chroma_url, str(settings.lease_ttl)] if settings.chroma_url else []
        self.proc = python(HOLD, settings.index_dir, self.held, self.go, *extra)
        wait_for_file(self.held, self.proc)

    def release(self) -> str:
        self.go.write_text("go")
        return finish(self.proc)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=60)


@pytest.fixture
def two_folders(tmp_path) -> tuple[Path, Path]:
    a = tmp_path / "a"
    b = tmp_path / "b"
    synthetic_corpus(a, n_docs=6, sentences_per_doc=6, seed=1)
    synthetic_corpus(b, n_docs=5, sentences_per_doc=6, seed=2)
    for i, path in enumerate(sorted(b.iterdir())):  # other names and other texts than folder a's
        path.rename(b / f"other-{i}.md")
        (b / f"other-{i}.md").write_text(f"# Folder B article {i}\n\n" + (b / f"other-{i}.md").read_text())
    return a, b


def test_second_writer_waits_then_fails_naming_the_holder(tmp_path, settings, two_folders):
    holder = Holding(tmp_path, settings)
    try:
        said = []
        ingestor = Ingestor(settings.with_(lock_wait=1.5), embedder=FakeEmbedder(), progress=False, on_wait=said.append)
        started = time.monotonic()
        with pytest.raises(IndexBusy) as info:
            ingestor.run([two_folders[0]])
        waited = time.monotonic() - started
        message = str(info.value)
        assert f"pid {holder.proc.pid}" in message and "test holder" in message
        assert str(settings.index_dir) in message and "--lock-wait" in message and "\n" not in message
        assert 1.4 <= waited < 30
        assert len(said) == 1 and f"pid {holder.proc.pid}" in said[0] and said[0].startswith("Waiting for another writer")
        assert not (settings.index_dir / "chroma.sqlite3").exists()  # nothing was touched
        with pytest.raises(IndexBusy):
            ingestor.delete_document("anything")
    finally:
        out = holder.release()
    assert "still held" in out
    report = ingestor.run([two_folders[0]])  # free now
    assert report.added == 6 and not report.failed
    assert (settings.index_dir / LOCK_FILE).read_text() == ""  # released: no holder recorded


def test_a_waiting_writer_goes_on_when_the_holder_finishes(tmp_path, settings, two_folders):
    holder = Holding(tmp_path, settings)
    said: list[str] = []
    ingestor = Ingestor(settings.with_(lock_wait=120), embedder=FakeEmbedder(), progress=False, on_wait=said.append)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(report=ingestor.run([two_folders[0]])))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not said and time.monotonic() < deadline:
            time.sleep(0.05)
        assert said and thread.is_alive() and "report" not in result
    finally:
        holder.release()
        thread.join(timeout=120)
    assert result["report"].added == 6


def test_a_killed_holder_releases_the_lock_at_once(tmp_path, settings, two_folders):
    holder = Holding(tmp_path, settings)
    assert writer_active(settings)
    holder.proc.send_signal(signal.SIGKILL)
    holder.kill()
    assert not writer_active(settings)
    report = Ingestor(settings.with_(lock_wait=0), embedder=FakeEmbedder(), progress=False).run([two_folders[0]])
    assert report.added == 6


def test_threads_take_turns_and_the_holder_may_reenter(settings):
    order: list[str] = []
    first = WriterLock(settings, "first")
    first.acquire()
    with WriterLock(settings, "nested"):  # the same thread: re-entrant
        order.append("nested")
    assert writer_active(settings)
    said: list[str] = []

    def second() -> None:
        with WriterLock(settings, "second", wait=60, on_wait=said.append):
            order.append("second")

    thread = threading.Thread(target=second)
    thread.start()
    deadline = time.monotonic() + 30
    while not said and time.monotonic() < deadline:
        time.sleep(0.05)
    assert said and "this process" in said[0] and "first" in said[0]
    order.append("first")
    first.release()
    thread.join(timeout=30)
    assert order == ["nested", "first", "second"]
    assert not writer_active(settings)
    errors: list[BaseException] = []

    def no_wait() -> None:
        try:
            WriterLock(settings, "fourth", wait=0).acquire()
        except BaseException as exc:  # noqa: BLE001 - checked by the test thread
            errors.append(exc)

    with WriterLock(settings, "third"):  # a busy lock and no wait: fails at once
        other = threading.Thread(target=no_wait)
        other.start()
        other.join(timeout=30)
    assert len(errors) == 1 and isinstance(errors[0], IndexBusy) and "this process" in str(errors[0])


def test_repair_never_touches_a_live_writers_pending_work(tmp_path, settings, two_folders):
    """The issue's data loss: a second run "repaired" (deleted) the first run's pending documents."""
    folder_a, folder_b = two_folders
    pending, go = tmp_path / "pending", tmp_path / "go"
    writer = python(BLOCKED_WRITER, settings.index_dir, folder_a, pending, go)
    wait_for_file(pending, writer)  # writer A holds the lock, its documents are pending in the index
    said: list[str] = []
    messages: list[str] = []
    ingestor = Ingestor(settings.with_(lock_wait=120), embedder=FakeEmbedder(), progress=False, on_wait=said.append)
    ingestor._say = messages.append  # what the run would print (e.g. "Repairing …")
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(report=ingestor.run([folder_b])))
    thread.start()
    deadline = time.monotonic() + 60
    while not said and time.monotonic() < deadline:
        time.sleep(0.05)
    assert said and f"pid {writer.pid}" in said[0]
    go.write_text("go")
    report_a = json.loads(finish(writer).strip().splitlines()[-1])
    thread.join(timeout=120)
    report_b = result["report"]
    assert not any("Repairing" in m for m in messages), messages
    assert report_a["added"] == 6 and report_b.added == 5 and report_b.documents == 11
    state = index_health(settings, FakeEmbedder())
    assert state["documents"] == 11 and state["pending"] == 0
    assert state["orphan_chunks"] == 0 and state["short_documents"] == [] and state["bm25_matches"]
    assert len(state["paths"]) == 11


def test_delete_document_holds_the_lock(tmp_path, settings, two_folders):
    ingestor = Ingestor(settings, embedder=FakeEmbedder(), progress=False)
    ingestor.run([two_folders[0]])
    doc_id = ingestor.store.list_documents()[0].doc_id
    holder = Holding(tmp_path, settings)
    try:
        with pytest.raises(IndexBusy):
            Ingestor(settings.with_(lock_wait=0.3), embedder=FakeEmbedder(), progress=False).delete_document(doc_id)
    finally:
        holder.release()
    assert ingestor.delete_document(doc_id) is True
    assert doc_id not in {r.doc_id for r in ingestor.store.list_documents()}


def test_unusable_index_folder_is_a_clear_error(tmp_path, two_folders):
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    settings = Settings(index_dir=blocker / "index")
    with pytest.raises(IngestError, match="index folder"):
        Ingestor(settings, embedder=FakeEmbedder(), progress=False).run([two_folders[0]])


def test_lock_settings_from_env_and_checks():
    settings = Settings.from_env({"QA_LOCK_WAIT": "2.5", "QA_LEASE_TTL": "7"})
    assert (settings.lock_wait, settings.lease_ttl) == (2.5, 7.0)
    with pytest.raises(IngestError, match="QA_LOCK_WAIT"):
        Settings.from_env({"QA_LOCK_WAIT": "soon"})
    with pytest.raises(IngestError, match="lock_wait"):
        Settings(lock_wait=-1)
    with pytest.raises(IngestError, match="lease_ttl"):
        Settings(lease_ttl=0.1)


# Ingests argv[2] into the index argv[1] with the fake embedder; then deletes the documents argv[3:].
INGEST = """
import json, sys
from pathlib import Path
from ingest.pipeline import Ingestor
from ingest.settings import Settings
from tests.ingest.helpers import FakeEmbedder
ingestor = Ingestor(Settings(index_dir=Path(sys.argv[1])), embedder=FakeEmbedder(), progress=False)
report = ingestor.run([Path(sys.argv[2])])
for doc_id in sys.argv[3:]:
    assert ingestor.delete_document(doc_id)
print(json.dumps(report.to_json()), flush=True)
"""


def test_a_reader_catches_up_with_another_process_writes(settings, two_folders):
    """A long-lived reader (the app) of a local index sees another process's ingest and deletes."""
    from ingest.store import IndexStore

    folder_a, folder_b = two_folders
    fake = FakeEmbedder()
    Ingestor(settings, embedder=fake, progress=False).run([folder_a])
    reader = IndexStore(settings, fake.model_id, fake.dimension).open(create=False)
    before = reader.published_state()
    gone = reader.list_documents(with_text=True)[0]
    first = next(iter(reader.iter_chunks()))
    assert reader.query(fake.embed_query(first[1]), k=1)[0].chunk.chunk_id == first[0]

    finish(python(INGEST, settings.index_dir, folder_b, gone.doc_id))  # another process writes

    assert reader.published_state() != before  # the reader notices, and catches up
    docs = {r.doc_id for r in reader.list_documents()}
    assert len(docs) == 10 and gone.doc_id not in docs
    for chunk_id, text, _meta in reader.iter_chunks():  # every chunk is found by its own text
        hits = reader.query(fake.embed_query(text), k=3)
        assert hits[0].chunk.chunk_id == chunk_id
        assert all(h.chunk.doc_id in docs and h.chunk.text for h in hits)  # nothing deleted comes back


# ---------------------------------------------------------------- Chroma server: the lease
@pytest.mark.slow
def test_server_lease_one_writer_at_a_time(tmp_path, chroma_server, two_folders):
    settings = Settings(index_dir=tmp_path / "local", chroma_url=chroma_server)
    holder = Holding(tmp_path, settings)
    try:
        said: list[str] = []
        with pytest.raises(IndexBusy) as info:
            Ingestor(settings.with_(lock_wait=4), embedder=FakeEmbedder(), progress=False,
                     on_wait=said.append).run([two_folders[0]])
        assert f"pid {holder.proc.pid}" in str(info.value) and chroma_server in str(info.value)
        assert len(said) == 1 and f"pid {holder.proc.pid}" in said[0]
    finally:
        assert "still held" in holder.release()
    report = Ingestor(settings.with_(lock_wait=0), embedder=FakeEmbedder(), progress=False).run([two_folders[0]])
    assert report.added == 6  # released: taken at once


@pytest.mark.slow
def test_server_lease_of_a_killed_writer_is_taken_over_after_its_ttl(tmp_path, chroma_server, two_folders):
    settings = Settings(index_dir=tmp_path / "local", chroma_url=chroma_server, lease_ttl=2)
    holder = Holding(tmp_path, settings)
    holder.proc.send_signal(signal.SIGKILL)
    holder.kill()
    said: list[str] = []
    started = time.monotonic()
    report = Ingestor(settings.with_(lock_wait=60), embedder=FakeEmbedder(), progress=False,
                      on_wait=said.append).run([two_folders[0]])
    assert report.added == 6
    assert time.monotonic() - started >= 2  # watched the dead lease stand still for a whole TTL
    assert said and f"pid {holder.proc.pid}" in said[0]


@pytest.mark.slow
def test_server_lease_lost_by_a_paused_writer_is_detected(tmp_path, chroma_server):
    settings = Settings(index_dir=tmp_path / "local", chroma_url=chroma_server, lease_ttl=2)
    holder = Holding(tmp_path, settings)
    holder.proc.send_signal(signal.SIGSTOP)  # e.g. a suspended laptop
    try:
        with WriterLock(settings, "the next writer", wait=60, on_wait=lambda _m: None):
            pass  # taken over after the TTL
    finally:
        holder.proc.send_signal(signal.SIGCONT)
    out = holder.release()
    assert "lost: Stopped writing" in out and "run the same command again" in out


@pytest.mark.slow
def test_server_concurrent_ingests_both_land(tmp_path, chroma_server, two_folders):
    folder_a, folder_b = two_folders
    settings = Settings(index_dir=tmp_path / "local", chroma_url=chroma_server, lease_ttl=10)  # renewed every ~1.7 s
    pending, go = tmp_path / "pending", tmp_path / "go"
    writer = python(BLOCKED_WRITER, settings.index_dir, folder_a, pending, go, chroma_server)
    wait_for_file(pending, writer)
    said: list[str] = []
    result: dict = {}
    ingestor = Ingestor(settings.with_(lock_wait=120), embedder=FakeEmbedder(), progress=False, on_wait=said.append)
    thread = threading.Thread(target=lambda: result.update(report=ingestor.run([folder_b])))
    thread.start()
    deadline = time.monotonic() + 60
    while not said and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(11)  # longer than the TTL: the blocked writer's lease is renewed, not taken over
    assert thread.is_alive()
    go.write_text("go")
    report_a = json.loads(finish(writer).strip().splitlines()[-1])
    thread.join(timeout=120)
    assert report_a["added"] == 6 and result["report"].added == 5 and result["report"].documents == 11
    state = index_health(settings, FakeEmbedder())
    assert state["documents"] == 11 and state["pending"] == 0 and state["orphan_chunks"] == 0
    assert state["short_documents"] == [] and state["bm25_matches"]


def test_cli_busy_index_is_one_clear_message(tmp_path, settings, two_folders):
    from tests.ingest.helpers import run_ingest

    holder = Holding(tmp_path, settings)
    try:
        result = run_ingest(str(two_folders[0]), "--index", str(settings.index_dir), "--json", "--lock-wait", "0.5")
    finally:
        holder.release()
    assert result.returncode == 2 and result.stdout.strip() == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: The index at") and f"pid {holder.proc.pid}" in lines[-1]
    assert "Traceback" not in result.stderr


def test_a_reader_rebuilds_the_keyword_index_without_writing_while_a_writer_works(tmp_path, settings, two_folders):
    import shutil

    from ingest import lexical

    ingestor = Ingestor(settings, embedder=FakeEmbedder(), progress=False)
    report = ingestor.run([two_folders[0]])
    store = ingestor.store
    shutil.rmtree(store.lexical_dir())  # as after a run interrupted before its BM25 rebuild
    published = store.published_state()
    holder = Holding(tmp_path, settings)
    try:
        index = lexical.load_or_build(store, published)
        assert len(index) == report.chunks and index.token == published
        assert not store.lexical_dir().exists()  # built in memory: the writer saves its own
    finally:
        holder.release()
    index = lexical.load_or_build(store, published)
    assert len(index) == report.chunks and store.lexical_dir().exists()
