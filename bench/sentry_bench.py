"""sentry-webhook: signed requests/s and acknowledge latency, in the same run on the same machine,
against a bare starlette endpoint on the same uvicorn setup that parses the body and commits one
message to the same outbox (the floor for this work; target >= 0.5x), on each outbox backend
(SQLite, and PostgreSQL with fsync on), and one that only answers 200 (the ceiling of the HTTP
stack)."""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
import uuid
from pathlib import Path

from bench.homeserver import durable_postgres, homeserver, serving
from bench.loadgen import Comparison, against_bare
from devstack.processes import free_port
from devstack.stack import LocalService

SAMPLE = (
    Path(__file__).resolve().parent.parent / "tests" / "data" / "sentry" / "sentry_event_alert_triggered.json"
)
SECRET = "bench-client-secret-0123456789abcdef"
REQUESTS = 4000
CONNECTIONS = 32
RATE = 200.0
SECONDS = 10.0
# The fair floor: the same uvicorn setup reading the body, parsing the JSON, committing one message to
# the same outbox (the do-nothing endpoint stays as the ceiling).
FLOOR = "bare + parse + outbox commit"


async def main() -> None:
    raw = SAMPLE.read_bytes()
    signature = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()

    def headers() -> dict[str, str]:
        return {"Sentry-Hook-Resource": "event_alert", "Sentry-Hook-Signature": signature,
                "Request-ID": uuid.uuid4().hex}  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="bench-sentry-") as name, durable_postgres() as pg:
        directory = Path(name)
        async with homeserver(directory, rooms=1) as hs:
            for backend, url in (("sqlite", None), ("postgres", pg.create_database("sentry_bench"))):
                ours_label, floor = f"sentry-webhook ({backend})", f"{FLOOR} ({backend})"
                ours = LocalService(
                    "sentry-webhook", "matrix_stack.services.sentry_webhook", "SENTRY_WEBHOOK_", free_port(),
                    {"CLIENT_SECRET": SECRET, "DEFAULT_ROOM": hs.rooms[0], "LOG_LEVEL": "WARNING"},
                    directory / f"ours-{backend}",
                )  # fmt: skip
                with serving(hs, ours, directory, url) as bare:
                    targets = {ours_label: f"{ours.url}/sentry", floor: f"{bare}/commit/sentry"}
                    if backend == "sqlite":
                        targets["bare starlette"] = f"{bare}/sentry"
                    print(f"sentry-webhook vs bare starlette endpoints on the {backend} outbox, same uvicorn setup, "
                          f"{len(raw)}-byte signed event_alert, {os.cpu_count()} cores")  # fmt: skip
                    await against_bare(Comparison(ours_label, "req/s", 0.5, "(target p99 < 20 ms)", floor), targets,
                                       raw, requests=REQUESTS, connections=CONNECTIONS, rate=RATE, seconds=SECONDS,
                                       headers=headers)  # fmt: skip
