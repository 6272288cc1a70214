"""`livekit-jwt` as a process on loopback, configured by its environment, for the tests and `make run`."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

from devstack.process import Command, LocalServer
from devstack.processes import free_port, json_log_lines
from matrix_stack.shared.route.processes import http_ok


@dataclass
class LocalLivekitJwt(LocalServer):
    env: dict[str, str]  # LIVEKIT_JWT_* settings (the prefix may be left out)
    port: int = 0
    # env as it is, nothing added (lk-jwt-service's variables: LIVEKIT_JWT_BIND must name `port`);
    # the process runs in the directory, so the default data dir is there
    verbatim: bool = False
    name: str = field(default="livekit-jwt", init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        if self.verbatim:
            clean = {key: value for key, value in os.environ.items() if not key.startswith("LIVEKIT_")}
            return {**clean, **self.env}
        named = {key if key.startswith("LIVEKIT_JWT_") else f"LIVEKIT_JWT_{key}": value
                 for key, value in self.env.items()}  # fmt: skip
        clean = {key: value for key, value in os.environ.items() if not key.startswith("LIVEKIT_JWT_")}
        base = {"LIVEKIT_JWT_HOST": "127.0.0.1", "LIVEKIT_JWT_PORT": str(self.port),
                "LIVEKIT_JWT_DATA_DIR": str(self.directory / "data")}  # fmt: skip
        return {**clean, **base, **named}

    def command(self) -> Command:
        argv = [sys.executable, "-m", "matrix_stack.services.livekit_jwt"]
        return Command(argv, env=self.environment(), cwd=self.directory if self.verbatim else None)

    def ready(self) -> bool:
        return http_ok(self.url + "/readyz")()

    def log_lines(self) -> list[dict[str, Any]]:
        return json_log_lines(self.log)
