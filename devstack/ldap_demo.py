"""The LDAP part of `make run`: a demo directory (real slapd) behind `ldap-proxy`, where slapd is
installed; where it is not, one line saying how to get it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from devstack import slapd
from devstack.ldap_proxy import LocalLdapProxy
from devstack.slapd import LdapUser, LocalSlapd

DEMO_UID = "demo"


@dataclass
class LdapDemo:
    data_dir: Path
    password: str  # the demo user's, from the stack's kept credentials
    admin_password: str
    proxy_port: int
    control_port: int
    directory: LocalSlapd | None = None
    proxy: LocalLdapProxy | None = None
    missing: str | None = field(default=None)

    def start(self) -> None:
        if slapd.binary() is None:
            self.missing = f"slapd is not installed: {slapd.INSTALL_HINT} (then make run again)"
            return
        user = LdapUser(DEMO_UID, self.password, "Demo User", "demo@example.org")
        self.directory = LocalSlapd(users=[user], admin_password=self.admin_password,
                                    directory=self.data_dir / "slapd")  # fmt: skip
        self.directory.start()
        self.proxy = LocalLdapProxy(
            [{"name": "demo-directory", "host": "127.0.0.1", "port": self.directory.port}],
            settings={"log_json": True},
            directory=self.data_dir / "proxy",
            port=self.proxy_port,
            http_port=self.control_port,
        )
        self.proxy.start(wait_for="/readyz")

    def summary(self) -> str:
        if self.proxy is None or self.directory is None:
            return f"ldap-proxy  not started: {self.missing}"
        dn = self.directory.user_dn(DEMO_UID)
        return f"""ldap-proxy  {self.proxy.url}   (control plane {self.proxy.control}, logs: {self.proxy.log})
  in front of a demo slapd on {self.directory.url}; user {dn} password {self.password}
  ldapwhoami -x -H {self.proxy.url} -D '{dn}' -w '{self.password}'
  curl -sS {self.proxy.control}/backends"""

    def running(self) -> bool:
        return all(
            p is None or p.process is None or p.process.poll() is None for p in (self.directory, self.proxy)
        )

    def stop(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()
        if self.directory is not None:
            self.directory.stop()
