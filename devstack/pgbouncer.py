"""A real PgBouncer (Debian's `pgbouncer`) in front of the local PostgreSQL, on loopback."""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass, field

from devstack.postgres import _system_user
from devstack.process import Command, LocalServer


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class LocalPgbouncer(LocalServer):
    port: int
    postgres_port: int
    pool_mode: str = "session"
    name: str = field(default="pgbouncer", init=False)

    stop_removes_directory = True

    def command(self) -> Command:
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        (self.directory / "userlist.txt").write_text('"postgres" ""\n')
        (self.directory / "pgbouncer.ini").write_text(
            f"[databases]\n* = host=127.0.0.1 port={self.postgres_port}\n\n[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.directory / 'userlist.txt'}\n"
            f"pool_mode = {self.pool_mode}\n"
            "max_client_conn = 1000\ndefault_pool_size = 150\n"
            f"logfile = {self.log}\npidfile = {self.directory / 'pgbouncer.pid'}\n"
        )
        user = _system_user()  # pgbouncer refuses to run as root
        self.directory.chmod(0o755)
        if user is not None:
            for path in (self.directory, *self.directory.iterdir()):
                shutil.chown(path, user)
        # pgbouncer writes its own log (`logfile`): its output is dropped
        return Command([binary, str(self.directory / "pgbouncer.ini")], user=user, logs_itself=True)

    def ready(self) -> bool:
        return _accepting(self.port)
