"""ldap-proxy against real OpenLDAP servers: logins, TLS both sides, read-only answers, failover and
fail-fast, health checks that see a hung directory, the failed-bind limit, bad input, the control
plane and config errors. The proxy runs as its console entry point; clients are ldap3 (what Synapse's
provider uses), ldap-utils and raw sockets for what no client would send."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ldap3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.blackhole import hanging_server
from devstack.haproxy import binary as haproxy_binary
from devstack.ldap_proxy import LocalLdapProxy
from devstack.processes import free_port
from devstack.slapd import LdapUser, LocalSlapd, ldap_bind
from devstack.tls import TlsFiles, make_tls
from matrix_stack.services.ldap_proxy import ber
from matrix_stack.shared.route.processes import port_open, stop, wait_ready

STARTTLS = "1.3.6.1.4.1.1466.20037"
ALICE = LdapUser("alice", "alice-password-1", "Alice Liddell", "alice@example.org")
BOB = LdapUser("bob", "bob-password-2", "Bob Builder", "bob@example.org")
USERS = (ALICE, BOB)
# A check timeout of its own second: a slapd on a loaded machine (a CPU hog, a benchmark) can take
# longer than 0.4 s to answer one, and one miss marks it down here (fall 1).
FAST_CHECKS = {"check_interval": 1.0, "check_timeout": 0.9, "check_rise": 2, "check_fall": 1}


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ldap")


@pytest.fixture(scope="module")
def directory_tls(tmp: Path) -> TlsFiles:
    """The directories' CA: both slapds' certificates come from it."""
    return make_tls(tmp / "directory", ["localhost"])


@pytest.fixture(scope="module")
def proxy_tls(tmp: Path) -> TlsFiles:
    """The proxy's own certificate, for a name of its own and no IP: clients must check the name."""
    return make_tls(tmp / "proxy", ["ldap-proxy.test"], loopback_ip=False)


@pytest.fixture(scope="module")
def directories(directory_tls: TlsFiles) -> Iterator[tuple[LocalSlapd, LocalSlapd]]:
    servers = (
        LocalSlapd(users=USERS, tls_files=directory_tls),
        LocalSlapd(users=USERS, tls_files=directory_tls),
    )
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.close()


def plain(server: LocalSlapd, name: str | None = None, **options: Any) -> dict[str, Any]:
    return {"name": name or f"slapd{server.port}", "host": "127.0.0.1", "port": server.port, **options}


@pytest.fixture
def proxies() -> Iterator[list[LocalLdapProxy]]:
    started: list[LocalLdapProxy] = []
    yield started
    for proxy in started:
        proxy.close()


def start_proxy(
    proxies: list[LocalLdapProxy], backends: list[dict[str, Any]], **settings: Any
) -> LocalLdapProxy:
    proxy = LocalLdapProxy(backends, settings={**FAST_CHECKS, **settings})
    proxies.append(proxy)
    proxy.start()
    return proxy


def connection(
    port: int,
    user: str | None = None,
    password: str | None = None,
    *,
    tls: ldap3.Tls | None = None,
    use_ssl: bool = False,
) -> ldap3.Connection:
    server = ldap3.Server(
        "127.0.0.1", port=port, use_ssl=use_ssl, tls=tls, get_info=ldap3.NONE, connect_timeout=5
    )
    return ldap3.Connection(server, user=user, password=password, receive_timeout=5, raise_exceptions=False)


def proxy_trust(proxy_tls: TlsFiles, name: str = "ldap-proxy.test") -> ldap3.Tls:
    return ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(proxy_tls.ca), valid_names=[name])


def bind_lines(proxy: LocalLdapProxy, count: int) -> list[dict[str, Any]]:
    """The audit lines, once `count` are written (a line follows the response it audits)."""
    deadline = time.monotonic() + 5
    while True:
        lines = [line for line in proxy.log_lines() if line.get("msg") == "bind"]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.02)


# --- logins, TLS ----------------------------------------------------------------------------------


def test_simple_bind_through_starttls_terminated_by_the_proxy(
    directories: tuple[LocalSlapd, LocalSlapd], proxy_tls: TlsFiles, proxies: list[LocalLdapProxy]
) -> None:
    a, b = directories
    proxy = start_proxy(
        proxies,
        [plain(a), plain(b)],
        tls_cert_file=str(proxy_tls.cert),
        tls_key_file=str(proxy_tls.key),
        require_tls=True,
    )
    conn = connection(proxy.port, a.user_dn("alice"), ALICE.password, tls=proxy_trust(proxy_tls))
    assert conn.open() is None
    assert conn.start_tls() is True
    assert conn.bind() is True, conn.result
    assert conn.extend.standard.who_am_i() == f"dn:{a.user_dn('alice')}"
    conn.unbind()

    wrong = connection(proxy.port, a.user_dn("alice"), "not-her-password", tls=proxy_trust(proxy_tls))
    wrong.open()
    wrong.start_tls()
    assert wrong.bind() is False
    assert wrong.result["result"] == 49

    # require_tls: a password bind in the clear is refused by the proxy, an anonymous one is not
    clear = connection(proxy.port, a.user_dn("alice"), ALICE.password)
    assert clear.bind() is False
    assert clear.result["result"] == ber.CONFIDENTIALITY_REQUIRED
    assert connection(proxy.port).bind() is True


def test_the_client_checks_the_proxy_certificate_and_name(
    directories: tuple[LocalSlapd, LocalSlapd],
    proxy_tls: TlsFiles,
    directory_tls: TlsFiles,
    proxies: list[LocalLdapProxy],
) -> None:
    a, _ = directories
    proxy = start_proxy(
        proxies, [plain(a)], tls_cert_file=str(proxy_tls.cert), tls_key_file=str(proxy_tls.key)
    )
    for tls in (
        ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(proxy_tls.ca)),  # 127.0.0.1 is not its name
        proxy_trust(proxy_tls, "another-name.test"),
        ldap3.Tls(
            validate=ssl.CERT_REQUIRED, ca_certs_file=str(directory_tls.ca), valid_names=["ldap-proxy.test"]
        ),
    ):
        conn = connection(proxy.port, tls=tls)
        conn.open()
        with pytest.raises(ldap3.core.exceptions.LDAPException):
            conn.start_tls()
    # and with ldap-utils (OpenLDAP's libldap, GnuTLS): the proxy's name is what the client dialled
    env = {**os.environ, "LDAPTLS_CACERT": str(proxy_tls.ca)}
    result = subprocess.run(["ldapwhoami", "-x", "-ZZ", "-H", f"ldap://127.0.0.1:{proxy.port}"],
                            env=env, capture_output=True, text=True, timeout=10)  # fmt: skip
    assert result.returncode != 0  # the certificate is for ldap-proxy.test, not 127.0.0.1


def test_a_renewed_certificate_is_served_without_a_restart(
    directories: tuple[LocalSlapd, LocalSlapd], tmp: Path, proxies: list[LocalLdapProxy]
) -> None:
    a, _ = directories
    old, new = make_tls(tmp / "old", ["ldap-proxy.test"]), make_tls(tmp / "renewed", ["ldap-proxy.test"])
    live = tmp / "live"
    live.mkdir()
    for name in ("cert.pem", "key.pem"):
        (live / name).write_bytes((old.cert if name == "cert.pem" else old.key).read_bytes())
    proxy = start_proxy(proxies, [plain(a)], tls_cert_file=str(live / "cert.pem"), tls_key_file=str(live / "key.pem"),
                        certificate_reload_seconds=1, workers=2)  # fmt: skip

    def starts_tls(trusted: TlsFiles) -> bool:
        conn = connection(proxy.port, tls=proxy_trust(trusted))
        conn.open()
        try:
            return bool(conn.start_tls())
        except ldap3.core.exceptions.LDAPException:
            return False
        finally:
            with contextlib.suppress(ldap3.core.exceptions.LDAPException, OSError):
                conn.unbind()

    assert starts_tls(old)
    assert not starts_tls(new)
    (live / "key.pem").write_bytes(new.key.read_bytes())  # what a Secret update does, file by file
    (live / "cert.pem").write_bytes(new.cert.read_bytes())
    # Each worker reloads on its own look: the renewal is served once both have (not when the first has).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sum(1 for line in proxy.log_lines() if line.get("msg") == "certificate reloaded") >= 2:
            break
        time.sleep(0.2)
    assert all(starts_tls(new) for _ in range(8))
    assert any(line.get("msg") == "certificate reloaded" for line in proxy.log_lines())


def test_ldaps_listener_and_tls_to_the_backends(
    directories: tuple[LocalSlapd, LocalSlapd],
    proxy_tls: TlsFiles,
    directory_tls: TlsFiles,
    proxies: list[LocalLdapProxy],
) -> None:
    a, b = directories
    ldaps_port = free_port()
    backends = [
        {"name": "over-ldaps", "host": "127.0.0.1", "port": a.ldaps_port, "tls": "ldaps",
         "ca_file": str(directory_tls.ca), "server_name": "localhost"},
        {"name": "over-starttls", "host": "127.0.0.1", "port": b.port, "tls": "starttls",
         "ca_file": str(directory_tls.ca), "server_name": "localhost"},
    ]  # fmt: skip
    proxy = start_proxy(proxies, backends, tls_cert_file=str(proxy_tls.cert), tls_key_file=str(proxy_tls.key),
                        ldaps_port=ldaps_port, balance="round_robin", check_type="rootdse")  # fmt: skip
    assert proxy.backends_state() == {"over-ldaps": "up", "over-starttls": "up"}
    used = set()
    for _ in range(4):
        conn = connection(
            ldaps_port, a.user_dn("bob"), BOB.password, tls=proxy_trust(proxy_tls), use_ssl=True
        )
        assert conn.bind() is True, conn.result
        conn.unbind()
    for line in bind_lines(proxy, 4):
        if line.get("dn") == a.user_dn("bob"):
            used.add(line["backend"])
    assert used == {"over-ldaps", "over-starttls"}  # round robin reached both, each over its TLS


def test_round_robin_turns_go_to_requests_not_to_probes(
    directories: tuple[LocalSlapd, LocalSlapd], proxies: list[LocalLdapProxy]
) -> None:
    a, b = directories
    # one worker: each worker takes its own turns (the kernel spreads connections over them)
    proxy = start_proxy(proxies, [plain(a, "a"), plain(b, "b")], balance="round_robin", workers=1)
    for _ in range(4):
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5):
            pass  # what ldap3's ServerPool does before each real connection: connect, close
        assert ldap_bind(proxy.port, a.user_dn("alice"), ALICE.password) == 0
    assert [line["backend"] for line in bind_lines(proxy, 4)] == ["b", "a", "b", "a"]


def test_backend_connections_are_reused_only_behind_a_bind(
    directories: tuple[LocalSlapd, LocalSlapd], proxies: list[LocalLdapProxy]
) -> None:
    a, _ = directories
    proxy = start_proxy(proxies, [plain(a, "a")])
    alice = a.user_dn("alice")
    for _ in range(5):
        assert ldap_bind(proxy.port, alice, ALICE.password) == 0
    assert proxy.metric("matrix_stack_ldap_upstream_reused_total") >= 3
    # a session that does not open with a bind never gets a connection someone was bound on
    anonymous = connection(proxy.port)
    anonymous.open()
    assert anonymous.extend.standard.who_am_i() in (None, "")
    anonymous.unbind()
    # nor does a failed bind leave the last identity on the reused connection
    failed = connection(proxy.port, alice, "wrong")
    assert failed.bind() is False
    assert failed.extend.standard.who_am_i() in (None, "")
    failed.unbind()
    bob = connection(proxy.port, a.user_dn("bob"), BOB.password)
    assert bob.bind() is True
    assert bob.extend.standard.who_am_i() == f"dn:{a.user_dn('bob')}"
    bob.unbind()
    assert httpx.get(proxy.control + "/backends").json()["backends"][0]["idle_connections"] >= 1


def test_idle_connections_die_with_their_directory_and_logins_go_on(proxies: list[LocalLdapProxy]) -> None:
    with LocalSlapd(users=USERS) as server:
        proxy = start_proxy(proxies, [plain(server, "d")])
        dn = server.user_dn("bob")
        for _ in range(3):
            assert ldap_bind(proxy.port, dn, BOB.password) == 0
        server.stop()  # every idle connection to it is closed
        server.start()
        deadline = time.monotonic() + 10
        while proxy.backends_state()["d"] != "up" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [ldap_bind(proxy.port, dn, BOB.password) for _ in range(3)] == [0, 0, 0]


def test_a_backend_whose_certificate_does_not_verify_is_down(
    directories: tuple[LocalSlapd, LocalSlapd],
    proxy_tls: TlsFiles,
    directory_tls: TlsFiles,
    proxies: list[LocalLdapProxy],
) -> None:
    a, b = directories
    backends = [
        {"name": "wrong-ca", "host": "127.0.0.1", "port": a.ldaps_port, "tls": "ldaps", "ca_file": str(proxy_tls.ca)},
        {"name": "wrong-name", "host": "127.0.0.1", "port": b.port, "tls": "starttls",
         "ca_file": str(directory_tls.ca), "server_name": "not-the-directory.test"},
        plain(b, "good"),
    ]  # fmt: skip
    proxy = start_proxy(proxies, backends)
    assert proxy.backends_state() == {"wrong-ca": "down", "wrong-name": "down", "good": "up"}
    details = {
        b["name"]: b["last_check"]["detail"]
        for b in httpx.get(proxy.control + "/backends").json()["backends"]
    }
    assert "CERTIFICATE_VERIFY_FAILED" in details["wrong-ca"]
    assert "CERTIFICATE_VERIFY_FAILED" in details["wrong-name"] or "mismatch" in details["wrong-name"]
    assert ldap_bind(proxy.port, a.user_dn("alice"), ALICE.password) == 0  # first: to `good`, the only one up


def test_starttls_passed_through_to_the_directory(
    directories: tuple[LocalSlapd, LocalSlapd], directory_tls: TlsFiles, proxies: list[LocalLdapProxy]
) -> None:
    a, _ = directories
    proxy = start_proxy(proxies, [plain(a)], starttls="passthrough", read_only=False)
    # the client sees the directory's own certificate, end to end
    tls = ldap3.Tls(
        validate=ssl.CERT_REQUIRED, ca_certs_file=str(directory_tls.ca), valid_names=["localhost"]
    )
    conn = connection(proxy.port, a.user_dn("alice"), ALICE.password, tls=tls)
    conn.open()
    assert conn.start_tls() is True
    assert conn.bind() is True, conn.result
    assert conn.search(a.user_dn("alice"), "(objectClass=*)", attributes=["mail"]) is True
    assert conn.entries[0].mail.value == ALICE.mail
    conn.unbind()


# --- read-only ------------------------------------------------------------------------------------


def test_read_only_answers_writes_itself_and_the_directory_is_unchanged(
    directories: tuple[LocalSlapd, LocalSlapd], proxies: list[LocalLdapProxy]
) -> None:
    a, _ = directories
    proxy = start_proxy(proxies, [plain(a)])
    dn = a.user_dn("alice")
    conn = connection(proxy.port, dn, ALICE.password)
    assert conn.bind() is True
    assert conn.modify(dn, {"mail": [(ldap3.MODIFY_REPLACE, ["mallory@example.org"])]}) is False
    assert conn.result["result"] == ber.UNWILLING_TO_PERFORM
    assert conn.result["message"] == "this LDAP proxy is read-only"
    assert conn.add(f"uid=eve,{a.base_dn}", ["inetOrgPerson"], {"cn": "Eve", "sn": "E"}) is False
    assert conn.result["result"] == ber.UNWILLING_TO_PERFORM
    assert conn.delete(dn) is False
    assert conn.modify_dn(dn, "uid=alicia") is False
    # password modify (RFC 3062) is an extended operation outside the allow-list; WhoAmI is inside
    assert conn.extend.standard.modify_password(dn, ALICE.password, "new-password") is False
    assert conn.result["result"] == ber.UNWILLING_TO_PERFORM
    assert conn.extend.standard.who_am_i() == f"dn:{dn}"
    # the read still works: the session survived every refusal
    assert conn.search(dn, "(objectClass=*)", attributes=["mail"]) is True
    conn.unbind()
    assert a.read_mail("alice") == ALICE.mail
    assert ldap_bind(a.port, dn, ALICE.password) == 0  # the password did not change
    assert proxy.metric("matrix_stack_ldap_refusals_total", reason="read_only") == 4
    assert proxy.metric("matrix_stack_ldap_refusals_total", reason="extended_operation") == 1


# --- failover, fail-fast, health checks -----------------------------------------------------------


def _login_load(port: int, dn: str, password: str, stop_at: float, results: list[tuple[float, bool]]) -> None:
    while time.monotonic() < stop_at:
        try:
            ok = ldap_bind(port, dn, password, timeout=5) == 0
        except (OSError, ValueError):
            ok = False
        results.append((time.monotonic(), ok))


def test_failover_under_login_load_then_fail_fast_then_recovery(proxies: list[LocalLdapProxy]) -> None:
    a, b = LocalSlapd(users=USERS), LocalSlapd(users=USERS)
    try:
        a.start()
        b.start()
        proxy = start_proxy(proxies, [plain(a, "a"), plain(b, "b")])
        interval = FAST_CHECKS["check_interval"]
        results: list[tuple[float, bool]] = []
        stop_at = time.monotonic() + 3.0
        workers = [threading.Thread(target=_login_load, args=(proxy.port, a.user_dn("bob"), BOB.password,
                                                              stop_at, results)) for _ in range(4)]  # fmt: skip
        for worker in workers:
            worker.start()
        time.sleep(1.0)
        stopped_at = time.monotonic()
        a.stop()  # the first backend, which takes every login under `first`
        for worker in workers:
            worker.join()
        after = [ok for at, ok in results if at > stopped_at + interval]
        assert len(after) > 50
        assert all(after), f"{after.count(False)} logins failed more than one check interval after the stop"
        assert sum(1 for at, _ in results if at > stopped_at) > 50
        assert proxy.backends_state() == {"a": "down", "b": "up"}

        b.stop()  # nothing left: a login fails at once, it does not hang
        started = time.monotonic()
        with pytest.raises(ValueError, match="not a BindResponse"):  # the notice of disconnection
            ldap_bind(proxy.port, a.user_dn("bob"), BOB.password, timeout=10)
        assert time.monotonic() - started < 1.0
        time.sleep(interval * 2)
        assert httpx.get(proxy.control + "/readyz").status_code == 503
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            notice = sock.recv(4096)  # refused at accept, with the reason
        env = ber.envelope(notice)
        assert env.op == ber.EXTENDED_RESPONSE
        assert env.message_id == 0
        assert ber.result_code(notice, env) == ber.UNAVAILABLE

        b.start()  # recovery: up after `rise` good checks
        deadline = time.monotonic() + 10
        while proxy.backends_state()["b"] != "up" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert ldap_bind(proxy.port, a.user_dn("bob"), BOB.password) == 0
        assert httpx.get(proxy.control + "/readyz").status_code == 200
        assert proxy.metric("matrix_stack_ldap_refusals_total", reason="no_backend") >= 2
    finally:
        a.close()
        b.close()


def test_a_backend_that_accepts_and_never_answers_is_marked_down_by_the_timeout(
    directories: tuple[LocalSlapd, LocalSlapd], proxies: list[LocalLdapProxy]
) -> None:
    a, _ = directories
    with hanging_server() as hung:
        proxy = start_proxy(proxies, [{"name": "hung", "host": "127.0.0.1", "port": hung}, plain(a, "real")])
        # The real one is up after `rise` checks of its own (on a loaded machine one may time out first).
        deadline = time.monotonic() + 30
        while proxy.backends_state() != {"hung": "down", "real": "up"} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert proxy.backends_state() == {"hung": "down", "real": "up"}
        state = httpx.get(proxy.control + "/backends").json()["backends"][0]
        assert state["last_check"]["detail"] == "no answer within 0.9s"
        assert ldap_bind(proxy.port, a.user_dn("alice"), ALICE.password) == 0  # `first` skips the hung one
        assert [line["backend"] for line in bind_lines(proxy, 1)] == ["real"]


def test_health_checks_by_service_account_bind(proxies: list[LocalLdapProxy], tmp: Path) -> None:
    with LocalSlapd(users=USERS, reader_password="reader-secret-3", allow_anonymous=False) as server:
        password_file = tmp / "reader-password"
        password_file.write_text("reader-secret-3\n")
        anonymous = start_proxy(
            proxies, [plain(server, "d")]
        )  # haproxy's check: fails without anonymous binds
        assert anonymous.backends_state() == {"d": "down"}
        proxy = LocalLdapProxy([plain(server, "d")], settings={**FAST_CHECKS, "check_type": "bind",
                                                               "check_bind_dn": server.reader_dn},
                               env={"LDAP_PROXY_CHECK_PASSWORD_FILE": str(password_file)})  # fmt: skip
        proxies.append(proxy)
        proxy.start()
        assert proxy.backends_state() == {"d": "up"}
        assert "reader-secret-3" not in proxy.log.read_text()
        rootdse = start_proxy(proxies, [plain(server, "d")], check_type="rootdse")
        assert rootdse.backends_state() == {"d": "up"}


# --- binds: audit and the failed-bind limit -------------------------------------------------------


def test_failed_bind_limit_shields_the_account_and_the_audit_log_has_no_password(
    directories: tuple[LocalSlapd, LocalSlapd], proxies: list[LocalLdapProxy]
) -> None:
    a, _ = directories
    proxy = start_proxy(proxies, [plain(a, "a")], bind_failure_limit=3, bind_failure_window=60)
    alice, bob = a.user_dn("alice"), a.user_dn("bob")
    assert [ldap_bind(proxy.port, alice, f"guess-{n}") for n in range(3)] == [49, 49, 49]
    assert ldap_bind(proxy.port, alice, "guess-3") == ber.UNWILLING_TO_PERFORM  # not sent to the directory
    assert ldap_bind(proxy.port, alice.upper(), ALICE.password) == ber.UNWILLING_TO_PERFORM  # DNs fold case
    assert ldap_bind(proxy.port, bob, BOB.password) == 0  # other accounts are untouched
    binds = bind_lines(proxy, 6)
    assert [(line["dn"], line["code"], line["backend"]) for line in binds] == [
        (alice, 49, "a"), (alice, 49, "a"), (alice, 49, "a"), (alice, 53, "proxy"), (alice.upper(), 53, "proxy"),
        (bob, 0, "a"),
    ]  # fmt: skip
    assert all(line["ms"] >= 0 for line in binds)
    text = proxy.log.read_text()
    for secret in ("guess-0", "guess-3", ALICE.password, BOB.password):
        assert secret not in text
    assert proxy.metric("matrix_stack_ldap_binds_total", result="invalidCredentials") == 3
    assert proxy.metric("matrix_stack_ldap_refusals_total", reason="bind_limit") == 2


# --- bad input ------------------------------------------------------------------------------------


def _exchange(port: int, data: bytes, timeout: float = 2.0) -> bytes:
    """Send `data`, half-close, and read until the proxy closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_garbage_and_oversized_requests_close_only_their_connection(
    directories: tuple[LocalSlapd, LocalSlapd], proxies: list[LocalLdapProxy]
) -> None:
    a, _ = directories
    proxy = start_proxy(proxies, [plain(a)], max_pdu_bytes=4096)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as idle:  # a bystander
        bystander = ber.simple_bind(1, a.user_dn("bob"), BOB.password)
        idle.sendall(bystander[:10])  # half a request, waiting
        answer = _exchange(proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ber.envelope(answer).op == ber.EXTENDED_RESPONSE  # a notice of disconnection, then closed
        assert ber.result_code(answer, ber.envelope(answer)) == ber.PROTOCOL_ERROR
        huge = b"\x30\x84\x00\x10\x00\x00"  # announces 1 MiB
        assert ber.envelope(_exchange(proxy.port, huge)).op == ber.EXTENDED_RESPONSE
        idle.sendall(bystander[10:])
        response = idle.recv(4096)
        assert ber.result_code(response, ber.envelope(response)) == 0
    reasons = [(line.get("reason"), line.get("detail", "")) for line in proxy.log_lines()
               if line.get("msg") == "connection closed"]  # fmt: skip
    assert reasons[0][0] == "malformed"
    assert "SEQUENCE" in reasons[0][1]
    assert reasons[1] == ("too_large", "a request of 1048582 bytes (the limit is 4096)")
    assert_clean(proxy)


def test_protocol_violations_close_the_connection(
    directories: tuple[LocalSlapd, LocalSlapd], proxies: list[LocalLdapProxy]
) -> None:
    a, _ = directories
    proxy = start_proxy(proxies, [plain(a)])
    search = ber.rootdse_search
    for name, data in [
        ("message id 0", ber.simple_bind(0, a.user_dn("alice"), ALICE.password)),
        ("a request while a bind runs", ber.simple_bind(1, a.user_dn("alice"), "guess") + search(2)),
        (
            "a duplicate id",
            ber.extended_request(7, "1.3.6.1.4.1.4203.1.11.3") + ber.extended_request(7, STARTTLS),
        ),
    ]:
        answer = _exchange(proxy.port, data)
        assert answer, name
        notices = _pdus(answer)
        env = ber.envelope(notices[-1])
        assert (env.message_id, env.op, ber.result_code(notices[-1], env)) == (
            0, ber.EXTENDED_RESPONSE, ber.PROTOCOL_ERROR), name  # fmt: skip
    assert_clean(proxy)


def _answers_then_close(port: int, data: bytes) -> list[tuple[int, int, int]]:
    """Send `data` (no half-close: a client that unbinds waits for the close) and read until closed:
    each response's message id, operation and result code."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return [(env.message_id, env.op, ber.result_code(pdu, env)) for pdu in _pdus(received)
            for env in [ber.envelope(pdu)]]  # fmt: skip


def test_an_unbind_right_behind_its_bind_gets_the_answer_then_the_close_as_from_slapd(
    directories: tuple[LocalSlapd, LocalSlapd], proxies: list[LocalLdapProxy]
) -> None:
    """The bind and the unbind in one write, before the bind's answer: slapd answers the bind, then
    closes; so does the proxy, whether its backend connection is kept for the next login or not. slapd
    itself sometimes closes first (a race between its thread running the bind and the one reading
    the unbind), so it is asked a few times and never answers anything else; the proxy, every time."""
    a, _ = directories
    pooled = start_proxy(proxies, [plain(a)], upstream_pool_size=4)
    unpooled = start_proxy(proxies, [plain(a)], upstream_pool_size=0)
    dn = a.user_dn("alice")
    for password, code in ((ALICE.password, ber.SUCCESS), ("wrong", ber.INVALID_CREDENTIALS)):
        data = ber.simple_bind(1, dn, password) + ber.unbind(2)
        answered = [(1, ber.BIND_RESPONSE, code)]
        from_slapd = [_answers_then_close(a.port, data) for _ in range(10)]
        assert answered in from_slapd, password
        assert all(got in (answered, []) for got in from_slapd), (password, from_slapd)
        for proxy in (pooled, unpooled):
            assert [_answers_then_close(proxy.port, data) for _ in range(5)] == [answered] * 5, password
    # the pooled proxy kept the connections those unbinds left (the next logins went over them)
    assert pooled.metric("matrix_stack_ldap_upstream_reused_total") >= 5
    assert unpooled.metric("matrix_stack_ldap_upstream_reused_total") == 0
    assert ldap_bind(pooled.port, dn, ALICE.password) == 0
    for proxy in (pooled, unpooled):
        assert_clean(proxy)


def test_a_starttls_handshake_that_never_finishes_leaks_nothing(
    directories: tuple[LocalSlapd, LocalSlapd], proxy_tls: TlsFiles, proxies: list[LocalLdapProxy]
) -> None:
    a, _ = directories
    proxy = start_proxy(proxies, [plain(a)], tls_cert_file=str(proxy_tls.cert), tls_key_file=str(proxy_tls.key),
                        connect_timeout=0.5)  # fmt: skip
    # up, whatever one check that timed out on a loaded machine said (StartTLS needs a backend)
    deadline = time.monotonic() + 30
    while set(proxy.backends_state().values()) != {"up"} and time.monotonic() < deadline:
        time.sleep(0.1)
    silent = []
    for _ in range(5):  # StartTLS accepted, then no ClientHello: the handshake times out
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)
        sock.sendall(ber.extended_request(1, STARTTLS))
        reply = sock.recv(4096)
        assert ber.result_code(reply, ber.envelope(reply)) == 0
        silent.append(sock)
    reset = socket.create_connection(("127.0.0.1", proxy.port), timeout=5)  # and one that resets
    reset.sendall(ber.extended_request(1, STARTTLS))
    reset.recv(4096)
    reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    reset.close()
    time.sleep(1.5)
    for sock in silent:
        sock.close()
    assert_clean(proxy)
    assert proxy.metric("matrix_stack_ldap_refusals_total", reason="tls_handshake") >= 5
    assert ldap_bind(proxy.port, a.user_dn("alice"), ALICE.password) == 0


def test_a_slow_reader_does_not_poison_the_idle_pool(
    directories: tuple[LocalSlapd, LocalSlapd], proxies: list[LocalLdapProxy]
) -> None:
    a, _ = directories
    proxy = start_proxy(proxies, [plain(a)], upstream_pool_size=4)
    dn = a.user_dn("alice")
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(ber.simple_bind(1, dn, ALICE.password))
        sock.recv(4096)
        # Never read: the proxy stops reading the directory for us. Under load the directory may
        # close this connection (too many pending operations) before all of it is sent: fine here.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"".join(ber.rootdse_search(n) for n in range(2, 3000)) + ber.unbind(3000))
            time.sleep(0.5)
    for _ in range(5):  # whatever was parked, every login gets its own answer (not a stale one)
        assert ldap_bind(proxy.port, dn, ALICE.password, timeout=5) == 0
    assert_clean(proxy)


def _pdus(data: bytes) -> list[bytes]:
    out = []
    while data:
        length = ber.pdu_length(data)
        out.append(data[:length])
        data = data[length:]
    return out


@pytest.fixture(scope="module")
def fuzz_target(directories: tuple[LocalSlapd, LocalSlapd]) -> Iterator[tuple[LocalLdapProxy, LocalSlapd]]:
    a, _ = directories
    proxy = LocalLdapProxy([plain(a)], settings={**FAST_CHECKS, "max_pdu_bytes": 8192})
    proxy.start()
    yield proxy, a
    proxy.close()


def _mutations() -> st.SearchStrategy[bytes]:
    valid = [ber.simple_bind(1, "uid=alice,ou=people,dc=example,dc=org", "pw"), ber.rootdse_search(2),
             ber.extended_request(3, "1.3.6.1.4.1.1466.20037"), ber.unbind(4),
             ber.result(5, ber.BIND_RESPONSE, 0)]  # fmt: skip

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        pdu = bytearray(draw(st.sampled_from(valid)))
        for _ in range(draw(st.integers(1, 4))):
            position = draw(st.integers(0, len(pdu) - 1))
            pdu[position] = draw(st.integers(0, 255))
        cut = draw(st.integers(1, len(pdu)))
        return bytes(pdu[:cut]) + draw(st.binary(max_size=16))

    return st.one_of(st.binary(min_size=1, max_size=200), mutate())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.lists(_mutations(), min_size=1, max_size=3))
def test_fuzzed_requests_never_disturb_the_proxy_or_a_concurrent_login(
    fuzz_target: tuple[LocalLdapProxy, LocalSlapd], data: list[bytes]
) -> None:
    proxy, directory = fuzz_target
    results: list[int] = []
    login = threading.Thread(target=lambda: results.append(
        ldap_bind(proxy.port, directory.user_dn("alice"), ALICE.password, timeout=5)))  # fmt: skip
    login.start()
    for chunk in data:
        # the proxy may reset a connection it closed with our bytes unread; it must never hang one
        # (a TimeoutError after 2 s fails the example)
        with contextlib.suppress(ConnectionResetError):
            _exchange(proxy.port, chunk)
    login.join()
    assert results == [0]
    assert proxy.process is not None
    assert proxy.process.poll() is None
    assert_clean(proxy)


def assert_clean(proxy: LocalLdapProxy) -> None:
    """No error escaped a callback, and every connection was given back (none leaked)."""
    deadline = time.monotonic() + 5
    while proxy.metric("matrix_stack_ldap_active_connections") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proxy.metric("matrix_stack_ldap_active_connections") == 0
    text = proxy.log.read_text()
    assert "Traceback" not in text
    assert "Exception in callback" not in text


# --- PROXY protocol v2, against haproxy's own parser ----------------------------------------------


def test_proxy_protocol_v2_header_is_accepted_by_haproxy(
    directories: tuple[LocalSlapd, LocalSlapd], proxies: list[LocalLdapProxy], tmp: Path
) -> None:
    a, _ = directories
    executable = haproxy_binary()
    assert executable is not None, "haproxy is not installed (make test installs it)"
    port = free_port()
    config = tmp / "accept-proxy.cfg"
    config.write_text(
        "global\n  log stdout format raw local0\n"
        "defaults\n  mode tcp\n  log global\n  timeout connect 3s\n  timeout client 10s\n  timeout server 10s\n"
        f"listen directory\n  bind 127.0.0.1:{port} accept-proxy\n"
        '  log-format "client=%ci:%cp"\n'
        f"  server slapd 127.0.0.1:{a.port}\n"
    )
    log = tmp / "accept-proxy.log"
    process = subprocess.Popen(
        [executable, "-db", "-f", str(config)], stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        wait_ready("haproxy", process, lambda: log.exists() and port_open(port), timeout=10, log=log)
        proxy = start_proxy(
            proxies, [{"name": "pp", "host": "127.0.0.1", "port": port, "proxy_protocol": True}]
        )
        assert proxy.backends_state() == {"pp": "up"}  # checks send LOCAL headers
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            client_port = sock.getsockname()[1]
            sock.sendall(ber.simple_bind(1, a.user_dn("alice"), ALICE.password))
            response = sock.recv(4096)
            assert ber.result_code(response, ber.envelope(response)) == 0
            sock.sendall(ber.unbind(2))
        deadline = time.monotonic() + 5
        while f"client=127.0.0.1:{client_port}" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f"client=127.0.0.1:{client_port}" in log.read_text()  # haproxy saw the real client
    finally:
        stop(process)


# --- workers: processes sharing the ports --------------------------------------------------------


def worker_pids(pid: int) -> list[int]:
    """The main process's children: the other workers."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return children


def gone(pid: int) -> bool:
    """Exited and reaped, or a zombie waiting for its parent."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_workers_share_the_ports_and_one_control_plane_counts_them_all(
    directories: tuple[LocalSlapd, LocalSlapd], proxies: list[LocalLdapProxy]
) -> None:
    a, b = directories
    proxy = start_proxy(proxies, [plain(a, "a"), plain(b, "b")], workers=3, balance="round_robin")
    assert proxy.process is not None
    assert len(worker_pids(proxy.process.pid)) == 2
    dn = a.user_dn("alice")
    assert [ldap_bind(proxy.port, dn, ALICE.password) for _ in range(60)] == [0] * 60
    assert ldap_bind(proxy.port, dn, "wrong") == 49
    workers = httpx.get(proxy.control + "/backends").json()["workers"]
    assert [worker["worker"] for worker in workers] == [0, 1, 2]
    assert all(worker["accepted"] > 0 for worker in workers), workers  # the kernel spread the connections
    assert sum(worker["accepted"] for worker in workers) == 61
    # the counts of all three, as of the scrape
    assert proxy.metric("matrix_stack_ldap_binds_total", result="success") == 60
    assert proxy.metric("matrix_stack_ldap_binds_total", result="invalidCredentials") == 1
    assert proxy.metric("matrix_stack_ldap_connections_total", listener="ldap") == 61
    assert len(bind_lines(proxy, 61)) == 61  # every worker's audit lines, whole, in the one log
    assert_clean(proxy)


def test_a_worker_that_dies_is_replaced_and_what_it_counted_is_kept(
    directories: tuple[LocalSlapd, LocalSlapd], proxies: list[LocalLdapProxy]
) -> None:
    a, _ = directories
    proxy = start_proxy(proxies, [plain(a)], workers=2)
    assert proxy.process is not None
    dn = a.user_dn("alice")
    assert [ldap_bind(proxy.port, dn, ALICE.password) for _ in range(30)] == [0] * 30
    assert proxy.metric("matrix_stack_ldap_binds_total", result="success") == 30
    [worker] = worker_pids(proxy.process.pid)
    os.kill(worker, 9)
    deadline = time.monotonic() + 15
    while not gone(worker) and time.monotonic() < deadline:
        time.sleep(0.01)
    # The kernel closes a dead process's sockets a moment after it exits; until then its listener
    # still takes its share of new connections, and they are reset (a crash's cost with SO_REUSEPORT).
    time.sleep(0.2)
    assert [ldap_bind(proxy.port, dn, ALICE.password) for _ in range(10)] == [0] * 10  # the main one serves
    while worker_pids(proxy.process.pid) in ([], [worker]) and time.monotonic() < deadline:
        time.sleep(0.1)
    [replacement] = worker_pids(proxy.process.pid)
    assert replacement != worker
    while len(httpx.get(proxy.control + "/backends").json()["workers"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [ldap_bind(proxy.port, dn, ALICE.password) for _ in range(30)] == [0] * 30
    assert proxy.metric("matrix_stack_ldap_binds_total", result="success") == 70
    exited = [
        line for line in proxy.log_lines() if line.get("msg") == "an LDAP worker exited; starting another"
    ]
    assert [(line["level"], line["code"]) for line in exited] == [("ERROR", -9)]


def test_the_workers_end_with_the_main_process(
    directories: tuple[LocalSlapd, LocalSlapd], proxies: list[LocalLdapProxy]
) -> None:
    """Stopped, the main process stops its workers (each drains); killed, its workers see the channel
    close, drain and exit: none is left serving on its own."""
    a, _ = directories
    for how in ("stop", "kill"):
        proxy = start_proxy(proxies, [plain(a)], workers=3)
        assert proxy.process is not None
        main, workers = proxy.process, worker_pids(proxy.process.pid)
        assert len(workers) == 2
        assert ldap_bind(proxy.port, a.user_dn("alice"), ALICE.password) == 0
        if how == "stop":
            proxy.stop()
            assert main.returncode == 0
        else:
            main.kill()
            main.wait()
        deadline = time.monotonic() + 10
        while not all(gone(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert all(gone(pid) for pid in workers), how
        assert not port_open(proxy.port), how


# --- control plane, config ------------------------------------------------------------------------


def test_control_plane(directories: tuple[LocalSlapd, LocalSlapd], proxies: list[LocalLdapProxy]) -> None:
    a, _ = directories
    with hanging_server() as hung:
        proxy = start_proxy(proxies, [plain(a, "a"), {"name": "spare", "host": "127.0.0.1", "port": hung,
                                                      "backup": True, "max_connections": 5}])  # fmt: skip
        assert httpx.get(proxy.control + "/healthz").json() == {"status": "ok"}
        assert httpx.get(proxy.control + "/readyz").json() == {
            "status": "ready",
            "backends_up": 1,
            "backends": 2,
        }
        assert ldap_bind(proxy.port, a.user_dn("alice"), ALICE.password) == 0
        described = httpx.get(proxy.control + "/backends").json()
        assert described["balance"] == "first"
        first, spare = described["backends"]
        assert (first["name"], first["state"], first["backup"], first["tls"]) == ("a", "up", False, "none")
        assert (spare["state"], spare["backup"], spare["max_connections"]) == ("down", True, 5)
        assert first["last_check"]["ok"] is True
        assert proxy.metric("matrix_stack_ldap_backend_up", backend="a") == 1
        assert proxy.metric("matrix_stack_ldap_backend_up", backend="spare") == 0
        assert proxy.metric("matrix_stack_ldap_connections_total", listener="ldap") >= 1
        assert proxy.metric("matrix_stack_ldap_binds_total", result="success") == 1
        assert proxy.metric("matrix_stack_ldap_bytes_total", direction="to_backend") > 0
        assert proxy.metric("matrix_stack_ldap_bytes_total", direction="to_client") > 0
        assert proxy.metric("matrix_stack_ldap_check_duration_seconds_count", backend="a", outcome="ok") >= 1
        # the open-connection gauges read what is open when scraped: one session bound through "a"
        bound = connection(proxy.port, a.user_dn("bob"), BOB.password)
        assert bound.bind() is True
        assert proxy.metric("matrix_stack_ldap_active_connections") == 1
        assert proxy.metric("matrix_stack_ldap_backend_connections", backend="a") == 1
        assert proxy.metric("matrix_stack_ldap_backend_connections", backend="spare") == 0
        bound.unbind()
        assert_clean(proxy)  # active back to 0
        # its backend connection is parked: idle, no longer counted as open
        assert proxy.metric("matrix_stack_ldap_backend_connections", backend="a") == 0
        assert proxy.metric("matrix_stack_ldap_binds_total", result="success") == 2


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("LDAP_PROXY_")}
    return subprocess.run([sys.executable, "-m", "matrix_stack.services.ldap_proxy"], env={**clean, **env},
                          capture_output=True, text=True, timeout=30)  # fmt: skip


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "config error: LDAP_PROXY_BACKENDS: Field required"),
        ({"LDAP_PROXY_BACKENDS": '[{"name": "a"}]'}, "config error: LDAP_PROXY_BACKENDS_0_HOST: Field required"),
        ({"LDAP_PROXY_BACKENDS": '[{"name": "a", "host": "h", "tls": "ssl"}]'},
         "config error: LDAP_PROXY_BACKENDS_0_TLS: Input should be 'none', 'starttls' or 'ldaps'"),
        ({"LDAP_PROXY_BACKENDS": '[{"name": "a", "host": "h"}]', "LDAP_PROXY_STARTTLS": "terminate"},
         "config error: LDAP_PROXY_STARTTLS=terminate needs LDAP_PROXY_TLS_CERT_FILE and TLS_KEY_FILE"),
        ({"LDAP_PROXY_BACKENDS": '[{"name": "a", "host": "h"}]', "LDAP_PROXY_STARTTLS": "passthrough"},
         "config error: LDAP_PROXY_STARTTLS=passthrough hands the connection to the directory after StartTLS, "
         "past read-only, the bind audit and the bind limit: terminate it (LDAP_PROXY_TLS_CERT_FILE) or accept "
         "that with LDAP_PROXY_READ_ONLY=false"),
        ({"LDAP_PROXY_BACKENDS": '[{"name": "a", "host": "h"}]', "LDAP_PROXY_CHECK_TYPE": "bind"},
         "config error: LDAP_PROXY_CHECK_TYPE=bind needs LDAP_PROXY_CHECK_BIND_DN and LDAP_PROXY_CHECK_PASSWORD "
         "(or LDAP_PROXY_CHECK_PASSWORD_FILE)"),
        ({"LDAP_PROXY_BACKENDS": '[{"name": "a", "host": "h"}]', "LDAP_PROXY_WORKERS": "2",
          "LDAP_PROXY_BIND_FAILURE_LIMIT": "5"},
         "config error: LDAP_PROXY_WORKERS above 1 with LDAP_PROXY_BIND_FAILURE_LIMIT: the limit counts a DN's "
         "failures in one process, and each worker would allow as many; leave workers unset (1 with the limit) "
         "or set it to 1"),
        ({"LDAP_PROXY_BACKENDS": '[{"name": "a", "host": "h"}]', "LDAP_PROXY_CHECK_PASSWORD_FILE": "/nonexistent"},
         "config error: LDAP_PROXY_CHECK_PASSWORD_FILE: cannot read /nonexistent: No such file or directory"),
        ({"LDAP_PROXY_BACKENDS": '[{"name": "a", "host": "h"}]', "LDAP_PROXY_TLS_CERT_FILE": "/nonexistent",
          "LDAP_PROXY_TLS_KEY_FILE": "/nonexistent"},
         "config error: LDAP_PROXY_TLS_CERT_FILE/LDAP_PROXY_TLS_KEY_FILE: cannot load /nonexistent with "
         "/nonexistent: [Errno 2] No such file or directory"),
    ],
)  # fmt: skip
def test_a_bad_config_exits_2_with_one_line_naming_the_setting(env: dict[str, str], message: str) -> None:
    result = _run(env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [message]


def test_a_port_in_use_exits_1_with_one_line(directories: tuple[LocalSlapd, LocalSlapd]) -> None:
    a, _ = directories
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run({"LDAP_PROXY_BACKENDS": f'[{{"name": "a", "host": "127.0.0.1", "port": {a.port}}}]',
                       "LDAP_PROXY_LISTEN_HOST": "127.0.0.1", "LDAP_PROXY_LISTEN_PORT": str(port),
                       "LDAP_PROXY_PORT": str(free_port()), "LDAP_PROXY_LOG_JSON": "false"})  # fmt: skip
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
