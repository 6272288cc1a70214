"""A real Prometheus Alertmanager (Debian's `prometheus-alertmanager`) on loopback."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Any

import httpx
import yaml

from devstack.process import Command, LocalServer
from devstack.processes import metric_sum
from matrix_stack.shared.route.processes import http_ok

BINARY_NAMES = ("prometheus-alertmanager", "alertmanager")


def binary() -> str | None:
    return next((path for name in BINARY_NAMES if (path := shutil.which(name))), None)


@dataclass
class LocalAlertmanager(LocalServer):
    port: int
    config: dict[str, Any]
    name: str = field(default="alertmanager", init=False)

    start_timeout = 30.0
    stop_removes_directory = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> Command:
        executable = binary()
        if executable is None:
            raise RuntimeError("prometheus-alertmanager is not installed (make test installs it)")
        config_path = self.directory / "alertmanager.yml"
        config_path.write_text(yaml.safe_dump(self.config))
        return Command([executable, f"--config.file={config_path}",
                        f"--storage.path={self.directory / 'data'}",
                        f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
                        f"--web.external-url={self.url}"])  # fmt: skip

    def ready(self) -> bool:
        return http_ok(f"{self.url}/-/ready")()

    def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        httpx.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=10).raise_for_status()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples whose labels include `labels`."""
        return metric_sum(f"{self.url}/metrics", name, **labels)
