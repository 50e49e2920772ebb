"""Start a real server process on 127.0.0.1 for a test, wait until it answers, always stop it."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(cmd: Sequence[str], ready_url: str, log_path: Path, name: str, timeout: float,
          poll: float = 0.3, **popen_kwargs) -> Iterator[subprocess.Popen]:
    """Run ``cmd`` (output to ``log_path``) until ``ready_url`` answers 200; terminate it on exit."""
    log = open(log_path, "wb")
    proc = subprocess.Popen(list(cmd), stdout=log, stderr=subprocess.STDOUT, **popen_kwargs)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}:\n{log_path.read_text(errors='replace')[-4000:]}")
            try:
                with urllib.request.urlopen(ready_url, timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not answer within {timeout} s:\n{log_path.read_text(errors='replace')[-4000:]}")
            time.sleep(poll)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@contextmanager
def chroma_server(data_dir: Path, log_path: Path) -> Iterator[str]:
    """`chroma run` (the one beside this Python) on 127.0.0.1 and a free port, storing its data in
    ``data_dir``; yields its URL; stopped on exit. Skips the test when `chroma` is not installed."""
    exe = Path(sys.executable).parent / "chroma"
    if not exe.exists():
        pytest.skip(f"{exe} not found")
    url = f"http://127.0.0.1:{free_port()}"
    cmd = [str(exe), "run", "--path", str(data_dir), "--host", "127.0.0.1", "--port", url.rsplit(":", 1)[1]]
    with serve(cmd, f"{url}/api/v2/heartbeat", log_path, "chroma run", timeout=120, poll=0.2,
               env={**os.environ, "ANONYMIZED_TELEMETRY": "False"}):
        yield url
