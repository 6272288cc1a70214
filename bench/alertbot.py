"""matrix-alertbot 0.3.3 (PyPI; Python + matrix-nio), the peer operators use, run as its README has
users run it: its own account logged in with a password, the rooms it may post to and act in, its
nio store and diskcache in a temp dir, its Alertmanager, its webhook on a port.

It pins nothing we share but brings its own matrix-nio and aiohttp, so it is installed (with its `e2e`
extra: it always turns encryption on) into its own virtualenv under .tools/ on first use, as the slack
bench installs matrix-webhook.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.homeserver import PASSWORD, Homeserver
from devstack.synapse import Account, lift_rate_limit, register

ROOT = Path(__file__).resolve().parent.parent
ALERTBOT = "matrix-alertbot[e2e]==0.3.3"


def alertbot_command() -> Path:
    """Its command (installed on first use)."""
    venv = ROOT / ".tools" / "matrix-alertbot-venv"
    command = venv / "bin" / "matrix-alertbot"
    if not command.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", ALERTBOT], check=True)
    return command


async def alertbot_account(hs: Homeserver, rooms: list[str]) -> Account:
    """Its own account, without Synapse's message rate limit (as our bot's), a member of `rooms`."""
    account = await register(hs.synapse, hs.admin.http, "alertbot", PASSWORD)
    await lift_rate_limit(hs.admin, account.user_id)
    for room in rooms:
        await hs.admin.invite(room, account.user_id)
        await account.join(room)
    return account


def one_alert(name: str, index: int = 0, status: str = "firing") -> dict[str, Any]:
    """An alert with what both need (0.3.3 requires `annotations.description` and, firing,
    `labels.severity`)."""
    return {"status": status, "labels": {"alertname": name, "instance": f"api-{index}:9100", "job": "api",
                                         "severity": "warning"},
            "annotations": {"description": f"p99 latency over 500ms on api-{index}",
                            "runbook": "https://runbooks/latency"},
            "startsAt": "2026-11-28T06:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=latency", "fingerprint": f"{index:016x}"}  # fmt: skip


def notification(alerts: list[dict[str, Any]]) -> bytes:
    name = alerts[0]["labels"]["alertname"]
    return json.dumps({"receiver": "matrix", "status": "firing", "alerts": alerts,
                       "groupLabels": {"alertname": name},
                       "commonLabels": {"alertname": name, "job": "api", "severity": "warning"},
                       "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "version": "4",
                       "groupKey": f"{{}}:{{alertname=\"{name}\"}}", "truncatedAlerts": 0}).encode()  # fmt: skip


def group(size: int = 20) -> bytes:
    return notification([one_alert("HighLatency", i) for i in range(size)])


@contextlib.contextmanager
def alertbot(
    command: Path, hs: Homeserver, account: Account, rooms: list[str], alertmanager_url: str, port: int,
    directory: Path,
) -> Iterator[str]:  # fmt: skip
    """matrix-alertbot logged in as `account` (password, its own device), `rooms` allowed; yields its
    base URL once a notification to the first room goes through (until its first sync it answers 500)."""
    home = directory / "matrix-alertbot"
    home.mkdir()
    config = {"matrix": {"accounts": [{"id": account.user_id, "password": PASSWORD, "url": hs.synapse.url,
                                       "token_file": str(home / "token.json")}],
                         "allowed_rooms": rooms},
              "storage": {"path": str(home / "store")}, "cache": {"path": str(home / "cache")},
              "alertmanager": {"url": alertmanager_url},
              "webhook": {"address": "127.0.0.1", "port": port},
              # 0.3.3 routes an alert to a DM when it matches every `dm.filter_labels` (vacuously so
              # without the section, and then fails on the missing `dm.select_label`): the README's
              # DM section, matching none of these alerts, keeps them in the room.
              "dm": {"filter_labels": {"matrix": "dm"}, "select_label": "userid", "users": []},
              "logging": {"console_logging": {"enabled": True, "level": "WARNING"}}}  # fmt: skip
    (home / "config.yaml").write_text(yaml.safe_dump(config))
    log = (home / "log").open("wb")
    process = subprocess.Popen([str(command), str(home / "config.yaml")], cwd=home, stdout=log,
                               stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.post(f"{base}/alerts/{rooms[0]}", content=group(1), timeout=10).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"matrix-alertbot did not start: {(home / 'log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        process.terminate()
        process.wait(10)
        log.close()
