"""Process helpers only the harness, tests and benchmarks use (the shipped ones are in
`matrix_stack.shared.route.processes`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from matrix_stack.shared.route.processes import free_ports

# The stand-ins that serve HTTP in-process keep idle connections longer than their clients do, as the
# kit's services do (KitSettings.keep_alive_seconds): with equal timeouts a reused connection can be
# closed under a request.
STAND_IN_KEEP_ALIVE = 75


def free_port() -> int:
    """A free loopback port this process has not handed out lately, below the ephemeral range.

    The kernel's own choice (bind to port 0) can hand the same port to two callers in a row, and any
    outgoing connection may take it before the server binds it: two livekit-jwt replicas once got
    one port, the second failed to bind and the first answered its readiness check."""
    return free_ports(1)[0]


def metric_sum(url: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus metric's samples at `url` whose labels include `labels`."""
    total = 0.0
    for line in httpx.get(url, timeout=10).text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(
            f'{key}="{value}"' in line for key, value in labels.items()
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def json_log_lines(path: Path) -> list[dict[str, Any]]:
    """A JSON-lines log read back: each line as its object, a line that is not JSON as {"msg": line}."""
    lines: list[dict[str, Any]] = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError:
            lines.append({"msg": line})
    return lines


# The encryption secret of bridges that share a PostgreSQL outbox here (in a cluster: a Secret).
ENCRYPTION_KEY = "local-encryption-key-0123456789abcdef"
