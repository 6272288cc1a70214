"""The charts' alert rules (PrometheusRule), proven with promtool (Debian's `prometheus`): every
rendered rule file passes `promtool check rules`; every rule fires on the series it is meant for,
with its labels and annotations, and stays quiet on a healthy series (`promtool test rules`, cases
below); a rule without both cases fails the suite; every rule has a summary, a description and a
runbook that is a heading of its chart's README.

The series carry the labels the chart's monitors give them: a PodMonitor's job is
`<namespace>/<monitor>`, a ServiceMonitor's the Service's name; Synapse's series carry their pool
(the PodMonitor's relabeling); kube-state-metrics and the kubelet label theirs with the pod's
namespace and name, or the claim's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from matrix_stack.services import catalog
from tests.charts import helm

CRDS = (
    "monitoring.coreos.com/v1/PrometheusRule",
    "monitoring.coreos.com/v1/PodMonitor",
    "monitoring.coreos.com/v1/ServiceMonitor",
)
CHARTS = ["synapse", *catalog.charts("bridge", "component")]
BRIDGES = catalog.charts("bridge")
RULES_ON = {"prometheusRule": {"enabled": True}}


@pytest.fixture(scope="module", autouse=True)
def synapse_dependencies() -> None:
    helm.build_dependencies("synapse")  # the service charts' are built by conftest


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is not installed (scripts/ensure-system-packages.sh installs Debian's prometheus)"
        )
    return found


def base_values(chart: str) -> Path:
    ci = helm.CHARTS / chart / "ci"
    return ci / ("default-values.yaml" if chart == "synapse" else "minimal-values.yaml")


def rule_spec(chart: str, *files: Path, values: dict[str, Any] | None = None) -> dict[str, Any]:
    documents = helm.template(chart, *(files or (base_values(chart),)), values=values or RULES_ON,
                              api_versions=CRDS)  # fmt: skip
    [rule] = [d for d in documents if d["kind"] == "PrometheusRule"]
    helm.validate(rule)
    spec: dict[str, Any] = rule["spec"]
    return spec


def rules_of(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for group in spec["groups"] for rule in group["rules"]]


def run_promtool(*args: str, cwd: Path) -> None:
    result = subprocess.run([promtool(), *args], capture_output=True, text=True, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr


# What a case feeds promtool: series in promtool's notation (one sample a minute), the time it
# evaluates at, and the alerts expected then (labels without alertname, summary, description); none:
# the rule stays quiet.


@dataclass
class Alert:
    labels: dict[str, str]
    summary: str
    description: str


@dataclass
class Case:
    alert: str
    series: dict[str, str]
    at: str
    alerts: list[Alert] = field(default_factory=list)


def s(metric: str, labels: dict[str, str], /, **more: str) -> str:
    """A series in PromQL's notation: the metric, the target's labels and more."""
    merged = {**labels, **more}
    return metric + "{" + ", ".join(f'{k}="{v}"' for k, v in merged.items()) + "}"


def promtool_tests(chart: str, cases: list[Case], runbook_base: str) -> dict[str, Any]:
    tests = []
    for case in cases:
        expected = [
            {
                "exp_labels": alert.labels,
                "exp_annotations": {
                    "summary": alert.summary,
                    "description": alert.description,
                    "runbook_url": f"{runbook_base}#{case.alert.lower()}",
                },
            }
            for alert in case.alerts
        ]
        tests.append({
            "name": f"{case.alert} {'fires' if case.alerts else 'stays quiet'}",
            "interval": "1m",
            "input_series": [{"series": series, "values": values} for series, values in case.series.items()],
            "alert_rule_test": [{"eval_time": case.at, "alertname": case.alert, "exp_alerts": expected}],
        })  # fmt: skip
    return {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}


# The synapse chart (ci/default-values.yaml: every pool, the router, the media volume).

NS = "ns"
SERVER = {"server_name": "example.org"}


def synapse_pod(pod: str, pool: str) -> dict[str, str]:
    """A Synapse process's target labels, as its PodMonitor gives them."""
    return {"job": "ns/t-synapse", "namespace": NS, "pod": pod, "pool": pool, "container": "synapse",
            "endpoint": "metrics", "instance": f"10.1.0.{len(pod)}:9000"}  # fmt: skip


def router_pod(pod: str) -> dict[str, str]:
    return {"job": "ns/t-synapse-router", "namespace": NS, "pod": pod, "container": "envoy",
            "endpoint": "metrics", "instance": f"10.1.1.{len(pod)}:9102"}  # fmt: skip


def ksm(pod: str) -> dict[str, str]:
    """kube-state-metrics' readiness series of a pod."""
    return {"job": "kube-state-metrics", "instance": "10.1.2.1:8080", "namespace": NS, "pod": pod,
            "uid": "0b7d1c3e", "condition": "true"}  # fmt: skip


def kubelet(claim: str) -> dict[str, str]:
    return {"job": "kubelet", "instance": "10.0.0.5:10250", "node": "node-1", "metrics_path": "/metrics",
            "namespace": NS, "persistentvolumeclaim": claim}  # fmt: skip


MAIN = synapse_pod("t-synapse-main-0", "main")
ROOM_A = synapse_pod("t-synapse-room-6d9f7c8b4-x2x9q", "room")
ROOM_B = synapse_pod("t-synapse-room-6d9f7c8b4-k7p4d", "room")
PERSISTER = synapse_pod("t-synapse-event-persister-0", "event-persister")
SENDER = synapse_pod("t-synapse-federation-sender-0", "federation-sender")
ROUTER_A = router_pod("t-synapse-router-5c9d8f7b6-abcde")
ROUTER_B = router_pod("t-synapse-router-5c9d8f7b6-fghij")
MEDIA = kubelet("t-synapse-media")

UP_DOWN = "Prometheus has not reached {pod} in ns for 5 minutes: the process is down, restarting or unreachable; what it serves goes to the rest of its pool, if any."
RQ = "envoy_cluster_upstream_rq_xx"
FED_LAG = "synapse_event_processing_lag_by_event"
TXN_SUM, TXN_COUNT = (
    "synapse_storage_transaction_time_sum_total",
    "synapse_storage_transaction_time_count_total",
)
RESPONSE = "synapse_http_server_response_time_seconds"
AVAILABLE, CAPACITY = "kubelet_volume_stats_available_bytes", "kubelet_volume_stats_capacity_bytes"


def buckets(
    name: str, labels: dict[str, str], per_minute: dict[str, int], length: int = 30
) -> dict[str, str]:
    """A histogram's cumulative buckets (and _count) growing by the given counts per minute."""
    series = {s(f"{name}_bucket", labels, le=le): f"0+{n}x{length}" for le, n in per_minute.items()}
    series[s(f"{name}_count", labels)] = f"0+{per_minute['+Inf']}x{length}"
    return series


def without(labels: dict[str, str], *keys: str) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k not in keys}


SYNAPSE_CASES = [
    Case("SynapseProcessDown", {s("up", MAIN): "0x10"}, "10m", [Alert(
        {**MAIN, "severity": "warning"},
        "Synapse process t-synapse-main-0 (pool main) is down",
        UP_DOWN.format(pod="t-synapse-main-0"))]),
    Case("SynapseProcessDown", {s("up", MAIN): "1x10", s("up", ROOM_A): "1x10"}, "10m"),
    Case("SynapsePoolDown", {s("up", ROOM_A): "0x10", s("up", ROOM_B): "0x10", s("up", MAIN): "1x10"}, "10m", [Alert(
        {"namespace": NS, "pool": "room", "severity": "critical"},
        "Every process of the Synapse pool room is down",
        "No process of the pool room in ns has answered for 2 minutes: what the pool serves or writes fails.")]),
    Case("SynapsePoolDown", {s("up", ROOM_A): "0x10", s("up", ROOM_B): "1x10"}, "10m"),  # the rest of the pool serves
    Case("SynapseProcessNotReady", {s("kube_pod_status_ready", ksm("t-synapse-room-6d9f7c8b4-x2x9q")): "0x15",
                                    s("kube_pod_status_ready", ksm("t-synapse-typing-0")): "1x15"}, "15m", [Alert(
        {**ksm("t-synapse-room-6d9f7c8b4-x2x9q"), "severity": "warning"},
        "Synapse pod t-synapse-room-6d9f7c8b4-x2x9q is not ready",
        "t-synapse-room-6d9f7c8b4-x2x9q in ns has failed its readiness check (/health) for 10 minutes: the router and its Service send it nothing.")]),
    # Ready Synapse pods; another release's pod and a MAS pod not ready are not this rule's.
    Case("SynapseProcessNotReady", {s("kube_pod_status_ready", ksm("t-synapse-typing-0")): "1x15",
                                    s("kube_pod_status_ready", ksm("t-synapse-room-6d9f7c8b4-x2x9q")): "1x15",
                                    s("kube_pod_status_ready", ksm("t2-synapse-room-6d9f7c8b4-x2x9q")): "0x15",
                                    s("kube_pod_status_ready", ksm("t-synapse-mas-7f8c9d6b5-zz9zz")): "0x15"}, "15m"),
    Case("SynapseRouterDown", {s("up", ROUTER_A): "0x10", s("up", ROUTER_B): "1x10"}, "10m", [Alert(
        {**ROUTER_A, "severity": "warning"},
        "Router t-synapse-router-5c9d8f7b6-abcde is down",
        "Prometheus has not reached the router t-synapse-router-5c9d8f7b6-abcde in ns for 5 minutes; the other router replicas take the traffic.")]),
    Case("SynapseRouterDown", {s("up", ROUTER_A): "1x10", s("up", ROUTER_B): "1x10"}, "10m"),
    Case("SynapseRouterUnavailable", {s("up", ROUTER_A): "0x10", s("up", ROUTER_B): "0x10"}, "10m", [Alert(
        {"namespace": NS, "severity": "critical"},
        "Every router replica in ns is down",
        "No router replica in ns has answered for 2 minutes: no client or federation request reaches Synapse.")]),
    Case("SynapseRouterUnavailable", {s("up", ROUTER_A): "0x10", s("up", ROUTER_B): "1x10"}, "10m"),
    # 1 request a second of 11 answered with a 5xx: 9.1%.
    Case("SynapseRouterUpstreamErrors", {
        s(RQ, ROUTER_A, envoy_response_code_class="5", envoy_cluster_name="room"): "0+60x20",
        s(RQ, ROUTER_A, envoy_response_code_class="2", envoy_cluster_name="room"): "0+600x20",
        s(RQ, ROUTER_A, envoy_response_code_class="2", envoy_cluster_name="main"): "0+600x20"}, "20m", [Alert(
        {"namespace": NS, "envoy_cluster_name": "room", "severity": "warning"},
        "Router: 9.091% of the requests to room fail with 5xx",
        "For 10 minutes, more than 5% of the requests the router in ns sent to the room processes got a 5xx answer or none (connection failures count as 503).")]),
    # 0.1% of the requests fail; and a rare 5xx on a quiet pool is not an error rate.
    Case("SynapseRouterUpstreamErrors", {
        s(RQ, ROUTER_A, envoy_response_code_class="5", envoy_cluster_name="room"): "0+6x20",
        s(RQ, ROUTER_A, envoy_response_code_class="2", envoy_cluster_name="room"): "0+6000x20",
        s(RQ, ROUTER_A, envoy_response_code_class="5", envoy_cluster_name="user_dir"): "0+1x20",
        s(RQ, ROUTER_A, envoy_response_code_class="2", envoy_cluster_name="user_dir"): "0+2x20"}, "20m"),
    Case("SynapseRouterEndpointsUnhealthy", {
        s("envoy_cluster_membership_total", ROUTER_A, envoy_cluster_name="room"): "2x15",
        s("envoy_cluster_membership_healthy", ROUTER_A, envoy_cluster_name="room"): "1x15"}, "15m", [Alert(
        {"namespace": NS, "envoy_cluster_name": "room", "severity": "warning"},
        "Router: 1 room endpoint(s) unhealthy",
        "For 10 minutes the router in ns has counted 1 of the room endpoints as unhealthy (ejected after consecutive gateway errors) and sends them nothing.")]),
    Case("SynapseRouterEndpointsUnhealthy", {
        s("envoy_cluster_membership_total", ROUTER_A, envoy_cluster_name="room"): "2x15",
        s("envoy_cluster_membership_healthy", ROUTER_A, envoy_cluster_name="room"): "2x15"}, "15m"),
    Case("SynapseRouterNoHealthyEndpoints", {
        s("envoy_cluster_membership_healthy", ROUTER_A, envoy_cluster_name="sync"): "0x10",
        s("envoy_cluster_membership_healthy", ROUTER_B, envoy_cluster_name="sync"): "0x10",
        s("envoy_cluster_membership_healthy", ROUTER_A, envoy_cluster_name="admin"): "1x10"}, "10m", [Alert(
        {"namespace": NS, "envoy_cluster_name": "sync", "severity": "critical"},
        "Router: no healthy sync endpoint",
        "For 2 minutes no router replica in ns has had a healthy endpoint for sync (no ready pod behind its Services, or all ejected): every request routed there fails with 503.")]),
    Case("SynapseRouterNoHealthyEndpoints", {
        s("envoy_cluster_membership_healthy", ROUTER_A, envoy_cluster_name="sync"): "0x10",
        s("envoy_cluster_membership_healthy", ROUTER_B, envoy_cluster_name="sync"): "1x10"}, "10m"),
    # persist_events transactions: 2 s each on average; then 50 ms.
    Case("SynapseEventPersistenceSlow", {
        s(TXN_SUM, PERSISTER, desc="persist_events", **SERVER): "0+120x30",
        s(TXN_COUNT, PERSISTER, desc="persist_events", **SERVER): "0+60x30",
        s(TXN_SUM, PERSISTER, desc="get_users_in_room", **SERVER): "0+1x30",
        s(TXN_COUNT, PERSISTER, desc="get_users_in_room", **SERVER): "0+600x30"}, "30m", [Alert(
        {"namespace": NS, "pool": "event-persister", "pod": "t-synapse-event-persister-0", "severity": "warning"},
        "Synapse t-synapse-event-persister-0 takes 2s to persist events",
        "For 15 minutes the persist_events transactions of t-synapse-event-persister-0 (pool event-persister) in ns have taken 2s on average: sending messages is slow for everyone whose rooms it writes.")]),
    Case("SynapseEventPersistenceSlow", {
        s(TXN_SUM, PERSISTER, desc="persist_events", **SERVER): "0+3x30",
        s(TXN_COUNT, PERSISTER, desc="persist_events", **SERVER): "0+60x30"}, "30m"),
    # Every event waits between 5 and 10 s before it is queued for remote servers; then under 1 s.
    Case("SynapseFederationSenderLagging", buckets(FED_LAG, {**SENDER, "name": "federation_sender", **SERVER},
                                                   {"1.0": 0, "5.0": 0, "10.0": 60, "+Inf": 60}), "30m", [Alert(
        {"namespace": NS, "pool": "federation-sender", "pod": "t-synapse-federation-sender-0", "severity": "warning"},
        "Federation sender t-synapse-federation-sender-0 is 9.5s behind",
        "For 15 minutes, 10% of the events t-synapse-federation-sender-0 in ns sends to other servers have waited more than 9.5s after being persisted: remote users see messages late.")]),
    Case("SynapseFederationSenderLagging", buckets(FED_LAG, {**SENDER, "name": "federation_sender", **SERVER},
                                                   {"1.0": 60, "5.0": 60, "10.0": 60, "+Inf": 60}), "30m"),
    # Events persisted, the sender's position still; then following.
    Case("SynapseFederationSenderStuck", {
        s("synapse_event_persisted_position", PERSISTER, **SERVER): "100+10x30",
        s("synapse_event_processing_positions", SENDER, name="federation_sender", **SERVER): "100x30"}, "30m", [Alert(
        {**SENDER, "name": "federation_sender", **SERVER, "severity": "critical"},
        "Federation sender t-synapse-federation-sender-0 is stuck 300 events behind",
        "t-synapse-federation-sender-0 in ns has not moved along the event stream for 20 minutes while 300 newer events were persisted: nothing is sent to the servers it serves.")]),
    Case("SynapseFederationSenderStuck", {
        s("synapse_event_persisted_position", PERSISTER, **SERVER): "100+10x30",
        s("synapse_event_processing_positions", SENDER, name="federation_sender", **SERVER): "100+10x30"}, "30m"),
    Case("SynapseFederationSenderStuck", {  # an idle server: nothing new to send
        s("synapse_event_persisted_position", PERSISTER, **SERVER): "400x30",
        s("synapse_event_processing_positions", SENDER, name="federation_sender", **SERVER): "400x30"}, "30m"),
    # The writer's events stream moves on, a room worker's view stays; then it follows.
    Case("SynapseReplicationStuck", {
        s("synapse_storage_stream_current_position", PERSISTER, stream_name="events", **SERVER): "100+10x30",
        s("synapse_storage_stream_current_position", ROOM_A, stream_name="events", **SERVER): "100x30",
        s("synapse_storage_stream_current_position", ROOM_A, stream_name="typing", **SERVER): "7x30"}, "30m", [Alert(
        {**ROOM_A, "stream_name": "events", **SERVER, "severity": "warning"},
        "Synapse t-synapse-room-6d9f7c8b4-x2x9q is stuck 300 behind on the events stream",
        "For 15 minutes t-synapse-room-6d9f7c8b4-x2x9q (pool room) in ns has not advanced on the events stream while other processes are 300 positions further: it serves stale data, or waits for it.")]),
    Case("SynapseReplicationStuck", {
        s("synapse_storage_stream_current_position", PERSISTER, stream_name="events", **SERVER): "100+10x30",
        s("synapse_storage_stream_current_position", ROOM_A, stream_name="events", **SERVER): "95+10x30"}, "30m"),
    Case("SynapseDatabasePoolSaturated", {
        s("synapse_threadpool_working_threads", MAIN, name="database-master", **SERVER): "10x30",
        s("synapse_threadpool_max_threads", MAIN, name="database-master", **SERVER): "10x30",
        s("synapse_threadpool_working_threads", MAIN, name="default", **SERVER): "10x30",
        s("synapse_threadpool_max_threads", MAIN, name="default", **SERVER): "10x30"}, "30m", [Alert(
        {**MAIN, "name": "database-master", **SERVER, "severity": "warning"},
        "Synapse t-synapse-main-0: 100% of its database connections busy",
        "For 20 minutes t-synapse-main-0 (pool main) in ns has had 100% of its database-master connections busy on average: requests queue for a connection.")]),
    Case("SynapseDatabasePoolSaturated", {
        s("synapse_threadpool_working_threads", MAIN, name="database-master", **SERVER): "3x30",
        s("synapse_threadpool_max_threads", MAIN, name="database-master", **SERVER): "10x30"}, "30m"),
    # 2 transactions a second of 1 s each on average; then 50 ms; and a slow but rare one.
    Case("SynapseDatabaseTransactionsSlow", {
        s(TXN_SUM, ROOM_A, desc="persist_events", **SERVER): "0+60x30",
        s(TXN_COUNT, ROOM_A, desc="persist_events", **SERVER): "0+60x30",
        s(TXN_SUM, ROOM_A, desc="get_room_version", **SERVER): "0+60x30",
        s(TXN_COUNT, ROOM_A, desc="get_room_version", **SERVER): "0+60x30"}, "30m", [Alert(
        {"namespace": NS, "pool": "room", "pod": "t-synapse-room-6d9f7c8b4-x2x9q", "severity": "warning"},
        "Synapse t-synapse-room-6d9f7c8b4-x2x9q: database transactions take 1s",
        "For 15 minutes the database transactions of t-synapse-room-6d9f7c8b4-x2x9q (pool room) in ns have taken 1s on average.")]),
    Case("SynapseDatabaseTransactionsSlow", {
        s(TXN_SUM, ROOM_A, desc="persist_events", **SERVER): "0+6x30",
        s(TXN_COUNT, ROOM_A, desc="persist_events", **SERVER): "0+120x30",
        s(TXN_SUM, MAIN, desc="background_update", **SERVER): "0+30x30",
        s(TXN_COUNT, MAIN, desc="background_update", **SERVER): "0+1x30"}, "30m"),
    # Every room request between 5 and 10 s; then fast, with sync's long polls left out.
    Case("SynapseSlowRequests", buckets(RESPONSE, {**ROOM_A, "servlet": "RoomMessageListRestServlet", "method": "GET",
                                                   "code": "200", "tag": "", **SERVER},
                                        {"1.0": 0, "5.0": 0, "10.0": 60, "+Inf": 60}), "30m", [Alert(
        {"namespace": NS, "pool": "room", "severity": "warning"},
        "Synapse pool room: 1% of the requests take over 9.95s",
        "For 15 minutes the 99th percentile of the request time of the pool room in ns has been 9.95s (long polls left out: SyncRestServlet, SlidingSyncRestServlet, EventStreamRestServlet).")]),
    Case("SynapseSlowRequests", {
        **buckets(RESPONSE, {**ROOM_A, "servlet": "RoomMessageListRestServlet", "method": "GET", "code": "200",
                             "tag": "", **SERVER}, {"1.0": 60, "5.0": 60, "10.0": 60, "+Inf": 60}),
        **buckets(RESPONSE, {**ROOM_A, "servlet": "SyncRestServlet", "method": "GET", "code": "200", "tag": "",
                             **SERVER}, {"1.0": 0, "5.0": 0, "10.0": 0, "+Inf": 600})}, "30m"),
    # 100 GB, 20 GB free, 100 MB written a minute: under 15% after an hour, full in hours.
    Case("SynapseMediaVolumeFillingUp", {
        s(AVAILABLE, MEDIA): "20000000000-100000000x130",
        s(CAPACITY, MEDIA): "100000000000x130"}, "125m", [Alert(
        {**MEDIA, "severity": "warning"},
        "Media volume t-synapse-media: 7.5% free, full within 4 days",
        "The media store t-synapse-media in ns has 7.5% free and, at the rate of the last 6 hours, fills up within 4 days: uploads and remote media then fail.")]),
    Case("SynapseMediaVolumeFillingUp", {  # little free, but nothing written; and another claim filling up
        s(AVAILABLE, MEDIA): "10000000000x130",
        s(CAPACITY, MEDIA): "100000000000x130",
        s(AVAILABLE, kubelet("data-postgres-0")): "20000000000-100000000x130",
        s(CAPACITY, kubelet("data-postgres-0")): "100000000000x130"}, "125m"),
    Case("SynapseMediaVolumeAlmostFull", {s(AVAILABLE, MEDIA): "4000000000x10", s(CAPACITY, MEDIA): "100000000000x10"},
         "10m", [Alert(
        {**MEDIA, "severity": "critical"},
        "Media volume t-synapse-media: only 4% free",
        "The media store t-synapse-media in ns has less than 5% free: uploads, thumbnails and remote media fail when it is full.")]),
    Case("SynapseMediaVolumeAlmostFull", {s(AVAILABLE, MEDIA): "50000000000x10", s(CAPACITY, MEDIA): "100000000000x10"},
         "10m"),
]  # fmt: skip


# Every service chart: a ServiceMonitor's targets; the bridges' outbox; ldap's directory servers.


def service_pod(chart: str, pod: str) -> dict[str, str]:
    fullname = f"t-{chart}"
    return {"job": fullname, "namespace": NS, "service": fullname, "endpoint": "http", "pod": pod,
            "container": chart, "instance": f"10.2.0.{len(pod)}:8080"}  # fmt: skip


def service_cases(chart: str) -> list[Case]:
    job = f"t-{chart}"
    a, b = service_pod(chart, f"{job}-7d4b9c6f5-q8x2m"), service_pod(chart, f"{job}-7d4b9c6f5-w3n7c")
    return [
        Case("MatrixStackServiceDown", {s("up", a): "0x10"}, "10m", [Alert(
            {"namespace": NS, "job": job, "severity": "critical"},
            f"{job} ({chart}) is down",
            f"No replica of {job} in ns has answered a scrape for 5 minutes.")]),
        Case("MatrixStackServiceDown", {s("up", a): "0x10", s("up", b): "1x10"}, "10m"),
        Case("MatrixStackServiceNotReady", {s("kube_pod_status_ready", ksm(a["pod"])): "0x15"}, "15m", [Alert(
            {**ksm(a["pod"]), "severity": "warning"},
            f"{a['pod']} ({chart}) is not ready",
            f"{a['pod']} in ns has failed its readiness check (/readyz) for 10 minutes and gets no traffic.")]),
        Case("MatrixStackServiceNotReady", {s("kube_pod_status_ready", ksm(a["pod"])): "1x15",
                                            s("kube_pod_status_ready", ksm(f"x{a['pod']}")): "0x15"}, "15m"),
    ]  # fmt: skip


def bridge_cases(chart: str) -> list[Case]:
    job = f"t-{chart}"
    a = service_pod(chart, f"{job}-7d4b9c6f5-q8x2m")
    depth, deliveries = "matrix_stack_outbox_queue_depth", "matrix_stack_outbox_deliveries_total"
    failures = "matrix_stack_encryption_failures_total"
    dead, retry, sent = ({**a, "backend": "sqlite", "outcome": o} for o in ("dead", "retry", "sent"))
    labels = {"namespace": NS, "job": job}
    dead_summary = f"{job} ({chart}): messages went to dead letters"

    def dead_description(count: int) -> str:
        return f"{count} message(s) of {job} in ns could not be delivered in the last 15 minutes and will not be retried."

    return [
        Case("MatrixStackOutboxGrowing", {s(depth, a): "0+2x40"}, "40m", [Alert(
            {**labels, "severity": "warning"},
            f"{job} ({chart}): the outbox is not draining",
            f"The outbox of {job} in ns has not been empty for 30 minutes and keeps growing: messages are accepted faster than the homeserver takes them, or not taken at all.")]),
        # Bursts that drain; and a large backlog that shrinks.
        Case("MatrixStackOutboxGrowing", {s(depth, a): "0 5 0 7 0 3 0 9 0 4 " * 4}, "40m"),
        Case("MatrixStackOutboxGrowing", {s(depth, a): "500-10x40"}, "40m"),
        # The first dead letter of this pod: the series appears.
        Case("MatrixStackOutboxDeadLetters", {s(deliveries, sent): "0+5x30", s(deliveries, dead): "_x20 1x10"}, "25m", [
            Alert({**labels, "severity": "warning"}, dead_summary, dead_description(1))]),
        # Three more on a pod that had dead letters before.
        Case("MatrixStackOutboxDeadLetters", {s(deliveries, dead): "2x20 3 4 5 5x10"}, "25m", [
            Alert({**labels, "severity": "warning"}, dead_summary, dead_description(3))]),
        Case("MatrixStackOutboxDeadLetters", {s(deliveries, sent): "0+5x40", s(deliveries, dead): "2x40"}, "40m"),
        # Retries and nothing sent since (the last sent long before); then retries among sends.
        Case("MatrixStackOutboxDeliveriesFailing", {s(deliveries, retry): "0+5x30", s(deliveries, sent): "40x30"}, "30m", [
            Alert({**labels, "severity": "critical"}, f"{job} ({chart}): no message is getting through",
                  f"{job} in ns has retried deliveries for 20 minutes without sending one: messages are kept and wait in the outbox.")]),
        Case("MatrixStackOutboxDeliveriesFailing", {s(deliveries, retry): "0+5x30", s(deliveries, sent): "0+1x30"}, "30m"),
        # Encryption failing while plaintext rooms still deliver (the alert above stays quiet then).
        Case("MatrixStackEncryptionFailing", {s(failures, a, reason="unavailable"): "0+2x30",
                                              s(deliveries, sent): "0+5x30"}, "30m", [
            Alert({**labels, "severity": "critical"}, f"{job} ({chart}): messages to encrypted rooms are held back",
                  f"{job} in ns has failed to encrypt for 10 minutes: those messages wait in the outbox, never sent in the clear; its log says why (ERROR \"cannot encrypt\").")]),
        Case("MatrixStackEncryptionFailing", {s(failures, a, reason="unavailable"): "3x30"}, "30m"),
    ]  # fmt: skip


def ldap_cases() -> list[Case]:
    a = service_pod("ldap", "t-ldap-7d4b9c6f5-q8x2m")
    up = "matrix_stack_ldap_backend_up"
    return [
        Case("MatrixStackLdapBackendDown", {s(up, a, backend="ldap1"): "0x10", s(up, a, backend="ldap2"): "1x10"}, "10m", [
            Alert({**a, "backend": "ldap1", "severity": "warning"}, "ldap: directory server ldap1 fails its checks",
                  "ldap1 has failed the health checks of t-ldap-7d4b9c6f5-q8x2m in ns for 5 minutes: logins go to the other servers.")]),
        Case("MatrixStackLdapBackendDown", {s(up, a, backend="ldap1"): "1x10"}, "10m"),
        Case("MatrixStackLdapNoBackend", {s(up, a, backend="ldap1"): "0x10", s(up, a, backend="ldap2"): "0x10"}, "10m", [
            Alert({"namespace": NS, "job": "t-ldap", "severity": "critical"},
                  "ldap t-ldap: no directory server passes its checks",
                  "Every directory server behind t-ldap in ns has failed its health check for 2 minutes: LDAP logins fail.")]),
        Case("MatrixStackLdapNoBackend", {s(up, a, backend="ldap1"): "0x10", s(up, a, backend="ldap2"): "1x10"}, "10m"),
    ]  # fmt: skip


def cases(chart: str) -> list[Case]:
    if chart == "synapse":
        return SYNAPSE_CASES
    found = service_cases(chart)
    if chart in BRIDGES:
        found += bridge_cases(chart)
    if chart == "ldap":
        found += ldap_cases()
    return found


def ci_files(chart: str) -> list[Path]:
    return sorted((helm.CHARTS / chart / "ci").glob("*.yaml"))


@pytest.mark.parametrize(("chart", "values_file"), [(c, f) for c in CHARTS for f in ci_files(c)],
                         ids=lambda v: v.stem if isinstance(v, Path) else v)  # fmt: skip
def test_rules_pass_promtool_check_for_every_ci_file(chart: str, values_file: Path, tmp_path: Path) -> None:
    spec = rule_spec(chart, values_file, values=RULES_ON)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    run_promtool("check", "rules", "rules.yaml", cwd=tmp_path)


@pytest.mark.parametrize("chart", CHARTS)
def test_every_rule_fires_on_its_series_and_stays_quiet_on_a_healthy_one(chart: str, tmp_path: Path) -> None:
    spec = rule_spec(chart)
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    tests = promtool_tests(chart, cases(chart), f"charts/{chart}/README.md")
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    run_promtool("test", "rules", "tests.yaml", cwd=tmp_path)


@pytest.mark.parametrize("chart", CHARTS)
def test_no_rule_without_a_firing_and_a_quiet_case(chart: str) -> None:
    alerts = [rule["alert"] for rule in rules_of(rule_spec(chart))]
    assert len(alerts) == len(set(alerts)), "alert names are unique within a chart"
    firing = {case.alert for case in cases(chart) if case.alerts}
    quiet = {case.alert for case in cases(chart) if not case.alerts}
    assert not set(alerts) - firing, f"rules with no case where they fire: {sorted(set(alerts) - firing)}"
    assert not set(alerts) - quiet, f"rules with no case where they stay quiet: {sorted(set(alerts) - quiet)}"
    assert not (firing | quiet) - set(alerts), "cases for rules the chart does not render"


def heading_anchors(readme: Path) -> set[str]:
    """The anchors a Markdown renderer gives the README's headings (lower case, punctuation gone,
    spaces as hyphens)."""
    anchors = set()
    for line in readme.read_text().splitlines():
        if match := re.match(r"^#{1,6}\s+(.+?)\s*$", line):
            text = re.sub(r"[^\w\- ]", "", match.group(1).lower())
            anchors.add(text.replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("chart", CHARTS)
def test_every_rule_has_a_summary_a_description_and_a_runbook_in_the_readme(chart: str) -> None:
    anchors = heading_anchors(helm.CHARTS / chart / "README.md")
    for rule in rules_of(rule_spec(chart)):
        annotations = rule["annotations"]
        assert annotations["summary"], rule["alert"]
        assert annotations["description"], rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        base, _, anchor = annotations["runbook_url"].partition("#")
        assert base == f"charts/{chart}/README.md"
        assert anchor in anchors, f"{rule['alert']}: no heading #{anchor} in charts/{chart}/README.md"


def test_runbook_base_namespace_and_labels_are_values() -> None:
    documents = helm.template("webhook", base_values("webhook"), api_versions=CRDS, values={
        "prometheusRule": {"enabled": True, "namespace": "monitoring", "additionalLabels": {"release": "kps"},
                           "runbookBaseUrl": "https://git.example.org/ops/matrix-stack/-/blob/main/charts/webhook/README.md"}})  # fmt: skip
    [rule] = [d for d in documents if d["kind"] == "PrometheusRule"]
    assert rule["metadata"]["namespace"] == "monitoring"
    assert rule["metadata"]["labels"]["release"] == "kps"
    urls = {r["annotations"]["runbook_url"] for r in rules_of(rule["spec"])}
    assert (
        "https://git.example.org/ops/matrix-stack/-/blob/main/charts/webhook/README.md#matrixstackoutboxdeadletters"
        in urls
    )


def test_selectors_are_values() -> None:
    spec = rule_spec("synapse", values={"prometheusRule": {"enabled": True, "selectors": {
        "synapse": 'job="synapse"', "router": 'job="envoy"'}}})  # fmt: skip
    exprs = {rule["alert"]: rule["expr"] for rule in rules_of(spec)}
    assert exprs["SynapseProcessDown"] == 'up{job="synapse"} == 0'
    assert exprs["SynapseRouterDown"] == 'up{job="envoy"} == 0'
    spec = rule_spec(
        "sentry-webhook", values={"prometheusRule": {"enabled": True, "selector": 'job="sentry"'}}
    )
    assert rules_of(spec)[0]["expr"] == 'max by (namespace, job) (up{job="sentry"}) == 0'


def test_rules_only_when_enabled_and_the_crd_exists() -> None:
    for chart in CHARTS:
        without_values = helm.template(chart, base_values(chart), api_versions=CRDS)
        without_crd = helm.template(chart, base_values(chart), values=RULES_ON)
        assert not [d for d in without_values + without_crd if d["kind"] == "PrometheusRule"], chart


def test_synapse_rules_follow_the_topology() -> None:
    monolith = rules_of(rule_spec("synapse", helm.CHARTS / "synapse" / "ci" / "monolith-values.yaml"))
    [not_ready] = [r for r in monolith if r["alert"] == "SynapseProcessNotReady"]
    assert 'pod=~"(t-synapse-main)-' in not_ready["expr"]
    no_router = {r["alert"] for r in rules_of(rule_spec("synapse", values={
        "prometheusRule": {"enabled": True}, "router": {"enabled": False}, "media": {"persistence": {"enabled": False}}}))}  # fmt: skip
    assert not {a for a in no_router if a.startswith(("SynapseRouter", "SynapseMedia"))}
    claim = rules_of(rule_spec("synapse", values={
        "prometheusRule": {"enabled": True}, "media": {"persistence": {"existingClaim": "synapse-media"}}}))  # fmt: skip
    [full] = [r for r in claim if r["alert"] == "SynapseMediaVolumeAlmostFull"]
    assert 'persistentvolumeclaim="synapse-media"' in full["expr"]


def test_synapse_series_carry_their_pool() -> None:
    documents = helm.template(
        "synapse", base_values("synapse"), api_versions=CRDS, values={"podMonitor": {"enabled": True}}
    )
    monitors = {d["metadata"]["name"]: d["spec"] for d in documents if d["kind"] == "PodMonitor"}
    [endpoint] = monitors["t-synapse"]["podMetricsEndpoints"]
    assert endpoint["relabelings"] == [
        {"sourceLabels": ["__meta_kubernetes_pod_label_matrix_stack_io_pool"], "targetLabel": "pool"}]  # fmt: skip


@pytest.mark.parametrize("chart", ["webhook", "sentry-webhook", "ldap", "livekit-jwt"])
def test_notes_warn_when_rules_are_asked_for_without_the_crd(chart: str) -> None:
    assert "no alert rules were created" in helm.notes(chart, base_values(chart), values=RULES_ON)
    assert "no alert rules" not in helm.notes(chart, base_values(chart))
