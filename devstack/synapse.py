"""A real Synapse (from PyPI) on SQLite and loopback, plus an async client-server API helper.

With `federation_port` it also serves federation (and the OpenID userinfo endpoint) over TLS on a
second loopback port; named `127.0.0.1:<federation_port>`, other servers reach it there directly,
the IP literal with a port needing no well-known or SRV lookup."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

from devstack.process import Command, LocalServer
from devstack.tls import TlsFiles, make_tls
from matrix_stack.shared.route.processes import http_ok, port_open

SERVER_NAME = "localhost"

LOG_CONFIG = """
version: 1
formatters:
  precise:
    format: '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s'
handlers:
  file:
    class: logging.handlers.RotatingFileHandler
    formatter: precise
    filename: {log_file}
    maxBytes: 10485760
    backupCount: 2
    filters: [context]
filters:
  context:
    (): synapse.logging.context.LoggingContextFilter
    request: ""
root:
  level: WARNING
  handlers: [file]
disable_existing_loggers: false
"""


def _generous(per_second: float = 1000, burst: int = 1000) -> dict[str, float]:
    return {"per_second": per_second, "burst_count": burst}


@dataclass
class LocalSynapse(LocalServer):
    """One homeserver process. Its data stays in `directory`, so a restart keeps users and rooms."""

    directory: Path
    port: int
    rc_message: dict[str, float] = field(default_factory=lambda: _generous(10, 50))
    extra_config: dict[str, Any] = field(default_factory=dict)
    server_name: str = SERVER_NAME
    # A TLS listener with the federation and openid resources; its certificate from `make_tls`.
    federation_port: int | None = None
    name: str = field(default="synapse", init=False)

    start_timeout = 120.0
    ready_interval = 0.2

    @classmethod
    def federating(cls, directory: Path, port: int, federation_port: int, **options: Any) -> LocalSynapse:
        """A homeserver named `127.0.0.1:<federation_port>`, serving federation over TLS there."""
        return cls(directory, port, server_name=f"127.0.0.1:{federation_port}",
                   federation_port=federation_port, **options)  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def federation_url(self) -> str:
        if self.federation_port is None:
            raise RuntimeError("this Synapse has no federation listener")
        return f"https://127.0.0.1:{self.federation_port}"

    @property
    def federation_tls(self) -> TlsFiles:
        """The federation listener's certificate and key, and the CA (`.ca`) clients trust.

        Made once, on first use, and kept with the data: a restart serves the same certificate."""
        directory = self.directory / "federation-tls"
        files = TlsFiles(ca=directory / "ca.pem", cert=directory / "cert.pem", key=directory / "key.pem")
        if not all(path.exists() for path in (files.ca, files.cert, files.key)):
            files = make_tls(directory)
        return files

    @property
    def config_path(self) -> Path:
        return self.directory / "homeserver.yaml"

    @property
    def shared_secret(self) -> str:
        return (self.directory / "registration_shared_secret").read_text().strip()

    def write_config(self) -> None:
        """Write the configuration; secrets and the signing key are made once and kept."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for name in ("registration_shared_secret", "macaroon_secret_key", "form_secret"):
            path = self.directory / name
            if not path.exists():
                path.write_text(secrets.token_urlsafe(32))
        key_path = self.directory / "signing.key"
        if not key_path.exists():
            from signedjson.key import generate_signing_key, write_signing_keys

            with key_path.open("w") as handle:
                write_signing_keys(handle, [generate_signing_key("a_local")])
        log_config = self.directory / "log.config"
        log_config.write_text(LOG_CONFIG.format(log_file=self.directory / "homeserver.log"))
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "public_baseurl": f"{self.url}/",
            "pid_file": str(self.directory / "homeserver.pid"),
            "listeners": self._listeners(),
            "database": {"name": "sqlite3", "args": {"database": str(self.directory / "homeserver.db")}},
            "log_config": str(log_config),
            "media_store_path": str(self.directory / "media"),
            "signing_key_path": str(key_path),
            "registration_shared_secret_path": str(self.directory / "registration_shared_secret"),
            "macaroon_secret_key": (self.directory / "macaroon_secret_key").read_text(),
            "form_secret": (self.directory / "form_secret").read_text(),
            "report_stats": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "enable_metrics": False,
            "serve_client_wellknown": True,
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            "rc_message": self.rc_message,
            "rc_login": {"address": _generous(), "account": _generous(), "failed_attempts": _generous()},
            "rc_joins": {"local": _generous(), "remote": _generous()},
            "rc_invites": {"per_room": _generous(), "per_user": _generous(), "per_issuer": _generous()},
            "rc_registration": _generous(),
            "rc_room_creation": _generous(),
            **self._tls_config(),
            **self.extra_config,
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def _listeners(self) -> list[dict[str, Any]]:
        listeners: list[dict[str, Any]] = [
            {
                "port": self.port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }
        ]
        if self.federation_port is not None:
            listeners.append(
                {
                    "port": self.federation_port,
                    "bind_addresses": ["127.0.0.1"],
                    "type": "http",
                    "tls": True,
                    "x_forwarded": False,
                    # `federation` serves /_matrix/federation/v1/openid/userinfo too (Synapse skips
                    # `openid` beside it); named both so the listener says what it is for
                    "resources": [{"names": ["federation", "openid"], "compress": False}],
                }
            )
        return listeners

    def _tls_config(self) -> dict[str, str]:
        if self.federation_port is None:
            return {}
        tls = self.federation_tls
        return {"tls_certificate_path": str(tls.cert), "tls_private_key_path": str(tls.key)}

    @property
    def log(self) -> Path:
        """Its output; Synapse's own log is homeserver.log beside it."""
        return self.directory / "stdout.log"

    def command(self) -> Command:
        self.write_config()
        return Command(
            [sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            env={**os.environ, "SYNAPSE_ASYNC_IO_REACTOR": "0"},
            cwd=self.directory,
        )

    def ready(self) -> bool:
        client_ready = http_ok(f"{self.url}/_matrix/client/versions")()
        return client_ready and (self.federation_port is None or port_open(self.federation_port))


@dataclass
class Account:
    """A user on the homeserver, talking the client-server API over httpx."""

    base_url: str
    user_id: str
    access_token: str
    http: httpx.AsyncClient = field(repr=False)

    async def api(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """One client-server API call; waits out rate limiting (a helper, not the code under test)."""
        for _ in range(50):
            response = await self.http.request(
                method,
                f"{self.base_url}/_matrix/client/v3{path}",
                json=body,
                params=params or None,
                headers={"Authorization": f"Bearer {self.access_token}"},
            )
            if response.status_code != 429:
                break
            await asyncio.sleep(response.json().get("retry_after_ms", 500) / 1000)
        if response.status_code >= 400:
            raise MatrixApiError(response.status_code, response.text)
        return response.json()

    async def create_room(
        self,
        *,
        name: str | None = None,
        alias: str | None = None,
        invite: list[str] | None = None,
        preset: str = "private_chat",
    ) -> str:
        body: dict[str, Any] = {"preset": preset, "invite": invite or []}
        if name:
            body["name"] = name
        if alias:
            body["room_alias_name"] = alias
        return str((await self.api("POST", "/createRoom", body))["room_id"])

    async def join(self, room: str) -> str:
        return str((await self.api("POST", f"/join/{quote(room, safe='')}", {}))["room_id"])

    async def invite(self, room_id: str, user_id: str) -> None:
        await self.api("POST", f"/rooms/{quote(room_id, safe='')}/invite", {"user_id": user_id})

    async def joined_rooms(self) -> list[str]:
        return list((await self.api("GET", "/joined_rooms"))["joined_rooms"])

    async def messages(self, room_id: str) -> list[dict[str, Any]]:
        """Every `m.room.message` event in the room, oldest first."""
        events: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"dir": "f", "limit": 500}
            if token:
                params["from"] = token
            page = await self.api("GET", f"/rooms/{quote(room_id, safe='')}/messages", **params)
            events.extend(e for e in page.get("chunk", []) if e.get("type") == "m.room.message")
            token = page.get("end")
            if not token or not page.get("chunk"):
                return events

    async def wait_for_messages(
        self, room_id: str, count: int, timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Poll until the room holds at least `count` messages; return them all."""
        deadline = time.monotonic() + timeout
        while True:
            found = await self.messages(room_id)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.2)


class MatrixApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


async def register(
    synapse: LocalSynapse, http: httpx.AsyncClient, username: str, password: str, *, admin: bool = False
) -> Account:
    """Create a user with the shared-secret admin API, or log in if it exists already."""
    endpoint = f"{synapse.url}/_synapse/admin/v1/register"
    nonce = (await http.get(endpoint)).json()["nonce"]
    body = {
        "nonce": nonce,
        "username": username,
        "password": password,
        "admin": admin,
        "mac": _register_mac(synapse.shared_secret, nonce, username, password, admin),
    }
    response = await http.post(endpoint, json=body)
    if response.status_code == 200:
        data = response.json()
        return Account(synapse.url, data["user_id"], data["access_token"], http)
    if response.status_code == 400 and "M_USER_IN_USE" in response.text:
        return await login(synapse, http, username, password)
    raise MatrixApiError(response.status_code, response.text)


def _register_mac(secret: str, nonce: str, username: str, password: str, admin: bool) -> str:
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(nonce.encode() + b"\x00" + username.encode() + b"\x00" + password.encode() + b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    return mac.hexdigest()


async def login(synapse: LocalSynapse, http: httpx.AsyncClient, username: str, password: str) -> Account:
    response = await http.post(
        f"{synapse.url}/_matrix/client/v3/login",
        json={
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": username},
            "password": password,
        },
    )
    if response.status_code != 200:
        raise MatrixApiError(response.status_code, response.text)
    data = response.json()
    return Account(synapse.url, data["user_id"], data["access_token"], http)


async def openid_token(account: Account) -> dict[str, Any]:
    """An OpenID token for `account` (MSC1960): access_token, token_type, matrix_server_name and
    expires_in, which a third party checks at the homeserver's federation `openid/userinfo`."""
    path = f"/user/{quote(account.user_id, safe='')}/openid/request_token"
    token: dict[str, Any] = await account.api("POST", path, {})
    return token


async def lift_rate_limit(admin: Account, user_id: str) -> None:
    """Let `user_id` send without Synapse's message rate limit (admin API)."""
    response = await admin.http.post(
        f"{admin.base_url}/_synapse/admin/v1/users/{quote(user_id, safe='')}/override_ratelimit",
        json={"messages_per_second": 0, "burst_count": 0},
        headers={"Authorization": f"Bearer {admin.access_token}"},
    )
    if response.status_code != 200:
        raise MatrixApiError(response.status_code, response.text)
