"""ldap-proxy's control plane in-process: what /backends, /readyz and /metrics say of a backend that
answers its check and of one that refuses connections. The LDAP listener opens on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from devstack.processes import free_port
from matrix_stack.services.ldap_proxy import ber
from matrix_stack.services.ldap_proxy.app import routes
from matrix_stack.services.ldap_proxy.config import LdapProxySettings
from matrix_stack.services.ldap_proxy.proxy import LdapProxy
from tests.unit.inprocess import serving


class Directory(asyncio.Protocol):
    """Stands in for a directory here (no process in the unit tier): every bind succeeds, which is
    all the default health check (haproxy's anonymous bind) asks."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport, self.buffer = transport, b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while 0 < (length := ber.pdu_length(self.buffer)) <= len(self.buffer):
            pdu, self.buffer = self.buffer[:length], self.buffer[length:]
            env = ber.envelope(pdu)
            if env.op == ber.BIND_REQUEST:
                self.transport.write(ber.result(env.message_id, ber.BIND_RESPONSE, ber.SUCCESS))


@pytest.fixture
async def directory_port() -> AsyncIterator[int]:
    server = await asyncio.get_running_loop().create_server(Directory, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def settings(*backends: dict[str, Any]) -> LdapProxySettings:
    return LdapProxySettings(
        listen_host="127.0.0.1", listen_port=free_port(), backends=list(backends), check_interval=60,
        check_timeout=2, log_json=False, workers=1,  # one process: this tier runs in-process
    )  # fmt: skip


async def test_backends_readiness_and_metrics(directory_port: int) -> None:
    up = {"name": "directory", "host": "127.0.0.1", "port": directory_port}
    gone = {"name": "gone", "host": "127.0.0.1", "port": free_port(), "backup": True}
    async with serving(settings(up, gone), LdapProxy, routes) as (_, http):
        described = (await http.get("/backends")).json()
        ready = await http.get("/readyz")
        metrics = (await http.get("/metrics")).text
    assert (described["balance"], described["connections"]) == ("first", 0)
    directory, refused = described["backends"]
    assert (directory["name"], directory["state"], directory["last_check"]["detail"]) == (
        "directory", "up", "success")  # fmt: skip
    assert (refused["name"], refused["state"], refused["backup"], refused["last_check"]["ok"]) == (
        "gone", "down", True, False)  # fmt: skip
    assert (ready.status_code, ready.json()) == (200, {"status": "ready", "backends_up": 1, "backends": 2})
    assert 'matrix_stack_ldap_backend_up{backend="directory"} 1.0' in metrics
    assert 'matrix_stack_ldap_backend_up{backend="gone"} 0.0' in metrics


async def test_not_ready_without_a_backend_up() -> None:
    gone = {"name": "gone", "host": "127.0.0.1", "port": free_port()}
    async with serving(settings(gone), LdapProxy, routes) as (_, http):
        ready = await http.get("/readyz")
        assert (await http.get("/healthz")).status_code == 200  # alive: only not ready
    assert ready.status_code == 503
    assert ready.json() == {"status": "not ready", "backends_up": 0, "backends": 1}
