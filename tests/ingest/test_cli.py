"""`python -m ingest` as a user runs it: a real subprocess from the repository root."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.ingest.helpers import SEED_MD, last_json, run_ingest

REQUIRED_KEYS = {"documents", "added", "updated", "unchanged", "removed", "chunks", "failed", "seconds"}


def check_schema(data: dict) -> None:
    assert REQUIRED_KEYS <= set(data)
    for key in REQUIRED_KEYS - {"failed", "seconds"}:
        assert isinstance(data[key], int) and data[key] >= 0, key
    assert isinstance(data["seconds"], (int, float)) and data["seconds"] >= 0
    assert isinstance(data["failed"], list)
    for entry in data["failed"]:
        assert set(entry) == {"path", "reason"}
        assert isinstance(entry["reason"], str) and "\n" not in entry["reason"] and entry["reason"]


def test_help_mentions_environment():
    result = run_ingest("--help")
    assert result.returncode == 0
    for word in ("QA_INDEX_DIR", "QA_CHROMA_URL", "--rebuild", "--json", "--index", "--lock-wait", "QA_LOCK_WAIT",
                 "QA_FILE_TIMEOUT 120", "QA_MAX_FILE_MB 100", "QA_REGEX_TIMEOUT 1", "symbolic links"):
        assert word in result.stdout


def test_nonexistent_path_is_a_usage_error(tmp_path):
    missing = tmp_path / "no-such-folder"
    result = run_ingest(str(missing), "--index", str(tmp_path / "index"), "--json")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and str(missing) in lines[0] and "Traceback" not in result.stderr
    assert result.stdout.strip() == ""
    assert not (tmp_path / "index").exists()


def test_bad_option_value_is_a_usage_error(tmp_path):
    result = run_ingest(str(tmp_path), "--chunk-size", "10", "--index", str(tmp_path / "i"))
    assert result.returncode == 2
    assert "chunk_size" in result.stderr and "Traceback" not in result.stderr
    result = run_ingest("--chunk-size", "lots")
    assert result.returncode == 2 and "Traceback" not in result.stderr


@pytest.mark.slow
def test_good_and_bad_files_then_unchanged_rerun(tmp_path):
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / SEED_MD.name).write_bytes(SEED_MD.read_bytes())
    (folder / "empty.md").write_bytes(b"")
    (folder / "noise.txt").write_bytes(random.Random(3).randbytes(2048))
    index = tmp_path / "from-env"
    # The index folder comes from QA_INDEX_DIR (no --index).
    first = run_ingest(str(folder), "--json", env={"QA_INDEX_DIR": str(index)})
    assert first.returncode == 1, first.stderr
    data = last_json(first.stdout)
    check_schema(data)
    assert (data["added"], data["updated"], data["unchanged"], data["documents"]) == (1, 0, 0, 1)
    assert data["chunks"] >= 1
    assert sorted(Path(f["path"]).name for f in data["failed"]) == ["empty.md", "noise.txt"]
    assert (index / "chroma.sqlite3").exists()
    assert "Embedding" in first.stderr  # the progress bar

    second = run_ingest(str(folder), "--json", "--index", str(index))
    assert second.returncode == 1
    again = last_json(second.stdout)
    check_schema(again)
    assert (again["added"], again["updated"], again["unchanged"]) == (0, 0, 1)
    assert again["chunks"] == data["chunks"] and len(again["failed"]) == 2
    assert "Embedding" not in second.stderr and "Loading weights" not in second.stderr

    # Only good files left: exit 0; the human summary when --json is not given.
    (folder / "empty.md").unlink()
    (folder / "noise.txt").unlink()
    third = run_ingest(str(folder), "--index", str(index))
    assert third.returncode == 0, third.stderr
    assert "1 document(s)" in third.stdout and "0 added" in third.stdout and "1 unchanged" in third.stdout


@pytest.mark.slow
def test_model_mismatch_message_from_cli(tmp_path):
    # An index recorded with another model: exit 2 with the rebuild hint, nothing embedded.
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    index = tmp_path / "index"
    client = chromadb.PersistentClient(str(index), settings=ChromaSettings(anonymized_telemetry=False))
    client.create_collection("qa_chunks", metadata={
        "embedding_model": "someone/else", "dimension": 384, "chunk_size": 600, "chunk_overlap": 150,
        "index_format": 1,
    })
    del client
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "a.md").write_text("The canal is long.\n")
    result = run_ingest(str(folder), "--index", str(index), "--json")
    assert result.returncode == 2
    assert "--rebuild" in result.stderr and "someone/else" in result.stderr
    assert "Traceback" not in result.stderr


def test_index_folder_that_is_a_file_is_a_usage_error(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "a.md").write_text("The canal is long.\n")
    result = run_ingest(str(folder), "--index", str(blocker), "--json")
    assert result.returncode == 2
    assert str(blocker) in result.stderr and "--index" in result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_while_a_native_library_initialises_is_an_interruption(monkeypatch, capsys):
    """A Ctrl-C landing inside a native module's initialisation surfaces as that module's error
    (onnxruntime: "ImportError: initialization failed"), not as KeyboardInterrupt: still exit 130
    with the "run again" message, no traceback."""
    import os
    import signal

    from ingest import cli

    def interrupted_import(args):
        try:
            os.kill(os.getpid(), signal.SIGINT)  # the handler runs at the next bytecode: inside this try
            for _ in range(1000):
                pass
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None
        raise AssertionError("SIGINT was not delivered")

    monkeypatch.setattr(cli, "_run", interrupted_import)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in `python -m ingest`
    try:
        assert cli.main([]) == 130
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "Interrupted" in capsys.readouterr().err


def test_other_errors_are_not_taken_for_an_interruption(monkeypatch):
    import signal

    from ingest import cli

    def broken(args):
        raise ImportError("a real bug")

    monkeypatch.setattr(cli, "_run", broken)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(ImportError, match="a real bug"):
            cli.main([])
    finally:
        signal.signal(signal.SIGINT, previous)
