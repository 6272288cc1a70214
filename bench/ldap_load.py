"""A cheap closed-loop LDAP login generator: each login is what Synapse's LDAP provider does per
password check — a new TCP connection, a simple bind, its bindResponse, an unbind, a close.

One process runs `concurrency` logins at a time on raw non-blocking sockets and one epoll, with the
bind and unbind PDUs encoded before the clock starts, so a login costs a handful of system calls and
little Python. Run several processes (`python -m bench.ldap_load ...`, one JSON result on stdout
each) so one interpreter does not cap the rate; `merge` adds their results up.

Every bindResponse is read and its resultCode checked: anything but success (0), a refused or reset
connection, a close before the answer, or no answer within `timeout` is a failure, counted by kind.
A login counts when it completes inside the measured window (after `warmup`, for `seconds`).
"""

from __future__ import annotations

import argparse
import errno
import json
import select
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from matrix_stack.services.ldap_proxy import ber

BIND_ID = 1
UNBIND_ID = 2
# slapd's answer to a successful simple bind with message id 1, byte for byte: the fast path.
SUCCESS_REPLY = ber.result(BIND_ID, ber.BIND_RESPONSE, ber.SUCCESS)


@dataclass(frozen=True)
class Login:
    """The pre-encoded PDUs of one login."""

    bind: bytes
    unbind: bytes

    @classmethod
    def of(cls, dn: str, password: str) -> Login:
        return cls(ber.simple_bind(BIND_ID, dn, password), ber.unbind(UNBIND_ID))


def bind_result(buf: bytes) -> int | None:
    """The resultCode of the bindResponse at the head of `buf`; None while it is incomplete.

    Raises `ber.BerError` for bytes that are not an LDAP message, `ValueError` for a message that is
    not the bindResponse (a notice of disconnection, say).
    """
    if buf == SUCCESS_REPLY:
        return ber.SUCCESS
    seen = ber.peek(buf)
    if seen is None:
        return None
    _, message_id, op, code = seen
    if op != ber.BIND_RESPONSE or message_id != BIND_ID or code is None:
        name = ber.result_name(code) if code is not None else "-"
        raise ValueError(f"op 0x{op:02x} id {message_id} code {name} instead of the bindResponse")
    return code


@dataclass
class LoadResult:
    """What one or more load processes measured."""

    seconds: float = 0.0  # the measured window
    latencies_us: list[int] = field(default_factory=list)  # logins completed in the window
    failures: dict[str, int] = field(default_factory=dict)  # any time, warm-up and drain included
    total_ok: int = 0  # successful logins, warm-up and drain included
    cpu_seconds: float = 0.0  # the load processes' own CPU time in the window
    processes: int = 1

    @property
    def logins(self) -> int:
        return len(self.latencies_us)

    @property
    def rate(self) -> float:
        return self.logins / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_us)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000

    def to_json(self) -> str:
        return json.dumps({"seconds": self.seconds, "latencies_us": self.latencies_us,
                           "failures": self.failures, "total_ok": self.total_ok,
                           "cpu_seconds": self.cpu_seconds})  # fmt: skip

    @classmethod
    def from_json(cls, text: str) -> LoadResult:
        data = json.loads(text)
        return cls(float(data["seconds"]), [int(v) for v in data["latencies_us"]],
                   {str(k): int(v) for k, v in data["failures"].items()}, int(data["total_ok"]),
                   float(data["cpu_seconds"]))  # fmt: skip


def merge(results: Sequence[LoadResult]) -> LoadResult:
    """Processes that ran in the same window, as one."""
    merged = LoadResult(seconds=max((r.seconds for r in results), default=0.0), processes=len(results))
    for result in results:
        merged.latencies_us += result.latencies_us
        merged.total_ok += result.total_ok
        merged.cpu_seconds += result.cpu_seconds
        for kind, count in result.failures.items():
            merged.failures[kind] = merged.failures.get(kind, 0) + count
    return merged


class _Attempt:
    __slots__ = ("buf", "connected", "login", "sock", "started")

    def __init__(self, sock: socket.socket, login: Login, started: float) -> None:
        self.sock = sock
        self.login = login
        self.started = started
        self.connected = False
        self.buf = b""


def run(
    address: tuple[str, int],
    logins: Sequence[Login],
    *,
    concurrency: int,
    seconds: float,
    warmup: float = 0.0,
    start_at: float | None = None,
    timeout: float = 5.0,
) -> LoadResult:
    """Keep `concurrency` logins in flight from `start_at` (a time.time(), so several processes can
    share a start) for `warmup` + `seconds`, then let those in flight finish (up to `timeout`)."""
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    result = LoadResult(seconds=seconds)
    latencies = result.latencies_us
    failures = result.failures
    poller = select.epoll()
    attempts: dict[int, _Attempt] = {}
    clock = time.perf_counter
    begin = clock()
    window_start = begin + warmup
    window_end = window_start + seconds
    cpu_start: float | None = None
    turn = 0
    readable, writable = select.EPOLLIN, select.EPOLLOUT

    def fail(attempt: _Attempt, kind: str) -> None:
        failures[kind] = failures.get(kind, 0) + 1
        attempts.pop(attempt.sock.fileno(), None)
        attempt.sock.close()

    def start() -> None:
        nonlocal turn
        login = logins[turn]
        turn = (turn + 1) % len(logins)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        attempt = _Attempt(sock, login, clock())
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS):
            kind = f"connect: {errno.errorcode.get(code, code)}"
            failures[kind] = failures.get(kind, 0) + 1
            sock.close()
            return
        fd = sock.fileno()
        attempts[fd] = attempt
        # On loopback the handshake is usually done by now: send at once, and wait for
        # writability only when the kernel says it is not.
        try:
            sock.send(login.bind)
        except (BlockingIOError, OSError) as exc:
            if isinstance(exc, BlockingIOError) or exc.errno == errno.ENOTCONN:
                poller.register(fd, writable)
                return
            fail(attempt, f"send: {errno.errorcode.get(exc.errno or 0, exc.errno)}")
            return
        attempt.connected = True
        poller.register(fd, readable)

    def on_event(fd: int, events: int) -> None:
        attempt = attempts.get(fd)
        if attempt is None:
            return
        sock = attempt.sock
        if not attempt.connected:
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if error:
                fail(attempt, f"connect: {errno.errorcode.get(error, error)}")
                return
            try:
                sock.send(attempt.login.bind)
            except OSError as exc:
                fail(attempt, f"send: {errno.errorcode.get(exc.errno or 0, exc.errno)}")
                return
            attempt.connected = True
            poller.modify(fd, readable)
            return
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError as exc:
            fail(attempt, f"recv: {errno.errorcode.get(exc.errno or 0, exc.errno)}")
            return
        if not data:
            fail(attempt, "closed before the bindResponse")
            return
        buf = attempt.buf + data if attempt.buf else data
        try:
            code = bind_result(buf)
        except ValueError as exc:  # BerError is a ValueError
            fail(attempt, f"bad response: {exc}")
            return
        if code is None:
            attempt.buf = buf
            return
        now = clock()
        if code != ber.SUCCESS:
            fail(attempt, f"result: {ber.result_name(code)}")
            return
        try:  # noqa: SIM105 (a context manager per login costs more than this)
            sock.send(attempt.login.unbind)
        except OSError:
            pass  # the bind is done; the unbind is politeness
        del attempts[fd]
        sock.close()  # closing removes it from the epoll set
        result.total_ok += 1
        if window_start <= now <= window_end:
            latencies.append(int((now - attempt.started) * 1_000_000))

    try:
        for _ in range(concurrency):
            start()
        next_sweep = clock() + 0.25
        while True:
            now = clock()
            if cpu_start is None and now >= window_start:
                cpu_start = time.process_time()
            if now >= window_end:
                break
            for fd, events in poller.poll(0.05):
                before = len(attempts)
                on_event(fd, events)
                if len(attempts) < before:
                    start()
            if len(attempts) < concurrency:  # refused connections leave gaps
                for _ in range(concurrency - len(attempts)):
                    start()
            if now >= next_sweep:
                next_sweep = now + 0.25
                for attempt in [a for a in attempts.values() if now - a.started > timeout]:
                    fail(attempt, f"no bindResponse within {timeout:g}s")
        result.cpu_seconds = time.process_time() - (cpu_start if cpu_start is not None else 0.0)
        drain_until = clock() + timeout
        while attempts and clock() < drain_until:
            for fd, events in poller.poll(0.05):
                on_event(fd, events)
        for attempt in list(attempts.values()):
            fail(attempt, f"no bindResponse within {timeout:g}s")
    finally:
        for attempt in attempts.values():
            attempt.sock.close()
        poller.close()
    return result


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ldap_load", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dn", action="append", required=True, help="a DN to bind as; repeatable")
    parser.add_argument("--password", action="append", required=True, help="the password of each --dn")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--start-at", type=float, default=None, help="a time.time() to start at")
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    if len(args.dn) != len(args.password):
        parser.error("give one --password per --dn")
    logins = [Login.of(dn, password) for dn, password in zip(args.dn, args.password, strict=True)]
    result = run((args.host, args.port), logins, concurrency=args.concurrency, seconds=args.seconds,
                 warmup=args.warmup, start_at=args.start_at, timeout=args.timeout)  # fmt: skip
    sys.stdout.write(result.to_json())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
