"""A real Prometheus Alertmanager (Debian's `prometheus-alertmanager`) on loopback."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from devstack.processes import metric_sum
from matrix_stack.shared.route.processes import http_ok, stop, wait_ready

BINARY_NAMES = ("prometheus-alertmanager", "alertmanager")


def binary() -> str | None:
    return next((path for name in BINARY_NAMES if (path := shutil.which(name))), None)


@dataclass
class LocalAlertmanager:
    port: int
    config: dict[str, Any]
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="alertmanager-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        executable = binary()
        if executable is None:
            raise RuntimeError("prometheus-alertmanager is not installed (make test installs it)")
        config_path = self.directory / "alertmanager.yml"
        config_path.write_text(yaml.safe_dump(self.config))
        log = (self.directory / "alertmanager.log").open("ab")
        self.process = subprocess.Popen(
            [executable, f"--config.file={config_path}", f"--storage.path={self.directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
             f"--web.external-url={self.url}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_ready(
            "alertmanager",
            self.process,
            http_ok(f"{self.url}/-/ready"),
            timeout=timeout,
            log=self.directory / "alertmanager.log",
        )

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        httpx.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=10).raise_for_status()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include `labels`."""
        return metric_sum(f"{self.url}/metrics", name, **labels)

    def stop(self) -> None:
        stop(self.process)
        self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)
