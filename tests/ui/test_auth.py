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
        assert page.get_by_text("After 5 failed logins", exact=False).count() == 1  # the throttling rule
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


def _login(context, url: str, password: str = PASSWORD):
    return context.request.post(url + "login", form={"username": USER, "password": password})


def test_same_user_in_another_browser_cannot_read_the_exports(auth_url, browser):
    a, b = browser.new_context(), browser.new_context()
    try:
        assert _login(a, auth_url).ok and _login(b, auth_url).ok  # one user, two browsers
        page = a.new_page()
        page.set_default_timeout(120_000)
        page.goto(auth_url, wait_until="load")
        page.fill("#qa-question textarea", QUESTION)
        page.click("#qa-ask")
        href = page.locator("#qa-export-answer-md").get_attribute("href")
        assert a.request.get(auth_url + href).status == 200
        assert b.request.get(auth_url + href).status == 404
        assert _status(auth_url + href) == 401  # not logged in at all
        sent = a.request.post(auth_url + "gradio_api/upload", multipart={
            "files": {"name": "draft.md", "mimeType": "text/markdown", "buffer": b"# Draft"}})
        (path,) = sent.json()
        assert a.request.get(auth_url + "gradio_api/file=" + path).status == 200
        assert b.request.get(auth_url + "gradio_api/file=" + path).status == 404
    finally:
        a.close()
        b.close()


def test_failed_logins_are_slowed_down(auth_url):
    """After 5 failures the next attempt waits 1 s, then 2 s ...; a success starts over."""
    import time

    opener = urllib.request.build_opener()

    def attempt(password: str):
        data = urllib.parse.urlencode({"username": USER, "password": password}).encode()
        try:
            with opener.open(urllib.request.Request(auth_url + "login", data=data), timeout=30) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    statuses = [attempt("guess")[0] for _ in range(5)]
    assert statuses == [400] * 5
    status, headers, body = attempt(PASSWORD)  # even the right password waits its turn
    assert status == 429 and headers["Retry-After"] == "1"
    assert "Too many failed logins: try again in 1 s" in json.loads(body)["detail"]
    time.sleep(1.2)
    assert attempt("guess")[0] == 400
    status, headers, _ = attempt("guess")
    assert status == 429 and headers["Retry-After"] == "2"  # growing
    time.sleep(2.2)
    assert attempt(PASSWORD)[0] == 200
    assert attempt("guess")[0] == 400 and attempt(PASSWORD)[0] == 200  # counts started over
