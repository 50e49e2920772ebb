"""Uploads and exports belong to the browser that made them (real app, two browser contexts =
two browsers with their own cookies); an uploaded document's file is shared through its library
entry only while the document exists."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.ui.conftest import Page

pytestmark = pytest.mark.slow

SANCTUARY_Q = "Who offered sanctuary to Ahmad Massoud?"
SANCTUARY = "Rahmon has offered sanctuary to Ahmad Massoud"
NOTE = """---
title: Ledger of the Vessmoor toll bridge
---
The Vessmoor toll bridge charged nine pennies per cart in 2030.
"""


def _status(url: str) -> int:
    """A request with no cookie at all."""
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_exports_are_readable_only_by_the_browser_that_asked(browser, app_url):
    a, b = Page(browser, app_url), Page(browser, app_url)
    try:
        a.ask(SANCTUARY_Q)
        urls = {key: app_url + a.page.locator(f"#qa-export-{key}").get_attribute("href")
                for key in ("answer-md", "conversation-json")}
        md = a.context.request.get(urls["answer-md"])
        assert md.status == 200 and SANCTUARY in md.text()
        assert md.headers["content-disposition"].startswith("attachment")
        data = json.loads(a.context.request.get(urls["conversation-json"]).text())
        assert any(SANCTUARY in c["quote"] for t in data["turns"] for c in t["citations"])
        for url in urls.values():
            assert b.context.request.get(url).status == 404  # another browser
            assert _status(url) == 404  # no cookie
        assert b.page.locator("#qa-exports a").count() == 0  # and nothing of A's is on B's page
    finally:
        a.context.close()
        b.context.close()


def test_gradio_upload_urls_are_readable_only_by_the_uploader(browser, app_url):
    a, b = Page(browser, app_url), Page(browser, app_url)
    try:
        sent = a.context.request.post(app_url + "gradio_api/upload", multipart={
            "files": {"name": "private.md", "mimeType": "text/markdown", "buffer": b"# Private draft"}})
        assert sent.ok, sent.text()
        (path,) = sent.json()
        for route in ("gradio_api/file=", "gradio_api/file/"):
            own = a.context.request.get(app_url + route + path)
            assert own.status == 200 and own.text() == "# Private draft"
            assert b.context.request.get(app_url + route + path).status == 404
            assert _status(app_url + route + path) == 404
    finally:
        a.context.close()
        b.context.close()


def test_an_upload_is_shared_through_its_library_entry_until_deleted(browser, app_url, tmp_path):
    a, b = Page(browser, app_url), Page(browser, app_url)
    try:
        file = tmp_path / "vessmoor.md"
        file.write_text(NOTE, encoding="utf-8")
        page = a.page
        page.get_by_role("tab", name="Library").click()
        with page.expect_response(lambda r: "/gradio_api/upload?" in r.url or r.url.endswith("/gradio_api/upload")) as sent:
            page.locator("#qa-upload input[type=file]").set_input_files(str(file))
        (temp_path,) = sent.value.json()
        page.locator("#qa-upload-result .qa-upload-result").wait_for(timeout=300_000)
        assert "✓ vessmoor.md" in page.inner_text("#qa-upload-result")
        # Gradio's copy is gone once the upload is stored (and was never B's to read)
        assert a.context.request.get(app_url + "gradio_api/file=" + temp_path).status == 404

        row = page.locator("#qa-library tr", has_text="Ledger of the Vessmoor toll bridge")
        href = row.locator("a.qa-file-link").get_attribute("href")
        got = b.context.request.get(app_url + href)  # any user of the app, through the library
        assert got.status == 200 and got.text() == NOTE
        assert got.headers["content-disposition"].startswith("attachment")
        assert got.headers["content-type"] == "application/octet-stream"
        a.shot("library-download-link")

        page.click("#qa-delete-choice input")
        page.get_by_role("option", name="Ledger of the Vessmoor toll bridge").click()
        page.click("#qa-delete")
        page.click("#qa-delete-confirm")
        page.locator("#qa-delete-result", has_text="Deleted “Ledger of the Vessmoor toll bridge”").wait_for()
        assert b.context.request.get(app_url + href).status == 404
        assert a.context.request.get(app_url + href).status == 404
    finally:
        a.context.close()
        b.context.close()


def test_a_failed_upload_leaves_no_file_behind(browser, app_url, app_root, tmp_path):
    ui = Page(browser, app_url)
    try:
        empty = tmp_path / "empty.md"
        empty.write_text("   \n", encoding="utf-8")
        page = ui.page
        page.get_by_role("tab", name="Library").click()
        with page.expect_response(lambda r: "/gradio_api/upload?" in r.url or r.url.endswith("/gradio_api/upload")) as sent:
            page.locator("#qa-upload input[type=file]").set_input_files(str(empty))
        (temp_path,) = sent.value.json()
        page.locator("#qa-upload-result .qa-upload-result").wait_for(timeout=300_000)
        outcome = page.inner_text("#qa-upload-result")
        assert "0 of 1 file(s) ingested" in outcome and "✗ empty.md" in outcome
        assert ui.context.request.get(app_url + "gradio_api/file=" + temp_path).status == 404
        uploads = app_root / "uploads"
        stored = [p for p in uploads.rglob("*") if p.is_file() and p.name != ".manifest.json"] if uploads.exists() else []
        assert not [p for p in stored if p.name == "empty.md"], stored
    finally:
        ui.context.close()
