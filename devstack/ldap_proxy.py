"""`ldap-proxy` as a process on loopback, configured by a YAML file, for the tests, the benchmark and
`make run`: it is started the way an operator starts it, through its console entry point."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

import httpx
import yaml

from devstack.process import Command, LocalServer
from devstack.processes import json_log_lines, metric_sum
from matrix_stack.shared.route.processes import free_ports, http_ok


@dataclass
class LocalLdapProxy(LocalServer):
    backends: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)  # any other LdapProxySettings field
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0  # 0: a free one
    http_port: int = 0
    name: str = field(default="ldap-proxy", init=False)
    wait_for: str = field(default="/healthz", init=False)  # what `start` waits for

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        ports = free_ports(2)
        self.port = self.port or ports[0]
        self.http_port = self.http_port or ports[1]

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def control(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def config(self) -> dict[str, Any]:
        return {"listen_host": "127.0.0.1", "listen_port": self.port, "host": "127.0.0.1",
                "port": self.http_port, "backends": self.backends, **self.settings}  # fmt: skip

    def start(self, timeout: float | None = None, *, wait_for: str = "/healthz") -> None:
        self.wait_for = wait_for
        super().start(timeout)

    def command(self) -> Command:
        path = self.directory / "ldap-proxy.yaml"
        path.write_text(yaml.safe_dump(self.config()))
        env = {**os.environ, "LDAP_PROXY_CONFIG_FILE": str(path), **self.env}
        return Command([sys.executable, "-m", "matrix_stack.services.ldap_proxy"], env=env)

    def ready(self) -> bool:
        return http_ok(self.control + self.wait_for)()

    def backends_state(self) -> dict[str, str]:
        answer = httpx.get(self.control + "/backends", timeout=5).json()
        return {backend["name"]: backend["state"] for backend in answer["backends"]}

    def metric(self, name: str, **labels: str) -> float:
        return metric_sum(self.control + "/metrics", name, **labels)

    def log_lines(self) -> list[dict[str, Any]]:
        return json_log_lines(self.log)
