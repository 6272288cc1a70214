"""LDAP logins per second through ldap-proxy, against HAProxy and against slapd itself, in one run.

A login is what Synapse's LDAP provider does per password check: a new TCP connection, a simple bind
as a real user with the right password, the bindResponse, an unbind, a close. The load is
bench/ldap_load.py, the same for every target: closed loop, `LDAP_BENCH_CONCURRENCY` logins in
flight spread over `LDAP_BENCH_PROCESSES` processes, `LDAP_BENCH_SECONDS` per target after
`LDAP_BENCH_WARMUP` seconds of warm-up, in `LDAP_BENCH_ROUNDS` rounds (2): each target measured once
per round, the rounds' order alternating (forward, backward), so that what else the machine runs,
which changes over the minutes of a run, weighs on every target alike. Targets:
  - direct: the two real slapds (Debian's) themselves, the load split between them;
  - haproxy: Debian's HAProxy in TCP mode with `option ldap-check` in front of two slapds;
  - ldap-proxy: ours, through its console entry point, in front of the same two slapds, balancing
    `LDAP_BENCH_BALANCE` (round_robin, haproxy's roundrobin; or first), anonymous-bind checks every
    second, otherwise its defaults (its workers: two processes, as haproxy runs two threads here;
    bind audit lines included, LDAP_BENCH_PROXY_AUDIT=0 turns them off);
  - like for like: haproxy-log, the same haproxy writing a tcplog line per connection (the work of
    the proxy's audit line); haproxy-1t, on one thread (`nbthread 1`), and proxy-1w, the proxy in one
    process (`workers: 1`); proxy-noaudit, the proxy without its audit line (the first haproxy logs
    nothing).
The CPU of a proxy is its processes' together. Its memory is read from /proc before any load and after
its own: the proportional share (PSS) of all its processes, which counts the pages they share once,
as the pod's memory does, and each one's resident set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.ldap_load import LoadResult, merge
from devstack import haproxy as local_haproxy
from devstack import slapd as local_slapd
from devstack.haproxy import LocalHaproxy
from devstack.ldap_proxy import LocalLdapProxy
from devstack.slapd import LdapUser, LocalSlapd, ldap_bind

ROOT = Path(__file__).resolve().parents[1]
SECONDS = float(os.environ.get("LDAP_BENCH_SECONDS", "10"))
WARMUP = float(os.environ.get("LDAP_BENCH_WARMUP", "1"))
ROUNDS = int(os.environ.get("LDAP_BENCH_ROUNDS", "2"))
CONCURRENCY = int(os.environ.get("LDAP_BENCH_CONCURRENCY", "32"))
PROCESSES = int(os.environ.get("LDAP_BENCH_PROCESSES", "2"))
BALANCE = os.environ.get("LDAP_BENCH_BALANCE", "round_robin")
AUDIT = os.environ.get("LDAP_BENCH_PROXY_AUDIT", "1") not in ("0", "false", "no")
USERS = [LdapUser(f"bench{n}", f"bench-password-{n}", f"Bench User {n}", f"bench{n}@example.org")
         for n in range(8)]  # fmt: skip
RSS_TARGET_MB = 80.0
HAPROXY_BALANCE = {"round_robin": "roundrobin", "first": "first"}
TIMEOUT = 5.0  # a login with no bindResponse by then is a failure
START_DELAY = 1.5  # for the load processes' interpreters to start before the common start time
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def pss_mb(pid: int) -> float:
    """A process's proportional share of the memory it maps: the pages it shares with the proxy's
    other workers (the interpreter, its libraries) counted once over them all, as the pod's memory
    counts them."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no Pss for process {pid}")


@dataclass
class Memory:
    pss: float  # MiB, all the processes together
    rss: list[float]  # MiB, each process

    @classmethod
    def of(cls, pids: list[int]) -> Memory:
        return cls(sum(pss_mb(pid) for pid in pids), [rss_mb(pid) for pid in pids])

    def show(self) -> str:
        return f"{self.pss:.1f} MiB (RSS {' + '.join(f'{rss:.1f}' for rss in self.rss)})"


def family(pid: int) -> list[int]:
    """A process and its children (the proxy's other workers)."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(child) for child in (task / "children").read_text().split()]
    return [pid, *children]


def cpu_seconds(pids: list[int]) -> float:
    """User plus system time of processes so far (their threads included)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15
    return total / CLOCK_TICKS


def machine_ticks() -> dict[str, int]:
    """The machine's CPU time so far by kind, in clock ticks (/proc/stat's first line)."""
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    values = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return {name: int(value) for name, value in zip(names, values, strict=False)}


def version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "?"


@dataclass
class Target:
    label: str
    ports: list[int]  # load process n dials ports[n % len(ports)]
    processes: dict[str, list[int]]  # the servers whose CPU is counted: name -> their pids


@dataclass
class Measured:
    load: LoadResult
    cpu: dict[str, float]  # name -> share of one core over the measured window
    machine: dict[str, float]  # idle, softirq, steal: share of all cores over the window


async def measure(target: Target, seconds: float) -> Measured:
    """Start the load processes together, sample the servers' CPU over the same window, merge."""
    start_at = time.time() + START_DELAY
    per_process = [CONCURRENCY // PROCESSES + (1 if n < CONCURRENCY % PROCESSES else 0)
                   for n in range(PROCESSES)]  # fmt: skip
    users: list[str] = []
    for user in USERS:
        users += ["--dn", f"uid={user.uid},{local_slapd.PEOPLE_DN}", "--password", user.password]
    workers = []
    try:
        for n, concurrency in enumerate(per_process):
            port = target.ports[n % len(target.ports)]
            command = [sys.executable, "-m", "bench.ldap_load", "--port", str(port), *users,
                       "--concurrency", str(concurrency), "--seconds", str(seconds), "--warmup", str(WARMUP),
                       "--start-at", str(start_at), "--timeout", str(TIMEOUT)]  # fmt: skip
            pipe = asyncio.subprocess.PIPE
            workers.append(await asyncio.create_subprocess_exec(*command, cwd=ROOT, stdout=pipe, stderr=pipe))
        outputs = asyncio.gather(*(worker.communicate() for worker in workers))
        await asyncio.sleep(max(0.0, start_at + WARMUP - time.time()))
        before = {name: cpu_seconds(pids) for name, pids in target.processes.items()}
        ticks_before = machine_ticks()
        await asyncio.sleep(max(0.0, start_at + WARMUP + seconds - time.time()))
        after = {name: cpu_seconds(pids) for name, pids in target.processes.items()}
        ticks_after = machine_ticks()
        results = []
        for worker, (stdout, stderr) in zip(workers, await outputs, strict=True):
            if worker.returncode != 0:
                raise RuntimeError(f"a load process exited with {worker.returncode}:\n{stderr.decode()}")
            results.append(LoadResult.from_json(stdout.decode()))
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()
    cpu = {name: (after[name] - before[name]) / seconds for name in before}
    spent = {kind: ticks_after[kind] - ticks_before[kind] for kind in ticks_before}
    total = sum(spent.values()) or 1
    machine = {kind: spent[kind] / total for kind in ("idle", "softirq", "steal")}
    return Measured(merge(results), cpu, machine)


def combine(parts: list[Measured]) -> Measured:
    """A target's rounds as one measurement: their logins together, CPU shares averaged."""
    load = LoadResult(seconds=sum(part.load.seconds for part in parts), processes=parts[0].load.processes)
    for part in parts:
        load.latencies_us += part.load.latencies_us
        load.total_ok += part.load.total_ok
        load.cpu_seconds += part.load.cpu_seconds
        for kind, count in part.load.failures.items():
            load.failures[kind] = load.failures.get(kind, 0) + count
    cpu = {name: sum(part.cpu[name] for part in parts) / len(parts) for name in parts[0].cpu}
    machine = {kind: sum(part.machine[kind] for part in parts) / len(parts) for kind in parts[0].machine}
    return Measured(load, cpu, machine)


def check_logins(label: str, port: int) -> None:
    """Before the load: a right password binds, a wrong one is refused (49), through this target."""
    user = USERS[0]
    dn = f"uid={user.uid},{local_slapd.PEOPLE_DN}"
    good, bad = ldap_bind(port, dn, user.password), ldap_bind(port, dn, user.password + "x")
    if (good, bad) != (0, 49):
        raise RuntimeError(f"{label}: a right password gives {good}, a wrong one {bad} (want 0 and 49)")


def wait_for(what: str, condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not after {timeout:g}s")
        time.sleep(0.1)


async def main() -> None:
    if BALANCE not in HAPROXY_BALANCE:
        raise SystemExit(f"LDAP_BENCH_BALANCE={BALANCE!r}: choose round_robin or first")
    for name, binary, hint in (("slapd", local_slapd.binary(), local_slapd.INSTALL_HINT),
                               ("haproxy", local_haproxy.binary(), local_haproxy.INSTALL_HINT)):  # fmt: skip
        if binary is None:
            raise SystemExit(f"the ldap benchmark needs {name} ({hint}; `make bench` installs it)")
    slapds = [LocalSlapd(users=USERS), LocalSlapd(users=USERS)]
    balancer: LocalHaproxy | None = None
    single: LocalHaproxy | None = None  # haproxy on one thread, like the proxy with one worker
    logging_balancer: LocalHaproxy | None = None  # haproxy writing a line per connection
    proxy: LocalLdapProxy | None = None
    quiet: LocalLdapProxy | None = None  # the proxy without its audit line: haproxy's logging here
    alone: LocalLdapProxy | None = None  # the proxy in one process (workers 1), like haproxy-1t
    measured: dict[str, Measured] = {}
    keep_proxy_log = True  # until the proxy's run is known clean
    try:
        for slapd in slapds:
            slapd.start()
        a, b = slapds
        assert a.process is not None
        assert b.process is not None
        backends = [("127.0.0.1", a.port), ("127.0.0.1", b.port)]
        balancer = LocalHaproxy(backends, balance="roundrobin" if BALANCE == "round_robin" else "first")
        balancer.start()
        single = LocalHaproxy(backends, balance=balancer.balance, threads=1)
        single.start()
        logging_balancer = LocalHaproxy(backends, balance=balancer.balance, log_connections=True)
        logging_balancer.start()
        proxy = LocalLdapProxy(
            [{"name": "slapd-a", "host": "127.0.0.1", "port": a.port},
             {"name": "slapd-b", "host": "127.0.0.1", "port": b.port}],
            settings={"balance": BALANCE, "check_interval": 1.0, "check_timeout": 0.5,
                      "audit_binds": AUDIT},
        )  # fmt: skip
        proxy.start()
        quiet = LocalLdapProxy(proxy.backends, settings={**proxy.settings, "audit_binds": False})
        quiet.start()
        alone = LocalLdapProxy(proxy.backends, settings={**proxy.settings, "workers": 1})
        alone.start()
        assert single.process is not None
        assert logging_balancer.process is not None
        assert quiet.process is not None
        assert alone.process is not None
        assert balancer.process is not None
        assert proxy.process is not None
        up = proxy
        wait_for("both backends up in ldap-proxy", lambda: set(up.backends_state().values()) == {"up"})
        for other in (quiet, alone):
            wait_for("both backends up in the other ldap-proxies",
                     lambda other=other: set(other.backends_state().values()) == {"up"})  # fmt: skip
        await asyncio.sleep(1.0)  # a check round or two, then idle
        proxy_idle = Memory.of(family(proxy.process.pid))
        haproxy_idle = rss_mb(balancer.process.pid)
        slapd_pids = {"slapd-a": [a.process.pid], "slapd-b": [b.process.pid]}
        targets = [
            # the floor for the same work: both directories, the load split between them (what a
            # client with a list of servers does), no middle
            Target("direct", [a.port, b.port], slapd_pids),
            Target("haproxy", [balancer.port], {**slapd_pids, "haproxy": [balancer.process.pid]}),
            Target("ldap-proxy", [proxy.port], {**slapd_pids, "ldap-proxy": family(proxy.process.pid)}),
            Target("haproxy-1t", [single.port], {**slapd_pids, "haproxy": [single.process.pid]}),
            Target("proxy-1w", [alone.port], {**slapd_pids, "ldap-proxy": family(alone.process.pid)}),
            Target("haproxy-log", [logging_balancer.port],
                   {**slapd_pids, "haproxy": [logging_balancer.process.pid]}),
            Target("proxy-noaudit", [quiet.port], {**slapd_pids, "ldap-proxy": family(quiet.process.pid)}),
        ]  # fmt: skip
        for target in targets:
            for port in target.ports:
                check_logins(target.label, port)
        proxy_binds_before = proxy.metric("matrix_stack_ldap_binds_total", result="success")
        rounds: dict[str, list[Measured]] = {target.label: [] for target in targets}
        for turn in range(ROUNDS):
            for target in targets if turn % 2 == 0 else targets[::-1]:
                rounds[target.label].append(await measure(target, SECONDS / ROUNDS))
        measured = {label: combine(parts) for label, parts in rounds.items()}
        proxy_after = Memory.of(family(proxy.process.pid))
        proxy_binds = proxy.metric("matrix_stack_ldap_binds_total", result="success") - proxy_binds_before
        proxy_states = proxy.backends_state()
        keep_proxy_log = bool(measured["ldap-proxy"].load.failed)
        if proxy.process.poll() is not None:
            raise RuntimeError(f"ldap-proxy exited with {proxy.process.returncode}; log: {proxy.log}")
        proxy_log_warnings = [line for line in proxy.log_lines()
                              if str(line.get("level", "")).upper() in ("WARNING", "ERROR", "CRITICAL")]  # fmt: skip
    except BaseException:
        if proxy is not None and proxy.log.exists():
            print(f"ldap-proxy log ({proxy.log}), last lines:", file=sys.stderr)
            print(proxy.log.read_text(errors="replace")[-3000:], file=sys.stderr)
        raise
    finally:
        closers: list[Callable[[], None]] = [slapd.close for slapd in slapds]
        for extra in (balancer, single, logging_balancer, quiet, alone):
            if extra is not None:
                closers.insert(0, extra.close)
        if proxy is not None:
            closers.insert(0, proxy.close)
        if proxy is not None and keep_proxy_log:
            closers[0] = proxy.stop
            print(f"ldap-proxy's log kept at {proxy.log}", file=sys.stderr)
        for close in closers:  # each, even when one before it fails
            with contextlib.suppress(Exception):
                close()

    report(measured, proxy_idle, proxy_after, haproxy_idle, proxy_binds, proxy_states, proxy_log_warnings)


def report(
    measured: dict[str, Measured],
    proxy_idle: Memory,
    proxy_after: Memory,
    haproxy_idle: float,
    proxy_binds: float,
    proxy_states: dict[str, str],
    proxy_warnings: list[dict[str, object]],
) -> None:
    cores = os.cpu_count() or 1
    per = CONCURRENCY // PROCESSES
    print(f"ldap: logins/s, a login = new TCP connection + simple bind as a user + bindResponse + unbind + "
          f"close (Synapse's LDAP provider); {CONCURRENCY} concurrent logins ({PROCESSES} load processes x "
          f"~{per}, raw sockets + epoll), {SECONDS:g} s per target in {ROUNDS} rounds (order alternating) "
          f"after {WARMUP:g} s warm-up each, "
          f"{len(USERS)} users in turn")  # fmt: skip
    print(f"  {version([local_slapd.binary() or 'slapd', '-VV'])}")
    print(f"  {version([local_haproxy.binary() or 'haproxy', '-v'])}")
    print(f"  balance: ldap-proxy {BALANCE} / haproxy {HAPROXY_BALANCE[BALANCE]}, 2 slapd backends; checks "
          f"every 1 s (haproxy option ldap-check, ldap-proxy anonymous_bind); ldap-proxy bind audit log "
          f"{'on (its default: one JSON line per bind)' if AUDIT else 'off'}")  # fmt: skip
    print(
        f"  note: this machine has {cores} core{'s' if cores != 1 else ''}: slapd, the proxy in the "
        "middle and the load generator share them, so a middle's CPU is taken from slapd and the load; "
        "read the ratios, not the absolute rates, and the cpu columns (% of one core; machine: % of all "
        "cores) for who was busy; anything else running on the machine skews them"
    )
    failed = False
    for label, result in measured.items():
        load = result.load
        cpu = ", ".join(f"{name} {share * 100:.0f}%" for name, share in result.cpu.items())
        cpu += ", machine " + ", ".join(
            f"{kind} {share * 100:.0f}%" for kind, share in result.machine.items()
        )
        flag = f"  FAILURES {load.failed}: {dict(sorted(load.failures.items()))}" if load.failed else ""
        failed = failed or bool(load.failed)
        print(f"  {label:13}: {load.rate:8.1f} logins/s  p50 {load.percentile_ms(0.5):6.2f} ms  "
              f"p99 {load.percentile_ms(0.99):6.2f} ms  ({load.logins} in window, {load.total_ok} ok in all, "
              f"failures {load.failed})  cpu: load {load.cpu_seconds / SECONDS * 100:.0f}%, {cpu}{flag}")  # fmt: skip
    rate = {label: result.load.rate for label, result in measured.items()}
    print(f"  ratios (logins/s): proxy/haproxy {rate['ldap-proxy'] / rate['haproxy']:.2f}x  "
          f"haproxy/direct {rate['haproxy'] / rate['direct']:.2f}x  "
          f"proxy/direct {rate['ldap-proxy'] / rate['direct']:.2f}x")  # fmt: skip
    print(f"  like for like: proxy/haproxy-log (a log line per login each) "
          f"{rate['ldap-proxy'] / rate['haproxy-log']:.2f}x  "
          f"proxy-1w/haproxy-1t (one thread each) {rate['proxy-1w'] / rate['haproxy-1t']:.2f}x  "
          f"proxy/proxy-1w (what the second worker brings) {rate['ldap-proxy'] / rate['proxy-1w']:.2f}x  "
          f"proxy-noaudit/haproxy (no per-login log line) {rate['proxy-noaudit'] / rate['haproxy']:.2f}x")  # fmt: skip
    # What the load on the machine moves least: the work per login. Per CPU-second of the middle
    # (the proxy or haproxy), and the directories' CPU per 1000 logins (a middle that reuses backend
    # connections saves them work; one that wins only by taking their CPU would not show it here).
    efficiency = {}
    for label, result in measured.items():
        middle = sum(share for name, share in result.cpu.items() if not name.startswith("slapd"))
        directories = sum(share for name, share in result.cpu.items() if name.startswith("slapd"))
        rate_here = result.load.rate or 1.0
        if middle:
            efficiency[label] = rate_here / middle
        ms_per_1000 = directories / rate_here * 1e6  # CPU-seconds per login, as ms per 1000 logins
        per_middle = (
            f"{rate_here / middle:8.0f} logins per CPU-second of the middle" if middle else "no middle"
        )
        print(f"  {label:13}: {per_middle:47}, directories {ms_per_1000:6.1f} ms CPU per 1000 logins")
    if "ldap-proxy" in efficiency and "haproxy" in efficiency:
        print(f"  per middle CPU-second: proxy/haproxy {efficiency['ldap-proxy'] / efficiency['haproxy']:.2f}x  "
              f"proxy/haproxy-log {efficiency['ldap-proxy'] / efficiency['haproxy-log']:.2f}x  "
              f"proxy-1w/haproxy-1t {efficiency['proxy-1w'] / efficiency['haproxy-1t']:.2f}x  "
              f"proxy-noaudit/haproxy {efficiency['proxy-noaudit'] / efficiency['haproxy']:.2f}x")  # fmt: skip
    verdict = "ok" if proxy_idle.pss < RSS_TARGET_MB else "OVER TARGET"
    print(f"  ldap-proxy memory (PSS of its {len(proxy_idle.rss)} processes): idle {proxy_idle.show()} "
          f"(target < {RSS_TARGET_MB:.0f} MiB: {verdict}), after load {proxy_after.show()}; haproxy idle "
          f"RSS {haproxy_idle:.1f} MiB")  # fmt: skip
    proxy_load = measured["ldap-proxy"].load
    print(f"  ldap-proxy counted {proxy_binds:.0f} successful binds during its run (load generator: "
          f"{proxy_load.total_ok}); backends after load: {proxy_states}; "
          f"{len(proxy_warnings)} warning/error log lines")  # fmt: skip
    for line in proxy_warnings[:5]:
        print(f"    {line}")
    if failed:
        print("  ldap: THIS RUN HAD FAILED LOGINS (see FAILURES above): its rates are not clean")
