"""Alertmanager's silences (API v2, as 0.25 behaves) for the commands from the alert room.

`create` is idempotent by a key (the Matrix event that asked for it): the comment carries the key in
a fixed marker, and a silence that is active or pending with that marker is returned instead of a
second one. So a replica that crashed after creating and before recording does not double it on the
retry. It does not serialise two replicas creating at the same moment: the caller's lease does.

Errors: `AlertmanagerUnavailable` (connection, timeout, 5xx: try again later) and
`AlertmanagerRefused` (4xx, with Alertmanager's own message: tell the user). An unknown silence is
not an error: 0.25 answers it with 500 "silence not found" (later versions 404)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

from matrix_stack.services.alertmanager_receiver.commands import Matcher

MARKER = "[matrix-stack "  # + key + "]" at the end of the comment of every silence made here
LIVE_STATES = ("active", "pending")
_MESSAGE_LIMIT = 300  # characters of an answer an error carries


def marker(key: str) -> str:
    return f"{MARKER}{key}]"


class AlertmanagerError(Exception):
    pass


class AlertmanagerUnavailable(AlertmanagerError):
    """Alertmanager could not be reached or failed (connection, timeout, 5xx): try again later."""


class AlertmanagerRefused(AlertmanagerError):
    """Alertmanager refused the request (4xx); `message` is its own reason, fit for the user."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Alertmanager refused ({status}): {message}")
        self.status = status
        self.message = message


class _NotFound(AlertmanagerError):
    """An unknown silence id: 404, or 0.25's 500 "silence not found"; never leaves this module."""


@dataclass(frozen=True)
class GettableSilence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str  # as stored, with the marker
    state: str  # active, pending or expired

    @property
    def key(self) -> str | None:
        """The key `create` was given, when this receiver made the silence."""
        start = self.comment.rfind(MARKER)
        if start < 0 or not self.comment.endswith("]"):
            return None
        return self.comment[start + len(MARKER) : -1]

    @property
    def note(self) -> str:
        """The comment without the marker: what the person wrote."""
        start = self.comment.rfind(MARKER)
        return (self.comment[:start] if start >= 0 and self.key is not None else self.comment).rstrip()

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> GettableSilence:
        return cls(id=str(data["id"]), matchers=tuple(Matcher.from_api(m) for m in data["matchers"]),
                   starts_at=parse_time(data["startsAt"]), ends_at=parse_time(data["endsAt"]),
                   created_by=str(data["createdBy"]), comment=str(data["comment"]),
                   state=str(data["status"]["state"]))  # fmt: skip


def parse_time(text: str) -> datetime:
    """Alertmanager's RFC 3339 times (`Z`, up to nanoseconds) as aware datetimes."""
    head, dot, rest = text.partition(".")
    if dot:  # Python reads at most microseconds
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:digits][:6].ljust(6, '0')}{rest[digits:]}"
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("a silence's times must be timezone-aware")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def _message(response: httpx.Response) -> str:
    """Alertmanager's error bodies are JSON strings; anything else is shown as text, shortened."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, Mapping):
        body = body.get("message") or body.get("error") or json.dumps(body)
    text = str(body).strip() or response.reason_phrase
    return text[:_MESSAGE_LIMIT]


def _not_found(response: httpx.Response) -> bool:
    """An answer about `/silence/{id}` saying there is no such silence: 0.25 says 404 (GET, empty),
    500 "silence not found" (DELETE), 422 for an id that is no UUID; a 404 "path ... was not found" is
    a wrong base URL instead."""
    status = response.status_code
    if status == 404:
        return not _message(response).startswith("path ")
    return status == 422 or (status == 500 and "silence not found" in _message(response).lower())


class AlertmanagerClient:
    def __init__(
        self,
        base_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        bearer_token: str | None = None,
        timeout: float = 10,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        if bearer_token is not None and (username is not None or password is not None):
            raise ValueError("Alertmanager: basic auth or a bearer token, not both")
        self._api = base_url.rstrip("/") + "/api/v2"
        self._where = httpx.URL(base_url).host or base_url.split("@")[-1]  # for messages: no userinfo
        self._auth: httpx.Auth | None = None
        self._headers: dict[str, str] = {}
        if username is not None or password is not None:
            self._auth = httpx.BasicAuth(username or "", password or "")
        if bearer_token is not None:
            self._headers["Authorization"] = f"Bearer {bearer_token}"
        self._secrets = [secret for secret in (password, bearer_token) if secret]
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

    async def create(
        self, matchers: Sequence[Matcher], ends_at: datetime, created_by: str, comment: str, key: str
    ) -> str:
        """The id of the silence made for `key`: an active or pending one already made for it, or a
        new one from now until `ends_at`."""
        if "]" in key or not key.strip():
            raise ValueError(f"a silence key must be non-empty and without ']': {key!r}")
        existing = await self.find(key)
        if existing is not None:
            return existing.id
        body = {
            "matchers": [matcher.to_api() for matcher in matchers],
            "startsAt": _rfc3339(datetime.now(UTC)),
            "endsAt": _rfc3339(ends_at),
            "createdBy": created_by,
            "comment": f"{comment.strip()} {marker(key)}".lstrip(),
        }
        answer = await self._call("POST", "/silences", json=body)
        silence_id = answer.get("silenceID") if isinstance(answer, Mapping) else None
        if not isinstance(silence_id, str):
            raise AlertmanagerUnavailable(f"Alertmanager at {self._where} answered a silence without its id")
        return silence_id

    async def find(self, key: str) -> GettableSilence | None:
        """The active or pending silence made for `key`."""
        wanted = marker(key)
        return next((s for s in await self._live() if s.comment.endswith(wanted)), None)

    async def get(self, silence_id: str) -> GettableSilence | None:
        try:
            answer = await self._call("GET", f"/silence/{quote(silence_id, safe='')}")
        except _NotFound:
            return None
        return self._silence(answer)

    async def expire(self, silence_id: str) -> bool:
        """Expire a silence now; False when it was unknown or had expired already (0.25 answers
        both with success or a 500, so the state is read first)."""
        silence = await self.get(silence_id)
        if silence is None or silence.state == "expired":
            return False
        try:
            await self._call("DELETE", f"/silence/{quote(silence_id, safe='')}")
        except _NotFound:
            return False  # gone between the two calls
        return True

    async def list_active(self, marker_only: bool = True) -> list[GettableSilence]:
        """Active and pending silences, in Alertmanager's order; only those made here unless
        `marker_only` is False."""
        silences = await self._live()
        return [s for s in silences if MARKER in s.comment] if marker_only else silences

    async def _live(self) -> list[GettableSilence]:
        answer = await self._call("GET", "/silences")
        if not isinstance(answer, list):
            raise AlertmanagerUnavailable(f"Alertmanager at {self._where} answered a list of silences oddly")
        silences = [self._silence(item) for item in answer]
        return [silence for silence in silences if silence.state in LIVE_STATES]

    def _silence(self, data: Any) -> GettableSilence:
        try:
            return GettableSilence.from_api(data)
        except (KeyError, TypeError, ValueError) as error:
            raise AlertmanagerUnavailable(
                f"Alertmanager at {self._where} answered a silence oddly: {type(error).__name__} {error}"
            ) from None

    async def alerts(self, matchers: Sequence[Matcher]) -> list[dict[str, Any]]:
        """The alerts these matchers select that are still firing (silenced or not)."""
        pairs: list[tuple[str, str | int | float | bool | None]] = [("filter", str(m)) for m in matchers]
        params = httpx.QueryParams([*pairs, ("active", "true"), ("silenced", "true"), ("inhibited", "true")])
        answer = await self._call("GET", "/alerts", params=params)
        if not isinstance(answer, list):
            raise AlertmanagerUnavailable(f"Alertmanager at {self._where} answered a list of alerts oddly")
        return [alert for alert in answer if isinstance(alert, dict)]

    async def _call(
        self, method: str, path: str, json: Any = None, params: httpx.QueryParams | None = None
    ) -> Any:
        """The decoded answer (None when empty)."""
        where = f"Alertmanager at {self._where}"
        try:
            response = await self._http.request(
                method, self._api + path, json=json, auth=self._auth, params=params, headers=self._headers,
                timeout=self._timeout,
            )  # fmt: skip
        except httpx.HTTPError as error:
            detail = f"{method} {path}: {type(error).__name__} {error}"
            raise AlertmanagerUnavailable(self._redact(f"{where}: {detail}")) from None
        if path.startswith("/silence/") and _not_found(response):
            raise _NotFound(path)
        if response.status_code >= 500:
            detail = f"answered {response.status_code}: {_message(response)}"
            raise AlertmanagerUnavailable(self._redact(f"{where} {detail}"))
        if response.status_code >= 400:
            raise AlertmanagerRefused(response.status_code, self._redact(_message(response)))
        if not response.content.strip():
            return None
        try:
            return response.json()
        except ValueError:
            raise AlertmanagerUnavailable(f"{where}: {method} {path}: the answer is not JSON") from None

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text
