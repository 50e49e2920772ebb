"""Shared by the brief and verify tests: the CLI as a subprocess, and indexes of the fixture corpus."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

FIXTURES = REPO_ROOT / "tests" / "data" / "brief_corpus"


def run_cli(*args, env=None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "chatbot", *args], cwd=REPO_ROOT, env=full_env,
                          capture_output=True, text=True, timeout=600)


def brief_json(index_dir: Path, *extra) -> dict:
    r = run_cli("brief", "--index", str(index_dir), "--json", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def fixture_copy_index(root: Path, embedder):
    """Copy the fixture corpus to ``root/sources``, ingest it into ``root/index``; returns
    (sources, settings, ingest) where ``ingest()`` re-runs ingest on the folder."""
    from ingest.pipeline import Ingestor
    from ingest.settings import Settings

    sources = root / "sources"
    shutil.copytree(FIXTURES, sources)
    settings = Settings(index_dir=root / "index")

    def ingest():
        report = Ingestor(settings, embedder=embedder, progress=False).run([sources])
        assert not report.failed
        return report

    assert ingest().added == 4
    return sources, settings, ingest
