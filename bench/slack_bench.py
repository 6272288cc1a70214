"""slack-webhook `POST /hooks/{id}` against the widely used matrix-webhook (PyPI, its generic
endpoint), both posting to the same real Synapse in the same run; then, each on a fresh
slack-webhook (an empty outbox), against a bare starlette endpoint on the same uvicorn setup that
parses the body and commits one message to the same outbox (the fair floor for this work, as in the
sentry and alertmanager benchmarks; target >= 0.5x), on each outbox backend (SQLite, and PostgreSQL
with fsync on), and one that only answers 200 (the ceiling of the HTTP stack).

matrix-webhook pins matrix-nio < 0.25, so it is installed into its own virtualenv under .tools/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.homeserver import PASSWORD, Homeserver, durable_postgres, homeserver, serving
from bench.loadgen import Comparison, against_bare, closed_loop, open_loop
from devstack.processes import free_port
from devstack.stack import LocalService

ROOT = Path(__file__).resolve().parent.parent
MATRIX_WEBHOOK = "matrix-webhook==3.9.1"
HOOK = "bench-hook-0123456789abcdefghij"
API_KEY = "bench-api-key"
CLOSED_REQUESTS = 3000
CONNECTIONS = 32
RATE = 200.0
SECONDS = 10.0
BODY = json.dumps({"text": "*CPU* over 90% on `node-17` <https://grafana.local/d/1|dashboard>"}).encode()
# The fair floor: the same uvicorn setup reading the body, parsing the JSON, committing one message to
# the same outbox (the do-nothing endpoint stays as the ceiling).
FLOOR = "bare + parse + outbox commit"


def matrix_webhook_python() -> Path:
    venv = ROOT / ".tools" / "matrix-webhook-venv"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", MATRIX_WEBHOOK], check=True)
    return python


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def start_matrix_webhook(python: Path, homeserver: str, user_id: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(python), "-m", "matrix_webhook"],
        env={**os.environ, "MATRIX_URL": homeserver, "MATRIX_ID": user_id, "MATRIX_PW": PASSWORD,
             "API_KEY": API_KEY, "HOST": "127.0.0.1", "PORT": str(port)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


async def against_matrix_webhook(python: Path, hs: Homeserver, ours_url: str, room: str) -> None:
    """Ours (already running) against matrix-webhook posting to `room` on the same Synapse."""
    port = free_port()
    theirs = start_matrix_webhook(python, hs.synapse.url, hs.bot.user_id, port)
    try:
        wait_http(f"http://127.0.0.1:{port}/health")
        theirs_url = f"http://127.0.0.1:{port}/{room}"
        theirs_body = json.dumps({"body": "**CPU** over 90% on `node-17` [dashboard](https://grafana.local/d/1)",
                                  "key": API_KEY}).encode()  # fmt: skip
        # Warm both up (connections, joins, caches).
        await closed_loop(ours_url, BODY, requests=50, connections=4)
        await closed_loop(theirs_url, theirs_body, requests=20, connections=4)

        print(f"slack-webhook vs matrix-webhook 3.9.1, same Synapse, {os.cpu_count()} cores")
        print(f"max throughput, {CONNECTIONS} keep-alive connections:")
        ours_max = await closed_loop(ours_url, BODY, requests=CLOSED_REQUESTS, connections=CONNECTIONS)
        print(f"  slack-webhook  : {ours_max.summary()}")
        theirs_max = await closed_loop(
            theirs_url, theirs_body, requests=CLOSED_REQUESTS // 10, connections=CONNECTIONS
        )
        print(f"  matrix-webhook : {theirs_max.summary()}")
        print(f"  ratio: {ours_max.rate / theirs_max.rate:.1f}x (target >= 5)")
        print(f"fixed rate {RATE:.0f} req/s for {SECONDS:.0f} s (latency from the scheduled send time):")
        ours_fixed = await open_loop(ours_url, BODY, rate=RATE, seconds=SECONDS)
        print(f"  slack-webhook  : {ours_fixed.summary()}  (target p99 < 50 ms)")
        theirs_fixed = await open_loop(theirs_url, theirs_body, rate=RATE, seconds=SECONDS / 2)
        print(f"  matrix-webhook : {theirs_fixed.summary()}  ({SECONDS / 2:.0f} s)")
    finally:
        theirs.terminate()
        theirs.wait(10)


def slack_webhook(room: str, data_dir: Path) -> LocalService:
    return LocalService(
        "slack-webhook", "matrix_stack.services.slack_webhook", "SLACK_WEBHOOK_", free_port(),
        {"HOOKS": json.dumps([{"id": HOOK, "room": room}]), "LOG_LEVEL": "WARNING"}, data_dir,
    )  # fmt: skip


async def main() -> None:
    python = matrix_webhook_python()
    with tempfile.TemporaryDirectory(prefix="bench-slack-") as name, durable_postgres() as pg:
        directory = Path(name)
        async with homeserver(directory, rooms=2) as hs:
            room_ours, room_theirs = hs.rooms
            # The peer against a slack-webhook of its own, stopped after: each floor comparison below
            # starts, as in the sentry and alertmanager benchmarks, on a fresh service, not one still
            # delivering the thousands of messages the peer comparison left in its outbox.
            peer = slack_webhook(room_ours, directory / "ours-peer")
            peer.start(hs.synapse.url, hs.bot.user_id, PASSWORD, directory / "logs")
            try:
                peer.wait_ready()
                await against_matrix_webhook(python, hs, f"{peer.url}/hooks/{HOOK}", room_theirs)
            finally:
                peer.stop()
            for backend, url in (("sqlite", None), ("postgres", pg.create_database("slack_bench"))):
                ours = slack_webhook(room_ours, directory / f"ours-{backend}")
                with serving(hs, ours, directory, url) as bare:
                    ours_url = f"{ours.url}/hooks/{HOOK}"
                    ours_label, floor = f"slack-webhook ({backend})", f"{FLOOR} ({backend})"
                    targets = {ours_label: ours_url, floor: f"{bare}/commit/hooks/{HOOK}"}
                    if backend == "sqlite":
                        targets["bare starlette"] = f"{bare}/hooks/{HOOK}"
                    print(f"slack-webhook vs bare starlette endpoints on the {backend} outbox, same uvicorn setup, "
                          f"{len(BODY)}-byte Slack message, {os.cpu_count()} cores")  # fmt: skip
                    await against_bare(Comparison(ours_label, "req/s", 0.5, "(target p99 < 50 ms)", floor), targets,
                                       BODY, requests=CLOSED_REQUESTS, connections=CONNECTIONS, rate=RATE,
                                       seconds=SECONDS)  # fmt: skip
