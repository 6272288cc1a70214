"""The synapse chart as the tests render it: its ci values, the one-process-each topology the
booted cluster runs, and the lookups shared by the render-only tests (tests/charts) and the
booted-cluster tests (tests/integration)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import yaml

from tests.charts import helm

CI = helm.CHARTS / "synapse" / "ci"
ONE_EACH = {
    "pools": {name: {"replicas": 1} for name in ("event_persister", "room", "sync", "client_reader")},
    "pgbouncer": {"enabled": True},  # readers through a real pgbouncer, the heavy writers direct
    "wellKnown": {"rtcFoci": [{"type": "livekit", "livekit_service_url": "https://rtc.example.org/jwt"}]},
    # Test clients create rooms and send faster than Synapse's default limits allow (extraConfig is
    # the chart's way to set anything else).
    "extraConfig": {
        key: {"per_second": 1000, "burst_count": 1000} for key in ("rc_message", "rc_room_creation")
    },
    # livekit-jwt as an application service (MSC4512): every process loads the registration.
    "matrixRTC": {"appservice": {"enabled": True, "url": "http://{{ .Release.Name }}-livekit-jwt:8080"}},
}
REGISTRATION_KEY = "matrixrtc-registration.yaml"


def configmap(*files: Path, values: dict[str, Any] | None = None) -> dict[str, str]:
    documents = helm.template("synapse", *files, values=values)
    data: dict[str, str] = by_name(documents, "ConfigMap", "t-synapse")["data"]
    return data


def by_name(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name)


def homeserver(*files: Path, values: dict[str, Any] | None = None) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(configmap(*files, values=values)["homeserver.yaml"])
    return loaded


def registration_of(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """The MatrixRTC registration as the chart's Secret holds it."""
    secret = by_name(documents, "Secret", "t-synapse-secrets")["data"]
    loaded: dict[str, Any] = yaml.safe_load(base64.b64decode(secret[REGISTRATION_KEY]))
    return loaded


def _mounted_files(pod: dict[str, Any], container: dict[str, Any]) -> set[str]:
    """Every file path the pod's Secret volumes provide to the container (projected items included)."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    files = set()
    for mount in container["volumeMounts"]:
        volume = volumes[mount["name"]]
        if "projected" in volume:
            for source in volume["projected"]["sources"]:
                files |= {f"{mount['mountPath']}/{item['path']}" for item in source["secret"]["items"]}
        elif "secret" in volume:
            files.add(f"{mount['mountPath']}/*")
    return files


def _provided(path: str, files: set[str]) -> bool:
    return path in files or f"{path.rsplit('/', 1)[0]}/*" in files


RECEIVER_CHART = "matrix-alertmanager-receiver"


def dashboard_queries() -> list[str]:
    """Every query of the dashboards the synapse and alertmanager-receiver charts ship."""
    queries = []
    for chart, values_file in (("synapse", CI / "default-values.yaml"),
                               (RECEIVER_CHART, helm.CHARTS / RECEIVER_CHART / "ci" / "minimal-values.yaml")):  # fmt: skip
        documents = helm.template(chart, values_file, values={**(ONE_EACH if chart == "synapse" else {}),
                                  "grafanaDashboards": {"enabled": True}})  # fmt: skip
        dashboards = [json.loads(text) for d in documents if d["kind"] == "ConfigMap"
                      and "grafana_dashboard" in d["metadata"]["labels"] for text in d["data"].values()]  # fmt: skip
        assert dashboards, chart
        queries += [t["expr"] for board in dashboards for panel in board["panels"] for t in panel["targets"]]
    return [query.replace("$namespace", "ns") for query in queries]
