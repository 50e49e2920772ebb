"""Limits on everything a file controls, and per-file isolation (issue 9): each hostile or broken
file is that file's one `failed` entry, quickly and in little memory, and the rest of the run is
ingested. Loader-level checks run in this process; run-level ones through the real reader process."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from ingest.clean import kept_paragraphs
from ingest.documents import build_document
from ingest.loaders import check_zip, load_file, safe_text
from ingest.pipeline import Ingestor
from ingest.reader import ChildReader, InProcessReader
from ingest.settings import Limits, Settings
from ingest.types import BadFile, IngestError
from tests.ingest.bombs import YAML_ALIAS_BOMB, docx_bomb, lie_about_size, pdf_with_stream
from tests.ingest.helpers import FakeEmbedder

BODY = "The Qosh Tepa canal will divert water from the Amu Darya. Farmers in Uzbekistan worry about the loss.\n"


def article(title: str, extra_front: str = "", body: str = BODY) -> str:
    return f"---\ntitle: {title}\n{extra_front}---\n{body}"


def folder_of(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "articles"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def run_own_reader(settings: Settings, folder: Path, **limits):
    """A run with its own reader process under ``limits`` (closed afterwards)."""
    reader = ChildReader()
    try:
        return run(settings.with_(limits=Limits(**limits)), folder, reader=reader)[1]
    finally:
        reader.close()


def run(settings: Settings, *paths: Path, reader=None):
    ingestor = Ingestor(settings, embedder=FakeEmbedder(), progress=False, reader=reader)
    return ingestor, ingestor.run(list(paths))


def failures(report) -> dict[str, str]:
    return {Path(f.path).name: f.reason for f in report.failed}


@pytest.fixture(scope="module")
def big_docx_bomb() -> bytes:
    """About 1 MB on disk, 340 MB of XML unzipped (the issue's bomb)."""
    return docx_bomb(340)


# --------------------------------------------------------------------------- YAML
def test_yaml_alias_bomb_is_refused_at_once():
    started = time.process_time()
    with pytest.raises(BadFile, match="anchors or aliases"):
        load_file(Path("bomb.md"), YAML_ALIAS_BOMB.encode())
    assert time.process_time() - started < 1
    assert len(YAML_ALIAS_BOMB.encode()) < 600


def test_any_anchor_is_refused_and_nesting_is_bounded():
    with pytest.raises(BadFile, match="anchors or aliases"):
        load_file(Path("a.md"), b"---\ntitle: &t Hello\nsource: *t\n---\nText.\n")
    deep = "---\nx: " + "[" * 50 + "1" + "]" * 50 + "\n---\nText.\n"
    with pytest.raises(BadFile, match="nested too deeply"):
        load_file(Path("a.md"), deep.encode())


def test_front_matter_and_its_values_are_bounded():
    big = "---\ntitle: Big\nnotes: |\n" + "".join(f"  line {i} of a long block\n" for i in range(5000)) + "---\nText.\n"
    with pytest.raises(BadFile, match="front matter is too large"):
        load_file(Path("a.md"), big.encode())
    with pytest.raises(BadFile, match="'title' is too long"):
        load_file(Path("a.md"), article("x" * 6000).encode())
    many = "---\ntags: [" + ",".join(f"t{i}" for i in range(600)) + "]\n---\nText.\n"
    with pytest.raises(BadFile, match="'tags' has too many items"):
        load_file(Path("a.md"), many.encode())
    limits = Limits(max_meta_chars=10)
    with pytest.raises(BadFile, match="at most 10"):
        load_file(Path("a.md"), article("A title longer than ten").encode(), limits)


def test_odd_yaml_values_are_stored_as_text():
    text = "---\ntitle: Odd\nextra: {when: 2023-05-02, blob: !!binary aGVsbG8=, s: !!set {a}}\n---\nText here.\n"
    doc = build_document(Path("odd.md"), text.encode())
    assert doc.meta["extra"] == {"when": "2023-05-02", "blob": "b'hello'", "s": ["a"]}


# -------------------------------------------------------------------------- regex
def test_invalid_boilerplate_pattern_is_the_files_error():
    with pytest.raises(BadFile, match=r"invalid boilerplate pattern 're:\(unclosed'"):
        build_document(Path("a.md"), article("A", "boilerplate: ['re:(unclosed']\n").encode())


def test_catastrophic_patterns_are_time_bounded():
    paras = ["a" * 40, "a" * 40 + "!", "Some text."]
    # The pattern: the regex engine matches it in linear time (a bounded match).
    started = time.process_time()
    assert kept_paragraphs(paras, ["re:^(a+)+$"]) == [1, 2]
    assert time.process_time() - started < 1
    # One it cannot: stopped after its budget, as the file's error naming the pattern.
    started = time.monotonic()
    with pytest.raises(BadFile, match=r"'re:\(a\|a\)\+\$' takes too long"):
        kept_paragraphs(paras, ["re:(a|a)+$"], regex_timeout=0.3)
    assert time.monotonic() - started < 30  # 0.3 s of CPU; wall time stretches on a loaded machine


def test_the_regex_budget_is_shared_by_a_documents_paragraphs():
    paras = ["a" * 22 + "!"] * 200  # each search is quick, together they are not
    with pytest.raises(BadFile, match="takes too long"):
        kept_paragraphs(paras, ["re:(a|a)+$"], regex_timeout=0.2)


# --------------------------------------------------------------------------- DOCX
def test_docx_zip_bomb_is_refused_before_unzipping(big_docx_bomb):
    assert len(big_docx_bomb) < 2 * 2**20
    started = time.process_time()
    with pytest.raises(BadFile, match="would expand to 34[01] MB"):
        load_file(Path("bomb.docx"), big_docx_bomb)
    assert time.process_time() - started < 2


def test_docx_part_with_a_bomb_ratio_is_refused():
    small = docx_bomb(2)  # 2 MB of XML: under the total, far over the ratio
    with pytest.raises(BadFile, match="word/document.xml' would expand [0-9]+x"):
        load_file(Path("ratio.docx"), small)
    check_zip(small, Limits(max_ratio=10_000), "DOCX")  # allowed by a higher limit


def test_docx_bomb_with_a_lying_header_stops_at_the_declared_size(big_docx_bomb):
    liar = lie_about_size(big_docx_bomb, "word/document.xml", 4000)
    started = time.process_time()
    with pytest.raises(BadFile, match="corrupt or unreadable DOCX"):
        load_file(Path("liar.docx"), liar)
    assert time.process_time() - started < 5  # never inflated the 340 MB


# ---------------------------------------------------------------------------- PDF
def test_pdf_stream_bomb_is_bounded():
    pdf = pdf_with_stream(b"BT /F1 11 Tf 72 720 Td (Hello) Tj ET\n" + b" " * (20 * 2**20))
    assert len(pdf) < 100_000
    with pytest.raises(BadFile, match="LimitReachedError"):
        load_file(Path("bomb.pdf"), pdf, Limits(max_expanded_mb=5))


# ----------------------------------------------------------- per-file isolation
def test_one_bad_file_never_stops_the_run(tmp_path, settings, caplog, big_docx_bomb):
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "good.md").write_text(article("Good"))
    (folder / "regex.md").write_text(article("Regex", "boilerplate: ['re:(unclosed']\n"))
    (folder / "alias.md").write_text(YAML_ALIAS_BOMB)
    (folder / "bomb.docx").write_bytes(big_docx_bomb)
    (folder / os.fsdecode(b"caf\xff.md")).write_text(article("Cafe"))
    (folder / "redos.md").write_text(article("Redos", "boilerplate: ['re:^(a+)+$']\n",
                                             "a" * 40 + "\n\nA line of forty letters was boilerplate.\n"))
    _, report = run(settings, folder)
    assert report.added == 2  # good.md and redos.md
    reasons = failures(report)
    assert set(reasons) == {"regex.md", "alias.md", "bomb.docx", "caf\\xff.md"}
    assert "invalid boilerplate pattern" in reasons["regex.md"]
    assert "anchors or aliases" in reasons["alias.md"]
    assert "zip bomb" in reasons["bomb.docx"]
    assert "not valid UTF-8" in reasons["caf\\xff.md"]
    assert all("\n" not in r for r in reasons.values())

    # A programming error in one file is that file's failure too, named by its type and logged.
    import ingest.reader as reader_module

    real = reader_module.chunk_text  # used by InProcessReader

    def broken(doc_id, text, *args):
        if "Farmers" in text and "Good" not in text:
            raise ZeroDivisionError("a bug")
        return real(doc_id, text, *args)

    (folder / "other.md").write_text(article("Other", body="Farmers and a bug.\n"))
    (folder / "fine.md").write_text(article("Fine", body="Nothing special here.\n"))
    reader_module.chunk_text = broken
    try:
        with caplog.at_level(logging.DEBUG, logger="ingest.pipeline"):
            _, report = run(settings, folder, reader=InProcessReader())
    finally:
        reader_module.chunk_text = real
    reasons = failures(report)
    assert reasons["other.md"] == "unexpected error while reading it (ZeroDivisionError: a bug)"
    assert report.added == 1 and "Traceback" in caplog.text and "ZeroDivisionError" in caplog.text


def test_a_file_over_its_time_budget_is_stopped_and_the_run_goes_on(tmp_path, settings):
    folder = folder_of(tmp_path, {
        "a-slow.md": article("Slow", "boilerplate: ['re:(a|a)+$']\n", "a" * 60 + "!\n\n" + BODY),
        "b-good.md": article("Good"),
    })
    started = time.monotonic()
    report = run_own_reader(settings, folder, file_timeout=1.5, regex_timeout=600)  # regex: ten minutes
    assert time.monotonic() - started < 120
    assert failures(report) == {"a-slow.md": "reading it took longer than 1.5 s (QA_FILE_TIMEOUT); it was stopped"}
    assert report.added == 1  # b-good.md, read by a fresh reader process


def test_a_file_over_its_memory_budget_fails_alone(tmp_path, settings):
    folder = folder_of(tmp_path, {
        "a-huge.txt": ("Lots of words in one huge file. " * 8 + "\n\n") * 100_000,  # 24 MB
        "b-good.md": article("Good"),
    })
    report = run_own_reader(settings, folder, file_memory_mb=256)
    assert failures(report) == {"a-huge.txt": "reading it needs more than 256 MB of memory (QA_FILE_MEMORY_MB)"}
    assert report.added == 1


def test_a_crashed_reader_fails_that_file_only(tmp_path, settings):
    folder = folder_of(tmp_path, {
        "a-victim.md": article("Victim", "boilerplate: ['re:(a|a)+$']\n", "a" * 60 + "!\n\n" + BODY),
        "b-good.md": article("Good"),
    })
    reader = ChildReader()
    ingestor = Ingestor(settings.with_(limits=Limits(regex_timeout=600)), embedder=FakeEmbedder(), progress=False,
                        reader=reader)

    def cpu_seconds(pid: int) -> float:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill_the_child() -> None:  # a native crash in a parser looks like this to the parent
        deadline = time.monotonic() + 120
        start = None
        while time.monotonic() < deadline:
            child = reader._child  # set once it has started (imports done)
            if child is not None and child.alive():
                start = cpu_seconds(child.proc.pid) if start is None else start
                if cpu_seconds(child.proc.pid) - start >= 1.0:  # busy matching a-victim.md's pattern
                    child.proc.kill()
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_child)
    killer.start()
    try:
        report = ingestor.run([folder])
    finally:
        killer.join()
        reader.close()
    assert failures(report) == {"a-victim.md": "the process reading it crashed (killed by SIGKILL); the file may be malformed"}
    assert report.added == 1


def test_file_size_limit(tmp_path, settings):
    folder = folder_of(tmp_path, {"big.md": article("Big", body=BODY * 20_000), "good.md": article("Good")})  # 2 MB
    _, report = run(settings.with_(limits=Limits(max_file_mb=1)), folder)
    assert failures(report) == {"big.md": "file is too large (2 MB; at most 1 MB, QA_MAX_FILE_MB)"}
    assert report.added == 1


def test_limits_from_env():
    limits = Settings.from_env({"QA_FILE_TIMEOUT": "7", "QA_MAX_FILE_MB": "3", "QA_REGEX_TIMEOUT": "0.5"}).limits
    assert (limits.file_timeout, limits.max_file_mb, limits.regex_timeout) == (7.0, 3.0, 0.5)
    with pytest.raises(IngestError, match="QA_FILE_TIMEOUT"):
        Settings.from_env({"QA_FILE_TIMEOUT": "soon"})
    with pytest.raises(IngestError, match="file_timeout"):
        Limits(file_timeout=0)
    with pytest.raises(IngestError, match="file_memory_mb"):
        Limits(file_memory_mb=64)


# ---------------------------------------------------- file names, FIFOs, symlinks
def test_undecodable_file_names_fail_and_reruns_are_stable(tmp_path, settings):
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / os.fsdecode(b"caf\xff.md")).write_text(article("Cafe"))
    (folder / "good.md").write_text(article("Good"))
    for _ in range(2):
        _, report = run(settings, folder)
        assert [f.path for f in report.failed] == [safe_text(str(folder / os.fsdecode(b"caf\xff.md")))]
        assert report.failed[0].path.endswith("caf\\xff.md")
    assert report.unchanged == 1 and report.added == 0


def test_a_folder_with_an_undecodable_name_is_ingested_rerun_and_removed(tmp_path, settings):
    folder = tmp_path / os.fsdecode(b"r\xe9sum\xe9s")  # Latin-1 bytes in the folder's own name
    folder.mkdir()
    (folder / "good.md").write_text(article("Good"))
    ingestor, report = run(settings, folder)
    assert report.added == 1 and not report.failed
    (record,) = ingestor.store.list_documents()
    assert record.paths == [str(folder / "good.md")]  # stored exactly, so it is found again
    _, report = run(settings, folder)
    assert (report.added, report.unchanged, report.removed) == (0, 1, 0)
    (folder / "good.md").unlink()
    _, report = run(settings, folder)
    assert report.removed == 1 and report.documents == 0


def test_fifos_sockets_and_outside_symlinks_are_reported_never_read(tmp_path, settings):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text(article("Secret", body="Outside the corpus, never to be read.\n"))
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "good.md").write_text(article("Good"))
    os.mkfifo(folder / "pipe.md")  # reading it would block forever
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder / "sock.md"))
        (folder / "secret-link.md").symlink_to(outside / "secret.md")
        (folder / "passwd.md").symlink_to("/etc/passwd")
        (folder / "dangling.md").symlink_to(tmp_path / "nowhere.md")
        (folder / "inside-link.md").symlink_to(folder / "good.md")  # fine: read once, as good.md
        (folder / "outside-dir").symlink_to(outside)
        started = time.monotonic()
        ingestor, report = run(settings, folder)
    assert time.monotonic() - started < 120
    reasons = failures(report)
    assert set(reasons) == {"pipe.md", "sock.md", "secret-link.md", "passwd.md", "dangling.md", "outside-dir"}
    assert reasons["pipe.md"] == "a named pipe (FIFO), not a regular file: never read"
    assert reasons["sock.md"] == "a socket, not a regular file: never read"
    assert reasons["passwd.md"].startswith("symbolic link to a file outside") and "/etc/passwd" in reasons["passwd.md"]
    assert "outside" in reasons["secret-link.md"] and reasons["dangling.md"] == "broken symbolic link: never read"
    assert reasons["outside-dir"].startswith("symbolic link to a folder outside")
    (record,) = ingestor.store.list_documents(with_text=True)
    assert record.paths == [str(folder / "good.md")] and "Secret" not in (record.text or "")
    assert report.added == 1 and report.duplicates == []


def test_an_explicitly_named_symlink_is_followed_but_a_fifo_is_not(tmp_path, settings):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target.md").write_text(article("Target"))
    link = tmp_path / "link.md"
    link.symlink_to(outside / "target.md")
    os.mkfifo(tmp_path / "pipe.md")
    _, report = run(settings, link, tmp_path / "pipe.md")
    assert report.added == 1
    assert failures(report) == {"pipe.md": "a named pipe (FIFO), not a regular file: never read"}


# ------------------------------------------------------- the CLI, as the issue ran it
MEASURED_CLI = """
import json, sys, time
from ingest.cli import main
from ingest.reader import shared_reader

def peak_mb(pid):  # VmHWM: peak RSS of this process image (ru_maxrss would include the forking parent's)
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0

started = time.monotonic()
code = main(sys.argv[1:])
seconds = time.monotonic() - started
reader = shared_reader()
child = reader._child
children_mb = peak_mb(child.proc.pid) if child is not None and child.alive() else 0.0
reader.close()
print(json.dumps({"exit": code, "seconds": seconds, "self_mb": peak_mb("self"), "children_mb": children_mb}),
      file=sys.stderr)
"""


def measured_ingest(*args: str) -> tuple[dict, dict, str]:
    """`python -m ingest ARGS` in a fresh process: (its JSON report, its exit status, time and peak
    RSS of itself and of its reader process, its stderr)."""
    import json
    import subprocess
    import sys

    from tests.ingest.helpers import REPO_ROOT, last_json

    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"})
    result = subprocess.run([sys.executable, "-c", MEASURED_CLI, *args], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=900)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    measure = json.loads(result.stderr.strip().splitlines()[-1])
    return last_json(result.stdout), measure, result.stderr


def hostile_files(folder: Path, bomb: bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "regex.md").write_text(article("Regex", "boilerplate: ['re:(unclosed']\n"))
    (folder / os.fsdecode(b"caf\xff.md")).write_text(article("Cafe"))
    (folder / "alias.md").write_text(YAML_ALIAS_BOMB)
    (folder / "bomb.docx").write_bytes(bomb)


@pytest.mark.slow
def test_cli_hostile_files_each_fail_fast_in_little_memory_and_good_files_land(tmp_path, big_docx_bomb):
    from tests.ingest.helpers import SEED_MD

    expected = {"regex.md", "caf\\xff.md", "alias.md", "bomb.docx"}
    # The hostile files alone: four failures, quickly (no model is loaded: nothing to embed).
    bad = tmp_path / "bad"
    hostile_files(bad, big_docx_bomb)
    report, measure, _ = measured_ingest(str(bad), "--index", str(tmp_path / "index-bad"), "--json", "--quiet")
    assert measure["exit"] == 1 and set(failures_json(report)) == expected
    assert measure["seconds"] < 30, measure
    assert measure["self_mb"] < 500 and measure["children_mb"] < 500, measure

    # With good files in the same run: those are ingested (real model), the same four fail.
    mixed = tmp_path / "mixed"
    hostile_files(mixed, big_docx_bomb)
    (mixed / SEED_MD.name).write_bytes(SEED_MD.read_bytes())
    (mixed / "redos.md").write_text(article("Redos", "boilerplate: ['re:^(a+)+$']\n",
                                            "a" * 40 + "\n\nA line of forty letters was boilerplate.\n"))
    report, measure, _ = measured_ingest(str(mixed), "--index", str(tmp_path / "index-mixed"), "--json")
    assert measure["exit"] == 1 and set(failures_json(report)) == expected
    assert report["added"] == 2 and report["documents"] == 2 and report["chunks"] > 5
    assert measure["self_mb"] < 500 and measure["children_mb"] < 500, measure


def failures_json(report: dict) -> dict[str, str]:
    return {Path(f["path"]).name: f["reason"] for f in report["failed"]}
