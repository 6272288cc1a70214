"""A real Synapse worker cluster booted from the synapse chart's rendered ConfigMap.

Only addresses change (a small mapping): in-cluster host names and fixed ports become loopback
ports, paths under /secrets, /media and /conf become a local folder, and the database and Redis
point at the local PostgreSQL and Redis. Everything else is the chart's output, byte for byte.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from matrix_stack.shared.route.processes import free_ports, http_ok, stop, wait_ready

LOG_CONFIG = """version: 1
formatters: {precise: {format: '%(asctime)s %(name)s %(levelname)s %(message)s'}}
handlers: {console: {class: logging.StreamHandler, formatter: precise}}
root: {level: WARNING, handlers: [console]}
disable_existing_loggers: false
"""


SHARED_SECRET = "cluster-test-shared-secret"
MAS_SECRET = "cluster-test-mas-secret"


@dataclass
class Process:
    name: str  # worker_name, or "main"
    pool: str
    kind: str
    config: Path
    ports: dict[int, int]  # chart port -> local port
    process: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    def port(self, chart_port: int) -> int:
        return self.ports[chart_port]

    def launch(self, directory: Path) -> None:
        """Start the process (again, after `halt`), logging to its log file."""
        app = "synapse.app.homeserver" if self.name == "main" else "synapse.app.generic_worker"
        self.log = directory / f"{self.name}.log"
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", app, "-c", str(directory / "homeserver.yaml"), "-c", str(self.config)],
                stdout=output, stderr=subprocess.STDOUT, cwd=directory,
            )  # fmt: skip

    def halt(self) -> None:
        stop(self.process, timeout=15)


@dataclass
class Cluster:
    directory: Path
    processes: list[Process] = field(default_factory=list)

    def by_pool(self, pool: str) -> Process:
        return next(p for p in self.processes if p.pool == pool)

    def stop(self) -> None:
        for process in reversed(self.processes):
            stop(process.process, timeout=15)


def _listener_ports(listeners: list[dict[str, Any]], ports: list[int]) -> dict[int, int]:
    return {int(listener["port"]): ports.pop() for listener in listeners}


def _pool_of(instance: str, pools: dict[str, Any]) -> str:
    """The pool an instance (`<release>-<chart>-<pool with dashes>-<n>`) belongs to: the longest match."""
    workload = instance.rsplit("-", 1)[0]
    matches = [pool for pool in pools if workload.endswith("-" + pool.replace("_", "-"))]
    return max(matches, key=len)


def boot(
    configmap: dict[str, str],
    topology_instances: list[str],
    *,
    directory: Path,
    postgres_port: int,
    database: str,
    redis_port: int,
    pgbouncer_port: int | None = None,
    mas_endpoint: str | None = None,
    replicas: dict[str, int] | None = None,
    timeout: float = 180.0,
) -> Cluster:
    """Start main and one process per instance named in the config, plus `replicas[pool]` (default
    1) processes of each unnamed pool."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "log.yaml").write_text(LOG_CONFIG)
    homeserver = yaml.safe_load(configmap["homeserver.yaml"])
    pools = {name.removeprefix("process-").removesuffix(".yaml"): yaml.safe_load(text)
             for name, text in configmap.items() if name.startswith("process-")}  # fmt: skip
    # Ports for every listener of every process, chosen together for this cluster (at most 3 each).
    extra = sum(max(0, count - 1) for count in (replicas or {}).values())
    ports = free_ports(3 * (len(topology_instances) + len(pools) + extra))
    cluster = Cluster(directory)
    main_pool = next(name for name, config in pools.items() if "worker_app" not in config)
    main = Process(
        "main",
        main_pool,
        "main",
        directory / "process-main.yaml",
        _listener_ports(pools[main_pool]["listeners"], ports),
    )
    processes = [main]
    for pool, config in sorted(pools.items()):
        if pool == main_pool:
            continue
        if "worker_name" in config:
            for instance in topology_instances:
                if _pool_of(instance, pools) == pool:
                    processes.append(Process(instance, pool, pool, directory / f"process-{instance}.yaml",
                                             _listener_ports(config["worker_listeners"], ports)))  # fmt: skip
        else:
            for n in range((replicas or {}).get(pool, 1)):
                name = f"{pool}-unnamed-{n}"
                processes.append(Process(name, pool, pool, directory / f"process-{name}.yaml",
                                         _listener_ports(config["worker_listeners"], ports)))  # fmt: skip
    replication = {p.name: p.port(9093) for p in processes if 9093 in p.ports}
    # The mapping: addresses only.
    for name, entry in homeserver.get("instance_map", {}).items():
        entry["host"] = "127.0.0.1"
        entry["port"] = replication[name]
    homeserver["database"]["args"].update({"host": "127.0.0.1", "port": postgres_port, "dbname": database,
                                           "user": "postgres"})  # fmt: skip
    if "redis" in homeserver:
        homeserver["redis"].update({"host": "127.0.0.1", "port": redis_port})
    homeserver["media_store_path"] = str(directory / "media")
    homeserver["log_config"] = str(directory / "log.yaml")
    homeserver["public_baseurl"] = f"http://127.0.0.1:{main.port(8008)}/"
    homeserver["trusted_key_servers"] = []
    # The chart mounts its secrets as files; here the same files are written locally.
    for key, value in (("macaroon_secret_key_path", "cluster-macaroon"), ("form_secret_path", "cluster-form"),
                       ("registration_shared_secret_path", SHARED_SECRET)):  # fmt: skip
        path = directory / key
        path.write_text(value)
        homeserver[key] = str(path)
    if "matrix_authentication_service" in homeserver:
        if mas_endpoint is None:
            raise ValueError("the chart delegates authentication to MAS: give mas_endpoint")
        path = directory / "mas-shared-secret"
        path.write_text(MAS_SECRET)
        homeserver["matrix_authentication_service"].update(
            {"endpoint": mas_endpoint, "secret_path": str(path)}
        )
    homeserver["signing_key_path"] = str(directory / "signing.key")
    (directory / "homeserver.yaml").write_text(yaml.safe_dump(homeserver))
    from signedjson.key import generate_signing_key, write_signing_keys

    with (directory / "signing.key").open("w") as handle:
        write_signing_keys(handle, [generate_signing_key("a_cluster")])
    for process in processes:
        config = dict(pools[process.pool])
        listeners_key = "listeners" if process is main else "worker_listeners"
        listeners = []
        for listener in config[listeners_key]:
            listeners.append(
                {**listener, "port": process.port(int(listener["port"])), "bind_addresses": ["127.0.0.1"]}
            )
        config[listeners_key] = listeners
        if "worker_name" in config:
            config["worker_name"] = process.name  # the pod name the chart's @HOSTNAME@ stands for
        if "worker_log_config" in config:
            config["worker_log_config"] = str(directory / "log.yaml")
        if "database" in config:  # the chart points this process at pgbouncer
            if pgbouncer_port is None:
                raise ValueError(f"{process.name} connects through pgbouncer: give pgbouncer_port")
            config["database"] = {**config["database"], "args": {
                **config["database"]["args"], "host": "127.0.0.1", "port": pgbouncer_port, "dbname": database,
                "user": "postgres"}}  # fmt: skip
        process.config.write_text(yaml.safe_dump(config))
    cluster.processes = processes
    try:
        for process in processes:
            process.launch(directory)
            if process is main:  # main creates the schema; workers wait for it
                assert process.process is not None
                wait_ready("main", process.process, http_ok(f"http://127.0.0.1:{main.port(8008)}/health"),
                           timeout=timeout, log=process.log, interval=0.2)  # fmt: skip
        for process in processes[1:]:
            assert process.process is not None
            wait_ready(process.name, process.process,
                       http_ok(f"http://127.0.0.1:{process.port(9000)}/_synapse/metrics"),
                       timeout=timeout, log=process.log, interval=0.2)  # fmt: skip
    except Exception:
        cluster.stop()
        raise
    return cluster
