"""alertmanager-receiver: notifications/s for a 20-alert group (group template and outbox on) and
acknowledge latency, against a bare starlette endpoint on the same uvicorn setup, in the same run;
and against matrix-alertbot 0.3.3 (PyPI; Python + matrix-nio, a message per alert), configured as its
README has users configure it, on the same Synapse and room, fed the same notification.

matrix-alertbot pins nothing we share but brings its own matrix-nio and aiohttp, so it is installed
into its own virtualenv under .local/ (with its `e2e` extra: it always turns encryption on).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import yaml

from bench.homeserver import PASSWORD, Homeserver, durable_postgres, homeserver, serving
from bench.loadgen import Comparison, against_bare, closed_loop
from devstack.processes import free_port
from devstack.stack import LocalService

ROOT = Path(__file__).resolve().parent.parent
REQUESTS = 2000
CONNECTIONS = 32
RATE = 100.0
SECONDS = 10.0
ALERTBOT = "matrix-alertbot[e2e]==0.3.3"
ALERTBOT_REQUESTS = 64  # it posts 20 messages to Synapse, one after the other, before it answers
PEER_TARGET = 3.0


def group(size: int = 20) -> bytes:
    alerts = [{"status": "firing", "labels": {"alertname": "HighLatency", "instance": f"api-{i}:9100",
                                              "job": "api", "severity": "warning"},
               "annotations": {"description": f"p99 latency over 500ms on api-{i}",
                               "runbook": "https://runbooks/latency"},
               "startsAt": "2026-11-28T06:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
               "generatorURL": "http://prometheus:9090/graph?g0.expr=latency", "fingerprint": f"{i:016x}"}
              for i in range(size)]  # fmt: skip
    return json.dumps({"receiver": "matrix", "status": "firing", "alerts": alerts,
                       "groupLabels": {"alertname": "HighLatency"},
                       "commonLabels": {"alertname": "HighLatency", "job": "api", "severity": "warning"},
                       "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "version": "4",
                       "groupKey": "{}:{alertname=\"HighLatency\"}",
                       "truncatedAlerts": 0}).encode()  # fmt: skip


def alertbot_command() -> Path:
    """Its command (installed on first use)."""
    venv = ROOT / ".local" / "matrix-alertbot-venv"
    command = venv / "bin" / "matrix-alertbot"
    if not command.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", ALERTBOT], check=True)
    return command


@contextlib.contextmanager
def alertbot(command: Path, hs: Homeserver, directory: Path) -> Iterator[str]:
    """matrix-alertbot logged in as the bot (password, its own device), allowed in the room, its
    webhook on a free port; yields the room's webhook URL once a notification goes through. Its
    Alertmanager is never asked: a firing alert it has no silence for is just posted."""
    home = directory / "matrix-alertbot"
    home.mkdir()
    port, room = free_port(), hs.rooms[0]
    config = {"matrix": {"accounts": [{"id": hs.bot.user_id, "password": PASSWORD, "url": hs.synapse.url,
                                       "token_file": str(home / "token.json")}],
                         "allowed_rooms": [room]},
              "storage": {"path": str(home / "store")}, "cache": {"path": str(home / "cache")},
              "alertmanager": {"url": f"http://127.0.0.1:{free_port()}"},
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
    url = f"http://127.0.0.1:{port}/alerts/{room}"
    try:
        deadline = time.monotonic() + 60
        while True:  # answers 500 until its first sync has told it about the room
            try:
                if httpx.post(url, content=group(1), timeout=10).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"matrix-alertbot did not start: {(home / 'log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


# The fair floor: the same uvicorn setup parsing the body and committing one message to the same
# outbox (group mode posts one message per notification); the do-nothing endpoint is the ceiling.
FLOOR = "bare + parse + outbox commit"


async def main() -> None:
    body = group()
    command = alertbot_command()
    with tempfile.TemporaryDirectory(prefix="bench-am-") as name, durable_postgres() as pg:
        directory = Path(name)
        async with homeserver(directory, rooms=1) as hs:
            auth = "Basic " + base64.b64encode(b"alertmanager:bench-basic").decode()

            def headers() -> dict[str, str]:
                return {"Authorization": auth, "X-Request-Id": uuid.uuid4().hex}

            # The peer first, on a quiet Synapse (our outbox is still sending after our runs).
            with alertbot(command, hs, directory) as theirs_url:
                await closed_loop(theirs_url, body, requests=8, connections=4)
                theirs = await closed_loop(
                    theirs_url, body, requests=ALERTBOT_REQUESTS, connections=CONNECTIONS
                )
            rates = {}
            for backend, url in (("sqlite", None), ("postgres", pg.create_database("am_bench"))):
                port = free_port()
                config = {"http": {"address": "127.0.0.1", "port": port, "basic-password": "bench-basic"},
                          "matrix": {"homeserver-url": hs.synapse.url, "user-id": hs.bot.user_id,
                                     "access-token": hs.bot.access_token, "room-mapping": {"ops": hs.rooms[0]}},
                          "receiver": {"message-mode": "group", "on-resolve": "new"}}  # fmt: skip
                (directory / f"config-{backend}.yaml").write_text(yaml.safe_dump(config))
                ours = LocalService(
                    "alertmanager-receiver", "matrix_stack.services.alertmanager_receiver", "ALERTMANAGER_RECEIVER_",
                    port, {"CONFIG_PATH": str(directory / f"config-{backend}.yaml"), "LOG_LEVEL": "WARNING"},
                    directory / f"ours-{backend}",
                )  # fmt: skip
                ours_label, floor = f"alertmanager-receiver ({backend})", f"{FLOOR} ({backend})"
                with serving(hs, ours, directory, url) as bare:
                    targets = {ours_label: f"{ours.url}/alerts/ops", floor: f"{bare}/commit/alerts/ops"}
                    if backend == "sqlite":
                        targets["bare starlette"] = f"{bare}/alerts/ops"
                    print(f"alertmanager-receiver vs bare starlette endpoints on the {backend} outbox, "
                          f"{len(body)}-byte 20-alert group, {os.cpu_count()} cores")  # fmt: skip
                    best = await against_bare(Comparison(ours_label, "notifications/s", 0.3, floor=floor), targets,
                                              body, requests=REQUESTS, connections=CONNECTIONS, rate=RATE,
                                              seconds=SECONDS, headers=headers)  # fmt: skip
                    rates[backend] = best[ours_label]
            print(f"alertmanager-receiver vs matrix-alertbot 0.3.3 (its own venv, same Synapse and room, same "
                  f"{len(body)}-byte 20-alert notification; it answers once its 20 messages are sent, we once "
                  f"the group's message is durable), notifications/s accepted, {CONNECTIONS} connections:")  # fmt: skip
            print(f"  matrix-alertbot 0.3.3          : {theirs.summary()}")
            for backend, rate in rates.items():
                print(f"  alertmanager-receiver ({backend:8}): {rate:8.1f} req/s  "
                      f"ratio {rate / theirs.rate:.1f}x (target >= {PEER_TARGET:g})")  # fmt: skip
