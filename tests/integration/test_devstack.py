"""The local components the later Synapse-worker tests stand on, and `make run` itself (`python -m devstack`)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import psycopg2

from devstack.postgres import LocalPostgres
from devstack.processes import free_port
from devstack.redis import LocalRedis, ping
from tests.integration import e2ee_reader


def test_postgres_has_a_c_collated_database(postgres: LocalPostgres) -> None:
    dsn = postgres.create_database("synapse_fixture_check")
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT datcollate, pg_encoding_to_char(encoding) FROM pg_database WHERE datname = %s",
            ("synapse_fixture_check",),
        )
        assert cursor.fetchone() == ("C", "UTF8")


def test_redis_answers(redis: LocalRedis) -> None:
    assert ping(redis.port)


def _read_until(process: subprocess.Popen[str], marker: str, timeout: float = 120) -> str:
    assert process.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError("".join(seen))


def _commands(summary: str) -> list[str]:
    """The ready-to-paste curl commands, joined across their continuation lines."""
    joined = summary.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("curl ")]


async def _read_demo(homeserver: str, password: str, room_id: str, directory: Path) -> list[str]:
    """The demo room's bodies as the demo user reads them, once the five demo messages are there; the
    demo user then reacts 🔕 on the alert that came through Alertmanager, as the summary says."""
    e2ee_reader.install()
    reader = await e2ee_reader.Reader.start(directory / "reader.log")
    try:
        await reader.login(homeserver, "demo", password)
        deadline = asyncio.get_running_loop().time() + 120
        while True:
            view = await reader.events(room_id)
            bodies = view.bodies()
            through_alertmanager = [
                e for e in view.messages if (e.body or "").startswith("FIRING:1 HighLatency")
            ]
            if len([b for b in bodies if b]) >= 5 and through_alertmanager:
                await reader.react(room_id, through_alertmanager[0].event_id, "🔕")
                return bodies
            if asyncio.get_running_loop().time() > deadline:
                return bodies
            await asyncio.sleep(0.5)
    finally:
        await reader.close()


def _silences(curl: str) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = json.loads(
        subprocess.run(["bash", "-c", curl], capture_output=True, text=True, check=True).stdout
    )
    return answer


def test_make_run_stack(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "devstack",
        "--data-dir",
        str(tmp_path / "local"),
        "--synapse-port",
        str(free_port()),
    ]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        summary = _read_until(first, "Press Ctrl-C to stop")
        (notify_curl, slack_curl, sentry_curl, alerts_curl, alertmanager_curl, silences_curl, read_curl,
         backends_curl, livekit_curl) = _commands(summary)  # fmt: skip
        # Debian's Alertmanager runs beside the receiver, which acts on its alerts from the room
        assert re.search(r"^Alertmanager\s+http://127\.0\.0\.1:\d+", summary, re.MULTILINE), summary
        assert _silences(silences_curl) == []
        # MatrixRTC: the demo user's OpenID token, checked at Synapse's federation listener, becomes a
        # LiveKit token for the demo call
        issued = json.loads(subprocess.run(["bash", "-c", livekit_curl], capture_output=True, text=True,
                                           check=True).stdout)  # fmt: skip
        claims = jwt.decode(issued["jwt"], options={"verify_signature": False})
        assert issued["url"].startswith("ws://127.0.0.1:")
        assert claims["video"]["roomJoin"] is True
        # the LDAP demo: a login through ldap-proxy to a real slapd, and its control plane
        whoami = next(line.strip() for line in summary.splitlines() if line.strip().startswith("ldapwhoami "))
        login = subprocess.run(["bash", "-c", whoami], capture_output=True, text=True, check=True)
        assert login.stdout.strip() == "dn:uid=demo,ou=people,dc=example,dc=org"
        backends = json.loads(subprocess.run(["bash", "-c", backends_curl], capture_output=True, text=True,
                                             check=True).stdout)  # fmt: skip
        assert [b["state"] for b in backends["backends"]] == ["up"]
        posted = subprocess.run(["bash", "-c", notify_curl], capture_output=True, text=True, check=True)
        assert "delivery_id" in json.loads(posted.stdout)
        posted = subprocess.run(["bash", "-c", slack_curl], capture_output=True, text=True, check=True)
        assert posted.stdout == "ok"
        posted = subprocess.run(["bash", "-c", sentry_curl], capture_output=True, text=True, check=True)
        assert json.loads(posted.stdout)["ok"] is True
        posted = subprocess.run(["bash", "-c", alerts_curl + " -w '%{http_code}'"], capture_output=True, text=True,
                                check=True)  # fmt: skip
        assert posted.stdout == "200"
        posted = subprocess.run(["bash", "-c", alertmanager_curl + " -w '%{http_code}'"], capture_output=True,
                                text=True, check=True)  # fmt: skip
        assert posted.stdout == "200"
        room_id = re.search(r"demo room\s+#demo:localhost\s+\((![^)]+)\)", summary)
        assert room_id
        # The demo room is encrypted: the homeserver holds only ciphertext from the bot...
        chunk = json.loads(subprocess.run(["bash", "-c", read_curl], capture_output=True, text=True,
                                          check=True).stdout)["chunk"]  # fmt: skip
        assert {e["type"] for e in chunk if e["sender"] == "@bot:localhost" and "state_key" not in e} <= {
            "m.room.encrypted"
        }
        # ... and the demo user reads it in Element's crypto, from a device that logs in afterwards.
        password = re.search(r"@demo:localhost\s+password (\S+)", summary)
        homeserver = re.search(r"Synapse\s+(http://\S+)", summary)
        assert password
        assert homeserver
        bodies = asyncio.run(_read_demo(homeserver.group(1), password.group(1), room_id.group(1), tmp_path))
        assert "Hello from notify" in bodies
        assert any(b.startswith("FIRING:1 DiskFull (WARNING)") for b in bodies), bodies
        assert any(
            b.startswith("🆕 [ERROR] New issue DEMO-1: ReferenceError: x is not defined") for b in bodies
        )
        assert "Deploy of `api` finished 🚀 run 42 (https://example.org/run/42)" in bodies
        # the alert that went through Alertmanager reached the room, and the demo user's 🔕 on it
        # (the room's creator: above every power level) made a silence there
        assert any(b.startswith("FIRING:1 HighLatency") for b in bodies), bodies
        deadline = time.monotonic() + 60
        while not (active := [s for s in _silences(silences_curl) if s["status"] == {"state": "active"}]):
            assert time.monotonic() < deadline, _silences(silences_curl)
            time.sleep(0.5)
        [silence] = active
        assert silence["createdBy"] == "@demo:localhost"
        matcher = {"name": "alertname", "value": "HighLatency", "isRegex": False, "isEqual": True}
        assert matcher in silence["matchers"]
    finally:
        first.send_signal(signal.SIGINT)
        assert first.wait(30) == 0
    second = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        again = _read_until(second, "Press Ctrl-C to stop")
        assert room_id.group(1) in again  # the second run reuses the data
        # ... and every secret: the first run's commands (a Sentry integration, an Alertmanager
        # configured against it) still work.
        assert _commands(again)[:4] == [notify_curl, slack_curl, sentry_curl, alerts_curl]
        assert whoami in again  # the same demo directory and password
        login = subprocess.run(["bash", "-c", whoami], capture_output=True, text=True, check=True)
        assert login.stdout.strip() == "dn:uid=demo,ou=people,dc=example,dc=org"
        posted = subprocess.run(["bash", "-c", sentry_curl], capture_output=True, text=True, check=True)
        assert json.loads(posted.stdout)["ok"] is True
        posted = subprocess.run(["bash", "-c", alerts_curl + " -w '%{http_code}'"], capture_output=True, text=True,
                                check=True)  # fmt: skip
        assert posted.stdout == "200"
    finally:
        second.send_signal(signal.SIGINT)
        assert second.wait(30) == 0
