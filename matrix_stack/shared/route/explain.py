"""`matrix-stack route explain`: where will this request go with my values?

The answer comes from the real thing: the chart is rendered with helm, its router configuration runs
in the real Envoy, and every pool is a stub upstream (a second Envoy) that reports its name and the
hash key the router chose. Nothing here re-implements Envoy's matching.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from matrix_stack.shared.route import envoy as local_envoy
from matrix_stack.shared.route import helm

# Enough to render the chart with no values of the operator's; theirs take precedence.
PLACEHOLDERS = {
    "serverName": "example.org",
    "publicBaseurl": "https://matrix.example.org/",
    "redis": {"host": "redis"},
    "postgres": {"host": "postgres"},
    "mas": {"publicBaseurl": "https://auth.example.org/", "database": {"host": "postgres"}},
}


@dataclass(frozen=True)
class Answer:
    method: str
    path: str
    pool: str  # a pool name, "main", "mas", or "-" when the router answers itself
    hash_key: str  # "-" when the route does not hash
    status: int


class Client:
    """HTTP/1.1 on one connection, sending the path byte for byte (no client-side normalisation)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.buffer = b""

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the router closed the connection")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    def request(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        lines = [f"{method} {path} HTTP/1.1", "host: explain", "content-length: 0"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
        head = self._read_until(b"\r\n\r\n").decode("utf-8", "replace").split("\r\n")
        status = int(head[0].split(" ")[1])
        response = {k.lower(): v for k, v in (line.split(": ", 1) for line in head[1:] if ": " in line)}
        # HEAD answers and 204/304 carry no body whatever their Content-Length says.
        length = 0 if method == "HEAD" or status in (204, 304) else int(response.get("content-length", "0"))
        while len(self.buffer) < length:
            self.buffer += self.sock.recv(65536)
        self.buffer = self.buffer[length:]
        return status, response

    def close(self) -> None:
        self.sock.close()


class Explainer:
    """The rendered router in the real Envoy, against one stub per pool."""

    def __init__(self, values_files: list[Path], sets: list[str]) -> None:
        documents = helm.helm_template(values_files, sets, "synapse", base=PLACEHOLDERS)
        self.config = local_envoy.router_config(documents)
        self.pools = local_envoy.pools_of(self.config)
        stub_config, stub_ports = local_envoy.stub_upstreams(sorted(self.pools))
        self.stubs = local_envoy.LocalEnvoy(stub_config)
        port, metrics, admin = local_envoy.local_ports()
        endpoints = {pool: [("127.0.0.1", stub_port)] for pool, stub_port in stub_ports.items()}
        self.envoy = local_envoy.LocalEnvoy(
            local_envoy.localize(self.config, endpoints, port=port, metrics_port=metrics, admin_port=admin)
        )
        self.client: Client | None = None

    def __enter__(self) -> Explainer:
        self.stubs.start()
        try:
            self.envoy.start()
        except Exception:
            self.stubs.stop()
            raise
        self.client = Client(self.envoy.port)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.client:
            self.client.close()
        self.envoy.stop()
        self.stubs.stop()

    def explain(self, method: str, path: str, headers: dict[str, str] | None = None) -> Answer:
        assert self.client is not None
        try:
            status, response = self.client.request(method, path, headers or {})
        except (ConnectionError, OSError):
            self.client.close()
            self.client = Client(self.envoy.port)
            status, response = self.client.request(method, path, headers or {})
        pool = response.get(local_envoy.POOL_HEADER, "-")
        key = (response.get(local_envoy.KEY_HEADER) or "-") if pool != "-" else "-"
        return Answer(method, path, pool, key, status)


def parse_line(line: str) -> tuple[str, str, dict[str, str]]:
    """`METHOD<TAB>PATH`, optionally followed by `<TAB>Name: value` header fields."""
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) < 2 or not fields[0] or not fields[1].startswith("/"):
        raise ValueError(f"expected METHOD<TAB>PATH, got {line.rstrip()!r}")
    headers = dict(field.split(": ", 1) for field in fields[2:] if ": " in field)
    return fields[0].upper(), fields[1], headers


def main(values_files: list[Path], sets: list[str], method: str | None, path: str | None,
         headers: list[str], batch: bool) -> int:  # fmt: skip
    try:
        with Explainer(values_files, sets) as running:
            if batch:
                for number, line in enumerate(sys.stdin, 1):
                    if not line.strip():
                        continue
                    try:
                        parsed = parse_line(line)
                    except ValueError as error:
                        print(f"line {number}: {error}", file=sys.stderr)
                        return 2
                    answer = running.explain(*parsed)
                    print(f"{answer.method}\t{answer.path}\t{answer.pool}\t{answer.hash_key}", flush=True)
                return 0
            if not method or not path:
                print("route explain: give METHOD PATH, or --batch", file=sys.stderr)
                return 2
            extra = dict(h.split(": ", 1) for h in headers if ": " in h)
            answer = running.explain(method.upper(), path, extra)
            print(f"pool: {answer.pool}\nhash key: {answer.hash_key}")
            return 0
    except (helm.RenderError, RuntimeError) as error:
        print(f"route explain: {error}", file=sys.stderr)
        return 2
