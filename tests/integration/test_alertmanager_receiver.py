"""alertmanager-receiver: a metio config file, a real Alertmanager and a real Synapse room (the templating
against metio's oracle for every sample, alert mode and injections, in-process:
tests/unit/test_alertmanager_receiver_samples.py)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devstack.alertmanager import LocalAlertmanager
from devstack.processes import free_port
from devstack.stack import LocalService
from devstack.synapse import Account, LocalSynapse
from tests.integration.conftest import PASSWORD

DATA = Path(__file__).parent.parent / "data" / "alertmanager"
BASIC = ("alertmanager", "basic-secret-123")


def metio_config(
    bot: Account,
    synapse: LocalSynapse,
    port: int,
    rooms: dict[str, str],
    receiver: dict[str, Any],
    **templating: Any,
) -> str:
    """A config in metio's own format; the password comes through metio's ${ENV} substitution."""
    config = {
        "http": {"address": "127.0.0.1", "port": port, "basic-password": BASIC[1], "metrics-enabled": True},
        "matrix": {"homeserver-url": synapse.url, "user-id": bot.user_id, "access-token": "${AM_TEST_TOKEN}",
                   "room-mapping": rooms},
        "templating": {"external-url-mapping": {"alertmanager:9093": "https://am.example.com"}, **templating},
        "receiver": receiver,
    }  # fmt: skip
    return yaml.safe_dump(config, sort_keys=False)


@dataclass
class Receiver:
    url: str
    rooms: dict[str, str]

    def alerts_url(self, room: str) -> str:
        return f"{self.url}/alerts/{room}"


def start_receiver(
    directory: Path, config: str, token: str, synapse: LocalSynapse, bot: Account
) -> LocalService:
    path = directory / "config.yaml"
    path.write_text(config)
    port = yaml.safe_load(config)["http"]["port"]
    service = LocalService("alertmanager-receiver", "matrix_stack.services.alertmanager_receiver", "ALERTMANAGER_RECEIVER_",
                           port, {"CONFIG_PATH": str(path)}, directory / "data")  # fmt: skip
    os.environ["AM_TEST_TOKEN"] = token
    service.start(synapse.url, bot.user_id, PASSWORD, directory / "logs")
    service.wait_ready()
    return service


@pytest.fixture(scope="module")
async def receivers(
    synapse: LocalSynapse, bot: Account, reader: Account, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Receiver]]:
    started: list[LocalService] = []
    made: dict[str, Receiver] = {}
    for name, receiver in (("group", {"message-mode": "group", "on-resolve": "both", "ping-room-severities": ["page"]}),
                           ("alert", {"message-mode": "alert", "on-resolve": "new"})):  # fmt: skip
        rooms = {"ops": await reader.create_room(name=f"am {name}", invite=[bot.user_id])}
        port = free_port()
        directory = tmp_path_factory.mktemp(f"am-{name}")
        service = start_receiver(directory, metio_config(bot, synapse, port, rooms, receiver), bot.access_token,
                                 synapse, bot)  # fmt: skip
        started.append(service)
        made[name] = Receiver(service.url, rooms)
    yield made
    for service in started:
        service.stop()


def auth() -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(":".join(BASIC).encode()).decode()}


async def test_real_alertmanager_group_then_resolve_edits_and_threads(
    receivers: dict[str, Receiver], reader: Account
) -> None:
    receiver = receivers["group"]
    config = {
        "route": {"receiver": "matrix", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s",
                  "repeat_interval": "1h"},
        "receivers": [{"name": "matrix", "webhook_configs": [{
            "url": receiver.alerts_url("ops"), "send_resolved": True,
            "http_config": {"basic_auth": {"username": BASIC[0], "password": BASIC[1]}}}]}],
    }  # fmt: skip
    alertmanager = LocalAlertmanager(free_port(), config)
    alertmanager.start()
    try:
        now = datetime.now(UTC)
        alerts = [{"labels": {"alertname": "DiskFull", "instance": f"node-{i}", "severity": "page"},
                   "annotations": {"summary": f"Disk full on node-{i}"}, "startsAt": now.isoformat()}
                  for i in (1, 2)]  # fmt: skip
        await asyncio.to_thread(alertmanager.post_alerts, alerts)
        [firing] = await reader.wait_for_messages(receiver.rooms["ops"], 1, timeout=60)
        assert firing["content"]["body"].startswith("FIRING:2 DiskFull (PAGE)")
        assert "• 🔴 DiskFull on node-1: Disk full on node-1" in firing["content"]["body"]
        assert firing["content"]["m.mentions"] == {"room": True}  # severity "page" pings the room
        ended = (now + timedelta(seconds=1)).isoformat()
        await asyncio.to_thread(alertmanager.post_alerts, [{**a, "endsAt": ended} for a in alerts])
        events = await reader.wait_for_messages(receiver.rooms["ops"], 3, timeout=60)
        edit, reply = events[1]["content"], events[2]["content"]
        assert edit["m.relates_to"] == {"rel_type": "m.replace", "event_id": firing["event_id"]}
        assert edit["m.new_content"]["body"].startswith("RESOLVED DiskFull (PAGE)")
        assert reply["m.relates_to"]["rel_type"] == "m.thread"
        assert reply["m.relates_to"]["event_id"] == firing["event_id"]
        assert alertmanager.metric("alertmanager_notifications_failed_total", integration="webhook") == 0
    finally:
        alertmanager.stop()


async def test_a_resolve_after_the_sent_rows_retention_still_edits(
    synapse: LocalSynapse, bot: Account, reader: Account, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """The firing message's delivery outlives the outbox's retention of sent rows while its root is
    live: a resolve a 'week' later (a second here, the pruning done at a restart) edits it."""
    room = await reader.create_room(name="am retention", invite=[bot.user_id])
    port = free_port()
    config = metio_config(bot, synapse, port, {"ops": room}, {"message-mode": "group", "on-resolve": "edit"})
    path = tmp_path / "config.yaml"
    path.write_text(config)
    env = {"CONFIG_PATH": str(path), "OUTBOX_RETENTION_SECONDS": "1"}
    service = LocalService("alertmanager-receiver", "matrix_stack.services.alertmanager_receiver",
                           "ALERTMANAGER_RECEIVER_", port, env, tmp_path / "data")  # fmt: skip
    os.environ["AM_TEST_TOKEN"] = bot.access_token
    firing = json.loads((DATA / "am_docsrs_webhook_types_sample_v4_firing.json").read_text())
    firing = {**firing, "status": "firing", "alerts": [{**a, "status": "firing"} for a in firing["alerts"]]}
    resolved = {
        **firing,
        "status": "resolved",
        "alerts": [{**a, "status": "resolved"} for a in firing["alerts"]],
    }
    url = f"http://127.0.0.1:{port}/alerts/ops"
    service.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
    try:
        service.wait_ready()
        assert (await http.post(url, json=firing, headers=auth())).status_code == 200
        [first] = await reader.wait_for_messages(room, 1, timeout=60)
        await asyncio.sleep(2)  # past the retention of sent rows
        service.stop()
        service.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")  # prunes at start
        service.wait_ready()
        assert (await http.post(url, json=resolved, headers=auth())).status_code == 200
        events = await reader.wait_for_messages(room, 2, timeout=60)
        assert events[1]["content"]["m.relates_to"] == {
            "rel_type": "m.replace",
            "event_id": first["event_id"],
        }
    finally:
        service.stop()


async def test_errors(receivers: dict[str, Receiver], http: httpx.AsyncClient) -> None:
    receiver = receivers["group"]
    url = receiver.alerts_url("ops")
    sample = json.loads((DATA / "am_docsrs_webhook_types_sample_v4_firing.json").read_text())
    assert (await http.post(url, json=sample)).status_code == 401
    wrong = {"Authorization": "Basic " + base64.b64encode(b"alertmanager:nope").decode()}
    assert (await http.post(url, json=sample, headers=wrong)).status_code == 401
    bad = await http.post(url, content=b"{", headers=auth())
    assert bad.status_code == 400
    assert bad.text.startswith("invalid payload: ")
    no_alerts = await http.post(url, json={**sample, "alerts": []}, headers=auth())
    assert (no_alerts.status_code, no_alerts.text) == (
        400,
        "invalid payload: alerts: List should have at least 1 item after validation, not 0\n",
    )
    assert (await http.post(receiver.alerts_url("nowhere"), json=sample, headers=auth())).status_code == 404
    redirect = await http.post(f"{receiver.url}/alerts", json=sample, headers=auth())
    assert (redirect.status_code, redirect.headers["location"]) == (301, "/alerts/")
    metrics = (await http.get(f"{receiver.url}/metrics")).text
    assert "matrix_alertmanager_receiver_unauthorized_http_requests_total 2.0" in metrics
    assert "matrix_alertmanager_receiver_invalid_payload_total 2.0" in metrics


async def test_homeserver_down_loses_nothing(
    receivers: dict[str, Receiver], synapse: LocalSynapse, reader: Account, http: httpx.AsyncClient
) -> None:
    receiver = receivers["alert"]
    room = receiver.rooms["ops"]
    before = len(await reader.messages(room))
    sample = json.loads((DATA / "am_docsrs_webhook_types_sample_v4_firing.json").read_text())
    synapse.stop()
    try:
        response = await http.post(receiver.alerts_url(room), json=sample, headers=auth())
        assert response.status_code == 200  # durable in the outbox: Alertmanager need not retry
    finally:
        synapse.start()
    events = await reader.wait_for_messages(room, before + len(sample["alerts"]), timeout=60)
    assert len(events) == before + len(sample["alerts"])
    assert (
        "ProbeFailure" in events[-1]["content"]["body"] or "ProbeFailure" in events[before]["content"]["body"]
    )


def test_go_templates_are_refused_with_one_line(tmp_path: Path) -> None:
    """metio's own sample config loads, except its Go template body, which must be rewritten."""
    text = (
        (DATA / "metio_config.sample.yaml")
        .read_text()
        .replace("!somewhere:example.com", '"!somewhere:example.com"')
    )
    path = tmp_path / "config.yaml"
    path.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTMANAGER_RECEIVER_")}
    result = subprocess.run([sys.executable, "-m", "matrix_stack.services.alertmanager_receiver", "--config-path", str(path)],
                            env=env, capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("config error: templating.firing-template: ")
    assert len(result.stderr.splitlines()) == 1
    config = yaml.safe_load(text)
    del config["templating"]["firing-template"]  # our default stands in
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "matrix_stack.services.alertmanager_receiver", "--config-path", str(path)],
                            env={**env, "ALERTMANAGER_RECEIVER_DATA_DIR": str(tmp_path)}, capture_output=True,
                            text=True, timeout=30)  # fmt: skip
    assert result.returncode == 1  # the config is fine; the example homeserver is not reachable
    assert "matrix.example.com" in result.stderr
