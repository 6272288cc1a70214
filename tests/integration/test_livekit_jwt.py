"""livekit-jwt end to end: a real Synapse (named 127.0.0.1:PORT, federation over TLS) issues the
OpenID tokens and answers userinfo; the LiveKit stand-in speaks the real Twirp RoomService; the
service runs as its console entry point. JWTs are verified with pyjwt and livekit-api's verifier."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from livekit import api

from devstack.livekit import LocalLivekit
from devstack.livekit_jwt import LocalLivekitJwt
from devstack.synapse import Account, LocalSynapse, openid_token, register
from matrix_stack.services.livekit_jwt import hashing
from matrix_stack.shared.route.processes import free_ports

PASSWORD = "caller-password-5"
SECRET = "a-livekit-secret-of-forty-bytes-or-so-xx"


@pytest.fixture(scope="module")
def synapse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSynapse]:
    port, federation_port = free_ports(2)
    server = LocalSynapse.federating(tmp_path_factory.mktemp("synapse-rtc"), port, federation_port)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def livekit() -> Iterator[LocalLivekit]:
    with LocalLivekit(key="lk-key", secret=SECRET) as sfu:
        yield sfu


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("lk-secrets")
    (where / "key").write_text("lk-key\n")
    (where / "secret").write_text(SECRET + "\n")
    return where


def service_env(
    synapse: LocalSynapse, livekit: LocalLivekit, secrets_dir: Path, **extra: str
) -> dict[str, str]:
    return {
        "LIVEKIT_URL": livekit.url,
        "KEY_FILE": str(secrets_dir / "key"),
        "SECRET_FILE": str(secrets_dir / "secret"),
        "FULL_ACCESS_HOMESERVERS": synapse.server_name,
        # the homeserver is on loopback: allowed here, and only here, by the allow-list
        "FEDERATION_ALLOW": "127.0.0.1/32",
        "FEDERATION_CA_FILE": str(synapse.federation_tls.ca),
        **extra,
    }


@pytest.fixture(scope="module")
def service(synapse: LocalSynapse, livekit: LocalLivekit, secrets_dir: Path) -> Iterator[LocalLivekitJwt]:
    process = LocalLivekitJwt(service_env(synapse, livekit, secrets_dir))
    process.start()
    yield process
    process.close()


@pytest.fixture(scope="module")
def restricted(synapse: LocalSynapse, livekit: LocalLivekit, secrets_dir: Path) -> Iterator[LocalLivekitJwt]:
    """Full access for another homeserver only: this Synapse's users get join-only tokens."""
    process = LocalLivekitJwt(
        service_env(synapse, livekit, secrets_dir, FULL_ACCESS_HOMESERVERS="other.example")
    )
    process.start()
    yield process
    process.close()


@pytest.fixture(scope="module")
def strict(synapse: LocalSynapse, livekit: LocalLivekit, secrets_dir: Path) -> Iterator[LocalLivekitJwt]:
    """The default egress policy: no allow-list, so loopback and private targets are refused."""
    env = service_env(synapse, livekit, secrets_dir)
    del env["FEDERATION_ALLOW"]
    process = LocalLivekitJwt(env)
    process.start()
    yield process
    process.close()


@pytest.fixture(scope="module")
async def caller(synapse: LocalSynapse, http: httpx.AsyncClient) -> Account:
    return await register(synapse, http, "caller", PASSWORD)


async def openid(account: Account) -> dict[str, Any]:
    return await openid_token(account)


def token_body(account: Account, token: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "room_id": "!call:example.org",
        "slot_id": "m.call#ROOM",
        "openid_token": token,
        "member": {"id": "member-1", "claimed_user_id": account.user_id, "claimed_device_id": "DEVICE1"},
        **extra,
    }


async def post(url: str, **options: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(url, **options)


def verify(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, SECRET, algorithms=["HS256"])
    api.TokenVerifier("lk-key", SECRET).verify(token)  # LiveKit's own check
    return claims


async def test_get_token_for_a_full_access_user(
    service: LocalLivekitJwt, livekit: LocalLivekit, caller: Account
) -> None:
    token = await openid(caller)
    body = token_body(caller, token, an_unknown_field_from_a_newer_client=True)
    before = len(livekit.calls_to("CreateRoom"))
    answer = await post(service.url + "/get_token", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == "*"
    assert answer.content.endswith(b"}\n")  # Go's json.Encoder
    assert list(answer.json()) == ["url", "jwt"]
    assert answer.json()["url"] == livekit.url
    claims = verify(answer.json()["jwt"])
    room = hashing.room("v0.4.3", "!call:example.org", "m.call#ROOM")
    assert claims["sub"] == hashing.identity("v0.4.3", caller.user_id, "DEVICE1", "member-1")
    assert claims["iss"] == "lk-key"
    assert claims["exp"] - claims["nbf"] == 3600
    assert claims["video"] == {"roomJoin": True, "room": room, "canPublish": True, "canSubscribe": True}
    created = livekit.calls_to("CreateRoom")[before:]
    assert [(c.request.name, c.request.empty_timeout, c.request.departure_timeout) for c in created] == [
        (room, 300, 20)]  # fmt: skip
    # the token and the JWT never reach the log
    text = service.log.read_text()
    assert token["access_token"] not in text
    assert answer.json()["jwt"] not in text


async def test_restricted_users_get_a_join_only_token_and_no_room(
    restricted: LocalLivekitJwt, livekit: LocalLivekit, caller: Account
) -> None:
    before = len(livekit.calls_to("CreateRoom"))
    answer = await post(
        restricted.url + "/get_token", json=token_body(caller, await openid(caller)), timeout=30
    )
    assert answer.status_code == 200, answer.text
    assert verify(answer.json()["jwt"])["video"]["roomJoin"] is True
    assert len(livekit.calls_to("CreateRoom")) == before


async def test_legacy_sfu_get(service: LocalLivekitJwt, caller: Account) -> None:
    body = {"room": "!call:example.org", "openid_token": await openid(caller), "device_id": "DEVICE1"}
    answer = await post(service.url + "/sfu/get", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    claims = verify(answer.json()["jwt"])
    assert claims["sub"] == f"{caller.user_id}:DEVICE1"
    assert claims["video"]["room"] == hashing.legacy_room("v0.4.3", "!call:example.org")


UNAUTHORISED = b'{"errcode":"M_UNAUTHORIZED","error":"The request could not be authorised."}\n'


async def test_a_token_for_another_user_or_a_wrong_token_is_401(
    service: LocalLivekitJwt, caller: Account
) -> None:
    token = await openid(caller)
    other = token_body(caller, token)
    other["member"]["claimed_user_id"] = "@someone-else:" + token["matrix_server_name"]
    for body in (other, token_body(caller, {**token, "access_token": "not-a-real-token"})):
        answer = await post(service.url + "/get_token", json=body, timeout=30)
        assert (answer.status_code, answer.content) == (401, UNAUTHORISED)


# The bad-body table (lk-jwt-service's bytes for each), in-process: tests/unit/test_livekit_jwt_bodies.py.


def test_preflight_methods_and_size(service: LocalLivekitJwt) -> None:
    preflight = httpx.options(service.url + "/get_token", timeout=10)
    assert (preflight.status_code, preflight.content) == (200, b"")
    assert preflight.headers["access-control-allow-methods"] == "POST"
    assert "Content-Type" in preflight.headers["access-control-allow-headers"]
    wrong = httpx.get(service.url + "/sfu/get", timeout=10)
    assert (wrong.status_code, wrong.headers["access-control-allow-origin"]) == (405, "*")
    assert httpx.head(service.url + "/healthz", timeout=10).status_code == 200
    assert (
        httpx.post(service.url + "/get_token", content=b"x" * (2 * 1024 * 1024), timeout=10).status_code
        == 413
    )


class Listener:
    """A TCP listener that counts the connections it is offered: an SSRF target must see none."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.sock.close()


async def test_ssrf_targets_are_refused_and_never_connected(strict: LocalLivekitJwt, caller: Account) -> None:
    token = await openid(caller)
    v4, v6 = Listener(), Listener("::1")
    try:
        targets = [f"127.0.0.1:{v4.port}", f"[::1]:{v6.port}", f"[::ffff:127.0.0.1]:{v4.port}",
                   "169.254.169.254", "10.1.2.3:8448", token["matrix_server_name"]]  # fmt: skip
        for target in targets:
            body = token_body(caller, {**token, "matrix_server_name": target})
            answer = await post(strict.url + "/get_token", json=body, timeout=30)
            assert (answer.status_code, answer.content) == (401, UNAUTHORISED), target
        await asyncio.sleep(0.2)
        assert (v4.accepted, v6.accepted) == (0, 0)
    finally:
        v4.close()
        v6.close()
    reasons = [line for line in strict.log_lines() if line.get("msg") == "openid token refused"]
    assert len(reasons) == len(targets)
    assert all("refused" in line["reason"] for line in reasons)


def test_a_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    env = LocalLivekitJwt(
        {"LIVEKIT_URL": "ws://sfu:7880", "KEY": "k", "SECRET": "s"}, directory=tmp_path
    ).environment()
    result = subprocess.run([sys.executable, "-m", "matrix_stack.services.livekit_jwt"], env=env,
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "config error: LIVEKIT_JWT_FULL_ACCESS_HOMESERVERS: Field required"
    ]
    (tmp_path / "keys").write_text("just-a-key\n")
    env = LocalLivekitJwt({"LIVEKIT_URL": "ws://sfu:7880", "KEYS_FILE": str(tmp_path / "keys"),
                           "FULL_ACCESS_HOMESERVERS": "example.org"}, directory=tmp_path).environment()  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "matrix_stack.services.livekit_jwt"], env=env,
                            capture_output=True, text=True, timeout=30)  # fmt: skip
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"config error: LIVEKIT_JWT_KEYS_FILE: {tmp_path / 'keys'} must hold one line `key: secret`"
    )


async def test_a_restarted_sfu_does_not_fail_a_token(
    synapse: LocalSynapse, secrets_dir: Path, caller: Account, tmp_path: Path
) -> None:
    """CreateRoom is idempotent: a kept-alive connection the SFU closed is retried, not a 500."""
    (port,) = free_ports(1)
    first = LocalLivekit(key="lk-key", secret=SECRET, port=port)
    first.start()
    process = LocalLivekitJwt(service_env(synapse, first, secrets_dir), directory=tmp_path / "svc")
    process.start()
    try:
        body = token_body(caller, await openid(caller))
        assert (await post(process.url + "/get_token", json=body)).status_code == 200
        first.stop()
        with LocalLivekit(key="lk-key", secret=SECRET, port=port) as again:
            answers = [await post(process.url + "/get_token", json=body) for _ in range(3)]
            assert [a.status_code for a in answers] == [200, 200, 200], answers[0].text
            assert len(again.calls_to("CreateRoom")) == 3
    finally:
        process.close()
        first.stop()
