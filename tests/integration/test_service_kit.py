"""The service kit through a real service process (`notify`) and a real Synapse."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from devstack.processes import free_port
from devstack.stack import LocalService
from devstack.synapse import Account, LocalSynapse
from tests.integration.conftest import PASSWORD

TOKEN = "notify-token-0123456789abcdef"
NewRoom = Callable[..., Awaitable[str]]
StartNotify = Callable[..., LocalService]


@pytest.fixture
def start_notify(synapse: LocalSynapse, bot: Account, tmp_path: Path) -> Iterator[StartNotify]:
    started: list[LocalService] = []

    def start(*, data_dir: Path | None = None, **env: str) -> LocalService:
        service = LocalService(
            "notify",
            "matrix_stack.services.notify",
            "NOTIFY_",
            free_port(),
            {"LOG_JSON": "true", **({} if "TOKEN_FILE" in env else {"TOKEN": TOKEN}), **env},
            data_dir or tmp_path / f"notify{len(started)}",
        )
        service.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
        started.append(service)
        service.wait_ready()
        return service

    yield start
    for service in started:
        service.stop()


def run_notify(env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFY_")}
    return subprocess.run(
        [sys.executable, "-m", "matrix_stack.services.notify"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run_notify(
        {"NOTIFY_USER_ID": "@bot:localhost", "NOTIFY_TOKEN": TOKEN, "NOTIFY_ACCESS_TOKEN": "x"}
    )
    assert result.returncode == 2
    assert result.stderr == "config error: NOTIFY_HOMESERVER: Field required\n"
    result = run_notify(
        {
            "NOTIFY_HOMESERVER": "http://x",
            "NOTIFY_USER_ID": "bot",
            "NOTIFY_TOKEN": TOKEN,
            "NOTIFY_ACCESS_TOKEN": "x",
        }
    )
    assert result.returncode == 2
    assert result.stderr.startswith("config error: NOTIFY_USER_ID: String should match pattern")
    result = run_notify({"NOTIFY_HOMESERVER": "http://x", "NOTIFY_USER_ID": "@bot:x", "NOTIFY_TOKEN": TOKEN})
    assert result.returncode == 2
    assert result.stderr == (
        "config error: set ACCESS_TOKEN (or ACCESS_TOKEN_FILE), or PASSWORD (or PASSWORD_FILE)\n"
    )
    result = run_notify(
        {
            "NOTIFY_HOMESERVER": "http://x",
            "NOTIFY_USER_ID": "@bot:x",
            "NOTIFY_TOKEN_FILE": str(tmp_path / "missing"),
            "NOTIFY_ACCESS_TOKEN": "x",
        }
    )
    assert result.returncode == 2
    assert result.stderr.startswith("config error: NOTIFY_TOKEN_FILE: cannot read")
    assert len(result.stderr.splitlines()) == 1
    (tmp_path / "token").write_text(TOKEN)
    result = run_notify(
        {
            "NOTIFY_HOMESERVER": "http://x",
            "NOTIFY_USER_ID": "@bot:x",
            "NOTIFY_TOKEN": TOKEN,
            "NOTIFY_TOKEN_FILE": str(tmp_path / "token"),
            "NOTIFY_ACCESS_TOKEN": "x",
        }
    )
    assert (
        result.stderr == "config error: NOTIFY_TOKEN_FILE: set NOTIFY_TOKEN or NOTIFY_TOKEN_FILE, not both\n"
    )


def test_wrong_credentials_exit_with_one_line(synapse: LocalSynapse, tmp_path: Path) -> None:
    result = run_notify(
        {
            "NOTIFY_HOMESERVER": synapse.url,
            "NOTIFY_USER_ID": "@bot:localhost",
            "NOTIFY_ACCESS_TOKEN": "syt_wrong_token_value",
            "NOTIFY_TOKEN": TOKEN,
            "NOTIFY_DATA_DIR": str(tmp_path),
            "NOTIFY_LOG_JSON": "true",
        }
    )
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    record = json.loads(line)
    assert record["level"] == "ERROR"
    assert "M_UNKNOWN_TOKEN" in record["msg"]
    assert "syt_wrong_token_value" not in result.stderr


async def test_secrets_from_files_and_yaml(
    start_notify: StartNotify, new_room: NewRoom, tmp_path: Path, http: httpx.AsyncClient, reader: Account
) -> None:
    room_id = await new_room()
    (tmp_path / "token").write_text("file-token-0123456789abcdef\n")
    (tmp_path / "config.yaml").write_text(f"default-room: '{room_id}'\nmsgtype: m.text\n")
    service = start_notify(TOKEN_FILE=str(tmp_path / "token"), CONFIG_FILE=str(tmp_path / "config.yaml"))
    response = await http.post(
        f"{service.url}/notify",
        content="from a file token",
        headers={"Authorization": "Bearer file-token-0123456789abcdef"},
    )
    assert response.status_code == 202, response.text
    [event] = await reader.wait_for_messages(room_id, 1)
    assert event["content"]["msgtype"] == "m.text"
    assert event["content"]["body"] == "from a file token"


async def test_health_ready_metrics_and_request_ids(
    start_notify: StartNotify, new_room: NewRoom, http: httpx.AsyncClient, reader: Account
) -> None:
    room_id = await new_room()
    service = start_notify()
    assert (await http.get(f"{service.url}/healthz")).json() == {"status": "ok"}
    ready = await http.get(f"{service.url}/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    response = await http.post(
        f"{service.url}/notify/{room_id}",
        json={"text": "t", "html": "<i>t</i>"},
        headers={"Authorization": f"Bearer {TOKEN}", "X-Request-Id": "req-42"},
    )
    assert response.status_code == 202
    assert response.headers["x-request-id"] == "req-42"
    delivery_id = response.json()["delivery_id"]
    await reader.wait_for_messages(room_id, 1)
    status = await http.get(
        f"{service.url}/deliveries/{delivery_id}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status.json()["state"] == "sent"
    assert status.json()["event_id"].startswith("$")
    metrics = (await http.get(f"{service.url}/metrics")).text
    assert (
        'matrix_stack_http_requests_total{method="POST",route="/notify/{room}",status="202"} 1.0' in metrics
    )
    assert 'matrix_stack_outbox_deliveries_total{backend="sqlite",outcome="sent"} 1.0' in metrics
    assert "matrix_stack_outbox_queue_depth 0.0" in metrics
    assert "matrix_stack_outbox_delivery_latency_seconds_count 1.0" in metrics
    log = (service.data_dir.parent / "logs" / "notify.log").read_text()
    access = [json.loads(line) for line in log.splitlines() if '"matrix_stack.access"' in line]
    assert any(entry.get("request_id") == "req-42" and entry["status"] == 202 for entry in access)


async def test_bad_requests_get_clear_errors(
    start_notify: StartNotify, new_room: NewRoom, http: httpx.AsyncClient
) -> None:
    room_id = await new_room()
    service = start_notify(MAX_BODY_BYTES="2048", ROOMS=f" {room_id}, !other:localhost")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    url = f"{service.url}/notify/{room_id}"
    cases = [
        (await http.post(url, content="x", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized"),
        (await http.post(url, content="x"), 401, "unauthorized"),
        (await http.post(url, content="x" * 5000, headers=auth), 413, "payload_too_large"),
        (
            await http.post(url, content=b"{bad", headers={**auth, "Content-Type": "application/json"}),
            400,
            "invalid_json",
        ),
        (await http.post(url, json={"text": "x", "extra": 1}, headers=auth), 400, "invalid_payload"),
        (await http.post(url, json={}, headers=auth), 400, "invalid_payload"),
        (await http.post(url, content=b"\xff\xfe", headers=auth), 400, "invalid_encoding"),
        (
            await http.post(url, content="<x/>", headers={**auth, "Content-Type": "application/xml"}),
            415,
            "unsupported_media_type",
        ),
        (await http.post(f"{service.url}/notify", content="x", headers=auth), 404, "no_room"),
        (
            await http.post(f"{service.url}/notify/!elsewhere:localhost", content="x", headers=auth),
            403,
            "room_not_allowed",
        ),
    ]
    for response, status, code in cases:
        assert (response.status_code, response.json()["error"]) == (status, code), response.text

    async def chunks() -> object:
        for _ in range(10):
            yield b"y" * 1000

    streamed = await http.post(url, content=chunks(), headers=auth)  # no Content-Length: counted as read
    assert streamed.status_code == 413


async def test_sigterm_drains_and_exits_cleanly(
    start_notify: StartNotify, new_room: NewRoom, http: httpx.AsyncClient, reader: Account
) -> None:
    room_id = await new_room()
    service = start_notify()
    for i in range(20):
        response = await http.post(
            f"{service.url}/notify/{room_id}", content=f"d{i}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert response.status_code == 202
    assert service.process is not None
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(20) == 0
    restarted = start_notify(data_dir=service.data_dir)  # whatever was left is sent by the next run
    events = await reader.wait_for_messages(room_id, 20)
    assert [e["content"]["body"] for e in events] == [f"d{i}" for i in range(20)]
    assert restarted.process is not None
