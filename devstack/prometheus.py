"""A real Prometheus (Debian's `prometheus`) on loopback: scrapes given targets, evaluates rule
files, sends alerts to an Alertmanager. Intervals are short so a test sees a rule fire in seconds."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from matrix_stack.shared.route.processes import http_ok, stop, wait_ready


def binary() -> str | None:
    return shutil.which("prometheus")


@dataclass(frozen=True)
class Target:
    """One scrape target and the labels a PodMonitor would give its series."""

    address: str  # host:port
    labels: dict[str, str]
    path: str = "/metrics"


@dataclass
class LocalPrometheus:
    port: int
    targets: list[Target]
    rule_files: list[Path] = field(default_factory=list)
    alertmanager: str | None = None  # host:port
    interval: str = "1s"
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="prometheus-")))
    process: subprocess.Popen[bytes] | None = None

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

    def start(self, timeout: float = 60.0) -> None:
        executable = binary()
        if executable is None:
            raise RuntimeError("prometheus is not installed (make test installs it)")
        config_path = self.directory / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        log = (self.directory / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [executable, f"--config.file={config_path}", f"--storage.tsdb.path={self.directory / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_ready(
            "prometheus", self.process, http_ok(f"{self.url}/-/ready"), timeout=timeout,
            log=self.directory / "prometheus.log",
        )  # fmt: skip

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

    def stop(self) -> None:
        stop(self.process)
        self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)
