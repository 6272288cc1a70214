"""A real Alertmanager's `slack_configs` pointed at slack-webhook: firing and resolved arrive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devstack.alertmanager import LocalAlertmanager
from devstack.processes import free_port
from devstack.stack import LocalService
from devstack.synapse import Account, LocalSynapse
from tests.integration.conftest import PASSWORD

HOOK = "alertmanager-hook-0123456789abc"


@pytest.fixture
async def wired(
    synapse: LocalSynapse, bot: Account, reader: Account, tmp_path: Path
) -> AsyncIterator[tuple[LocalAlertmanager, str]]:
    room_id = await reader.create_room(name="alerts", invite=[bot.user_id])
    service = LocalService(
        "slack-webhook-am", "matrix_stack.services.slack_webhook", "SLACK_WEBHOOK_", free_port(),
        {"HOOKS": json.dumps([{"id": HOOK, "room": room_id}])}, tmp_path / "data",
    )  # fmt: skip
    service.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
    service.wait_ready()
    config = {
        "route": {"receiver": "slack", "group_by": ["alertname"], "group_wait": "1s", "group_interval": "1s",
                  "repeat_interval": "1h"},
        "receivers": [{"name": "slack", "slack_configs": [{
            "api_url": f"{service.url}/services/T000/B000/{HOOK}", "channel": "#alerts", "send_resolved": True,
        }]}],
    }  # fmt: skip
    alertmanager = LocalAlertmanager(free_port(), config)
    alertmanager.start()
    yield alertmanager, room_id
    alertmanager.stop()
    service.stop()


async def test_firing_then_resolved(wired: tuple[LocalAlertmanager, str], reader: Account) -> None:
    alertmanager, room_id = wired
    now = datetime.now(UTC)
    alert = {
        "labels": {"alertname": "DiskFull", "severity": "critical", "instance": "node-1"},
        "annotations": {"summary": "Disk full on node-1"},
        "generatorURL": "http://prometheus.local/graph?g0.expr=disk",
        "startsAt": now.isoformat(),
    }
    await asyncio.to_thread(alertmanager.post_alerts, [alert])
    [firing] = await reader.wait_for_messages(room_id, 1, timeout=60)
    assert firing["content"]["body"].startswith("Alertmanager: 🔴 [FIRING:1] DiskFull (node-1 critical)")
    assert (
        f'<a href="{alertmanager.url}/#/alerts?receiver=slack">[FIRING:1] DiskFull'
        in firing["content"]["formatted_body"]
    )
    resolved_alert = {**alert, "endsAt": (now + timedelta(seconds=1)).isoformat()}
    await asyncio.to_thread(alertmanager.post_alerts, [resolved_alert])
    events = await reader.wait_for_messages(room_id, 2, timeout=60)
    assert events[1]["content"]["body"].startswith("Alertmanager: 🟢 [RESOLVED] DiskFull (node-1 critical)")
    assert alertmanager.metric("alertmanager_notifications_failed_total", integration="slack") == 0
    assert alertmanager.metric("alertmanager_notifications_total", integration="slack") >= 2
