"""Memory of the synapse chart's worker cluster: main plus one process of every pool, booted from the
rendered ConfigMap on a real PostgreSQL and Redis (as the chart test does), idle after start-up."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import psutil
import yaml

from devstack.mas import MasStandIn
from devstack.postgres import LocalPostgres
from devstack.processes import free_port
from devstack.redis import LocalRedis
from devstack.synapse_cluster import MAS_SECRET, boot
from tests.charts import helm

ONE_EACH = {"pools": {name: {"replicas": 1} for name in ("event_persister", "room", "sync", "client_reader")}}


async def main() -> None:
    helm.build_dependencies("synapse")
    documents = helm.template(
        "synapse", helm.CHARTS / "synapse" / "ci" / "default-values.yaml", values=ONE_EACH
    )
    data = next(d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "t-synapse")[
        "data"
    ]
    config = yaml.safe_load(data["homeserver.yaml"])
    instances = sorted((set(config["instance_map"]) - {"main"}) | set(config["pusher_instances"])
                       | set(config["federation_sender_instances"])
                       | {config["run_background_tasks_on"], config["update_user_directory_from_worker"],
                          config["media_instance_running_background_jobs"]})  # fmt: skip
    postgres, redis = LocalPostgres(free_port()), LocalRedis(free_port())
    mas = MasStandIn(free_port(), synapse="", shared_secret=MAS_SECRET)  # MAS is on by default
    postgres.start()
    redis.start()
    mas.start()
    try:
        postgres.create_database("synapse")
        with tempfile.TemporaryDirectory(prefix="bench-cluster-") as name:
            cluster = boot(data, instances, directory=Path(name), postgres_port=postgres.port, database="synapse",
                           redis_port=redis.port, mas_endpoint=mas.url)  # fmt: skip
            try:
                await asyncio.sleep(10)
                sizes = {
                    p.name: psutil.Process(p.process.pid).memory_info().rss
                    for p in cluster.processes
                    if p.process
                }
                print(
                    f"synapse worker cluster: {len(sizes)} processes, total RSS {sum(sizes.values()) / 2**20:.0f} MiB, "
                    f"largest {max(sizes.values()) / 2**20:.0f} MiB ({max(sizes, key=lambda k: sizes[k])})"
                )
            finally:
                cluster.stop()
    finally:
        mas.stop()
        redis.stop()
        postgres.stop()
