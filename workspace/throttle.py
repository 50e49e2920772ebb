"""Login throttling: after a few failed logins, further attempts wait a growing interval.

Failures are counted per user name and per client address. The first ``free`` failures of a key
cost nothing; after that the key is locked for ``base`` seconds, doubling with every further
failure up to ``cap``. An attempt on a locked key is refused without checking the password (so a
correct password does not help a guesser either) and says when to try again. A success clears
the user's and the address's counts; a key with no failure for ``forget_after`` seconds starts
over. Pure logic with an injectable clock; ``workspace/access.py`` applies it to Gradio's /login.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0
    last_failure: float = 0.0


class LoginThrottle:
    def __init__(self, free: int = 5, base: float = 1.0, cap: float = 300.0, forget_after: float = 900.0,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000) -> None:
        if free < 1:
            raise ValueError(f"free must be at least 1 (got {free!r}).")
        if not 0 < base <= cap:
            raise ValueError(f"base must be positive and at most cap (got base={base!r}, cap={cap!r}).")
        self.free, self.base, self.cap, self.forget_after = free, base, cap, forget_after
        self.clock = clock
        self.max_keys = max_keys
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    @staticmethod
    def keys(user: str, address: str | None) -> list[str]:
        return [f"user:{user.strip().lower()}"] + ([f"addr:{address}"] if address else [])

    def wait(self, keys: list[str]) -> float:
        """Seconds before an attempt on ``keys`` is allowed (0: now). An allowed attempt on a key
        that has used its free failures reserves the next slot, so parallel guesses queue up."""
        with self._lock:
            now = self.clock()
            records = [self._record(k, now) for k in keys]
            wait = max((r.locked_until - now for r in records if r), default=0.0)
            if wait > 0:
                return math.ceil(wait * 10) / 10
            for r in records:
                if r and r.failures >= self.free:
                    r.locked_until = now + self._delay(r.failures)
            return 0.0

    def failed(self, keys: list[str]) -> None:
        with self._lock:
            now = self.clock()
            if len(self._records) >= self.max_keys:
                self._prune(now)
            for key in keys:
                r = self._record(key, now) or _Record()
                r.failures += 1
                r.last_failure = now
                if r.failures >= self.free:
                    r.locked_until = now + self._delay(r.failures)
                self._records[key] = r

    def succeeded(self, keys: list[str]) -> None:
        with self._lock:
            for key in keys:
                self._records.pop(key, None)

    def _delay(self, failures: int) -> float:
        """The lock after the ``free``-th, next, ... failure: base, 2*base, 4*base ... (at most cap)."""
        return min(self.cap, self.base * 2 ** min(64, max(0, failures - self.free)))

    def _record(self, key: str, now: float) -> _Record | None:
        r = self._records.get(key)
        if r is not None and now - r.last_failure > self.forget_after and r.locked_until <= now:
            del self._records[key]
            return None
        return r

    def _prune(self, now: float) -> None:
        for key in [k for k, r in self._records.items() if now - r.last_failure > self.forget_after]:
            del self._records[key]
        while len(self._records) >= self.max_keys:  # still full: forget the oldest
            del self._records[min(self._records, key=lambda k: self._records[k].last_failure)]
