"""sentry-webhook: signed requests/s and acknowledge latency, against a bare starlette endpoint that
only answers 200 on the same uvicorn setup (the ceiling), in the same run, on the same machine."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx

from bench.homeserver import PASSWORD, homeserver
from bench.loadgen import Comparison, against_bare
from shared.devstack.processes import free_port, stop, wait_ready
from shared.devstack.stack import LocalService

SAMPLE = (
    Path(__file__).resolve().parent.parent / "tests" / "data" / "sentry" / "sentry_event_alert_triggered.json"
)
SECRET = "bench-client-secret-0123456789abcdef"
REQUESTS = 4000
CONNECTIONS = 32
RATE = 200.0
SECONDS = 10.0


def start_bare(port: int) -> subprocess.Popen[bytes]:
    """uvicorn as the services run it: uvloop/httptools when present, no access log."""
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--host", "127.0.0.1", "--port", str(port),
         "--no-access-log", "--log-level", "warning", "--no-server-header"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_ready("bare", process, lambda: _answers(port), timeout=30)
    return process


def _answers(port: int) -> bool:
    try:
        return httpx.post(f"http://127.0.0.1:{port}/sentry", content=b"{}", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


async def main() -> None:
    raw = SAMPLE.read_bytes()
    signature = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()

    def headers() -> dict[str, str]:
        return {"Sentry-Hook-Resource": "event_alert", "Sentry-Hook-Signature": signature,
                "Request-ID": uuid.uuid4().hex}  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="bench-sentry-") as name:
        directory = Path(name)
        async with homeserver(directory, rooms=1) as hs:
            synapse, bot, room = hs.synapse, hs.bot, hs.rooms[0]
            bare = None
            ours = None
            try:
                ours = LocalService(
                    "sentry-webhook", "services.sentry_webhook", "SENTRY_WEBHOOK_", free_port(),
                    {"CLIENT_SECRET": SECRET, "DEFAULT_ROOM": room, "LOG_LEVEL": "WARNING"}, directory / "ours",
                )  # fmt: skip
                ours.start(synapse.url, bot.user_id, PASSWORD, directory / "logs")
                ours.wait_ready()
                bare_port = free_port()
                bare = start_bare(bare_port)
                targets = {
                    "sentry-webhook": f"{ours.url}/sentry",
                    "bare starlette": f"http://127.0.0.1:{bare_port}/sentry",
                }
                print(f"sentry-webhook vs a bare starlette 200 endpoint, same uvicorn setup, {len(raw)}-byte signed "
                      f"event_alert, {os.cpu_count()} cores")  # fmt: skip
                await against_bare(Comparison("sentry-webhook", "req/s", 0.5, "(target p99 < 20 ms)"), targets, raw,
                                   requests=REQUESTS, connections=CONNECTIONS, rate=RATE, seconds=SECONDS,
                                   headers=headers)  # fmt: skip
            finally:
                stop(bare)
                if ours is not None:
                    ours.stop()
