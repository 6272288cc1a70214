"""A stand-in for Sentry's issue API on loopback (Sentry itself cannot run here).

It speaks what sentry-webhook's actions use, as Sentry documents and behaves
(`../shared/reference/alertmanager/interactive.md` section 5): `GET` and `PUT
/api/0/organizations/{org}/issues/{issue_id}/` with `Authorization: Bearer <token>`. A token is
checked as Sentry's API does: none → 401 "Authentication credentials were not provided.", an unknown
one → 401 "Invalid token", one of another organization or without the scope (`event:read` to read,
`event:write` to update) → 403 "You do not have permission to perform this action."; an unknown issue
→ 404. An update is validated as GroupValidator/StatusDetailsValidator do for the fields the bridge
sends (status, substatus, statusDetails' ignore fields, assignedTo), errors in Django REST
framework's shape (`{"field": ["message"]}`, nested for statusDetails); only the submitted
attributes change, and the answer is the serialized issue. Release-based resolutions answer as an
organization without releases does. Fields it does not know are ignored, as DRF ignores them.

Issues, members and teams live in memory: a test adds them (`add_issue` takes the `issue` of a
webhook payload). `answer_next` makes the next calls answer something else (a 403, a 429 with
Retry-After) before any check. Every call is recorded.

    python -m devstack.sentry --port 8000 --organization acme --token <token>
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from devstack.processes import STAND_IN_KEEP_ALIVE

log = logging.getLogger("devstack.sentry")

API_PREFIX = "/api/0/organizations/"
STATUSES = ("resolved", "resolvedInNextRelease", "unresolved", "ignored", "muted")  # muted: old "ignored"
SUBSTATUSES = (
    *("archived_until_escalating", "archived_until_condition_met", "archived_forever"),  # with ignored
    *("escalating", "ongoing", "regressed", "new"),  # with unresolved
    *("until_escalating", "until_condition_met", "forever"),  # deprecated short forms
)
_LEGACY_SUBSTATUS = {
    "until_escalating": "archived_until_escalating",
    "until_condition_met": "archived_until_condition_met",
    "forever": "archived_forever",
}
_INTEGERS = ("ignoreDuration", "ignoreCount", "ignoreWindow", "ignoreUserCount", "ignoreUserWindow")
_WINDOW_MAX = 7 * 24 * 60
NO_PERMISSION = "You do not have permission to perform this action."
NOT_FOUND = "The requested resource does not exist"


@dataclass(frozen=True)
class Call:
    """One request to the issue API."""

    method: str
    path: str
    authorization: str | None
    body: Any  # the decoded JSON body (None without one)
    status: int  # what the stand-in answered


@dataclass
class Member:
    user_id: int
    email: str
    username: str
    name: str


@dataclass
class _State:
    issues: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: list[Member] = field(default_factory=list)
    teams: dict[int, str] = field(default_factory=dict)  # id -> slug
    canned: list[tuple[int, Any, dict[str, str]]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)


class _Invalid(Exception):
    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(json.dumps(errors))
        self.errors = errors


class LocalSentry:
    """The issue API of one organization on a free loopback port (or `port`), uvicorn in a thread."""

    def __init__(self, organization: str = "acme", token: str | None = None, *, port: int = 0) -> None:
        self.organization = organization
        self.token = token or secrets.token_hex(32)
        # token -> (organization, scopes): the integration's own, plus any a test adds
        self.tokens: dict[str, tuple[str, frozenset[str]]] = {
            self.token: (organization, frozenset({"event:read", "event:write"}))
        }
        self._requested_port = port
        self._lock = threading.Lock()
        self._state = _State()
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- what a test sets and reads -------------------------------------------------------------

    @property
    def url(self) -> str:
        if self._socket is None:
            raise RuntimeError("LocalSentry is not started")
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    def add_issue(self, issue: dict[str, Any]) -> None:
        with self._lock:
            self._state.issues[str(issue["id"])] = copy.deepcopy(issue)

    def issue(self, issue_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._state.issues[issue_id])

    def add_member(self, user_id: int, email: str, name: str = "", username: str = "") -> None:
        with self._lock:
            self._state.members.append(Member(user_id, email, username or email.split("@")[0], name or email))

    def add_team(self, team_id: int, slug: str) -> None:
        with self._lock:
            self._state.teams[team_id] = slug

    def answer_next(
        self, status: int, body: Any, headers: dict[str, str] | None = None, times: int = 1
    ) -> None:
        """The next `times` calls answer this, before any check (a refusal, a rate limit)."""
        with self._lock:
            self._state.canned.extend([(status, body, headers or {})] * times)

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._state.calls)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self._requested_port))
        self._socket = sock
        config = uvicorn.Config(self, lifespan="off", log_config=None, access_log=False,
                                server_header=False, timeout_keep_alive=STAND_IN_KEEP_ALIVE)  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="local-sentry", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Sentry stand-in did not start on port {self._requested_port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> LocalSentry:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    # -- HTTP -----------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else None
            parse_error = None
        except ValueError as error:
            body, parse_error = None, f"JSON parse error - {error}"
        with self._lock:
            status, answer, headers = self._respond(request, body, parse_error)
            self._state.calls.append(
                Call(request.method, request.url.path, request.headers.get("authorization"), body, status)
            )
        log.info("%s %s -> %d", request.method, request.url.path, status)
        response: Response = JSONResponse(answer, status_code=status, headers=headers)
        await response(scope, receive, send)

    def _respond(
        self, request: Request, body: Any, parse_error: str | None
    ) -> tuple[int, Any, dict[str, str]]:
        """Under the lock: the status, JSON answer and headers for one request."""
        if self._state.canned:
            return self._state.canned.pop(0)
        parts = request.url.path.removeprefix(API_PREFIX).split("/")
        if not request.url.path.startswith(API_PREFIX) or len(parts) != 4 or parts[1] != "issues" or parts[3]:
            return 404, {"detail": NOT_FOUND}, {}
        organization, issue_id = parts[0], parts[2]
        if request.method not in ("GET", "PUT"):
            return 405, {"detail": f'Method "{request.method}" not allowed.'}, {}
        header = request.headers.get("authorization", "")
        if not header:
            return 401, {"detail": "Authentication credentials were not provided."}, {}
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or token.strip() not in self.tokens:
            return 401, {"detail": "Invalid token"}, {}
        owner, scopes = self.tokens[token.strip()]
        needed = "event:read" if request.method == "GET" else "event:write"
        if owner != organization or needed not in scopes:
            return 403, {"detail": NO_PERMISSION}, {}
        issue = self._state.issues.get(issue_id)
        if issue is None:
            return 404, {"detail": NOT_FOUND}, {}
        if request.method == "GET":
            return 200, copy.deepcopy(issue), {}
        if parse_error is not None:
            return 400, {"detail": parse_error}, {}
        if not isinstance(body, dict):
            kind = type(body).__name__ if body is not None else "null"
            return 400, {"non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]}, {}
        try:
            self._update(issue, body)
        except _Invalid as invalid:
            return 400, invalid.errors, {}
        return 200, copy.deepcopy(issue), {}

    # -- GroupValidator, as far as the bridge uses it -------------------------------------------

    def _update(self, issue: dict[str, Any], body: dict[str, Any]) -> None:
        errors: dict[str, Any] = {}
        status = body.get("status")
        if "status" in body and status not in STATUSES:
            errors["status"] = [f'"{status}" is not a valid choice.']
        substatus = body.get("substatus")
        if substatus is not None and substatus not in SUBSTATUSES:
            errors["substatus"] = [f'"{substatus}" is not a valid choice.']
        details = _status_details(body.get("statusDetails", {}), errors)
        assignee: dict[str, Any] | bool | None = False  # False: not submitted
        if "assignedTo" in body:
            try:
                assignee = self._actor(body["assignedTo"])
            except ValueError as error:
                errors["assignedTo"] = [str(error)]
        if errors:
            raise _Invalid(errors)
        if status is not None:
            self._set_status(issue, "ignored" if status == "muted" else str(status), substatus, details)
        if assignee is not False:
            issue["assignedTo"] = assignee

    def _set_status(
        self, issue: dict[str, Any], status: str, substatus: str | None, details: dict[str, Any]
    ) -> None:
        if status in ("resolvedInNextRelease",) or details.keys() & {"inRelease", "inNextRelease"}:
            detail = "No release data present in the system to form a basis for 'Next Release'"
            raise _Invalid({"statusDetails": {"inNextRelease": [detail]}})
        issue["status"] = status
        if status == "ignored":
            chosen = _LEGACY_SUBSTATUS.get(substatus or "", substatus)
            timed = details.keys() & {"ignoreDuration", "ignoreCount", "ignoreUserCount"}
            issue["substatus"] = chosen or (
                "archived_until_condition_met" if timed else "archived_until_escalating"
            )
            shown: dict[str, Any] = {k: v for k, v in details.items() if k in _INTEGERS}
            if "ignoreDuration" in details:
                until = datetime.now(UTC) + timedelta(minutes=int(details["ignoreDuration"]))
                shown["ignoreUntil"] = until.isoformat().replace("+00:00", "Z")
            issue["statusDetails"] = shown
        elif status == "resolved":
            issue["substatus"], issue["statusDetails"] = None, {}
        else:  # unresolved
            issue["substatus"], issue["statusDetails"] = substatus or "ongoing", {}

    def _actor(self, value: Any) -> dict[str, Any] | None:
        """ActorField: `<user id>`, `user:<id>`, `team:<id>`, a username or a primary e-mail."""
        if value in (None, ""):
            return None
        text = str(value)
        if text.startswith("team:"):
            team_id = int(text[5:]) if text[5:].isdigit() else None
            if team_id is None or team_id not in self._state.teams:
                raise ValueError("Unknown actor input")
            return {"type": "team", "id": str(team_id), "name": self._state.teams[team_id]}
        wanted = text.removeprefix("user:")
        for member in self._state.members:
            if wanted in (str(member.user_id), member.username, member.email):
                return {"type": "user", "id": str(member.user_id), "name": member.name, "email": member.email}
        raise ValueError("Unknown actor input")


def _status_details(value: Any, errors: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(value, dict):
        kind = type(value).__name__
        errors["statusDetails"] = {
            "non_field_errors": [f"Invalid data. Expected a dictionary, but got {kind}."]
        }
        return {}
    problems: dict[str, list[str]] = {}
    details: dict[str, Any] = {}
    for name, given in value.items():
        if name in _INTEGERS:
            if (
                isinstance(given, bool)
                or not isinstance(given, int | str)
                or not str(given).lstrip("-").isdigit()
            ):
                problems[name] = ["A valid integer is required."]
            elif name.endswith("Window") and int(given) > _WINDOW_MAX:
                problems[name] = [f"Ensure this value is less than or equal to {_WINDOW_MAX}."]
            else:
                details[name] = int(given)
        elif name in ("inRelease", "inNextRelease", "inCommit", "inUpcomingRelease"):
            details[name] = given
    if problems:
        errors["statusDetails"] = problems
    return details


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack.sentry", description=__doc__)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--organization", default="acme")
    parser.add_argument("--token", required=True)
    parser.add_argument(
        "--issue", action="append", default=[], help="a webhook payload file whose issue to serve"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    with LocalSentry(args.organization, args.token, port=args.port) as sentry:
        for path in args.issue:
            with open(path) as payload:
                sentry.add_issue(json.load(payload)["data"]["issue"])
        log.info("Sentry issue API stand-in on %s (organization %s)", sentry.url, sentry.organization)
        stopping.wait()


if __name__ == "__main__":
    main()
