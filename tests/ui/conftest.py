"""One real app for the whole browser suite: `python app.py` in a subprocess on 127.0.0.1 and a
free port, with a temp index built at start-up from corpus/ by the real model, and one Chromium."""
from __future__ import annotations

import os
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from tests.servers import free_port, serve

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("QA_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
START_TIMEOUT = 900  # seconds: the first start embeds the corpus on a possibly busy 2-core machine


@contextmanager
def running_app(root: Path, *args: str, **qa_env: str) -> Iterator[str]:
    """`python app.py [args]` on a free port with its index, uploads, temp files and log under
    ``root`` and the given ``QA_*`` settings (none from the caller's shell); yields its URL, then
    stops it."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update(QA_INDEX_DIR=str(root / "index"), QA_UPLOAD_DIR=str(root / "uploads"), QA_PORT=str(port),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
               ANONYMIZED_TELEMETRY="False", PYTHONUNBUFFERED="1", TMPDIR=str(root), **qa_env)
    url = f"http://127.0.0.1:{port}/"
    with serve([sys.executable, str(REPO_ROOT / "app.py"), *args], url, root / "app.log", "app.py", timeout=START_TIMEOUT,
               poll=1, cwd=REPO_ROOT, env=env):
        yield url


@pytest.fixture(scope="session")
def app_root(tmp_path_factory) -> Path:
    """The shared app's folder: index/, uploads/, Gradio's temp files, app.log."""
    return tmp_path_factory.mktemp("ui-app")


@pytest.fixture(scope="session")
def app_url(app_root):
    """URL of a running app (stopped at the end of the session)."""
    with running_app(app_root, QA_MAX_UPLOAD_MB="2") as url:
        yield url


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: `apt-get install -y chromium` (scripts/test.sh does this).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Page:
    """A fresh browser context (= a fresh Gradio session) on the app, with dialog/console capture."""

    def __init__(self, browser, url: str) -> None:
        self.context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
        self.page = self.context.new_page()
        self.page.set_default_timeout(120_000)
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(url, wait_until="load")
        self.page.wait_for_selector("#qa-question textarea")
        self.page.wait_for_selector("#qa-start .qa-start")

    def ask(self, question: str, kind: str = "") -> None:
        """Ask and wait until the answer to *this* question is in the transcript."""
        page = self.page
        before = page.locator(".qa-transcript .qa-turn").count()
        page.fill("#qa-question textarea", question)
        page.click("#qa-ask")
        page.wait_for_function(
            "n => document.querySelectorAll('.qa-transcript .qa-turn .qa-a:not(.qa-pending)').length > n",
            arg=before, timeout=180_000)

    def last_answer(self):
        return self.page.locator(".qa-transcript .qa-turn .qa-a").last

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def ui(browser, app_url):
    page = Page(browser, app_url)
    yield page
    page.context.close()
