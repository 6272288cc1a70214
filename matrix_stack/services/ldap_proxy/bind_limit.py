"""Failed binds per DN in a sliding window: past the limit the proxy answers the DN's binds itself, so a
password-guessing client cannot walk an Active Directory account into its lockout threshold."""

from __future__ import annotations

import re
import time
from collections import deque

_SEPARATOR_SPACE = re.compile(r"\s*([=,+;])\s*")
MAX_TRACKED = 100_000  # DNs with recent failures kept; past this the oldest are dropped


def normalise(dn: str) -> str:
    """Case and the spaces around `=`, `,`, `+` and `;` do not make a DN another account."""
    return _SEPARATOR_SPACE.sub(r"\1", dn.strip().lower())


class BindLimiter:
    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._pending: dict[str, int] = {}  # binds forwarded and not yet answered, per DN

    def _recent(self, key: str, now: float) -> deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def blocked(self, dn: str) -> bool:
        """The DN's failures in the window reach the limit, counting its binds in flight (each may be
        one more failure) once it has failed: concurrent binds of a healthy service account pass."""
        if not self.limit or not dn:
            return False
        key = normalise(dn)
        failures = self._recent(key, time.monotonic())
        return failures is not None and len(failures) + self._pending.get(key, 0) >= self.limit

    def begin(self, dn: str) -> None:
        if self.limit and dn:
            key = normalise(dn)
            self._pending[key] = self._pending.get(key, 0) + 1

    def end(self, dn: str, code: int | None) -> None:
        """A bind's result (None: never answered). A success clears the DN's failures."""
        if not self.limit or not dn:
            return
        key = normalise(dn)
        left = self._pending.get(key, 0) - 1
        if left > 0:
            self._pending[key] = left
        else:
            self._pending.pop(key, None)
        if code == 0:
            self._failures.pop(key, None)
        elif code == 49:  # invalidCredentials
            self._record_failure(key)

    def _record_failure(self, key: str) -> None:
        now = time.monotonic()
        failures = self._recent(key, now)
        if failures is None:
            if len(self._failures) >= MAX_TRACKED:
                self.prune()
                if len(self._failures) >= MAX_TRACKED:  # still full: drop the oldest entry
                    self._failures.pop(next(iter(self._failures)))
            failures = self._failures[key] = deque()
        failures.append(now)

    def prune(self) -> None:
        """Forget DNs whose failures have all left the window."""
        now = time.monotonic()
        for key in list(self._failures):
            self._recent(key, now)
