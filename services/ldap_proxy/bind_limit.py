"""Failed binds per DN in a sliding window: past the limit the proxy answers the DN's binds itself, so a
password-guessing client cannot walk an Active Directory account into its lockout threshold."""

from __future__ import annotations

import time
from collections import deque


def normalise(dn: str) -> str:
    # DNs compare case-insensitively and without spaces around separators, enough to stop trivial evasion
    return ",".join(part.strip() for part in dn.lower().split(","))


class BindLimiter:
    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, deque[float]] = {}

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
        if not self.limit or not dn:
            return False
        failures = self._recent(normalise(dn), time.monotonic())
        return failures is not None and len(failures) >= self.limit

    def record_failure(self, dn: str) -> None:
        if not self.limit or not dn:
            return
        now = time.monotonic()
        key = normalise(dn)
        failures = self._recent(key, now)
        if failures is None:
            failures = self._failures[key] = deque()
        failures.append(now)

    def forget(self, dn: str) -> None:
        """A successful bind clears the DN's count."""
        self._failures.pop(normalise(dn), None)
