"""What the core decides once, checked through every service: the link policy, the 503 for a message
the outbox cannot commit, and the request id on a 500."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from devstack.processes import free_port
from devstack.stack import LocalService
from devstack.synapse import Account, LocalSynapse
from matrix_stack.services import catalog
from tests.integration.conftest import PASSWORD

MATRIX_LINK = "matrix:r/ops:example.org"
NOTIFY_TOKEN = "every-service-token-0123456789"
LEGACY_SECRET = "every-service-legacy-secret"
BASIC = ("alertmanager", "every-service-basic-password")
BRIDGES = [service.script for service in catalog.SERVICES if service.kind == "bridge"]


@dataclass
class Running:
    service: LocalService
    room: str

    @property
    def outbox(self) -> Path:
        return self.service.data_dir / "outbox.sqlite3"


@dataclass
class Request:
    """One request per service that posts MATRIX_LINK (and a marker text) to its room."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


def request_for(name: str, marker: str) -> Request:
    if name == "notify":
        body = {"html": f'<a href="{MATRIX_LINK}">{marker}</a>'}
        return Request("POST", "/notify", {"authorization": f"Bearer {NOTIFY_TOKEN}",
                                           "content-type": "application/json"}, json.dumps(body).encode())  # fmt: skip
    if name == "slack-webhook":
        body = {"text": f"<{MATRIX_LINK}|{marker}>"}
        return Request("POST", "/hooks/every-service-hook-0123456789", {"content-type": "application/json"},
                       json.dumps(body).encode())  # fmt: skip
    if name == "sentry-webhook":
        body = {"url": MATRIX_LINK, "message": marker, "level": "error", "project_slug": "demo"}
        return Request("POST", f"/legacy/{LEGACY_SECRET}", {"content-type": "application/json"},
                       json.dumps(body).encode())  # fmt: skip
    alert = {"status": "firing", "labels": {"alertname": marker, "severity": "warning"},
             "annotations": {"summary": marker, "runbook": MATRIX_LINK},
             "startsAt": "2026-12-01T00:00:00Z", "fingerprint": marker}  # fmt: skip
    body = {"version": "4", "status": "firing", "receiver": "matrix", "groupKey": marker,
            "groupLabels": {"alertname": marker}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "alerts": [alert]}  # fmt: skip
    credentials = base64.b64encode(":".join(BASIC).encode()).decode()
    return Request("POST", "/alerts/ops", {"authorization": f"Basic {credentials}",
                                           "content-type": "application/json"}, json.dumps(body).encode())  # fmt: skip


@pytest.fixture(scope="module")
async def services(
    synapse: LocalSynapse, bot: Account, reader: Account, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Running]]:
    directory = tmp_path_factory.mktemp("every-service")
    rooms = {}
    for name in BRIDGES:
        rooms[name] = await reader.create_room(name=f"every service: {name}", invite=[bot.user_id])
    config = directory / "alertmanager.yaml"
    config.write_text(yaml.safe_dump({
        "http": {"address": "127.0.0.1", "port": free_port(), "basic-username": BASIC[0],
                 "basic-password": BASIC[1]},
        "matrix": {"homeserver-url": synapse.url, "user-id": bot.user_id,
                   "room-mapping": {"ops": rooms["alertmanager-receiver"]}},
    }))  # fmt: skip
    am_port = yaml.safe_load(config.read_text())["http"]["port"]
    hooks = [{"id": "every-service-hook-0123456789", "room": rooms["slack-webhook"]}]
    specs = {
        "notify": (free_port(), {"TOKEN": NOTIFY_TOKEN, "DEFAULT_ROOM": rooms["notify"]}),
        "slack-webhook": (free_port(), {"HOOKS": json.dumps(hooks)}),
        "sentry-webhook": (free_port(), {"LEGACY_SECRET": LEGACY_SECRET, "DEFAULT_ROOM": rooms["sentry-webhook"]}),
        "alertmanager-receiver": (am_port, {"CONFIG_PATH": str(config)}),
    }  # fmt: skip
    running = {}
    for name, (port, env) in specs.items():
        service = LocalService.of(name, port, {"LOG_JSON": "true", **env}, directory / name)
        service.start(synapse.url, bot.user_id, PASSWORD, directory / "logs")
        running[name] = Running(service, rooms[name])
    for each in running.values():
        each.service.wait_ready()
    yield running
    for each in running.values():
        each.service.stop()


async def send(client: httpx.AsyncClient, running: Running, request: Request) -> httpx.Response:
    return await client.request(
        request.method, running.service.url + request.path, headers=request.headers, content=request.body
    )


async def delivered(reader: Account, room: str, marker: str, timeout: float = 30) -> dict[str, object]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        for event in await reader.messages(room):
            if marker in event["content"].get("body", ""):
                return dict(event["content"])
        assert asyncio.get_running_loop().time() < deadline, f"{marker} never arrived in {room}"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("name", BRIDGES)
async def test_a_matrix_link_survives_every_formatter(
    services: dict[str, Running], reader: Account, http: httpx.AsyncClient, name: str
) -> None:
    marker = f"link-through-{name}"
    response = await send(http, services[name], request_for(name, marker))
    assert response.status_code in (200, 202), response.text
    message = await delivered(reader, services[name].room, marker)
    assert f'<a href="{MATRIX_LINK}">' in str(message["formatted_body"])


@contextlib.contextmanager
def outbox_locked(path: Path) -> Iterator[None]:
    """Another writer holds the outbox: commits wait out the busy timeout and fail."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=30)
    connection.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        connection.execute("ROLLBACK")
        connection.close()


EXPECTED_503 = {
    "notify": ("application/json", '{"error":"not_durable"'),
    "sentry-webhook": (
        "application/json",
        '{"error":"not_durable","detail":"the message could not be stored; Sentry will retry"}',
    ),
    "slack-webhook": ("text/html", "rollup_error"),
    "alertmanager-receiver": ("text/plain", "could not store the messages; retry"),
}


async def test_an_uncommitted_message_is_a_503_in_each_protocol_then_delivered_on_retry(
    services: dict[str, Running], reader: Account, http: httpx.AsyncClient
) -> None:
    marker = {name: f"after-outage-{name}" for name in services}
    with contextlib.ExitStack() as locks:
        for running in services.values():
            locks.enter_context(outbox_locked(running.outbox))
        answers = await asyncio.gather(
            *(send(http, running, request_for(name, marker[name])) for name, running in services.items())
        )
    for (name, running), answer in zip(services.items(), answers, strict=True):
        media_type, body = EXPECTED_503[name]
        assert answer.status_code == 503, (name, answer.status_code, answer.text)
        assert answer.headers["content-type"].startswith(media_type), name
        assert answer.text.startswith(body), (name, answer.text)
        log = (running.service.data_dir.parent / "logs" / f"{name}.log").read_text()
        assert "could not store the message; answered 503" in log
    for name, running in services.items():  # the sender retries, as each protocol's senders do
        retry = await send(http, running, request_for(name, marker[name]))
        assert retry.status_code in (200, 202), (name, retry.text)
        await delivered(reader, running.room, marker[name])
    for name, running in services.items():  # exactly once: the refused attempt left nothing behind
        events = [
            e for e in await reader.messages(running.room) if marker[name] in e["content"].get("body", "")
        ]
        assert len(events) == 1, name


async def test_a_500_carries_the_request_id(
    synapse: LocalSynapse, bot: Account, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A service on the kit whose handler fails: the client still gets its request id back."""
    service = LocalService("failing", "tests.failing_service", "NOTIFY_", free_port(),
                           {"TOKEN": NOTIFY_TOKEN, "LOG_JSON": "true"}, tmp_path / "data")  # fmt: skip
    service.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
    try:
        service.wait_ready()
        answer = await http.get(f"{service.url}/fail", headers={"X-Request-Id": "trace-me-500"})
        assert answer.status_code == 500
        assert answer.headers["x-request-id"] == "trace-me-500"
        fresh = await http.get(f"{service.url}/fail")
        assert fresh.status_code == 500
        assert len(fresh.headers["x-request-id"]) == 24
        metrics = (await http.get(f"{service.url}/metrics")).text
        assert 'matrix_stack_http_requests_total{method="GET",route="/fail",status="500"} 2.0' in metrics
    finally:
        service.stop()
    access = [json.loads(line) for line in (tmp_path / "logs" / "failing.log").read_text().splitlines()
              if line.startswith("{") and '"request"' in line]  # fmt: skip
    assert any(e.get("request_id") == "trace-me-500" and e.get("status") == 500 for e in access), access
    errors = [json.loads(line) for line in (tmp_path / "logs" / "failing.log").read_text().splitlines()
              if line.startswith("{") and "unhandled error" in line]  # fmt: skip
    assert errors[0]["request_id"] == "trace-me-500"
    assert "a bug in a handler" in errors[0]["exc"]
