"""Sentry's issue API with an internal integration token: read and update one issue.

`PUT /api/0/organizations/{org}/issues/{id}/` changes only what is sent and answers the serialized
issue, so repeating an update is harmless (the status or assignee is already what was asked).

Errors: `SentryUnavailable` (connection, timeout, 5xx, rate-limited for longer than we wait: try again
later) and `SentryRefused` (4xx, with Sentry's own words from its Django-REST-framework bodies, fit
for the user). A 429 whose `Retry-After` is short is waited out once."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

RETRY_AFTER_WAITED = 5.0  # seconds of Retry-After waited out before the one retry; longer: reported
_MESSAGE_LIMIT = 300


class SentryError(Exception):
    pass


class SentryUnavailable(SentryError):
    """Sentry could not be reached, failed or is rate-limiting: try again later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SentryRefused(SentryError):
    """Sentry refused the request (4xx); `message` is its own reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Sentry refused ({status}): {message}")
        self.status = status
        self.message = message


def drf_message(body: Any, field: str = "") -> str:
    """Django REST framework's error bodies as one line: `{"detail": "..."}`, `{"field": ["msg"]}`,
    nested `{"statusDetails": {"ignoreWindow": ["msg"]}}` (`statusDetails.ignoreWindow: msg`)."""
    if isinstance(body, Mapping):
        parts = []
        for key, value in body.items():
            inner = (
                field if key in ("detail", "non_field_errors") else f"{field}.{key}" if field else str(key)
            )
            parts.append(drf_message(value, inner))
        return "; ".join(parts)
    if isinstance(body, list):
        return "; ".join(drf_message(item, field) for item in body)
    return f"{field}: {body}" if field else str(body)


def _message(response: httpx.Response) -> str:
    try:
        text = drf_message(response.json())
    except ValueError:
        text = response.text
    return (text.strip() or response.reason_phrase)[:_MESSAGE_LIMIT]


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


class SentryClient:
    def __init__(
        self,
        base_url: str,
        organization: str,
        token: str,
        *,
        timeout: float = 10,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._org = base_url.rstrip("/") + f"/api/0/organizations/{quote(organization, safe='')}"
        self._where = httpx.URL(base_url).host or base_url
        self._headers = {"Authorization": f"Bearer {token}"}
        self._token = token
        self._timeout = timeout
        self._http = http if http is not None else httpx.AsyncClient(trust_env=False)
        self._owns_http = http is None

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def issue(self, issue_id: str) -> dict[str, Any]:
        return await self._call("GET", issue_id)

    async def update(self, issue_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply `changes` to the issue; Sentry's serialized issue after them."""
        return await self._call("PUT", issue_id, dict(changes))

    async def _call(self, method: str, issue_id: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self._org}/issues/{quote(issue_id, safe='')}/"
        for attempt in (1, 2):
            response = await self._send(method, url, body)
            wait = _retry_after(response) if response.status_code == 429 else None
            if wait is not None and wait <= RETRY_AFTER_WAITED and attempt == 1:
                await asyncio.sleep(wait)
                continue
            break
        where = f"Sentry at {self._where}"
        if response.status_code == 429:
            wait = _retry_after(response)
            later = f"try again in {wait:g} s" if wait is not None else "try again later"
            raise SentryUnavailable(f"{where} is rate-limiting this token; {later}", wait)
        if response.status_code >= 500:
            raise SentryUnavailable(
                self._redact(f"{where} answered {response.status_code}: {_message(response)}")
            )
        if response.status_code >= 400:
            raise SentryRefused(response.status_code, self._redact(_message(response)))
        try:
            answer = response.json()
        except ValueError:
            raise SentryUnavailable(f"{where}: {method} issue {issue_id}: the answer is not JSON") from None
        if not isinstance(answer, dict):
            raise SentryUnavailable(f"{where}: {method} issue {issue_id}: the answer is not an issue")
        return answer

    async def _send(self, method: str, url: str, body: dict[str, Any] | None) -> httpx.Response:
        try:
            return await self._http.request(
                method, url, headers=self._headers, json=body, timeout=self._timeout
            )
        except httpx.HTTPError as error:
            detail = f"Sentry at {self._where} is unreachable: {type(error).__name__} {error}"
            raise SentryUnavailable(self._redact(detail)) from None

    def _redact(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text
