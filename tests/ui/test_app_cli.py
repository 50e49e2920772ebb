"""app.py's command line: options explained, bad configuration reported in one sentence."""
from __future__ import annotations

import subprocess
import sys

import pytest

from workspace.settings import parse_auth, parse_port
from chatbot.types import QAError
from tests.ui.conftest import REPO_ROOT


def test_help_explains_every_option():
    out = subprocess.run([sys.executable, str(REPO_ROOT / "app.py"), "--help"], capture_output=True, text=True,
                         timeout=120, cwd=REPO_ROOT)
    assert out.returncode == 0
    for word in ("--host", "--port", "--index", "--corpus", "--no-ingest", "QA_HOST", "QA_PORT", "QA_INDEX_DIR",
                 "QA_AUTH", "QA_UPLOAD_DIR", "QA_MAX_UPLOAD_MB", "127.0.0.1", "7860"):
        assert word in out.stdout, word


def test_auth_and_port_parsing():
    assert parse_auth(None) is None and parse_auth("") is None
    assert parse_auth("ana:s3cr:et") == ("ana", "s3cr:et")
    for bad in ("ana", "ana:", ":pw"):
        with pytest.raises(QAError, match="user:password"):
            parse_auth(bad)
    assert parse_port("7860") == 7860
    with pytest.raises(QAError, match="port"):
        parse_port("http")
    with pytest.raises(QAError, match="between 1 and 65535"):
        parse_port("70000")


def test_bad_configuration_is_one_line_not_a_traceback(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "QA_INDEX_DIR": str(tmp_path / "index"), "QA_AUTH": "nopassword",
           "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, str(REPO_ROOT / "app.py"), "--no-ingest"], capture_output=True,
                         text=True, timeout=300, cwd=REPO_ROOT, env=env)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1] == "error: QA_AUTH must look like user:password (both non-empty)."
    assert "Traceback" not in out.stderr
