"""alertmanager-receiver's app in-process, configured in metio's file format: its refusals and
metio's counters, and what a notification becomes in Matrix (a resolve editing and threading on the
firing message, or a message of its own)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from matrix_stack.services.alertmanager_receiver.app import not_durable, routes
from matrix_stack.services.alertmanager_receiver.config import FileConfig, settings_from_file
from matrix_stack.shared.matrix.html import sanitize
from tests.unit.inprocess import DATA, Bridge, bridge

BASIC = ("alertmanager", "basic-secret-123")
AUTH = {"Authorization": "Basic " + base64.b64encode(":".join(BASIC).encode()).decode()}
OPS = "!ops:example.org"
# What metio writes for its sample alert (firing) with its README template (the integration tier's
# oracle); both sides go through the same sanitiser.
METIO_FIRING = (
    '      <p> <strong><font color="orange">FIRING</font></strong>  instance_down  >>  WARNING:   instance example1 is down  >>  '
    '<a href="https://wiki.example.com/doku.php?id=alerts:instancedown">Runbook</a> |   '
    '<a href="https://grafana.example.com/d/some-folder/some-dashboard">Dashboard</a> |  '
    '<a href="https://am.example.com/#/silences/new?filter=%7Balertname%3D%22instance_down%22%2C%20instance%3D%22example1%22%2C%20severity%3D%22warning%22%7D">Silence</a> </p>'
)


@asynccontextmanager
async def receiver(
    data_dir: Path, templates: dict[str, str] | None = None, **section: Any
) -> AsyncIterator[Bridge]:
    """A receiver configured as metio's users write it, with our `receiver:` section."""
    config = FileConfig.model_validate({
        "http": {"port": 9088, "basic-password": BASIC[1]},
        "matrix": {"homeserver-url": "https://homeserver.invalid", "user-id": "@bot:example.org",
                   "access-token": "never-sent-anywhere", "room-mapping": {"ops": OPS}},
        "templating": {"external-url-mapping": {"alertmanager:9093": "https://am.example.com"}, **(templates or {})},
        "receiver": section,
    })  # fmt: skip
    settings = settings_from_file(config, data_dir=data_dir, log_json=False)
    async with bridge(settings, routes, not_durable=not_durable) as running:
        yield running


async def notify(running: Bridge, payload: dict[str, Any]) -> int:
    """What Alertmanager does: the notification to /alerts/ops with basic auth; the status answered."""
    return (await running.http.post("/alerts/ops", json=payload, headers=AUTH)).status_code


def sample(name: str, status: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((DATA / "alertmanager" / name).read_text())
    return {**payload, "status": status, "alerts": [{**a, "status": status} for a in payload["alerts"]]}


async def test_refusals_are_counted_as_metio_counts_them(tmp_path: Path) -> None:
    firing = sample("am_docsrs_webhook_types_sample_v4_firing.json", "firing")
    async with receiver(tmp_path) as running:
        http = running.http
        assert (await http.post("/alerts/ops", json=firing)).status_code == 401
        wrong = {"Authorization": "Basic " + base64.b64encode(b"alertmanager:nope").decode()}
        assert (await http.post("/alerts/ops", json=firing, headers=wrong)).status_code == 401
        bad = await http.post("/alerts/ops", content=b"{", headers=AUTH)
        assert (bad.status_code, bad.text.startswith("invalid payload: ")) == (400, True)
        empty = await http.post("/alerts/ops", json={**firing, "alerts": []}, headers=AUTH)
        assert (empty.status_code, empty.text) == (
            400, "invalid payload: alerts: List should have at least 1 item after validation, not 0\n")  # fmt: skip
        nowhere = await http.post("/alerts/nowhere", json=firing, headers=AUTH)
        assert (nowhere.status_code, nowhere.text) == (
            404, "unknown room 'nowhere': not a room id, alias or room-mapping name\n")  # fmt: skip
        redirect = await http.post("/alerts", json=firing, headers=AUTH, follow_redirects=False)
        assert (redirect.status_code, redirect.headers["location"]) == (301, "/alerts/")
        metrics = (await http.get("/metrics")).text
        assert running.service.outbox.depth == 0
    assert "matrix_alertmanager_receiver_http_requests_total 5.0" in metrics
    assert "matrix_alertmanager_receiver_unauthorized_http_requests_total 2.0" in metrics
    assert "matrix_alertmanager_receiver_invalid_payload_total 2.0" in metrics


async def test_a_group_pings_then_its_resolve_edits_and_threads(tmp_path: Path) -> None:
    name = "am_docsrs_webhook_types_sample_v4_firing.json"
    async with receiver(tmp_path, **{"on-resolve": "both", "ping-room-severities": ["critical"]}) as running:
        assert await notify(running, sample(name, "firing")) == 200
        [firing] = await running.matrix.wait_for(1)
        assert await notify(running, sample(name, "resolved")) == 200
        _, edit, reply = await running.matrix.wait_for(3)
    assert (firing.room, firing.content["msgtype"]) == (OPS, "m.text")
    assert firing.content["body"].startswith("FIRING:1 ProbeFailure (CRITICAL)")
    assert firing.content["m.mentions"] == {"room": True}
    assert edit.content["m.relates_to"] == {"rel_type": "m.replace", "event_id": firing.event_id}
    assert edit.content["m.new_content"]["body"].startswith("RESOLVED ProbeFailure (CRITICAL)")
    assert edit.content["m.mentions"] == {}  # an edit does not ping again
    assert reply.content["m.relates_to"]["rel_type"] == "m.thread"
    assert reply.content["m.relates_to"]["event_id"] == firing.event_id
    assert reply.content["body"] == edit.content["m.new_content"]["body"]


async def test_alert_mode_is_metios_one_message_each(tmp_path: Path) -> None:
    name = "am_metio_http_alerts_resolved.json"
    async with receiver(tmp_path, **{"message-mode": "alert", "on-resolve": "new"}) as running:
        assert await notify(running, sample(name, "firing")) == 200
        assert await notify(running, sample(name, "resolved")) == 200
        firing, resolved = await running.matrix.wait_for(2)
    assert firing.content["body"] == (
        "FIRING  instance_down  >>  WARNING:   instance example1 is down  >>  Runbook |   Dashboard |  Silence")  # fmt: skip
    assert firing.content["formatted_body"] == sanitize(METIO_FIRING).strip()
    assert firing.content["m.mentions"] == {}
    assert resolved.content["formatted_body"].startswith('<p> <strong><font color="#008000">RESOLVED</font>')
    assert "m.relates_to" not in resolved.content


async def test_configured_templates_run_sandboxed_and_are_sanitised(tmp_path: Path) -> None:
    """A template of the operator's own (not a built-in one) runs in the Jinja2 sandbox, its HTML is
    sanitised and the body made from that; one that fails sends the plain fallback and is counted."""
    templates = {
        "group-template": '<p onclick="x()"><font color="red">{{ Status | ToUpper }}</font> {{ GroupLabels.alertname }}'
                          "</p><script>bad()</script><ul>{% for a in Alerts %}<li>{{ a.Labels.instance }}</li>{% endfor %}</ul>",
        "firing-template": "{{ Alert.Labels.items().__class__.__mro__ }}",  # the sandbox refuses this
    }  # fmt: skip
    name = "am_docsrs_webhook_types_sample_v4_firing.json"
    async with receiver(tmp_path, templates, **{"on-resolve": "new"}) as running:
        assert await notify(running, sample(name, "firing")) == 200
        [group] = await running.matrix.wait_for(1)
    assert group.content["formatted_body"] == (
        '<p><font color="#FF0000">FIRING</font> ProbeFailure</p><ul><li>https://server.example.org</li></ul>')  # fmt: skip
    assert group.content["body"] == "FIRING ProbeFailure\n• https://server.example.org"
    async with receiver(tmp_path / "alert", templates, **{"message-mode": "alert"}) as running:
        assert await notify(running, sample(name, "firing")) == 200
        [alert] = await running.matrix.wait_for(1)
        metrics = (await running.http.get("/metrics")).text
    assert (alert.content["body"], alert.content["formatted_body"]) == (
        "FIRING ProbeFailure",
        "<p>FIRING ProbeFailure</p>",
    )
    assert "matrix_alertmanager_receiver_templating_failure_total 1.0" in metrics
