"""Per-browser file access, login throttling and question cleaning, without Gradio.

The middleware runs in front of a small Starlette app that mimics Gradio's upload and file
routes (the real app is tested in tests/ui/test_access.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from chatbot.safe_text import clean_question
from workspace.access import COOKIE, AccessMiddleware, FileAccess, export_url, owner_key, request_sid, routes
from workspace.throttle import LoginThrottle

PASSWORD = "right"


@pytest.fixture
def folders(tmp_path):
    gradio_tmp, exports, uploads = tmp_path / "gradio", tmp_path / "exports", tmp_path / "uploads"
    for f in (gradio_tmp, exports, uploads):
        f.mkdir()
    (tmp_path / "public.txt").write_text("public")
    (uploads / "doc.md").write_text("# An uploaded document")
    return tmp_path


def make_app(root: Path, throttle: LoginThrottle | None = None):
    """Gradio's routes in miniature: /gradio_api/upload stores files, /gradio_api/file= serves any path."""
    access = FileAccess(root / "exports", [root / "uploads"], scratch_roots=[root / "gradio"],
                        library_file=lambda doc_id: (root / "uploads" / "doc.md", "doc.md") if doc_id == "abcdef12" else None)
    seen = []

    async def upload(request: Request):
        form = await request.form()
        out = []
        for f in form.getlist("files"):
            dest = root / "gradio" / f"h{len(seen)}" / f.filename
            dest.parent.mkdir()
            dest.write_bytes(await f.read())
            seen.append(dest)
            out.append(str(dest))
        return JSONResponse(out)

    def file(request: Request):
        return FileResponse(request.path_params["path"])

    async def login(request: Request):
        form = await request.form()
        if form.get("password") == PASSWORD:
            return JSONResponse({"success": True})
        return JSONResponse({"detail": "Incorrect credentials."}, status_code=400)

    def whoami(request: Request):
        return PlainTextResponse(request.cookies.get(COOKIE, ""))

    app = Starlette(routes=[*routes(access), Route("/gradio_api/upload", upload, methods=["POST"]),
                            Route("/gradio_api/file={path:path}", file), Route("/login", login, methods=["POST"]),
                            Route("/whoami", whoami)],
                    middleware=[Middleware(AccessMiddleware, access=access, throttle=throttle)])
    return app, access


def client(app) -> TestClient:
    return TestClient(app, base_url="http://127.0.0.1")


def test_every_browser_gets_a_session_cookie_its_handlers_see(folders):
    app, _ = make_app(folders)
    a = client(app)
    first = a.get("/whoami")
    cookie = first.cookies.get(COOKIE)
    assert FileAccess.valid_sid(cookie) and first.text == cookie  # the first request already sees it
    assert "httponly" in first.headers["set-cookie"].lower() and "samesite=lax" in first.headers["set-cookie"].lower()
    again = a.get("/whoami")
    assert again.text == cookie and "set-cookie" not in again.headers  # kept, not reissued
    assert client(app).get("/whoami").text != cookie  # another browser, another cookie
    forged = client(app)
    forged.cookies.set(COOKIE, "short")
    assert forged.get("/whoami").text != "short"  # a malformed cookie is replaced


def test_an_upload_is_readable_only_by_the_browser_that_sent_it(folders):
    app, access = make_app(folders)
    a, b, anonymous = client(app), client(app), TestClient(app, base_url="http://127.0.0.1", cookies=None)
    a.get("/whoami"), b.get("/whoami")
    (path,) = a.post("/gradio_api/upload", files={"files": ("secret.md", b"# A secret")}).json()
    assert a.get(f"/gradio_api/file={path}").text == "# A secret"
    assert b.get(f"/gradio_api/file={path}").status_code == 404
    assert b.get(f"/gradio_api/file/{path}").status_code == 404
    anonymous.cookies.clear()
    assert anonymous.get(f"/gradio_api/file={path}").status_code == 404
    # other spellings of the same file are the same file
    twisted = str(Path(path).parent / ".." / Path(path).parent.name / "secret.md")
    assert b.get(f"/gradio_api/file={twisted}").status_code == 404
    assert b.get(f"/gradio_api/file={folders / 'uploads' / 'doc.md'}").status_code == 404  # our folders too
    assert b.get(f"/gradio_api/file={folders / 'public.txt'}").status_code == 200  # elsewhere: Gradio's rules

    access.release(a.cookies.get(COOKIE), [path])  # the handler is done with it: gone
    assert not Path(path).exists() and not Path(path).parent.exists()
    assert a.get(f"/gradio_api/file={path}").status_code == 404


def test_the_same_bytes_uploaded_by_two_browsers_stay_until_both_are_done(folders):
    app, access = make_app(folders)
    path = folders / "gradio" / "same" / "x.md"
    path.parent.mkdir()
    path.write_text("same")
    access.record_upload("a" * 43, [str(path)])
    access.record_upload("b" * 43, [str(path)])
    access.release("a" * 43, [path])
    assert path.exists() and access.may_read("b" * 43, str(path)) and not access.may_read("a" * 43, str(path))
    access.release("b" * 43, [path])
    assert not path.exists()


def test_exports_are_served_only_to_their_browser(folders):
    app, access = make_app(folders)
    a, b = client(app), client(app)
    a.get("/whoami"), b.get("/whoami")
    sid = a.cookies.get(COOKIE)
    folder = access.export_folder(sid, "0123456789abcdef")
    assert folder.parent.name == owner_key(sid) and sid not in str(folder)
    folder.mkdir(parents=True)
    export = folder / "qa-answer-20261127-101500-3.md"
    export.write_text("# Answer")
    url = "/" + export_url(export)
    got = a.get(url)
    assert got.status_code == 200 and got.text == "# Answer"
    assert got.headers["content-disposition"].startswith("attachment")
    assert "no-store" in got.headers["cache-control"] and got.headers["x-content-type-options"] == "nosniff"
    assert b.get(url).status_code == 404
    assert a.get("/qa/exports/0123456789abcdef/..%2F..%2Fpublic.txt").status_code == 404
    assert a.get("/qa/exports/0123456789abcdef/qa-answer-1.md").status_code == 404
    assert FileAccess(folders / "exports", []).export_folder(None, "0123456789abcdef") != \
        FileAccess(folders / "exports", []).export_folder(None, "0123456789abcdef")  # no cookie: unreachable


def test_library_files_are_served_as_attachments_while_the_document_exists(folders):
    app, _ = make_app(folders)
    got = client(app).get("/qa/library/abcdef12")
    assert got.status_code == 200 and got.text == "# An uploaded document"
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"].startswith("attachment")
    assert client(app).get("/qa/library/ffffffff").status_code == 404


def test_request_sid_reads_gradio_style_cookies():
    sid = FileAccess.new_sid()
    assert request_sid({COOKIE: sid}) == sid
    assert request_sid({COOKIE: "x"}) is None and request_sid(None) is None and request_sid({}) is None


# ---------------------------------------------------------------------------------- throttle
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_throttle_locks_after_free_failures_with_growing_waits():
    clock = Clock()
    t = LoginThrottle(free=3, base=1.0, cap=8.0, forget_after=600, clock=clock)
    keys = t.keys("Ana", "10.0.0.1")
    for _ in range(2):
        assert t.wait(keys) == 0
        t.failed(keys)
    assert t.wait(keys) == 0
    t.failed(keys)  # the third failure: locked 1 s
    assert t.wait(keys) == 1.0
    assert t.wait(t.keys("ana", "10.0.0.2")) == 1.0  # the user name is locked from any address
    assert t.wait(t.keys("bob", "10.0.0.1")) == 1.0  # and the address for any user name
    assert t.wait(t.keys("bob", "10.0.0.2")) == 0
    waits = []
    for _ in range(5):
        clock.now += t.wait(keys)
        assert t.wait(keys) == 0  # allowed, and the slot is taken: a parallel guess waits
        assert t.wait(keys) > 0
        t.failed(keys)
        waits.append(t.wait(keys))
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0]  # doubling, capped
    clock.now += 8
    assert t.wait(keys) == 0
    t.succeeded(keys)
    assert t.wait(keys) == 0 and t.wait(keys) == 0  # a success starts over
    t.failed(keys)
    clock.now += 601
    t.failed(keys), t.failed(keys)
    assert t.wait(keys) == 0  # old failures are forgotten


def test_throttle_validates_its_settings():
    with pytest.raises(ValueError, match="free"):
        LoginThrottle(free=0)
    with pytest.raises(ValueError, match="base"):
        LoginThrottle(base=10, cap=1)


def test_login_route_is_throttled_with_a_clear_answer(folders):
    clock = Clock()
    app, _ = make_app(folders, LoginThrottle(free=2, base=5.0, clock=clock))
    c = client(app)
    assert c.post("/login", data={"username": "ana", "password": "no"}).status_code == 400
    assert c.post("/login", files={"username": (None, "ana"), "password": (None, "no")}).status_code == 400  # multipart
    refused = c.post("/login", data={"username": "ana", "password": PASSWORD})
    assert refused.status_code == 429 and refused.headers["retry-after"] == "5"
    assert "try again in 5 s" in refused.json()["detail"]
    clock.now += 5
    assert c.post("/login", data={"username": "ana", "password": PASSWORD}).status_code == 200
    assert c.post("/login", data={"username": "ana", "password": "no"}).status_code == 400  # counts start over
    assert c.post("/login", content=b"x" * 70_000,
                  headers={"content-type": "application/x-www-form-urlencoded"}).status_code == 413


# ---------------------------------------------------------------------------- question text
@pytest.mark.parametrize("raw, clean", [
    ("Who offered\u202e sanctuary?", "Who offered sanctuary?"),  # right-to-left override
    ("Who\x00 \x1b[31moffered\x1b[0m sanctuary?", "Who offered sanctuary?"),  # NUL, ANSI colour
    ("a\x1b]0;pwned\x07b", "ab"),  # terminal title sequence
    ("two\nlines\tand\u2028more", "two lines and more"),
    ("\u2066isolate\u2069 \u200eLRM \ufeffBOM \U000e0041tag", "isolate LRM BOM tag"),
    ("\x85next \x9b31mline", "next line"),  # C1 controls
    ("zwnj in \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645 and 👩\u200d💻 stay", None),
    ("  plain question?  ", "plain question?"),
    ("\x00\x1b", ""),
])
def test_questions_lose_control_characters(raw, clean):
    assert clean_question(raw) == (raw.strip() if clean is None else clean)
    assert clean_question(None) == ""
