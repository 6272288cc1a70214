"""alertmanager-receiver: notifications/s for a 20-alert group (group template and outbox on) and
acknowledge latency, against a bare starlette endpoint on the same uvicorn setup, in the same run."""

from __future__ import annotations

import base64
import json
import os
import tempfile
import uuid
from pathlib import Path

import yaml

from bench.homeserver import durable_postgres, homeserver, serving
from bench.loadgen import Comparison, against_bare
from devstack.processes import free_port
from devstack.stack import LocalService

REQUESTS = 2000
CONNECTIONS = 32
RATE = 100.0
SECONDS = 10.0


def group(size: int = 20) -> bytes:
    alerts = [{"status": "firing", "labels": {"alertname": "HighLatency", "instance": f"api-{i}:9100",
                                              "job": "api", "severity": "warning"},
               "annotations": {"summary": f"p99 latency over 500ms on api-{i}", "runbook": "https://runbooks/latency"},
               "startsAt": "2026-11-28T06:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
               "generatorURL": "http://prometheus:9090/graph?g0.expr=latency", "fingerprint": f"{i:016x}"}
              for i in range(size)]  # fmt: skip
    return json.dumps({"receiver": "matrix", "status": "firing", "alerts": alerts,
                       "groupLabels": {"alertname": "HighLatency"},
                       "commonLabels": {"alertname": "HighLatency", "job": "api", "severity": "warning"},
                       "commonAnnotations": {}, "externalURL": "http://alertmanager:9093", "version": "4",
                       "groupKey": "{}:{alertname=\"HighLatency\"}",
                       "truncatedAlerts": 0}).encode()  # fmt: skip


# The fair floor: the same uvicorn setup parsing the body and committing one message to the same
# outbox (group mode posts one message per notification); the do-nothing endpoint is the ceiling.
FLOOR = "bare + parse + outbox commit"


async def main() -> None:
    body = group()
    with tempfile.TemporaryDirectory(prefix="bench-am-") as name, durable_postgres() as pg:
        directory = Path(name)
        async with homeserver(directory, rooms=1) as hs:
            auth = "Basic " + base64.b64encode(b"alertmanager:bench-basic").decode()

            def headers() -> dict[str, str]:
                return {"Authorization": auth, "X-Request-Id": uuid.uuid4().hex}

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
                    await against_bare(Comparison(ours_label, "notifications/s", 0.3, floor=floor), targets, body,
                                       requests=REQUESTS, connections=CONNECTIONS, rate=RATE, seconds=SECONDS,
                                       headers=headers)  # fmt: skip
