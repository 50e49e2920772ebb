"""The onboarding brief in the workspace: built on a background thread, shared by every session.

Building a brief takes seconds (the corpus) to minutes (big indexes), so no request waits for it:
``Briefs.ensure()`` starts a build when the index state has no brief yet (one build at a time,
whatever the number of sessions asking) and returns at once with a ``BriefStatus`` the page polls.
The brief is cached per index state (``chatbot/brief/cache.py``): after a restart, or when the
index comes back to a state already seen, "building" is a read of the cache.

Each ``[n]`` of the page carries a key ``b:<n>:<n1>,<n2>…`` — the quote and the quotes of its line
(a matrix cell's, a conflict's versions): a click shows the line's quotes and opens ``n`` in the
source viewer. Keys are resolved against the brief the page shows (``Session.brief``), so a
rebuild never makes a click open another quote.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping

from chatbot.brief.render import brief_markdown
from chatbot.provenance import QuoteRecord
from chatbot.types import Citation
from ingest.types import UserError
from workspace.exports import md_text

log = logging.getLogger(__name__)

IDLE, BUILDING, READY, FAILED = "idle", "building", "ready", "failed"
_KEY = re.compile(r"b:(\d+)(?::(\d+(?:,\d+)*))?")


@dataclass(frozen=True)
class BriefStatus:
    """``brief``: the latest brief built (while ``state`` is BUILDING, the previous index state's,
    or None); ``current``: it is the brief of the index as it is now."""

    state: str
    brief: dict[str, Any] | None
    current: bool
    step: str = ""  # while building: the latest progress message; when failed: why
    elapsed: float = 0.0  # seconds since the build started


class Briefs:
    """``build(progress)`` -> the brief of the index as it is (``QAService.brief``);
    ``index_state()`` -> a token that changes whenever the indexed documents change."""

    def __init__(self, build: Callable[[Callable[[str], None]], dict[str, Any]],
                 index_state: Callable[[], str | None], clock: Callable[[], float] = time.monotonic) -> None:
        self._build = build
        self._index_state = index_state
        self.clock = clock
        self._lock = threading.Lock()
        self._brief: dict[str, Any] | None = None
        self._built_for: str | None = None  # the index state the brief was asked for
        self._thread: threading.Thread | None = None
        self._started = 0.0
        self._step = ""
        self._error: tuple[str | None, str] | None = None  # (index state, message) of the last failed build

    def ensure(self) -> BriefStatus:
        """The brief of the index as it is, or a build of it started (unless one is running, or
        the last one failed for this same state: ``retry`` does that)."""
        return self._status(start=True, retry=False)

    def retry(self) -> BriefStatus:
        return self._status(start=True, retry=True)

    def status(self) -> BriefStatus:
        """Where things stand, starting nothing (the page's timer)."""
        return self._status(start=False, retry=False)

    def wait(self, timeout: float | None = None) -> BriefStatus:
        """Block until the running build (if any) ends; for scripts and tests."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.status()

    def _status(self, start: bool, retry: bool) -> BriefStatus:
        state = self._index_state()
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
            current = self._brief is not None and self._built_for == state
            failed = self._error is not None and self._error[0] == state
            if start and not running and not current and (retry or not failed):
                self._start(state)
                running, failed = True, False
            if running:
                return BriefStatus(BUILDING, self._brief, False, self._step, self.clock() - self._started)
            if failed:
                assert self._error is not None
                return BriefStatus(FAILED, self._brief, False, self._error[1])
            return BriefStatus(READY if self._brief is not None else IDLE, self._brief, current)

    def _start(self, state: str | None) -> None:
        self._started, self._step, self._error = self.clock(), "starting…", None
        self._thread = threading.Thread(target=self._run, args=(state,), name="brief", daemon=True)
        self._thread.start()

    def _run(self, state: str | None) -> None:
        try:
            brief = self._build(self._progress)
        except UserError as exc:  # no documents, a bad themes file, the NLP pipeline missing
            log.warning("The brief could not be built: %s", exc)
            with self._lock:
                self._error = (state, str(exc))
            return
        except Exception as exc:  # a bug: logged in full, shown in one line
            log.exception("Building the brief failed")
            with self._lock:
                self._error = (state, f"failed with an unexpected error ({type(exc).__name__}: {exc}); "
                                      "details are in the server log.")
            return
        with self._lock:
            self._brief, self._built_for = brief, state

    def _progress(self, message: str) -> None:
        self._step = message


def parse_key(key: str | None) -> tuple[int, list[int]] | None:
    """``"b:17:23,17"`` -> (17, [23, 17]): the clicked quote and its line's quotes."""
    m = _KEY.fullmatch((key or "").strip())
    if not m:
        return None
    n = int(m.group(1))
    group = [int(x) for x in m.group(2).split(",")] if m.group(2) else [n]
    return n, group if n in group else [n, *group]


def brief_key(n: int, line: list[int]) -> str:
    return f"b:{n}:{','.join(str(x) for x in dict.fromkeys(line))}"


def brief_citations(brief: Mapping[str, Any], numbers: list[int]) -> list[Citation]:
    """The brief's quotes ``numbers`` as citations (those it does not have are left out)."""
    by_n = {q["n"]: q for q in brief.get("quotes", ())}
    return [QuoteRecord.from_json(by_n[n]).citation() for n in numbers if n in by_n]


def export_folder_id(session_id: str) -> str:
    """The export folder of a session's brief downloads: not the session's own folder, whose
    answer exports are pruned to the latest few sets (``Exports.write_exports``)."""
    return hashlib.sha256(f"brief:{session_id}".encode()).hexdigest()[:16]


def write_brief_exports(brief: Mapping[str, Any], folder: Path) -> dict[str, Path]:
    """``brief.md`` and ``brief.json`` in ``folder`` (earlier ones removed). The JSON is the brief
    as built — quote records with hashes and the index provenance, so ``python -m chatbot verify``
    re-checks it; the Markdown is made inert (document text cannot become HTML or links)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("qa-brief-*.*"):
        old.unlink(missing_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    md = folder / f"qa-brief-{stamp}-1.md"
    md.write_text(brief_markdown(_inert(brief)), encoding="utf-8")
    js = folder / f"qa-brief-{stamp}-1.json"
    js.write_text(json.dumps(brief, ensure_ascii=False, indent=1), encoding="utf-8")
    return {"brief.md": md, "brief.json": js}


def _inert(value: Any) -> Any:
    """Every string of the brief (keys too: alias names) through ``md_text``."""
    if isinstance(value, str):
        return md_text(value)
    if isinstance(value, Mapping):
        return {_inert(k): _inert(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_inert(v) for v in value]
    return value
