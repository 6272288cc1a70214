"""The stack watches itself: the charts' alert rules in Debian's Prometheus scraping the booted
worker cluster, an alert through Alertmanager and alertmanager-receiver to a Matrix room."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devstack.alertmanager import LocalAlertmanager
from devstack.mas import MasStandIn
from devstack.processes import free_port
from devstack.prometheus import LocalPrometheus, Target
from devstack.stack import LocalService
from devstack.synapse import Account, LocalSynapse
from devstack.synapse_cluster import Cluster
from matrix_stack.shared.route import envoy as local_envoy
from tests.charts import helm
from tests.charts.synapse_chart import (
    CI,
    ONE_EACH,
    RECEIVER_CHART,
    dashboard_queries,
)
from tests.integration.conftest import PASSWORD, _login
from tests.integration.test_alertmanager_receiver import BASIC, metio_config

RULE_CRDS = ("monitoring.coreos.com/v1/PrometheusRule", "monitoring.coreos.com/v1/PodMonitor",
             "monitoring.coreos.com/v1/ServiceMonitor")  # fmt: skip


# Series these rules read that only Kubernetes' own exporters (kube-state-metrics, the kubelet) make.
FROM_KUBERNETES = re.compile(r"^(kube_|kubelet_)")


PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "sum", "min", "max", "avg", "count", "topk", "bottomk", "quantile", "stddev", "stdvar", "rate", "irate",
    "increase", "delta", "idelta", "deriv", "histogram_quantile", "avg_over_time", "min_over_time",
    "max_over_time", "sum_over_time", "count_over_time", "last_over_time", "absent", "absent_over_time",
    "clamp_min", "clamp_max", "abs", "time", "vector", "scalar", "label_replace", "changes", "resets",
    "predict_linear", "timestamp", "inf", "nan", "le",
}  # fmt: skip


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (strings, label matchers, groupings and ranges left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b\d+(\.\d+)?[smhdwy]*\b", "", text)  # numbers and durations (offset 5m)
    names = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text))
    return {name for name in names if name not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhdwy]?", name)}


def rendered_rules(
    chart: str, values_file: Path, values: dict[str, Any], directory: Path
) -> tuple[Path, list[dict[str, Any]]]:
    """The chart's PrometheusRule as a Prometheus rules file; hold times cut to 2 s (the expressions,
    labels and annotations are the chart's) so a test sees an alert fire and resolve in seconds."""
    documents = helm.template(chart, values_file, values={**values, "prometheusRule": {"enabled": True}},
                              api_versions=RULE_CRDS)  # fmt: skip
    [rule] = [d for d in documents if d["kind"] == "PrometheusRule"]
    groups = rule["spec"]["groups"]
    for group in groups:
        for each in group["rules"]:
            if "for" in each:
                each["for"] = "2s"
    path = directory / f"{chart}.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return path, [each for group in groups for each in group["rules"]]


def _some_traffic(router: local_envoy.LocalEnvoy, mas: MasStandIn) -> None:
    with httpx.Client(timeout=30) as http:
        _, auth = _login(http, mas, "carol")
        created = http.post(f"{router.url}/_matrix/client/v3/createRoom", json={}, headers=auth)
        assert created.status_code == 200, created.text
        for n in range(3):
            sent = http.put(f"{router.url}/_matrix/client/v3/rooms/{created.json()['room_id']}/send/"
                            f"m.room.message/watch{n}", json={"msgtype": "m.text", "body": "hi"}, headers=auth)  # fmt: skip
            assert sent.status_code == 200, sent.text


@pytest.mark.timeout(600)
async def test_an_alert_from_the_cluster_reaches_a_matrix_room_and_resolves(
    cluster: Cluster,
    router: local_envoy.LocalEnvoy,
    mas: MasStandIn,
    synapse: LocalSynapse,
    bot: Account,
    reader: Account,
    tmp_path: Path,
) -> None:
    """The synapse chart's rules in Debian's Prometheus, scraping this worker cluster, its router and
    an alertmanager-receiver; Debian's Alertmanager routes to the receiver, which posts to a room on
    the real Synapse. One worker stopped: its alert arrives; started again: the message is edited."""
    synapse_rules, rules = rendered_rules("synapse", CI / "default-values.yaml", ONE_EACH, tmp_path)
    receiver_rules, bridge_rules = rendered_rules(
        RECEIVER_CHART, helm.CHARTS / RECEIVER_CHART / "ci" / "minimal-values.yaml", {}, tmp_path
    )
    room = await reader.create_room(name="alerts", invite=[bot.user_id])
    receiver_port = free_port()
    config = metio_config(
        bot, synapse, receiver_port, {"ops": room}, {"message-mode": "group", "on-resolve": "edit"}
    )
    (tmp_path / "receiver.yaml").write_text(config)
    receiver = LocalService("alertmanager-receiver", "matrix_stack.services.alertmanager_receiver",
                            "ALERTMANAGER_RECEIVER_", receiver_port, {"CONFIG_PATH": str(tmp_path / "receiver.yaml")},
                            tmp_path / "receiver")  # fmt: skip
    os.environ["AM_TEST_TOKEN"] = bot.access_token
    alertmanager = LocalAlertmanager(free_port(), {
        "route": {"receiver": "matrix", "group_by": ["alertname", "pod"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "matrix", "webhook_configs": [{
            "url": f"{receiver.url}/alerts/ops", "send_resolved": True,
            "http_config": {"basic_auth": {"username": BASIC[0], "password": BASIC[1]}}}]}],
    })  # fmt: skip
    # What the PodMonitors and the ServiceMonitor give the series: namespace, job, pod, pool.
    metrics_port = next(port for port in router.listener_ports if port != router.port)
    targets = [
        Target(f"127.0.0.1:{p.port(9000)}", {"namespace": "ns", "job": "ns/t-synapse", "pod": p.name,
               "pool": p.pool.replace("_", "-")}, "/_synapse/metrics")
        for p in cluster.processes
    ] + [
        Target(f"127.0.0.1:{metrics_port}", {"namespace": "ns", "job": "ns/t-synapse-router",
               "pod": "t-synapse-router-0"}),
        Target(f"127.0.0.1:{receiver_port}", {"namespace": "ns", "job": f"t-{RECEIVER_CHART}",
               "pod": f"t-{RECEIVER_CHART}-6d9f8b7c5-x2x4z"}),
    ]  # fmt: skip
    prometheus = LocalPrometheus(free_port(), targets, [synapse_rules, receiver_rules],
                                 alertmanager=f"127.0.0.1:{alertmanager.port}")  # fmt: skip
    stopped = cluster.by_pool("client_reader")
    receiver.start(synapse.url, bot.user_id, PASSWORD, tmp_path / "logs")
    alertmanager.start()
    prometheus.start()
    try:
        receiver.wait_ready()
        for _ in range(60):
            up = prometheus.api("query", query="up")["result"]
            if len(up) == len(targets) and all(sample["value"][1] == "1" for sample in up):
                break
            await asyncio.sleep(0.5)
        else:
            raise AssertionError(f"not every target is up: {up}")
        # Some traffic through the router: events persisted, processed by the federation sender.
        await asyncio.to_thread(_some_traffic, router, mas)
        await asyncio.sleep(5)  # a few scrapes and rule evaluations on the healthy cluster
        firing = [(a["labels"]["alertname"], a["labels"].get("pod")) for a in prometheus.alerts()]
        assert firing == [], f"alerts on a healthy cluster: {firing}"

        stopped.halt()
        for _ in range(120):
            active = [a for a in prometheus.alerts() if a["state"] == "firing"
                      and a["labels"]["alertname"] == "SynapseProcessDown"]  # fmt: skip
            if active:
                break
            await asyncio.sleep(0.5)
        assert [a["labels"]["pod"] for a in active] == [stopped.name]
        for _ in range(180):  # SynapsePoolDown (the pool has one process) may come first
            # The stopped process's message: on a busy machine another process may miss a scrape too.
            found = [e for e in await reader.messages(room)
                     if "SynapseProcessDown" in e["content"]["body"] and stopped.name in e["content"]["body"]]  # fmt: skip
            if found:
                break
            await asyncio.sleep(0.5)
        assert found, "no SynapseProcessDown message in the room"
        down = found[0]
        assert stopped.name in down["content"]["body"]

        stopped.launch(cluster.directory)
        for _ in range(240):
            events = await reader.messages(room)
            edits = [
                e for e in events if e["content"].get("m.relates_to", {}).get("event_id") == down["event_id"]
            ]
            if edits:
                break
            await asyncio.sleep(0.5)
        assert edits, "the firing message was not edited after the worker came back"
        assert edits[0]["content"]["m.relates_to"]["rel_type"] == "m.replace"
        assert "RESOLVED" in edits[0]["content"]["m.new_content"]["body"].upper()

        # Every metric a rule or a dashboard reads is one these processes export (Kubernetes' own aside).
        scraped = prometheus.metric_names()
        queries = [each["expr"] for each in rules + bridge_rules] + dashboard_queries()
        used = {name for query in queries for name in metric_names_in(query)}
        missing = sorted(name for name in used - scraped if not FROM_KUBERNETES.match(name))
        assert missing == [], f"rules or dashboards read metrics nothing exports: {missing}"
    finally:
        if stopped.process is None or stopped.process.poll() is not None:
            stopped.launch(cluster.directory)
        prometheus.stop()
        alertmanager.stop()
        receiver.stop()
