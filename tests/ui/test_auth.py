"""QA_AUTH: with a login set, nothing of the workspace is reachable without it (HTTP, API, browser)."""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.ui.conftest import running_app

pytestmark = pytest.mark.slow

USER, PASSWORD = "ana", "s3cret:with-colon"
QUESTION = "Who offered sanctuary to Ahmad Massoud?"


@pytest.fixture(scope="module")
def auth_url(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("auth-app"), QA_AUTH=f"{USER}:{PASSWORD}") as url:
        yield url


def _status(request: urllib.request.Request | str) -> int:
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_http_and_api_need_the_login(auth_url):
    from gradio_client import Client

    assert _status(auth_url + "config") == 401
    call = urllib.request.Request(auth_url + "gradio_api/call/respond", method="POST",
                                  data=json.dumps({"data": [QUESTION, "extractive", 8, [], [], "", ""]}).encode(),
                                  headers={"Content-Type": "application/json"})
    assert _status(call) == 401
    wrong = urllib.parse.urlencode({"username": USER, "password": "guess"}).encode()
    assert _status(urllib.request.Request(auth_url + "login", data=wrong)) == 400

    with pytest.raises(Exception):
        Client(auth_url, verbose=False, download_files=False)
    client = Client(auth_url, auth=(USER, PASSWORD), verbose=False, download_files=False)
    result = client.predict(QUESTION, "extractive", 8, [], [], "", "", api_name="/respond")
    answer = next(x for x in result if isinstance(x, dict) and "citations" in x)
    assert answer["supported"] and "Rahmon has offered sanctuary to Ahmad Massoud" in answer["answer"]


def test_browser_shows_a_login_form_first(auth_url, browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(120_000)
    try:
        page.goto(auth_url, wait_until="load")
        password = page.locator("input[type=password]")
        password.wait_for()
        assert page.locator("#qa-question").count() == 0  # no workspace behind the form
        username = page.locator("input:not([type=password])").first
        username.fill(USER)
        password.fill("guess")
        password.press("Enter")
        page.get_by_text("Incorrect", exact=False).first.wait_for()
        assert page.locator("#qa-question").count() == 0
        username.fill(USER)
        password.fill(PASSWORD)
        password.press("Enter")
        page.wait_for_selector("#qa-question textarea")
        page.fill("#qa-question textarea", QUESTION)
        page.click("#qa-ask")
        page.wait_for_function("() => document.querySelector('.qa-transcript .qa-a:not(.qa-pending)')")
        assert "Rahmon has offered sanctuary to Ahmad Massoud" in page.locator(".qa-transcript .qa-a").last.inner_text()
    finally:
        context.close()
