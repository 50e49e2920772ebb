"""Who may read which file, and login throttling: an ASGI middleware and two routes for the app.

Gradio serves any file in its temp folder to whoever has the URL (with ``QA_AUTH``: to any
logged-in user). The workspace narrows that:

- Every browser gets a random session cookie (``qa_session``: HttpOnly, SameSite=Lax). The
  workspace ``Session`` of a page is bound to it when the page loads.
- Gradio's file routes (``/gradio_api/file=…``, ``/gradio_api/file/…``) serve a file inside
  Gradio's temp or cache folders, or the app's upload or export folders, only to the browser
  that uploaded it; anything else there is a 404. (The app serves no other files through them.)
- Exports are written to ``<export dir>/<hash of the cookie>/<session id>/`` and served only by
  ``/qa/exports/<session id>/<file>``, which looks in the folder of the *requesting* cookie: any
  other browser gets a 404.
- An uploaded document's original file is served by ``/qa/library/<doc id>`` to any user of the
  app while the document is in the index (its text is readable through answers anyway); it is a
  404 once the document is deleted.
- ``POST /login`` is throttled per user name and client address (``workspace/throttle.py``).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import secrets
import threading
from pathlib import Path
from typing import Callable, Iterable, Sequence

from starlette.requests import Request, cookie_parser
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from workspace.throttle import LoginThrottle

log = logging.getLogger(__name__)


COOKIE = "qa_session"
_SID = re.compile(r"[A-Za-z0-9_-]{32,64}")
_FILE_ROUTE = re.compile(r"^/gradio_api/file(?:=|/)(.*)$", re.S)
_SESSION_ID = re.compile(r"[0-9a-f]{16}")
_EXPORT_NAME = re.compile(r"qa-(?:answer|conversation|brief)-[0-9]{8}-[0-9]{6}-[0-9]+\.(md|json)")
MAX_LOGIN_BODY = 64 * 1024


def owner_key(sid: str) -> str:
    """The folder name for a session cookie (the cookie itself never appears on disk)."""
    return hashlib.sha256(("qa-owner:" + sid).encode()).hexdigest()[:32]


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


class FileAccess:
    """Ownership of Gradio's uploaded files, and the export folders, per session cookie."""

    def __init__(self, export_dir: Path, private_roots: Iterable[Path], scratch_roots: Iterable[Path] = (),
                 library_file: Callable[[str], tuple[Path, str] | None] | None = None, max_entries: int = 20_000) -> None:
        """``private_roots``: folders whose files only their uploader may fetch through Gradio;
        ``scratch_roots``: where Gradio puts uploads (``release`` deletes files only there)."""
        self.export_dir = Path(export_dir).resolve()
        scratch = [Path(r).resolve() for r in scratch_roots]
        self.private_roots = [Path(os.path.abspath(r)) for r in [*private_roots, *scratch]] + [self.export_dir]
        self.private_roots += [r.resolve() for r in self.private_roots]
        self.scratch_roots = scratch
        self.library_file = library_file
        self.max_entries = max_entries
        self._owners: dict[str, set[str]] = {}  # resolved path -> session cookies that uploaded it
        self._lock = threading.Lock()

    @staticmethod
    def new_sid() -> str:
        return secrets.token_urlsafe(32)

    @staticmethod
    def valid_sid(value: str | None) -> bool:
        return bool(value) and _SID.fullmatch(value) is not None

    # ------------------------------------------------------------ Gradio's uploads
    def is_private(self, raw_path: str) -> bool:
        """Would Gradio's file route serve ``raw_path`` from a folder that holds users' files?
        Checked on both the plain absolute path (what Gradio opens) and the resolved one."""
        forms = {Path(os.path.abspath(raw_path))}
        try:
            forms.add(Path(raw_path).resolve())
        except (OSError, RuntimeError, ValueError):
            return True
        return any(_inside(p, root) for p in forms for root in self.private_roots)

    def record_upload(self, sid: str, paths: Iterable[str]) -> None:
        with self._lock:
            if len(self._owners) >= self.max_entries:
                for key in [k for k in self._owners if not os.path.exists(k)]:
                    del self._owners[key]
            for p in paths:
                self._owners.setdefault(str(Path(p).resolve()), set()).add(sid)

    def may_read(self, sid: str | None, raw_path: str) -> bool:
        if not sid:
            return False
        try:
            key = str(Path(raw_path).resolve())
        except (OSError, RuntimeError, ValueError):
            return False
        with self._lock:
            return sid in self._owners.get(key, ())

    def release(self, sid: str | None, paths: Iterable[str | Path]) -> None:
        """The handler is done with these uploaded files: forget ``sid``'s claim, and delete a
        file (and its folder, if empty) once no other browser that uploaded the same bytes
        still needs it."""
        for p in paths:
            path = Path(p).resolve()
            with self._lock:
                owners = self._owners.get(str(path), set())
                owners.discard(sid or "")
                if owners:
                    continue
                self._owners.pop(str(path), None)
            if any(_inside(path, root) for root in self.scratch_roots) and path.is_file():
                path.unlink(missing_ok=True)
                try:
                    path.parent.rmdir()
                except OSError:
                    pass

    # ------------------------------------------------------------------- exports
    def export_folder(self, sid: str | None, session_id: str) -> Path:
        """Where a session's exports go; without a cookie (an API client), a folder nobody can
        name from a request."""
        owner = owner_key(sid) if sid else "no-cookie-" + secrets.token_hex(8)
        return self.export_dir / owner / session_id

    def export_file(self, sid: str | None, session_id: str, name: str) -> Path | None:
        if not sid or not _SESSION_ID.fullmatch(session_id) or not _EXPORT_NAME.fullmatch(name):
            return None
        path = self.export_dir / owner_key(sid) / session_id / name
        return path if path.is_file() else None


def export_url(path: Path) -> str:
    """The (page-relative) link to an export file written under ``export_folder``."""
    return f"qa/exports/{path.parent.name}/{path.name}"


def library_url(doc_id: str) -> str:
    return f"qa/library/{doc_id}"


def request_sid(cookies) -> str | None:
    """The session cookie from a request's (or ``gr.Request``'s) cookies, if it is well formed."""
    try:
        value = dict(cookies or {}).get(COOKIE)
    except (TypeError, ValueError):
        return None
    return value if FileAccess.valid_sid(value) else None


# ---------------------------------------------------------------------------------- routes
def _logged_in(request: Request) -> bool:
    """Gradio's own login check (``QA_AUTH``), for routes outside Gradio's router."""
    app = request.app
    if getattr(app, "auth", None) is None and getattr(app, "auth_dependency", None) is None:
        return True
    cookie_id = getattr(app, "cookie_id", "")
    token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(f"access-token-unsecure-{cookie_id}")
    return bool(token) and getattr(app, "tokens", {}).get(token) is not None


_PRIVATE_HEADERS = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}


def routes(access: FileAccess) -> list[Route]:
    def export(request: Request) -> Response:
        if not _logged_in(request):
            return JSONResponse({"detail": "Not authenticated"}, status_code=401)
        path = access.export_file(request_sid(request.cookies), request.path_params["session"],
                                  request.path_params["name"])
        if path is None:
            return PlainTextResponse("Not found.", status_code=404)
        media = "application/json" if path.suffix == ".json" else "text/markdown; charset=utf-8"
        return FileResponse(path, media_type=media, filename=path.name, content_disposition_type="attachment",
                            headers=_PRIVATE_HEADERS)

    def library(request: Request) -> Response:
        if not _logged_in(request):
            return JSONResponse({"detail": "Not authenticated"}, status_code=401)
        found = access.library_file(request.path_params["doc_id"]) if access.library_file else None
        if found is None:
            return PlainTextResponse("Not found.", status_code=404)
        path, name = found
        # never inline: an uploaded .html must not run as a page of this site
        return FileResponse(path, media_type="application/octet-stream", filename=name,
                            content_disposition_type="attachment", headers=_PRIVATE_HEADERS)

    return [Route("/qa/exports/{session}/{name}", export, methods=["GET", "HEAD"]),
            Route("/qa/library/{doc_id}", library, methods=["GET", "HEAD"])]


# ------------------------------------------------------------------------------ middleware
class AccessMiddleware:
    """Pure ASGI (streaming and server-sent events pass through untouched)."""

    def __init__(self, app, access: FileAccess, throttle: LoginThrottle | None = None, secure: bool = False) -> None:
        self.app = app
        self.access = access
        self.throttle = throttle
        self.secure = secure

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        sid = _cookie(scope.get("headers", ()), COOKIE)
        new_sid = None
        if not FileAccess.valid_sid(sid):
            sid = new_sid = FileAccess.new_sid()
            # this request's handlers (gr.Request) see the cookie the browser will send from now on
            scope = dict(scope, headers=[*(h for h in scope.get("headers", ()) if h[0] != b"cookie"),
                                         (b"cookie", _with_cookie(scope, COOKIE, sid))])
        if new_sid:
            send = self._setting_cookie(send, new_sid)
        path = scope.get("path", "")
        method = scope.get("method", "GET")

        m = _FILE_ROUTE.match(path)
        if m and self.access.is_private(m.group(1)) and not self.access.may_read(sid, m.group(1)):
            return await PlainTextResponse("Not found.", status_code=404)(scope, receive, send)
        if method == "POST" and path.rstrip("/") == "/gradio_api/upload":
            return await self.app(scope, receive, self._recording_uploads(send, sid))
        if method == "POST" and path in ("/login", "/login/") and self.throttle is not None:
            return await self._login(scope, receive, send)
        return await self.app(scope, receive, send)

    def _setting_cookie(self, send, sid: str):
        value = f"{COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax" + ("; Secure" if self.secure else "")

        async def wrapped(message):
            if message["type"] == "http.response.start":
                message = dict(message, headers=[*message.get("headers", []), (b"set-cookie", value.encode())])
            await send(message)
        return wrapped

    def _recording_uploads(self, send, sid: str):
        """Remember which browser uploaded the files Gradio stored (before the client learns the paths)."""
        state = {"status": 0, "body": b""}

        async def wrapped(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
            elif message["type"] == "http.response.body" and state["status"] == 200:
                state["body"] += message.get("body", b"")
                if not message.get("more_body"):
                    try:
                        paths = json.loads(state["body"] or b"[]")
                    except ValueError:
                        paths = []
                    if isinstance(paths, list):
                        self.access.record_upload(sid, [p for p in paths if isinstance(p, str)])
            await send(message)
        return wrapped

    async def _login(self, scope, receive, send):
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_LOGIN_BODY:
                return await PlainTextResponse("Request too large.", status_code=413)(scope, receive, send)

        def replay():
            sent = False

            async def inner():
                nonlocal sent
                if sent:
                    return await receive()
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return inner

        try:
            form = await Request(scope, replay()).form()
            user = str(form.get("username") or "")
        except Exception:  # malformed form: Gradio's own handler answers it
            log.debug("Unreadable login form", exc_info=True)
            user = ""
        client = scope.get("client")
        keys = LoginThrottle.keys(user, client[0] if client else None)
        wait = self.throttle.wait(keys)
        if wait > 0:
            seconds = max(1, math.ceil(wait))  # never "try again in 0 s"
            return await JSONResponse(
                {"detail": f"Too many failed logins: try again in {seconds} s."}, status_code=429,
                headers={"Retry-After": str(seconds)})(scope, receive, send)

        async def observed(message):
            if message["type"] == "http.response.start":
                if message["status"] == 200:
                    self.throttle.succeeded(keys)
                elif message["status"] in (400, 401):
                    self.throttle.failed(keys)
            await send(message)
        return await self.app(scope, replay(), observed)


def _cookie(headers: Sequence[tuple[bytes, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key == b"cookie":
            found = cookie_parser(value.decode("latin-1")).get(name)
            if found:
                return found
    return None


def _with_cookie(scope, name: str, value: str) -> bytes:
    others = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"cookie"]
    return "; ".join([*others, f"{name}={value}"]).encode("latin-1")
