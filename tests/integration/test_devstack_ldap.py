"""The LDAP pieces of the devstack against the real programs: slapd, ldap-utils and HAProxy.

No skips when a program is missing: `make test` installs them (scripts/ensure-system-packages.sh),
so a missing one is a broken machine, and the fixtures fail with how to install it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.blackhole import hanging_server
from devstack.haproxy import LocalHaproxy
from devstack.slapd import LdapUser, LocalSlapd, ldap_bind
from devstack.tls import make_tls

ALICE = LdapUser("alice", "alice's password", "Alice Liddell", "alice@example.org")
BOB = LdapUser("bob", "bob's password", "Bob Builder", "bob@example.org")
INVALID_CREDENTIALS = 49
INAPPROPRIATE_AUTHENTICATION = 48
NO_SUCH_OBJECT = 32


@pytest.fixture
def slapd_factory() -> Iterator[Callable[..., LocalSlapd]]:
    """Started slapds, each closed (process stopped, directory removed) whatever the test did."""
    started: list[LocalSlapd] = []

    def start(**options: Any) -> LocalSlapd:
        server = LocalSlapd(users=(ALICE, BOB), **options)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def slapd(slapd_factory: Callable[..., LocalSlapd]) -> LocalSlapd:
    return slapd_factory()


@pytest.fixture
def tls_slapd(slapd_factory: Callable[..., LocalSlapd]) -> LocalSlapd:
    return slapd_factory(tls=True)


def whoami(
    url: str, dn: str, password: str, *flags: str, ca: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    if ca is not None:
        env["LDAPTLS_CACERT"] = str(ca)
    return subprocess.run(
        ["ldapwhoami", "-x", "-H", url, *flags, "-D", dn, "-w", password],
        capture_output=True,
        text=True,
        env=env,
        timeout=10,
        check=False,
    )


def test_plain_bind_and_wrong_password(slapd: LocalSlapd) -> None:
    result = whoami(slapd.url, slapd.user_dn("alice"), ALICE.password)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "dn:uid=alice,ou=people,dc=example,dc=org"

    wrong = whoami(slapd.url, slapd.user_dn("alice"), BOB.password)
    assert wrong.returncode == INVALID_CREDENTIALS, wrong.stderr
    assert ldap_bind(slapd.port, slapd.user_dn("alice"), "nope") == INVALID_CREDENTIALS
    assert ldap_bind(slapd.port) == 0  # anonymous, as haproxy's ldap-check binds


def test_starttls_and_ldaps_with_the_generated_ca(tls_slapd: LocalSlapd, tmp_path: Path) -> None:
    assert tls_slapd.tls_files is not None
    ca = tls_slapd.tls_files.ca
    dn = tls_slapd.user_dn("bob")
    for url, flags in ((tls_slapd.url, ("-ZZ",)), (tls_slapd.ldaps_url, ())):
        result = whoami(url, dn, BOB.password, *flags, ca=ca)
        assert result.returncode == 0, (url, result.stderr)
        assert result.stdout.strip() == f"dn:{dn}"
    assert whoami(tls_slapd.ldaps_url, dn, ALICE.password, ca=ca).returncode == INVALID_CREDENTIALS

    # The client really verifies: a CA that did not sign the certificate fails the handshake.
    stranger = make_tls(tmp_path / "other-ca").ca
    assert whoami(tls_slapd.url, dn, BOB.password, "-ZZ", ca=stranger).returncode != 0
    assert whoami(tls_slapd.ldaps_url, dn, BOB.password, ca=stranger).returncode != 0


def test_anonymous_bind_can_be_disallowed(slapd_factory: Callable[..., LocalSlapd]) -> None:
    server = slapd_factory(allow_anonymous=False)
    assert ldap_bind(server.port) == INAPPROPRIATE_AUTHENTICATION
    assert ldap_bind(server.port, server.user_dn("alice"), ALICE.password) == 0


def test_reader_searches_people_but_not_passwords(slapd_factory: Callable[..., LocalSlapd]) -> None:
    server = slapd_factory(reader_password="reader's password")

    def search(*bind: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ldapsearch", "-LLL", "-x", "-H", server.url, *bind, "-b", server.base_dn, "(uid=*)",
             "mail", "userPassword"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip

    found = search("-D", server.reader_dn, "-w", "reader's password")
    assert found.returncode == 0, found.stderr
    assert "mail: alice@example.org" in found.stdout
    assert "mail: bob@example.org" in found.stdout
    assert "userPassword" not in found.stdout
    # Anonymous may bind, not read: the tree is not even there for it (32, noSuchObject).
    anonymous = search()
    assert (anonymous.returncode, anonymous.stdout) == (NO_SUCH_OBJECT, "")


def test_stop_and_start_keep_the_entries(slapd: LocalSlapd) -> None:
    slapd.modify_mail("alice", "alice@wonderland.example")
    slapd.stop()
    with pytest.raises(ConnectionRefusedError):
        ldap_bind(slapd.port, slapd.user_dn("alice"), ALICE.password)

    slapd.start()
    assert ldap_bind(slapd.port, slapd.user_dn("alice"), ALICE.password) == 0
    assert slapd.read_mail("alice") == "alice@wonderland.example"
    assert slapd.read_mail("bob") == BOB.mail


def test_haproxy_routes_around_a_stopped_slapd(slapd_factory: Callable[..., LocalSlapd]) -> None:
    first, second = slapd_factory(), slapd_factory()
    haproxy = LocalHaproxy([("127.0.0.1", first.port), ("127.0.0.1", second.port)])
    try:
        haproxy.start()
        assert ldap_bind(haproxy.port, first.user_dn("alice"), ALICE.password) == 0

        first.stop()
        # Before the checks notice, a refused connection is retried on the other (`option redispatch`).
        assert ldap_bind(haproxy.port, first.user_dn("alice"), ALICE.password) == 0
        assert ldap_bind(haproxy.port, first.user_dn("alice"), ALICE.password) == 0
        # Two failed checks a second apart take it out; by then every bind reaches the other one.
        deadline = time.monotonic() + 5
        while "ldap1 is DOWN" not in haproxy.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "ldap1 is DOWN" in haproxy.log.read_text()
        for _ in range(6):  # round robin would have sent half of these to the stopped one
            assert ldap_bind(haproxy.port, first.user_dn("bob"), BOB.password) == 0
    finally:
        haproxy.close()


def test_hanging_server_accepts_and_never_answers() -> None:
    with hanging_server() as port:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
            sock.settimeout(0.3)
            sock.sendall(b"\x30\x0c\x02\x01\x01\x60\x07\x02\x01\x03\x04\x00\x80\x00")  # anonymous bind
            with pytest.raises(TimeoutError):
                sock.recv(1)
        with pytest.raises(TimeoutError):
            ldap_bind(port, timeout=0.3)
