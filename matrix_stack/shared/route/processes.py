"""Free loopback ports, and starting and stopping a server process: what `route explain` needs to run
the real Envoy (the harness uses them too)."""

from __future__ import annotations

import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx

# Ports handed out lately, never handed out again by this process meanwhile: a port is free only
# until its server binds it, and Envoy binds with SO_REUSEPORT, so two callers given the same port
# would both listen on it and share its connections instead of one failing.
_HANDED_OUT: dict[int, float] = {}
HANDED_OUT_SECONDS = 600.0


def _remember(ports: list[int]) -> list[int]:
    now = time.monotonic()
    for port, at in list(_HANDED_OUT.items()):
        if now - at > HANDED_OUT_SECONDS:
            del _HANDED_OUT[port]
    _HANDED_OUT.update(dict.fromkeys(ports, now))
    return ports


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports below Linux's ephemeral range (32768 up), all bound at once, none
    handed out by this process in the last ten minutes.

    Ports from the ephemeral range can be taken by any process's outgoing connections between
    choosing a port and listening on it; a cluster of many processes hits that.
    """
    sockets: list[socket.socket] = []
    candidates = [port for port in range(20000, 32000) if port not in _HANDED_OUT]
    random.shuffle(candidates)
    try:
        for port in candidates:
            if len(sockets) == count:
                break
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
        return _remember([int(sock.getsockname()[1]) for sock in sockets])
    finally:
        for sock in sockets:
            sock.close()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str) -> Callable[[], bool]:
    """A readiness check: the URL answers 200."""

    def check() -> bool:
        try:
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def wait_ready(
    name: str,
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    timeout: float,
    log: Path | None = None,
    interval: float = 0.1,
) -> None:
    """Poll `ready` until it holds; fail at once, with the log's tail, if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"{name} exited with {process.returncode}\n{tail}".rstrip())
        if ready():
            return
        time.sleep(interval)
    raise RuntimeError(f"{name} not ready after {timeout}s")


def stop(process: subprocess.Popen[bytes] | None, timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
