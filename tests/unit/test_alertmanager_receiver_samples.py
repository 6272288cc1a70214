"""alertmanager-receiver's templating in-process: metio's README template (its oracle evaluated as Go
would) against every sample, alert mode's messages, and injected markup, each checked as the event
the outbox would send (the round trip through a real Alertmanager and Synapse, resolves editing and
threading: tests/integration/test_alertmanager_receiver.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from matrix_stack.services.alertmanager_receiver.app import not_durable, routes
from matrix_stack.services.alertmanager_receiver.config import FileConfig, settings_from_file
from matrix_stack.services.alertmanager_receiver.payload import silence_url
from matrix_stack.shared.matrix.html import html_to_text, sanitize
from tests.unit.inert import assert_inert
from tests.unit.inprocess import DATA as SAMPLE_DATA
from tests.unit.inprocess import Bridge, RecordingClient, bridge

DATA = SAMPLE_DATA / "alertmanager"
BASIC = ("alertmanager", "basic-secret-123")
# The integration tier's two receivers, each with its "ops" room.
RECEIVERS = {
    "group": {"message-mode": "group", "on-resolve": "both", "ping-room-severities": ["page"]},
    "alert": {"message-mode": "alert", "on-resolve": "new"},
}


def metio_config(rooms: dict[str, str], receiver: dict[str, Any]) -> FileConfig:
    """The integration tier's config in metio's own format, for a homeserver that is never asked."""
    return FileConfig.model_validate({
        "http": {"address": "127.0.0.1", "port": 9088, "basic-password": BASIC[1], "metrics-enabled": True},
        "matrix": {"homeserver-url": "https://homeserver.invalid", "user-id": "@bot:localhost",
                   "access-token": "never-sent-anywhere", "room-mapping": rooms},
        "templating": {"external-url-mapping": {"alertmanager:9093": "https://am.example.com"}},
        "receiver": receiver,
    })  # fmt: skip


@dataclass
class Receiver:
    running: Bridge
    rooms: dict[str, str]
    url: str = ""

    @property
    def http(self) -> httpx.AsyncClient:
        return self.running.http

    def alerts_url(self, room: str) -> str:
        return f"{self.url}/alerts/{room}"


class Reader:
    """Reads each room as its reader would: the events its receiver's outbox sent there."""

    def __init__(self, receivers: dict[str, Receiver]) -> None:
        self.rooms: dict[str, RecordingClient] = {
            r.rooms["ops"]: r.running.matrix for r in receivers.values()
        }

    async def messages(self, room: str) -> list[dict[str, Any]]:
        return [
            {"event_id": s.event_id, "type": s.event_type, "content": s.content}
            for s in self.rooms[room].sent
        ]

    async def wait_for_messages(self, room: str, count: int, timeout: float = 30) -> list[dict[str, Any]]:
        await self.rooms[room].wait_for(count, timeout)
        return await self.messages(room)


@pytest.fixture
async def receivers(tmp_path: Path) -> AsyncIterator[dict[str, Receiver]]:
    async with AsyncExitStack() as stack:
        made: dict[str, Receiver] = {}
        for name, receiver in RECEIVERS.items():
            rooms = {"ops": f"!am-{name}:localhost"}
            (tmp_path / name).mkdir()
            settings = settings_from_file(
                metio_config(rooms, receiver), data_dir=tmp_path / name, log_json=False
            )
            running = await stack.enter_async_context(bridge(settings, routes, not_durable=not_durable))
            made[name] = Receiver(running, rooms)
        yield made


@pytest.fixture
def reader(receivers: dict[str, Receiver]) -> Reader:
    return Reader(receivers)


def auth() -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(":".join(BASIC).encode()).decode()}


# What metio writes for the metio sample alert (firing) with its README template, transcribed from
# the Go template's semantics; both sides go through the same sanitiser before comparing.
METIO_FIRING = (
    '      <p> <strong><font color="orange">FIRING</font></strong>  instance_down  >>  WARNING:   instance example1 is down  >>  '
    '<a href="https://wiki.example.com/doku.php?id=alerts:instancedown">Runbook</a> |   '
    '<a href="https://grafana.example.com/d/some-folder/some-dashboard">Dashboard</a> |  '
    '<a href="https://am.example.com/#/silences/new?filter=%7Balertname%3D%22instance_down%22%2C%20instance%3D%22example1%22%2C%20severity%3D%22warning%22%7D">Silence</a> </p>'
)


async def test_alert_mode_matches_metio(receivers: dict[str, Receiver], reader: Reader) -> None:
    receiver = receivers["alert"]
    payload = json.loads((DATA / "am_metio_http_alerts_resolved.json").read_text())
    payload["status"] = payload["alerts"][0]["status"] = "firing"
    response = await receiver.http.post(receiver.alerts_url("ops"), json=payload, headers=auth())
    assert (response.status_code, response.text) == (200, "")
    [event] = await reader.wait_for_messages(receiver.rooms["ops"], 1)
    assert event["content"]["formatted_body"] == sanitize(METIO_FIRING).strip()  # we trim surrounding space
    assert event["content"]["body"] == ("FIRING  instance_down  >>  WARNING:   instance example1 is down  >>  "
                                        "Runbook |   Dashboard |  Silence")  # fmt: skip
    assert event["content"]["msgtype"] == "m.text"
    # metio's behaviour for resolved alerts in this mode: a new message, green.
    payload["status"] = payload["alerts"][0]["status"] = "resolved"
    assert (
        await receiver.http.post(receiver.alerts_url("ops"), json=payload, headers=auth())
    ).status_code == 200
    events = await reader.wait_for_messages(receiver.rooms["ops"], 2)
    assert events[1]["content"]["formatted_body"].startswith(
        '<p> <strong><font color="#008000">RESOLVED</font>'
    )
    assert "m.relates_to" not in events[1]["content"]


async def test_injection_is_inert(receivers: dict[str, Receiver], reader: Reader) -> None:
    attack = '<img src=x onerror=alert(1)>"><script>alert(1)</script>'
    payload = json.loads((DATA / "am_docsrs_webhook_types_sample_v4_firing.json").read_text())
    payload["alerts"] = payload["alerts"][:1]
    alert = payload["alerts"][0]
    alert["labels"] = {"alertname": attack, "severity": attack, "instance": attack}
    alert["annotations"] = {"description": attack, "runbook": "javascript:alert(1)", "dashboard": attack}
    for name in ("group", "alert"):
        receiver = receivers[name]
        before = len(await reader.messages(receiver.rooms["ops"]))
        payload["groupKey"] = f"injection-{name}"
        assert (
            await receiver.http.post(receiver.alerts_url("ops"), json=payload, headers=auth())
        ).status_code == 200
        events = await reader.wait_for_messages(receiver.rooms["ops"], before + 1)
        assert_inert(events[-1]["content"]["formatted_body"])


def _go(value: str) -> str:
    """html/template's text escaping."""
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&#34;")
            .replace("'", "&#39;").replace("+", "&#43;"))  # fmt: skip


def metio_readme_firing(alert: dict[str, Any], external_url: str) -> str:
    """metio's README firing-template evaluated by hand, step by step as Go would (the oracle the
    default Jinja2 template is checked against). Unsafe-scheme hrefs are dropped here as we do."""
    labels, annotations = alert.get("labels", {}), alert.get("annotations", {})
    status = alert["status"]
    color = {"warning": "orange", "critical": "red"}.get(labels.get("severity", ""), "yellow")
    out = " " + " " + (" " + " " if labels.get("severity") in ("warning", "critical") else "") + " "
    if status == "resolved":
        color = "green"
        out += " " + " "
    out += f' <p> <strong><font color="{color}">{_go(status.upper())}</font></strong> '
    name = labels.get("name") or labels.get("alertname")
    out += (f" {_go(name)} " if name else "") + " >> "
    out += f" {_go(labels['severity'].upper())}: " if labels.get("severity") else ""
    text = annotations.get("description") or annotations.get("summary")
    out += (" " + f" {_go(text)} " if text else " ") + " >> "
    for key, label in (("runbook", "Runbook"), ("dashboard", "Dashboard")):
        if annotations.get(key):
            out += f' <a href="{annotations[key]}">{label}</a> | '
        out += " "
    silence = silence_url(external_url, labels)
    href = f' href="{silence}"' if silence.startswith(("http://", "https://")) else ""
    return out + f"<a{href}>Silence</a> </p>"


@pytest.mark.parametrize(
    "sample",
    [
        "am_metio_http_alerts_resolved.json",
        "am_docsrs_webhook_types_sample_v4_firing.json",
        "am_gist_mobeigi_firing_noflds.json",
        "am_synth_all_resolved_truncated.json",
    ],
)
async def test_every_sample_matches_metio(
    receivers: dict[str, Receiver], reader: Reader, sample: str
) -> None:
    receiver = receivers["alert"]
    room = receiver.rooms["ops"]
    payload = json.loads((DATA / sample).read_text())
    before = len(await reader.messages(room))
    response = await receiver.http.post(receiver.alerts_url("ops"), json=payload, headers=auth())
    assert response.status_code == 200
    events = await reader.wait_for_messages(room, before + len(payload["alerts"]))
    external = {"alertmanager:9093": "https://am.example.com"}.get(
        payload["externalURL"], payload["externalURL"]
    )
    for alert, event in zip(payload["alerts"], events[before:], strict=True):
        assert event["content"]["formatted_body"] == sanitize(metio_readme_firing(alert, external)).strip()
        assert event["content"]["body"] == html_to_text(event["content"]["formatted_body"])
