"""What the three bridge charts (webhook, sentry-webhook, matrix-alertmanager-receiver) share, declared once.

Each bridge chart's model subclasses BridgeValues and adds (or overrides) only what is its own: a value
added here appears in all three charts' values.yaml and values.schema.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import Field

from chart_models.common import (
    Autoscaling,
    BridgeNetworkPolicy,
    Encryption,
    GrafanaDashboards,
    Ingress,
    PodDisruptionBudget,
    PodRuntimeValues,
    PodSpecValues,
    ProbedValues,
    PrometheusRule,
    Service,
    ServiceHeadValues,
    ServiceMonitor,
)


@dataclass(frozen=True)
class BridgeReadme:
    """What a bridge chart's README says its own way inside the sections every bridge shares
    (scripts/chart_docs/bridge-*.md); the chart's name, settings prefix, schema and paths come from
    the catalog and the values."""

    roots: str | None  # what its relation roots are; None: it keeps none
    roots_lost: str  # what an emptyDir loses with the roots ("" without roots)
    clients: str  # who posts to the Service directly (networkPolicy.clientsFrom)
    clients_example: str  # the clientsFrom lines of the NetworkPolicy example
    alerts_note: str = ""  # a paragraph after the alerts table


class BridgeValues(PodSpecValues, ProbedValues, PodRuntimeValues, ServiceHeadValues):
    """A Matrix bridge chart's values (msl.deployment's default: the bot account, the outbox, persistence)."""

    README: ClassVar[BridgeReadme]

    component: str = Field("bridge")
    podSecurityContext: dict[str, Any] = Field(
        {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        }
    )
    service: Service = Field(default_factory=Service)
    ingress: Ingress = Field(default_factory=Ingress)
    serviceMonitor: ServiceMonitor = Field(
        default_factory=ServiceMonitor,
        description="Prometheus Operator; rendered only when the ServiceMonitor CRD is installed.",
    )
    prometheusRule: PrometheusRule = Field(
        default_factory=PrometheusRule,
        description=(
            "Alert rules for the Prometheus Operator (a PrometheusRule; rendered only when its "
            "CRD is installed).\n"
            "They read what the ServiceMonitor above scrapes, and kube-state-metrics for "
            "readiness; the README\n"
            'has a section per alert ("Alerts"), which each alert\'s runbook_url points at.'
        ),
    )
    grafanaDashboards: GrafanaDashboards = Field(
        default_factory=GrafanaDashboards,
        description=(
            "Grafana dashboards as ConfigMaps that Grafana's dashboard sidecar loads "
            "(kube-prometheus-stack's\n"
            "grafana.sidecar.dashboards): the bridges' (requests, deliveries, outbox depth and "
            "latency, room leases). The sidecar finds them by `labels`\n"
            "(its `label`/`labelValue`); `annotations` can name a folder (grafana_folder), "
            "`namespace` puts\n"
            "them where the sidecar looks (empty: the release's namespace)."
        ),
    )
    networkPolicy: BridgeNetworkPolicy = Field(
        default_factory=BridgeNetworkPolicy,
        description=(
            "NetworkPolicy (see the README): ingress to the HTTP port (8080: the API and "
            "/metrics), egress\n"
            "to DNS, the homeserver and, with outbox.postgres, PostgreSQL. Peers are "
            "NetworkPolicyPeers\n"
            "(namespaceSelector, podSelector, ipBlock). An ingress rule whose lists (*From) are "
            "all empty\n"
            "admits the pods of the release's namespace; an empty egress list (*To) allows any "
            "address on the\n"
            "rule's port."
        ),
    )
    podDisruptionBudget: PodDisruptionBudget = Field(
        default_factory=lambda: PodDisruptionBudget.model_validate({"enabled": False}),
        description=(
            "Off: by default there is one pod. Enabled, it has maxUnavailable: 1, which never "
            "blocks a node\n"
            "drain; minAvailable, or a maxUnavailable other than 1, would block every drain of "
            "the one pod\n"
            "and fails. With outbox.postgres (several replicas) any minAvailable or "
            "maxUnavailable."
        ),
    )
    autoscaling: Autoscaling = Field(
        default_factory=Autoscaling,
        description=("An HPA: only with outbox.postgres; on the SQLite outbox enabled fails (several pods)."),
    )
    encryption: Encryption = Field(
        default_factory=Encryption,
        description=(
            "End-to-end encryption in the rooms that have it on: the bot encrypts what it posts "
            "there. See\n"
            'README.md, "End-to-end encryption".'
        ),
    )
