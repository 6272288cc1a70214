"""A real Prometheus (Debian's `prometheus`) on loopback: scrapes given targets, evaluates rule
files, sends alerts to an Alertmanager. Intervals are short so a test sees a rule fire in seconds."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from devstack.process import Command, LocalServer
from matrix_stack.shared.route.processes import http_ok


def binary() -> str | None:
    return shutil.which("prometheus")


@dataclass(frozen=True)
class Target:
    """One scrape target and the labels a PodMonitor would give its series."""

    address: str  # host:port
    labels: dict[str, str]
    path: str = "/metrics"


@dataclass
class LocalPrometheus(LocalServer):
    port: int
    targets: list[Target]
    rule_files: list[Path] = field(default_factory=list)
    alertmanager: str | None = None  # host:port
    interval: str = "1s"
    name: str = field(default="prometheus", init=False)

    start_timeout = 60.0
    stop_removes_directory = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        by_path: dict[str, list[Target]] = {}
        for target in self.targets:
            by_path.setdefault(target.path, []).append(target)
        config: dict[str, Any] = {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": f"targets{index}",
                    "metrics_path": path,
                    "honor_labels": True,  # the targets' labels (job, pod...) are the PodMonitor's
                    "static_configs": [{"targets": [t.address], "labels": t.labels} for t in targets],
                }
                for index, (path, targets) in enumerate(sorted(by_path.items()))
            ],
        }
        if self.alertmanager:
            config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [self.alertmanager]}]}]}
        return config

    def command(self) -> Command:
        executable = binary()
        if executable is None:
            raise RuntimeError("prometheus is not installed (make test installs it)")
        config_path = self.directory / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        return Command([executable, f"--config.file={config_path}",
                        f"--storage.tsdb.path={self.directory / 'data'}",
                        f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle"])  # fmt: skip

    def ready(self) -> bool:
        return http_ok(f"{self.url}/-/ready")()

    def api(self, path: str, **params: str) -> Any:
        response = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        response.raise_for_status()
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    def metric_names(self) -> set[str]:
        """Every metric name Prometheus has stored."""
        return set(self.api("label/__name__/values"))

    def alerts(self) -> list[dict[str, Any]]:
        """Active alerts (pending and firing) with their labels and state."""
        return list(self.api("alerts")["alerts"])
