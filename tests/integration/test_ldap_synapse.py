"""Synapse's LDAP login (matrix-synapse-ldap3) through `ldap-proxy`, every piece real and on loopback.

Two slapds with the same users sit behind the proxy (one over StartTLS, one over LDAPS, both signed by
one CA); the proxy terminates the client's StartTLS with a certificate of its own CA and refuses
password binds without TLS, so a login that works proves the provider spoke TLS to it. Synapse never
learns a slapd's address: only the proxy's is in its configuration. Its local password database is
off, so a successful login can only have come from LDAP.

One homeserver per provider mode: the provider reads its mode from its configuration, and two
modules for the same login type in one Synapse would each be tried in turn, hiding which one
answered.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from devstack.ldap_proxy import LocalLdapProxy
from devstack.slapd import PEOPLE_DN, READER_DN, LdapUser, LocalSlapd
from devstack.synapse import SERVER_NAME, LocalSynapse
from devstack.tls import TlsFiles, make_tls
from matrix_stack.shared.route.processes import free_ports

ALICE = LdapUser("alice", "alice-Secret-4711", "Alice Liddell", "alice@example.org")
BOB = LdapUser("bob", "bob-Secret-0815", "Bob Builder", "bob@example.org")
CAROL = LdapUser("carol", "carol-Secret-2342", "Carol Danvers", "carol@example.org")
READER_PASSWORD = "reader-Secret-1337"
WRONG_PASSWORD = "wrong-Secret-9999"
SECRETS = (ALICE.password, BOB.password, CAROL.password, READER_PASSWORD, WRONG_PASSWORD)
AUDIT_LOGGER = "matrix_stack.ldap_proxy.audit"


@dataclass
class Directory:
    """Two slapds behind one proxy, and the CA that signed the proxy's certificate."""

    slapds: list[LocalSlapd]  # slapd-a (StartTLS upstream), then slapd-b (LDAPS)
    proxy: LocalLdapProxy
    proxy_ca: Path
    reader_password_file: Path


@dataclass(frozen=True)
class Homeservers:
    simple: LocalSynapse
    search: LocalSynapse


@pytest.fixture(scope="module")
def directory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    root = tmp_path_factory.mktemp("ldap")
    with ExitStack() as cleanup:
        # One CA for both backends, as a replicated directory's servers would share; the proxy checks
        # them with it. The proxy's own certificate comes from another CA, the one Synapse trusts.
        backend_tls = make_tls(root / "backend-tls", ["localhost"])
        slapds = [LocalSlapd(users=(ALICE, BOB, CAROL), reader_password=READER_PASSWORD,
                             tls_files=backend_tls) for _ in range(2)]  # fmt: skip
        for slapd in slapds:
            cleanup.callback(slapd.close)
            slapd.start()
        proxy_tls = make_tls(root / "proxy-tls", ["localhost"])  # it adds 127.0.0.1, Synapse's URI
        proxy = LocalLdapProxy(
            backends=_backends(slapds, backend_tls),
            settings={
                "tls_cert_file": str(proxy_tls.cert),
                "tls_key_file": str(proxy_tls.key),
                "starttls": "terminate",
                "require_tls": True,
                "balance": "first",  # so the test of a backend outage knows which one serves
            },
        )
        cleanup.callback(proxy.close)
        proxy.start()
        password_file = root / "reader.password"
        password_file.write_text(READER_PASSWORD + "\n")  # as an editor saves it; the provider strips it
        yield Directory(slapds, proxy, proxy_tls.ca, password_file)


def _backends(slapds: list[LocalSlapd], tls: TlsFiles) -> list[dict[str, Any]]:
    first, second = slapds
    return [
        {"name": "slapd-a", "host": "127.0.0.1", "port": first.port, "tls": "starttls",
         "ca_file": str(tls.ca)},
        {"name": "slapd-b", "host": "127.0.0.1", "port": second.ldaps_port, "tls": "ldaps",
         "ca_file": str(tls.ca)},
    ]  # fmt: skip


def _provider_config(directory: Directory, **mode: Any) -> dict[str, Any]:
    return {
        "enabled": True,
        "uri": directory.proxy.url,
        "start_tls": True,
        # 2 is ssl.CERT_REQUIRED: the handshake fails unless the proxy's CA signed its certificate.
        "tls_options": {"validate": 2, "ca_certs_file": str(directory.proxy_ca)},
        "base": PEOPLE_DN,
        "attributes": {"uid": "uid", "mail": "mail", "name": "cn"},
        **mode,
    }


def _homeserver(root: Path, provider: dict[str, Any]) -> LocalSynapse:
    extra = {
        "modules": [{"module": "ldap_auth_provider.LdapAuthProviderModule", "config": provider}],
        "password_config": {"localdb_enabled": False},
    }
    return LocalSynapse(root, free_ports(1)[0], extra_config=extra)


@pytest.fixture(scope="module")
def homeservers(directory: Directory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Homeservers]:
    simple = _homeserver(tmp_path_factory.mktemp("synapse-simple"), _provider_config(directory))
    search = _homeserver(
        tmp_path_factory.mktemp("synapse-search"),
        _provider_config(
            directory, bind_dn=READER_DN, bind_password_file=str(directory.reader_password_file)
        ),
    )
    with ExitStack() as cleanup:
        for server in (simple, search):
            cleanup.callback(server.stop)
        # Synapse asks git for its version when its files are in a work tree, as they are in this
        # repository's .venv: "1.163.2 (b=main,...)", which the provider's version check cannot
        # parse, and every first login (the registration) fails. An installed Synapse says "1.163.2".
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SYNAPSE_VERSION_STRING", version("matrix-synapse"))
            # Started side by side: each spends most of its start-up on its own imports and schema.
            with ThreadPoolExecutor(2) as pool:
                for started in [pool.submit(server.start) for server in (simple, search)]:
                    started.result()
        yield Homeservers(simple, search)


def login(synapse: LocalSynapse, user: str, password: str) -> httpx.Response:
    return httpx.post(
        f"{synapse.url}/_matrix/client/v3/login",
        json={"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
              "password": password},
        timeout=30,  # the provider sets no LDAP timeouts: a hang shows here, not as a stuck suite
    )  # fmt: skip


def get(synapse: LocalSynapse, token: str, path: str) -> Any:
    response = httpx.get(
        f"{synapse.url}/_matrix/client/v3{path}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def audited_binds(proxy: LocalLdapProxy, after: int = 0) -> list[dict[str, Any]]:
    """The audit lines after the first `after`, once every bind the proxy has counted is in the log.

    A line is made in the same step as its count (so a scrape, which each worker answers between
    steps, never counts a bind whose line is not made) and written up to a moment later, in a batch:
    waiting until the log holds as many lines as the metric counts leaves none of an earlier test's
    binds to arrive late, and none of this test's missing."""
    deadline = time.monotonic() + 30
    while True:
        counted = proxy.metric("matrix_stack_ldap_binds_total")
        lines = [
            line
            for line in proxy.log_lines()
            if line.get("logger") == AUDIT_LOGGER and line.get("msg") == "bind"
        ]
        if len(lines) == counted:
            return lines[after:]
        assert time.monotonic() < deadline, f"{len(lines)} audit lines for {counted} binds counted"
        time.sleep(0.05)


def dn(user: LdapUser) -> str:
    return f"uid={user.uid},{PEOPLE_DN}"


def test_simple_mode_logs_in_with_the_right_password_only(
    homeservers: Homeservers, directory: Directory
) -> None:
    synapse = homeservers.simple
    before = len(audited_binds(directory.proxy))
    ok = login(synapse, "alice", ALICE.password)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["user_id"] == f"@alice:{SERVER_NAME}"
    assert body["access_token"]
    assert get(synapse, body["access_token"], "/account/whoami")["user_id"] == f"@alice:{SERVER_NAME}"

    wrong = login(synapse, "alice", WRONG_PASSWORD)
    assert wrong.status_code == 403, wrong.text
    assert wrong.json()["errcode"] == "M_FORBIDDEN"
    # A second login of a user Synapse now knows takes the other branch of the provider.
    assert login(synapse, "alice", ALICE.password).status_code == 200

    binds = [(line["dn"], line["result"]) for line in audited_binds(directory.proxy, before)]
    assert (dn(ALICE), "success") in binds
    assert (dn(ALICE), "invalidCredentials") in binds
    # Simple mode binds as the user straight away: no service account.
    assert all(bound != READER_DN for bound, _ in binds)


def test_search_mode_finds_the_user_with_the_service_account(
    homeservers: Homeservers, directory: Directory
) -> None:
    synapse = homeservers.search
    before = len(audited_binds(directory.proxy))
    ok = login(synapse, "bob", BOB.password)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["user_id"] == f"@bob:{SERVER_NAME}"
    token = body["access_token"]
    # Name and mail came from the entry the reader's search returned through the proxy.
    profile = get(synapse, token, f"/profile/{quote(body['user_id'], safe='')}")
    assert profile["displayname"] == BOB.cn
    threepids = get(synapse, token, "/account/3pid")["threepids"]
    assert [(pid["medium"], pid["address"]) for pid in threepids] == [("email", BOB.mail)]

    assert login(synapse, "bob", WRONG_PASSWORD).status_code == 403
    assert login(synapse, "nobody", WRONG_PASSWORD).status_code == 403

    binds = [(line["dn"], line["result"]) for line in audited_binds(directory.proxy, before)]
    assert (READER_DN, "success") in binds
    assert (dn(BOB), "success") in binds
    assert (dn(BOB), "invalidCredentials") in binds
    # "nobody" is not found, so the provider never binds as them.
    assert all("nobody" not in bound for bound, _ in binds)


def test_audit_log_has_every_bind_and_no_password(homeservers: Homeservers, directory: Directory) -> None:
    proxy = directory.proxy
    before = len(audited_binds(proxy))
    assert login(homeservers.simple, "carol", CAROL.password).status_code == 200
    assert login(homeservers.simple, "carol", WRONG_PASSWORD).status_code == 403
    assert login(homeservers.search, "carol", CAROL.password).status_code == 200

    binds = audited_binds(proxy, before)
    seen = [(line["dn"], line["result"], line["code"]) for line in binds]
    assert (dn(CAROL), "success", 0) in seen
    assert (dn(CAROL), "invalidCredentials", 49) in seen
    assert (READER_DN, "success", 0) in seen
    assert {line["backend"] for line in binds} <= {"slapd-a", "slapd-b"}
    # Every bind came over the proxy's TLS: with require_tls a plain one would be refused (13).
    assert all(line["code"] in (0, 49) for line in binds), seen

    text = proxy.log.read_text(errors="replace")
    leaked = [secret for secret in SECRETS if secret in text]
    assert not leaked, f"the proxy's log holds passwords: {leaked}"


def test_metrics_count_binds_by_result(homeservers: Homeservers, directory: Directory) -> None:
    proxy = directory.proxy
    success = proxy.metric("matrix_stack_ldap_binds_total", result="success")
    invalid = proxy.metric("matrix_stack_ldap_binds_total", result="invalidCredentials")
    assert login(homeservers.simple, "alice", ALICE.password).status_code == 200
    assert login(homeservers.simple, "alice", WRONG_PASSWORD).status_code == 403
    assert proxy.metric("matrix_stack_ldap_binds_total", result="success") == success + 1
    assert proxy.metric("matrix_stack_ldap_binds_total", result="invalidCredentials") == invalid + 1


def test_logins_go_on_while_the_first_backend_is_down(homeservers: Homeservers, directory: Directory) -> None:
    """The provider's own server pool cannot help behind a proxy (the proxy always accepts TCP), so
    the proxy has to move on; this is also the one test that sends the provider's binds over LDAPS."""
    first = directory.slapds[0]
    proxy = directory.proxy
    first.stop()
    try:
        before = len(audited_binds(proxy))
        assert login(homeservers.simple, "alice", ALICE.password).status_code == 200
        assert login(homeservers.search, "alice", ALICE.password).status_code == 200
        binds = audited_binds(proxy, before)
        assert {(line["dn"], line["result"]) for line in binds} == {
            (dn(ALICE), "success"),
            (READER_DN, "success"),
        }
        assert {line["backend"] for line in binds} == {"slapd-b"}
    finally:
        first.start()
