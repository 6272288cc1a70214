"""The SSRF-safe egress and Matrix server-name resolution against real servers: TLS stand-in
homeservers on loopback addresses (one request per connection unless kept alive, every accept
counted) and Debian's dnsmasq as the DNS server, on a free loopback port."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from devstack.livekit_jwt import LocalLivekitJwt
from devstack.tls import TlsFiles, make_tls
from matrix_stack.services.livekit_jwt import egress, federation
from matrix_stack.services.livekit_jwt.connections import Connections
from matrix_stack.services.livekit_jwt.egress import AddressPolicy, EgressError, EgressRefused
from matrix_stack.services.livekit_jwt.federation import (
    Destination,
    FederationError,
    UserinfoRejected,
    WellKnownCache,
)
from matrix_stack.shared.route.processes import free_ports, port_open, stop, wait_ready

DNSMASQ = "/usr/sbin/dnsmasq"
TOKEN = "s3cr3t+openid/token="  # needs quoting in a URL; must appear in no message
QUOTED_TOKEN = quote(TOKEN, safe="")
NAMES = ["origin.test", "redirect.test", "redirect-tls.test", "loop.test", "delegate-srv.test", "hs.test",
         "srv.test", "legacy.test", "rebind.test"]  # fmt: skip


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    length: bool = True  # send Content-Length; without, the body runs until the connection closes


def answer(document: object, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(
        status, json.dumps(document).encode(), {"Content-Type": "application/json", **(headers or {})}
    )


@dataclass(frozen=True)
class Seen:
    target: str
    host: str | None
    sni: str | None
    local_ip: str  # the address the connection came to


Handler = Callable[[Seen], Reply]


class Remote:
    """A stand-in server: HTTP/1.1 over TLS (or plain) on loopback addresses (one port for all). Without
    a handler it accepts and never says a word. Counts accepts before any TLS, so a refused request
    shows as none. With `keep_alive` it answers requests on a connection until the client closes it
    (`open`: connections not closed yet); else one, then closes."""

    def __init__(self, handler: Handler | None, tls: TlsFiles | None = None, *,
                 ip: str | list[str] = "127.0.0.1", port: int = 0, keep_alive: bool = False,
                 answers_per_connection: int | None = None) -> None:  # fmt: skip
        self.handler, self.ip, self.port, self.keep_alive = handler, ip, port, keep_alive
        # Then the next request is read and the connection closed unanswered: an idle timeout that
        # struck as the client sent on a kept connection.
        self.answers_per_connection = answers_per_connection
        self.accepts = 0
        self.open = 0
        self.dropped = 0  # requests read and left unanswered (answers_per_connection)
        self.seen: list[Seen] = []
        self._sni: dict[int, str] = {}
        self._writers: list[asyncio.StreamWriter] = []
        self._context: ssl.SSLContext | None = None
        if tls is not None:
            self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._context.load_cert_chain(tls.cert, tls.key)
            self._context.sni_callback = self._on_sni

    def _on_sni(self, connection: Any, name: str | None, context: ssl.SSLContext) -> None:
        if name is not None:
            self._sni[id(connection)] = name

    async def __aenter__(self) -> Remote:
        self._server = await asyncio.start_server(self._serve, self.ip, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for writer in self._writers:
            writer.close()
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepts += 1
        self.open += 1
        self._writers.append(writer)
        try:
            if self.handler is None:
                await reader.read()
                return
            sni = None
            if self._context is not None:
                await writer.start_tls(self._context)
                sni = self._sni.pop(id(writer.get_extra_info("ssl_object")), None)
            # answers_per_connection 0: every request is read and left unanswered
            answered = (
                1 if self.answers_per_connection != 0 and await self._answer(reader, writer, sni) else 0
            )
            while self.keep_alive and answered != self.answers_per_connection:
                if not await self._answer(reader, writer, sni):
                    break
                answered += 1
            if self.answers_per_connection is not None:
                await reader.readuntil(b"\r\n\r\n")
                self.dropped += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass  # the client gave up (a failed certificate check, a size limit): what some tests want
        finally:
            self.open -= 1
            writer.close()

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sni: str | None
    ) -> bool:
        """One request answered; False when the client closed the connection instead of sending one."""
        assert self.handler is not None
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return False
        request_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)
        }
        await reader.readexactly(int(headers.get("content-length", "0")))
        seen = Seen(
            request_line.split(" ")[1], headers.get("host"), sni, writer.get_extra_info("sockname")[0]
        )
        self.seen.append(seen)
        reply = self.handler(seen)
        head_lines = [f"HTTP/1.1 {reply.status} Whatever"]
        if not self.keep_alive:
            head_lines.append("Connection: close")
        head_lines += [f"{name}: {value}" for name, value in reply.headers.items()]
        if reply.length:
            head_lines.append(f"Content-Length: {len(reply.body)}")
        writer.write(("\r\n".join(head_lines) + "\r\n\r\n").encode() + reply.body)
        await writer.drain()
        return True


def userinfo(server: str | None = None) -> Handler:
    """Vouches for @alice of `server` (default: the Host asked for) to the right token."""

    def reply(seen: Seen) -> Reply:
        parts = urlsplit(seen.target)
        if parts.path != "/_matrix/federation/v1/openid/userinfo":
            return answer({"errcode": "M_UNRECOGNIZED"}, 404)
        if parse_qs(parts.query).get("access_token") != [TOKEN]:
            return answer({"errcode": "M_UNKNOWN_TOKEN"}, 401)
        return answer({"sub": f"@alice:{server or seen.host}"})

    return reply


def by_host(replies: dict[str, Reply]) -> Handler:
    return lambda seen: replies.get(seen.host or "", answer({"errcode": "M_NOT_FOUND"}, 404))


@dataclass(frozen=True)
class Net:
    dns: list[str]
    srv_port: int  # the SRV records' port: target.test (127.0.0.4) listens there, down.test does not
    tls: TlsFiles  # names NAMES and 127.0.0.1
    other_tls: TlsFiles  # names other.test only, and no IP, from another CA
    ca: Path  # both CAs


def _udp_and_tcp_port() -> int:
    for port in free_ports(20):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port for DNS")


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    directory = tmp_path_factory.mktemp("federation")
    tls = make_tls(directory / "tls", NAMES, loopback_ip=True)
    other_tls = make_tls(directory / "other", ["other.test"], loopback_ip=False)
    ca = directory / "ca-bundle.pem"
    ca.write_bytes(tls.ca.read_bytes() + other_tls.ca.read_bytes())
    dns_port, srv_port = _udp_and_tcp_port(), free_ports(1)[0]
    records = [
        "--address=/private.test/10.1.2.3",
        "--host-record=mixed.test,93.184.215.14,::1",
        *(f"--host-record={name},127.0.0.2" for name in
          ("origin.test", "redirect.test", "redirect-tls.test", "loop.test", "delegate-srv.test")),
        "--host-record=hs.test,127.0.0.3",
        "--host-record=target.test,127.0.0.4",
        "--host-record=rebind.test,127.0.0.5",
        "--host-record=down.test,127.0.0.6",
        f"--srv-host=_matrix-fed._tcp.srv.test,down.test,{srv_port},10,5",
        f"--srv-host=_matrix-fed._tcp.srv.test,target.test,{srv_port},20,5",
        f"--srv-host=_matrix._tcp.legacy.test,target.test,{srv_port},0,0",
        "--srv-host=_matrix-fed._tcp.none.test",  # no target: ".", no service
    ]  # fmt: skip
    log = directory / "dnsmasq.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [DNSMASQ, "--conf-file=/dev/null", "--no-resolv", "--no-hosts", f"--port={dns_port}",
             "--listen-address=127.0.0.1", "--bind-interfaces", "--keep-in-foreground", "--pid-file=",
             "--log-facility=-", "--local=/test/", *records],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_ready("dnsmasq", process, lambda: port_open(dns_port), timeout=10, log=log)
        yield Net([f"127.0.0.1:{dns_port}"], srv_port, tls, other_tls, ca)
    finally:
        stop(process)


def lookup(net: Net, policy: AddressPolicy, **extra: Any) -> dict[str, Any]:
    """Keyword arguments for resolve_server_name and openid_userinfo; a fresh cache unless given."""
    return {"policy": policy, "ca_file": net.ca, "timeout": 5.0, "dns_servers": net.dns,
            "cache": WellKnownCache(), **extra}  # fmt: skip


def clean(exc: BaseException) -> bool:
    return TOKEN not in str(exc) and QUOTED_TOKEN not in str(exc)


# -- against real servers -------------------------------------------------------------------------


async def test_an_ip_literal_is_refused_before_any_connection(net: Net) -> None:
    async with Remote(userinfo(), net.tls) as remote:
        with pytest.raises(EgressRefused, match="loopback") as refused:
            await federation.openid_userinfo(
                f"127.0.0.1:{remote.port}", TOKEN, **lookup(net, AddressPolicy())
            )
        assert refused.value.kind == "loopback"
        assert clean(refused.value)
        assert remote.accepts == 0
    for server, kind in (
        ("[::1]:8448", "loopback"),
        ("169.254.169.254", "metadata"),
        ("10.0.0.8", "private"),
    ):
        with pytest.raises(EgressRefused) as refused:
            await federation.openid_userinfo(server, TOKEN, **lookup(net, AddressPolicy()))
        assert refused.value.kind == kind


async def test_the_system_resolver_is_checked_too(net: Net) -> None:
    # No DNS servers configured: getaddrinfo (here /etc/hosts) answers, and its addresses are checked.
    with pytest.raises(EgressRefused, match=r"localhost resolves to 127\.0\.0\.1, which is loopback"):
        await federation.openid_userinfo("localhost:1", TOKEN, **lookup(net, AddressPolicy(), dns_servers=[]))


async def test_an_allowed_ip_literal_answers(net: Net) -> None:
    async with Remote(userinfo(), net.tls) as remote:
        server = f"127.0.0.1:{remote.port}"
        policy = AddressPolicy(["127.0.0.1/32"])
        assert await federation.openid_userinfo(server, TOKEN, **lookup(net, policy)) == f"@alice:{server}"
        [seen] = remote.seen
        # Host is the server name; no SNI for an IP, whose certificate names the IP
        assert (seen.host, seen.sni, seen.local_ip) == (server, None, "127.0.0.1")
        assert seen.target == f"/_matrix/federation/v1/openid/userinfo?access_token={QUOTED_TOKEN}"


async def test_a_name_with_an_internal_address_is_refused(net: Net) -> None:
    with pytest.raises(
        EgressRefused, match=r"private\.test resolves to 10\.1\.2\.3, which is private"
    ) as refused:
        await federation.openid_userinfo("private.test:8448", TOKEN, **lookup(net, AddressPolicy()))
    assert refused.value.kind == "private"
    # Every address counts: a public one beside the internal one does not help.
    with pytest.raises(EgressRefused, match=r"resolves to ::1") as refused:
        await federation.openid_userinfo("mixed.test:8448", TOKEN, **lookup(net, AddressPolicy()))
    assert refused.value.kind == "loopback"
    # Without a port: no well-known (refused too), no SRV, and the :8448 fallback is refused.
    with pytest.raises(EgressRefused, match=r"private\.test:8448"):
        await federation.openid_userinfo("private.test", TOKEN, **lookup(net, AddressPolicy()))


async def test_the_connection_goes_to_the_checked_address(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    # DNS rebinding needs a second lookup between the check and the connect. There is none: the client is
    # handed the checked address, so no getaddrinfo ever sees the name (the system resolver does not
    # even know it; only dnsmasq does).
    looked_up: list[object] = []
    real_getaddrinfo = socket.getaddrinfo

    def spy(host: Any, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    async with Remote(userinfo(), net.tls, ip="127.0.0.5") as remote:
        server = f"rebind.test:{remote.port}"
        policy = AddressPolicy(["127.0.0.5/32"])
        assert await federation.openid_userinfo(server, TOKEN, **lookup(net, policy)) == f"@alice:{server}"
        assert [(s.host, s.sni, s.local_ip) for s in remote.seen] == [(server, "rebind.test", "127.0.0.5")]
    assert "rebind.test" not in looked_up


async def test_delegation_by_well_known(net: Net) -> None:
    async with Remote(userinfo("origin.test"), net.tls, ip="127.0.0.3") as hs:
        delegated = f"hs.test:{hs.port}"
        replies = {
            "origin.test": answer({"m.server": delegated}, headers={"Cache-Control": "max-age=600"}),
            "delegate-srv.test": answer({"m.server": "srv.test"}),
        }
        async with Remote(by_host(replies), net.tls, ip="127.0.0.2") as wk:
            cache = WellKnownCache()
            # The delegated name is checked on its own: trusting origin.test does not extend to it.
            kwargs = lookup(
                net, AddressPolicy(["origin.test", delegated]), cache=cache, well_known_port=wk.port
            )
            assert await federation.resolve_server_name("origin.test", **kwargs) == [
                Destination("hs.test", hs.port, delegated, "hs.test")
            ]
            assert await federation.openid_userinfo("origin.test", TOKEN, **kwargs) == "@alice:origin.test"
            # Asked once: the second time came from the cache.
            assert [(s.host, s.sni, s.target) for s in wk.seen] == [
                ("origin.test", "origin.test", "/.well-known/matrix/server")
            ]
            assert [(s.host, s.sni, s.local_ip) for s in hs.seen] == [(delegated, "hs.test", "127.0.0.3")]
            only_origin = lookup(net, AddressPolicy(["origin.test"]), cache=cache, well_known_port=wk.port)
            with pytest.raises(EgressRefused, match=r"hs\.test resolves to 127\.0\.0\.3"):
                await federation.openid_userinfo("origin.test", TOKEN, **only_origin)
            assert len(hs.seen) == 1
            # A delegated name without a port goes on to SRV (not to a second well-known), Host and
            # certificate being the delegated name's.
            kwargs = lookup(net, AddressPolicy(["delegate-srv.test"]), well_known_port=wk.port)
            assert await federation.resolve_server_name("delegate-srv.test", **kwargs) == [
                Destination("down.test", net.srv_port, "srv.test", "srv.test"),
                Destination("target.test", net.srv_port, "srv.test", "srv.test"),
            ]


async def test_well_known_redirects_are_https_only_and_few(net: Net) -> None:
    async with Remote(by_host({}), None) as plain, Remote(by_host({}), net.tls) as loopback_tls:
        replies = {
            "redirect.test": Reply(
                302, headers={"Location": f"http://127.0.0.1:{plain.port}/.well-known/matrix/server"}
            ),
            "redirect-tls.test": Reply(307, headers={"Location": f"https://127.0.0.1:{loopback_tls.port}/x"}),
        }
        loop_reply = Reply(302, headers={"Location": "/.well-known/matrix/server"})
        async with Remote(
            lambda seen: replies.get(seen.host or "", loop_reply), net.tls, ip="127.0.0.2"
        ) as wk:
            # http is not followed even to an address the policy allows
            for policy in (
                AddressPolicy(["redirect.test"]),
                AddressPolicy(["redirect.test", "127.0.0.1/32"]),
            ):
                kwargs = lookup(net, policy, well_known_port=wk.port)
                assert await federation.resolve_server_name("redirect.test", **kwargs) == [
                    Destination("redirect.test", 8448, "redirect.test", "redirect.test")
                ]
            # https to a loopback address is refused by the policy like any other request
            kwargs = lookup(net, AddressPolicy(["redirect-tls.test"]), well_known_port=wk.port)
            assert await federation.resolve_server_name("redirect-tls.test", **kwargs) == [
                Destination("redirect-tls.test", 8448, "redirect-tls.test", "redirect-tls.test")
            ]
            assert plain.accepts == loopback_tls.accepts == 0
            # a redirect loop: the request and three redirects, then no delegation
            kwargs = lookup(net, AddressPolicy(["127.0.0.2/32"]), well_known_port=wk.port)
            assert await federation.resolve_server_name("loop.test", **kwargs) == [
                Destination("loop.test", 8448, "loop.test", "loop.test")
            ]
            assert sum(1 for s in wk.seen if (s.host or "").startswith("loop.test")) == 4


async def test_srv_records_pick_the_target(net: Net) -> None:
    kwargs = lookup(net, AddressPolicy(["srv.test"]))
    # srv.test has no address, so no well-known; then SRV, in priority order
    assert await federation.resolve_server_name("srv.test", **kwargs) == [
        Destination("down.test", net.srv_port, "srv.test", "srv.test"),
        Destination("target.test", net.srv_port, "srv.test", "srv.test"),
    ]
    assert await federation.resolve_server_name("legacy.test", **kwargs) == [
        Destination("target.test", net.srv_port, "legacy.test", "legacy.test")
    ]
    assert await federation.resolve_server_name("plain.test", **kwargs) == [
        Destination("plain.test", 8448, "plain.test", "plain.test")
    ]
    with pytest.raises(FederationError, match="no federation service"):
        await federation.resolve_server_name("none.test", **kwargs)
    # down.test has nothing listening: the next target answers, for srv.test
    async with Remote(userinfo(), net.tls, ip="127.0.0.4", port=net.srv_port) as target:
        assert await federation.openid_userinfo("srv.test", TOKEN, **kwargs) == "@alice:srv.test"
        assert [(s.host, s.sni, s.local_ip) for s in target.seen] == [("srv.test", "srv.test", "127.0.0.4")]


async def test_a_user_of_another_server_is_rejected(net: Net) -> None:
    policy = AddressPolicy(["127.0.0.1/32"])
    for vouching_for in ("evil.test", "127.0.0.1"):  # the port is part of the server name
        async with Remote(userinfo(vouching_for), net.tls) as remote:
            with pytest.raises(UserinfoRejected, match="of another server"):
                await federation.openid_userinfo(f"127.0.0.1:{remote.port}", TOKEN, **lookup(net, policy))
    refusal = answer({"errcode": "M_UNKNOWN_TOKEN", "error": f"unknown token {TOKEN}"}, 401)
    async with Remote(lambda seen: refusal, net.tls) as remote:
        with pytest.raises(UserinfoRejected, match=r"answered 401 \(M_UNKNOWN_TOKEN\)$") as rejected:
            await federation.openid_userinfo(f"127.0.0.1:{remote.port}", TOKEN, **lookup(net, policy))
        assert clean(rejected.value)


async def test_an_oversize_answer_is_cut_off(net: Net) -> None:
    policy = AddressPolicy(["127.0.0.1/32"])
    big = answer({"sub": "@alice:x", "padding": "x" * 100_000})
    async with (
        Remote(lambda seen: big, net.tls) as declared,
        Remote(lambda seen: replace(big, length=False), net.tls) as streamed,
    ):
        for remote in (declared, streamed):
            with pytest.raises(FederationError, match="over the limit") as too_big:
                await federation.openid_userinfo(f"127.0.0.1:{remote.port}", TOKEN, **lookup(net, policy))
            assert clean(too_big.value)
        with pytest.raises(EgressError, match="response over the limit of 1000 bytes"):
            await egress.https_get(
                f"https://127.0.0.1:{streamed.port}/", policy=policy, ca_file=net.ca, max_bytes=1000
            )


async def test_a_server_that_never_answers_times_out(net: Net) -> None:
    async with Remote(None) as silent:  # accepts, then not even a TLS handshake
        kwargs = lookup(net, AddressPolicy(["127.0.0.1/32"]), timeout=1.0)
        started = time.monotonic()
        with pytest.raises(FederationError, match="no answer within") as timed_out:
            await federation.openid_userinfo(f"127.0.0.1:{silent.port}", TOKEN, **kwargs)
        assert time.monotonic() - started < 2
        assert silent.accepts == 1
        assert clean(timed_out.value)


async def test_the_certificate_must_name_the_host(net: Net) -> None:
    policy = AddressPolicy(["127.0.0.1/32"])
    async with Remote(userinfo(), net.other_tls) as remote:  # other.test only, from the second CA
        url = f"https://127.0.0.1:{remote.port}/_matrix/federation/v1/openid/userinfo?access_token={QUOTED_TOKEN}"
        response = await egress.https_get(url, policy=policy, sni_hostname="other.test", ca_file=net.ca)
        assert (response.status, response.json()) == (200, {"sub": f"@alice:127.0.0.1:{remote.port}"})
        for sni, ca_file in (("hs.test", net.ca), (None, net.ca), ("other.test", None)):
            with pytest.raises(EgressError, match="CERTIFICATE_VERIFY_FAILED") as failed:
                await egress.https_get(url, policy=policy, sni_hostname=sni, ca_file=ca_file)
            assert clean(failed.value)
            assert "/openid/userinfo:" in str(failed.value)
        assert [s.sni for s in remote.seen] == ["other.test"]


async def test_redirects_are_returned_or_refused_never_followed(net: Net) -> None:
    policy = AddressPolicy(["127.0.0.1/32"])
    moved = Reply(302, headers={"Location": "https://127.0.0.1:1/elsewhere"})
    async with Remote(lambda seen: moved, net.tls) as remote:
        url = f"https://127.0.0.1:{remote.port}/x?access_token={QUOTED_TOKEN}"
        with pytest.raises(EgressError, match="answered 302, a redirect, which is not followed") as error:
            await egress.https_get(url, policy=policy, ca_file=net.ca)
        assert clean(error.value)
        response = await egress.https_get(url, policy=policy, ca_file=net.ca, redirects=True)
        assert (response.status, response.headers["location"]) == (302, "https://127.0.0.1:1/elsewhere")
        assert remote.accepts == 2
    with pytest.raises(EgressRefused, match="only https") as refused:
        await egress.https_get(f"http://127.0.0.1:1/?access_token={QUOTED_TOKEN}", policy=policy)
    assert refused.value.kind == "scheme"
    assert clean(refused.value)


# -- kept connections -------------------------------------------------------------------------------


async def settled(check: Callable[[], bool]) -> None:
    """Until `check` holds (a connection closed by the client reaches the server a moment later)."""
    for _ in range(100):
        if check():
            return
        await asyncio.sleep(0.02)
    assert check()


async def test_the_service_keeps_its_connection_to_a_homeserver(net: Net, tmp_path: Path) -> None:
    async with Remote(userinfo(), net.tls, keep_alive=True) as remote:
        server = f"127.0.0.1:{remote.port}"
        env = {"LIVEKIT_URL": "ws://127.0.0.1:1", "KEY": "lk-key", "SECRET": "a-livekit-secret-of-forty-bytes-or-so-kk",
               "FULL_ACCESS_HOMESERVERS": "other.example", "FEDERATION_ALLOW": "127.0.0.1/32",
               "FEDERATION_CA_FILE": str(net.ca)}  # fmt: skip
        body = {"room_id": "!call:example.org", "slot_id": "m.call#ROOM",
                "openid_token": {"access_token": TOKEN, "matrix_server_name": server},
                "member": {"id": "m-1", "claimed_user_id": f"@alice:{server}", "claimed_device_id": "DEV"}}  # fmt: skip
        with LocalLivekitJwt(env, directory=tmp_path) as service:
            async with httpx.AsyncClient(timeout=30) as http:
                for _ in range(2):
                    answer = await http.post(service.url + "/get_token", json=body)
                    assert answer.status_code == 200, answer.text
        # two token requests, two userinfo lookups, one TLS connection
        assert (remote.accepts, len(remote.seen)) == (1, 2)


async def test_a_kept_connection_serves_only_what_it_was_checked_for(net: Net, tmp_path: Path) -> None:
    copied_ca = tmp_path / "ca-copy.pem"  # the same CAs under another name: not the same pin either
    copied_ca.write_bytes(net.ca.read_bytes())
    policy = AddressPolicy(["127.0.0.0/8"])
    ok = answer({})
    async with Remote(lambda seen: ok, net.tls, ip=["127.0.0.1", "127.0.0.2"], port=free_ports(1)[0],
                      keep_alive=True) as remote:  # fmt: skip
        connections = Connections()

        async def get(ip: str = "127.0.0.1", sni: str = "hs.test", host: str = "hs.test",
                      ca: Path = net.ca, kept: Connections | None = connections) -> None:  # fmt: skip
            response = await egress.https_get(
                f"https://{ip}:{remote.port}/x", policy=policy, sni_hostname=sni, host_header=host, ca_file=ca,
                connections=kept,
            )  # fmt: skip
            assert response.status == 200

        await get()
        await get()
        assert remote.accepts == 1
        others: list[dict[str, Any]] = [{"ip": "127.0.0.2"}, {"sni": "origin.test"}, {"host": "origin.test"},
                                        {"ca": copied_ca}]  # fmt: skip
        for other in others:
            before = remote.accepts
            await get(**other)
            assert remote.accepts == before + 1, other
        await get()  # the first is still kept
        assert remote.accepts == 5
        assert [(s.local_ip, s.sni, s.host) for s in remote.seen] == [
            ("127.0.0.1", "hs.test", "hs.test"), ("127.0.0.1", "hs.test", "hs.test"),
            ("127.0.0.2", "hs.test", "hs.test"), ("127.0.0.1", "origin.test", "hs.test"),
            ("127.0.0.1", "hs.test", "origin.test"), ("127.0.0.1", "hs.test", "hs.test"),
            ("127.0.0.1", "hs.test", "hs.test"),
        ]  # fmt: skip
        assert len(connections) == 5
        await connections.aclose()
        await settled(lambda: remote.open == 0)
        # without Connections: a connection per request, closed after it
        await get(kept=None)
        await get(kept=None)
        assert remote.accepts == 7
        await settled(lambda: remote.open == 0)


async def test_a_get_on_a_connection_the_server_just_closed_is_asked_again(net: Net) -> None:
    policy = AddressPolicy(["127.0.0.0/8"])
    ok = answer({})
    async with Remote(lambda seen: ok, net.tls, port=free_ports(1)[0], keep_alive=True,
                      answers_per_connection=1) as remote:  # fmt: skip
        connections = Connections()

        async def request(method: str) -> egress.Response:
            return await egress.https_request(
                method, f"https://127.0.0.1:{remote.port}/x", policy=policy, sni_hostname="hs.test",
                ca_file=net.ca, connections=connections, json_body={} if method == "POST" else None,
            )  # fmt: skip

        assert (await request("GET")).status == 200
        assert (await request("GET")).status == 200  # its kept connection closed unanswered: asked again
        assert (remote.accepts, remote.dropped, len(remote.seen)) == (2, 1, 2)
        # a POST may have been acted on: never sent twice
        with pytest.raises(egress.EgressError, match="Server disconnected"):
            await request("POST")
        assert (remote.accepts, remote.dropped, len(remote.seen)) == (2, 2, 2)
        await connections.aclose()


async def test_a_request_a_server_drops_is_sent_at_most_twice_and_a_post_once(net: Net) -> None:
    # Each request carries a caller's token to a server a stranger named: a GET is asked once more
    # (the connection may have been a kept one, closed just then), never more; a POST never again.
    policy = AddressPolicy(["127.0.0.0/8"])
    async with Remote(lambda seen: answer({}), net.tls, port=free_ports(1)[0], keep_alive=True,
                      answers_per_connection=0) as remote:  # fmt: skip
        connections = Connections()
        for kept, method, sent in ((connections, "GET", 2), (None, "GET", 2), (connections, "POST", 1)):
            before = remote.dropped
            with pytest.raises(egress.EgressError, match="Server disconnected"):
                await egress.https_request(
                    method, f"https://127.0.0.1:{remote.port}/x", policy=policy, sni_hostname="hs.test",
                    ca_file=net.ca, connections=kept, json_body={} if method == "POST" else None,
                )  # fmt: skip
            await settled(lambda: remote.open == 0)
            assert remote.dropped - before == sent, (method, kept)
        await connections.aclose()


async def test_kept_connections_are_bounded_and_expire(net: Net) -> None:
    policy = AddressPolicy(["127.0.0.0/8"])
    ok = answer({})
    async with Remote(lambda seen: ok, net.tls, ip=["127.0.0.1", "127.0.0.2"], port=free_ports(1)[0],
                      keep_alive=True) as remote:  # fmt: skip

        async def get(connections: Connections, ip: str) -> None:
            response = await egress.https_get(
                f"https://{ip}:{remote.port}/x", policy=policy, sni_hostname="hs.test", ca_file=net.ca,
                connections=connections,
            )  # fmt: skip
            assert response.status == 200

        one = Connections(destinations=1)
        for ip in ("127.0.0.1", "127.0.0.2", "127.0.0.1"):
            await get(one, ip)
        assert (remote.accepts, len(one)) == (3, 1)
        await settled(lambda: remote.open == 1)  # the one evicted before was closed
        await one.aclose()
        await settled(lambda: remote.open == 0)

        # at most per_destination connections to one pin, in use or idle: the rest wait their turn
        few = Connections(per_destination=4)
        before = remote.accepts
        await asyncio.gather(*(get(few, "127.0.0.1") for _ in range(20)))
        assert 1 <= remote.accepts - before <= 4
        await few.aclose()
        await settled(lambda: remote.open == 0)

        before = remote.accepts
        brief = Connections(expiry=0.3)
        await get(brief, "127.0.0.1")
        await asyncio.sleep(0.4)
        await get(brief, "127.0.0.2")  # and the expired one goes
        assert len(brief) == 1
        await settled(lambda: remote.open == 1)
        await get(brief, "127.0.0.1")
        assert remote.accepts - before == 3
        await brief.aclose()
