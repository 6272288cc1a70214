"""`livekit-jwt` as a process on loopback, configured by its environment, for the tests and `make run`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.processes import free_port, json_log_lines
from matrix_stack.shared.route.processes import http_ok, stop, wait_ready


@dataclass
class LocalLivekitJwt:
    env: dict[str, str]  # LIVEKIT_JWT_* settings (the prefix may be left out)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="livekit-jwt-")))
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.directory / "livekit-jwt.log"

    def environment(self) -> dict[str, str]:
        named = {key if key.startswith("LIVEKIT_JWT_") else f"LIVEKIT_JWT_{key}": value
                 for key, value in self.env.items()}  # fmt: skip
        clean = {key: value for key, value in os.environ.items() if not key.startswith("LIVEKIT_JWT_")}
        base = {"LIVEKIT_JWT_HOST": "127.0.0.1", "LIVEKIT_JWT_PORT": str(self.port),
                "LIVEKIT_JWT_DATA_DIR": str(self.directory / "data")}  # fmt: skip
        return {**clean, **base, **named}

    def start(self, timeout: float = 20.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "matrix_stack.services.livekit_jwt"],
            env=self.environment(), stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_ready("livekit-jwt", self.process, http_ok(self.url + "/readyz"), timeout=timeout, log=self.log)

    def log_lines(self) -> list[dict[str, Any]]:
        return json_log_lines(self.log)

    def stop(self) -> None:
        stop(self.process)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
