"""`matrix-stack run`: a real Synapse on SQLite with every service wired to it, on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import httpx

from devstack import alertmanager as alertmanager_binary
from devstack.alertmanager import LocalAlertmanager
from devstack.ldap_demo import LdapDemo
from devstack.process import Command, LocalProcess
from devstack.processes import free_port
from devstack.rtc_demo import RtcDemo
from devstack.synapse import Account, LocalSynapse, MatrixApiError, lift_rate_limit, register
from matrix_stack.services import catalog
from matrix_stack.shared.matrix.crypto.devices import MEGOLM
from matrix_stack.shared.route.processes import http_ok, port_open

DEMO_ALIAS = "#demo:localhost"
ALERT_DEMO = {
    "status": "firing", "receiver": "matrix", "groupKey": "demo", "externalURL": "http://127.0.0.1:9093",
    "groupLabels": {"alertname": "DiskFull"},
    "commonLabels": {"alertname": "DiskFull", "severity": "warning"},
    "alerts": [{"status": "firing", "annotations": {"summary": "Disk 95% full"},
                "labels": {"alertname": "DiskFull", "instance": "node-1", "severity": "warning"}}],
}  # fmt: skip
# An alert as Alertmanager takes it (POST /api/v2/alerts): it routes it to the receiver, which can
# then silence it there.
ALERT_INTO_ALERTMANAGER = [{"labels": {"alertname": "HighLatency", "service": "api", "severity": "warning"},
                            "annotations": {"summary": "p99 latency above 2 s"}}]  # fmt: skip
# An issue.created body as Sentry sends it; the printed curl carries its real signature.
SENTRY_DEMO = {
    "action": "created",
    "actor": {"id": "sentry", "name": "Sentry", "type": "application"},
    "data": {
        "issue": {
            "id": "1170820242",
            "shortId": "DEMO-1",
            "title": "ReferenceError: x is not defined",
            "culprit": "?(runner)",
            "level": "error",
            "count": "1",
            "userCount": 1,
            "project": {"id": "1", "slug": "demo", "name": "Demo"},
        }
    },
}


@dataclass
class LocalService(LocalProcess):
    """A service process started from its console module with its environment. `start` launches it
    as a bot account without waiting (several start at once); `wait_ready` waits for it."""

    name: str
    module: str
    env_prefix: str
    port: int
    env: dict[str, str]
    data_dir: Path
    directory: Path = field(init=False, repr=False)  # its data directory
    log_dir: Path | None = field(default=None, init=False)
    account: tuple[str, str, str] | None = field(default=None, init=False, repr=False)

    ready_interval = 0.2
    stop_timeout = 15.0
    start_timeout = 30.0

    def __post_init__(self) -> None:
        self.directory = self.data_dir

    @classmethod
    def of(cls, script: str, port: int, env: dict[str, str], data_dir: Path) -> LocalService:
        """The catalog's service of this console script, named by it."""
        service = catalog.named(script)
        return cls(script, service.module, service.env_prefix, port, env, data_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self, homeserver: str, user_id: str, password: str) -> dict[str, str]:
        p = self.env_prefix
        return {
            **os.environ,
            f"{p}HOMESERVER": homeserver,
            f"{p}USER_ID": user_id,
            f"{p}PASSWORD": password,
            f"{p}DATA_DIR": str(self.data_dir),
            f"{p}HOST": "127.0.0.1",
            f"{p}PORT": str(self.port),
            f"{p}LOG_JSON": "false",
            **{f"{p}{k}": v for k, v in self.env.items()},
        }

    @property
    def log(self) -> Path:
        if self.log_dir is None:
            raise RuntimeError(f"{self.name} has no log before start()")
        return self.log_dir / f"{self.name}.log"

    def start(self, homeserver: str, user_id: str, password: str, log_dir: Path) -> None:
        self.account = (homeserver, user_id, password)
        self.log_dir = log_dir
        self.launch()

    def command(self) -> Command:
        assert self.account is not None, "start() names the account"
        return Command([sys.executable, "-m", self.module], env=self.environment(*self.account))

    def ready(self) -> bool:
        return http_ok(f"{self.url}/readyz")()


def _pick_port(preferred: int) -> int:
    return preferred if not port_open(preferred) else free_port()


# Every secret the stack makes, made once and kept in credentials.json: a Sentry integration or an
# Alertmanager configured against one run keeps working after a restart.
GENERATED: dict[str, Callable[[], str]] = {
    "admin": lambda: secrets.token_urlsafe(12),
    "bot": lambda: secrets.token_urlsafe(12),
    "demo": lambda: secrets.token_urlsafe(12),
    "notify_token": lambda: secrets.token_urlsafe(24),
    # one secret for the bot's four devices: one cross-signing identity signs them all
    "encryption_key": lambda: secrets.token_urlsafe(32),
    "slack_hook": lambda: secrets.token_urlsafe(24),
    "sentry_secret": lambda: secrets.token_hex(32),
    "alerts_password": lambda: secrets.token_urlsafe(16),
    "ldap_demo": lambda: secrets.token_urlsafe(12),
    "ldap_admin": lambda: secrets.token_urlsafe(16),
    "livekit_secret": lambda: secrets.token_urlsafe(32),
}


def _credentials(path: Path) -> dict[str, str]:
    """Passwords and tokens made on the first run (or when a newer stack needs one more) and kept."""
    saved: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = {name: make() for name, make in GENERATED.items() if name not in saved}
    if missing:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**saved, **missing}, indent=2))
        path.chmod(0o600)
    return {**saved, **missing}


async def _demo_room(demo: Account, bot: Account) -> str:
    """The demo room, encrypted as Element makes private rooms (a room from an older run turns it on)."""
    try:
        room_id = await demo.join(DEMO_ALIAS)
    except MatrixApiError:
        room_id = await demo.create_room(name="matrix-stack demo", alias="demo", invite=[bot.user_id])
    try:
        await demo.api("GET", f"/rooms/{quote(room_id, safe='')}/state/m.room.encryption/")
    except MatrixApiError:
        await demo.api(
            "PUT", f"/rooms/{quote(room_id, safe='')}/state/m.room.encryption/", {"algorithm": MEGOLM}
        )
    if room_id not in await bot.joined_rooms():
        with contextlib.suppress(MatrixApiError):
            await demo.invite(room_id, bot.user_id)
        await bot.join(room_id)
    return room_id


async def prepare(synapse: LocalSynapse, creds: dict[str, str]) -> tuple[Account, Account, str]:
    async with httpx.AsyncClient(timeout=30) as http:
        admin = await register(synapse, http, "admin", creds["admin"], admin=True)
        bot = await register(synapse, http, "bot", creds["bot"])
        demo = await register(synapse, http, "demo", creds["demo"])
        await lift_rate_limit(admin, bot.user_id)
        room_id = await _demo_room(demo, bot)
        return bot, demo, room_id


def _alertmanager(data_dir: Path, receiver_port: int, password: str) -> LocalAlertmanager | None:
    """Debian's Alertmanager routing every alert to the receiver's demo room, where the receiver
    silences them in it (actions); None when it is not installed (scripts/ensure-system-packages.sh)."""
    if alertmanager_binary.binary() is None:
        return None
    return LocalAlertmanager(_pick_port(9093), {
        "route": {"receiver": "matrix", "group_by": ["alertname"], "group_wait": "1s",
                  "group_interval": "10s", "repeat_interval": "4h"},
        "receivers": [{"name": "matrix", "webhook_configs": [{
            "url": f"http://127.0.0.1:{receiver_port}/alerts/demo", "send_resolved": True,
            "http_config": {"basic_auth": {"username": "alertmanager", "password": password}}}]}],
    }, directory=data_dir / "alertmanager")  # fmt: skip


def run(data_dir: Path, synapse_port: int = 8008) -> int:
    # Ctrl-C stops the stack even when started from a shell that ignores SIGINT for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    data_dir = data_dir.resolve()
    creds = _credentials(data_dir / "credentials.json")
    # federation over TLS too: livekit-jwt checks the demo user's OpenID tokens there
    synapse = LocalSynapse(data_dir / "synapse", _pick_port(synapse_port), federation_port=_pick_port(8448))
    alerts_port = _pick_port(8084)
    alertmanager = _alertmanager(data_dir, alerts_port, creds["alerts_password"])
    # acting from the room: a reaction on an alert silences it in that Alertmanager
    actions = {"alertmanager-url": alertmanager.url} if alertmanager is not None else {}
    alerts_config = data_dir / "alertmanager-receiver" / "config.yaml"
    alerts_config.parent.mkdir(parents=True, exist_ok=True)
    alerts_config.write_text(
        json.dumps(
            {  # JSON is YAML; metio's format, credentials come from the env
                "http": {
                    "address": "127.0.0.1",
                    "port": alerts_port,
                    "basic-password": creds["alerts_password"],
                },
                "matrix": {
                    "homeserver-url": synapse.url,
                    "user-id": "@bot:localhost",
                    "room-mapping": {"demo": DEMO_ALIAS},
                },
                "receiver": {"message-mode": "group", "on-resolve": "edit"},
                "actions": actions,
            },
            indent=2,
        )
    )
    hooks = [{"id": creds["slack_hook"], "room": DEMO_ALIAS, "name": "demo"}]
    services = [
        LocalService.of(
            "notify",
            _pick_port(8081),
            {"TOKEN": creds["notify_token"], "DEFAULT_ROOM": DEMO_ALIAS},
            data_dir / "notify",
        ),
        LocalService.of(
            "slack-webhook", _pick_port(8082), {"HOOKS": json.dumps(hooks)}, data_dir / "slack-webhook"
        ),
        LocalService.of(
            "sentry-webhook",
            _pick_port(8083),
            {"CLIENT_SECRET": creds["sentry_secret"], "DEFAULT_ROOM": DEMO_ALIAS},
            data_dir / "sentry-webhook",
        ),
        LocalService.of(
            "alertmanager-receiver",
            alerts_port,
            {"CONFIG_PATH": str(alerts_config)},
            data_dir / "alertmanager-receiver",
        ),
    ]
    for service in services:
        service.env["ENCRYPTION_KEY"] = creds["encryption_key"]
    ldap = LdapDemo(data_dir / "ldap", creds["ldap_demo"], creds["ldap_admin"], _pick_port(3389),
                    _pick_port(8085))  # fmt: skip
    rtc = RtcDemo(data_dir / "livekit-jwt", creds["livekit_secret"], _pick_port(7880), _pick_port(8086))
    print(f"starting Synapse on {synapse.url} (data in {synapse.directory})", flush=True)
    try:
        synapse.start()
        bot, demo, room_id = asyncio.run(prepare(synapse, creds))
        for service in services:
            service.start(synapse.url, bot.user_id, creds["bot"], data_dir / "logs")
        if alertmanager is not None:
            alertmanager.launch()
        ldap.start()
        rtc.start(synapse)
        for service in services:
            service.wait_ready()
        if alertmanager is not None:
            alertmanager.wait_ready()
        _print_summary(synapse, creds, demo, room_id, services, alertmanager, data_dir)
        rtc_summary = rtc.summary(synapse, demo.user_id, demo.access_token)
        print(f"\n{ldap.summary()}\n\n{rtc_summary}\n\nPress Ctrl-C to stop everything.", flush=True)
        _wait_for_interrupt(synapse, services, alertmanager, ldap, rtc)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C at any moment, also while starting: stop cleanly
        pass
    finally:
        print("stopping...", flush=True)
        for service in services:
            service.stop()
        if alertmanager is not None:
            alertmanager.stop()
        ldap.stop()
        rtc.stop()
        synapse.stop()
    return 0


def _print_summary(
    synapse: LocalSynapse,
    creds: dict[str, str],
    demo: Account,
    room_id: str,
    services: list[LocalService],
    alertmanager: LocalAlertmanager | None,
    data_dir: Path,
) -> None:
    notify, slack, sentry, alerts = services
    sentry_body = json.dumps(SENTRY_DEMO, separators=(",", ":"))
    signature = hmac.new(creds["sentry_secret"].encode(), sentry_body.encode(), hashlib.sha256).hexdigest()
    print(
        f"""
matrix-stack is running; the next run reuses {data_dir}.

Synapse    {synapse.url}   (server name localhost, SQLite)
  demo user  @demo:localhost  password {creds["demo"]}
  bot user   @bot:localhost   password {creds["bot"]}
  demo room  {DEMO_ALIAS}  ({room_id})

notify     {notify.url}   (logs: {data_dir / "logs" / "notify.log"})
  curl -sS -X POST {notify.url}/notify -H 'Authorization: Bearer {creds["notify_token"]}' \\
       -H 'Content-Type: application/json' \\
       -d '{{"text": "Hello from notify", "html": "<b>Hello</b> from notify"}}'

slack-webhook  {slack.url}   (logs: {data_dir / "logs" / "slack-webhook.log"})
  curl -sS -X POST {slack.url}/hooks/{creds["slack_hook"]} -H 'Content-Type: application/json' \\
       -d '{{"text": "*Deploy* of `api` finished :rocket: <https://example.org/run/42|run 42>"}}'

sentry-webhook  {sentry.url}   (logs: {data_dir / "logs" / "sentry-webhook.log"})
  curl -sS -X POST {sentry.url}/sentry -H 'Content-Type: application/json' -H 'Sentry-Hook-Resource: issue' \\
       -H 'Sentry-Hook-Signature: {signature}' \\
       -d '{sentry_body}'

alertmanager-receiver  {alerts.url}   (config: {data_dir / "alertmanager-receiver" / "config.yaml"})
  curl -sS -X POST {alerts.url}/alerts/demo -u 'alertmanager:{creds["alerts_password"]}' \\
       -d '{json.dumps(ALERT_DEMO, separators=(",", ":"))}'
{_alertmanager_summary(alertmanager, data_dir)}
The demo room is end-to-end encrypted (as Element makes private rooms): read it in a client,
for example Element Web (https://app.element.io, "Sign in", homeserver {synapse.url}) as @demo:localhost.
The bot's device shows as verified by its owner (cross-signed). The homeserver only sees ciphertext:
  curl -sS '{synapse.url}/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=5' \\
       -H 'Authorization: Bearer {demo.access_token}'""",
        flush=True,
    )


def _alertmanager_summary(alertmanager: LocalAlertmanager | None, data_dir: Path) -> str:
    if alertmanager is None:
        return """
Alertmanager is not installed (scripts/ensure-system-packages.sh installs prometheus-alertmanager):
acting on alerts from the room is off.
"""
    alert = json.dumps(ALERT_INTO_ALERTMANAGER, separators=(",", ":"))
    return f"""
Alertmanager  {alertmanager.url}   (routes to alertmanager-receiver's /alerts/demo; logs: {alertmanager.log})
  an alert into Alertmanager, which sends it to the demo room (after its 1 s group_wait):
  curl -sS -X POST {alertmanager.url}/api/v2/alerts -H 'Content-Type: application/json' \\
       -d '{alert}'
  react 🔕 on it in Element (as @demo:localhost, who created the room: above every power level),
  or reply "silence 2h", or write "!alert list"; then see the silence:
  curl -sS {alertmanager.url}/api/v2/silences
"""


def _wait_for_interrupt(
    synapse: LocalSynapse,
    services: list[LocalService],
    alertmanager: LocalAlertmanager | None,
    ldap: LdapDemo,
    rtc: RtcDemo,
) -> None:
    stop = False

    def handle(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, handle)
    try:
        while not stop:
            if not synapse.running():
                raise RuntimeError("synapse stopped; see its logs")
            for service in services:
                if service.process is not None and service.process.poll() is not None:
                    raise RuntimeError(f"{service.name} stopped; see its log")
            if alertmanager is not None and not alertmanager.running():
                raise RuntimeError(f"alertmanager stopped; see {alertmanager.log}")
            if not ldap.running():
                raise RuntimeError("slapd or ldap-proxy stopped; see their logs")
            if not rtc.running():
                raise RuntimeError("livekit-jwt stopped; see its log")
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
