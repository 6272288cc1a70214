"""A real HAProxy (Debian's `haproxy`) in TCP mode in front of LDAP servers, on loopback.

Configured the way a careful operator would run it before an LDAP proxy of our own existed: the
comparison point for the benchmarks. Health checks are LDAP anonymous binds (`option ldap-check`),
a server is out after two failed checks a second apart and back after two good ones, and a
connection that could not reach its server is retried on another (`option redispatch`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from devstack.process import Command, LocalServer
from devstack.slapd import bind_ok
from matrix_stack.shared.route.processes import free_ports, port_open

INSTALL_HINT = "apt-get install haproxy"


def binary() -> str | None:
    found = shutil.which("haproxy")
    if found:
        return found
    return "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None


@dataclass
class LocalHaproxy(LocalServer):
    backends: Sequence[tuple[str, int]]
    balance: Literal["roundrobin", "first"] = "roundrobin"
    server_maxconn: int = 512  # `first` fills one server up to this before it uses the next
    maxconn: int = 4096
    threads: int | None = None  # nbthread; None: haproxy's default, one thread per CPU
    log_connections: bool = False  # a tcplog line per connection to stdout (the log file)
    port: int = field(default_factory=lambda: free_ports(1)[0])
    name: str = field(default="haproxy", init=False)

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    def config(self) -> str:
        check = f"check inter 1s rise 2 fall 2 maxconn {self.server_maxconn}"
        servers = "".join(
            f"    server ldap{index} {host}:{port} {check}\n"
            for index, (host, port) in enumerate(self.backends, start=1)
        )
        # No `user`/`group`/`chroot`/`daemon`: haproxy stays in the foreground as whoever started it.
        # No `log` unless asked: in the foreground haproxy writes its warnings (a server going down
        # or coming back up) to stderr, the log file; `log_connections` adds a line per connection,
        # the work ldap-proxy's bind audit does.
        return (
            "global\n"
            f"    maxconn {self.maxconn}\n"
            + (f"    nbthread {self.threads}\n" if self.threads else "")
            + ("    log stdout format raw local0\n" if self.log_connections else "")
            + "\n"
            "defaults\n"
            "    mode tcp\n"
            "    option redispatch\n"
            "    retries 3\n"
            "    timeout connect 3s\n"
            "    timeout client 60s\n"
            "    timeout server 60s\n"
            "    timeout check 2s\n"
            f"    maxconn {self.maxconn}\n"
            + ("    log global\n    option tcplog\n" if self.log_connections else "")
            + "\n"
            "listen ldap\n"
            f"    bind 127.0.0.1:{self.port}\n"
            f"    balance {self.balance}\n"
            "    option ldap-check\n"
            f"{servers}"
        )

    def command(self) -> Command:
        executable = binary()
        if executable is None:
            raise RuntimeError(f"haproxy is not installed ({INSTALL_HINT})")
        config_path = self.directory / "haproxy.cfg"
        config_path.write_text(self.config())
        check = subprocess.run([executable, "-c", "-q", "-f", str(config_path)],
                               capture_output=True, text=True, check=False)  # fmt: skip
        if check.returncode != 0:
            raise RuntimeError(f"haproxy rejects its configuration:\n{check.stdout}{check.stderr}")
        # -db: foreground, no daemon; -Ws would add a master process for reloads we do not do.
        return Command([executable, "-db", "-f", str(config_path)])

    def ready(self) -> bool:
        return port_open(self.port) and bind_ok(self.port)
