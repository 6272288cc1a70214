"""The sentry-webhook chart's values: each field's type, default and comment, declared once."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from chart_models.base import OMIT, Strict
from chart_models.common import (
    Autoscaling,
    BridgeNetworkPolicy,
    Credential,
    GrafanaDashboards,
    HttpRoute,
    Image,
    ImagePullSecret,
    Ingress,
    MatrixBot,
    Outbox,
    Persistence,
    PodDisruptionBudget,
    Probes,
    PrometheusRule,
    Service,
    ServiceAccount,
    ServiceMonitor,
)


class Sentry(Strict):
    clientSecret: Credential = Field(
        default_factory=Credential,
        description="{value: ...} stored in the chart's Secret, or {secret: NAME, secretKey: KEY}",
    )
    legacySecret: Credential = Field(
        default_factory=Credential,
        description=(
            'The legacy per-project "WebHooks" plugin posts unsigned to https://<host>/legacy/<secret>.'
        ),
    )
    url: str = Field(
        "https://sentry.io", pattern="^https?://", description="For links when a payload carries none."
    )


class Routing(Strict):
    defaultRoom: str = Field("", pattern="^([!#].+)?$")
    projectRooms: dict[str, Annotated[str, Field(pattern="^[!#].+")]] = Field(
        {}, description=' front-end: "#frontend-alerts:example.org"'
    )
    metricAlertRooms: dict[str, Annotated[str, Field(pattern="^[!#].+")]] = Field({})


class Filters(Strict):
    environments: list[str] = Field([])
    levels: list[Literal["fatal", "error", "warning", "info", "debug", "sample"]] = Field([])


class SentryWebhookValues(Strict):
    """matrix-stack `sentry-webhook`: Sentry alerts and issue events into Matrix rooms.
    Every value is described in README.md; values.schema.json rejects unknown keys.
    """

    nameOverride: str = Field("")
    fullnameOverride: str = Field("")
    commonLabels: dict[str, str] = Field({})
    component: str = Field("bridge")
    global_: dict[str, Any] = Field(OMIT, alias="global")
    matrix_stack_lib: dict[str, Any] = Field(OMIT, alias="matrix-stack-lib")
    image: Image = Field(
        default_factory=lambda: Image.model_validate(
            {"registry": "ghcr.io", "repository": "matrix-stack/matrix-stack", "tag": ""}
        )
    )
    imagePullSecrets: list[ImagePullSecret] = Field([])
    matrix: MatrixBot = Field(default_factory=MatrixBot, description="The bot account the service posts as.")
    logLevel: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field("INFO")
    extraEnv: list[dict[str, Any]] = Field([])
    replicaCount: int = Field(
        1,
        ge=0,
        description=(
            "One pod by default. The outbox (SQLite, with the relation roots) and the bot's "
            "session are\n"
            "files in the data directory, which one pod owns: more than 1 fails unless the outbox"
            " is on\n"
            "PostgreSQL (outbox.postgres), which any number of replicas share. 0 stops the "
            "service. See\n"
            'README.md, "Persistence and replicas".'
        ),
    )
    terminationGracePeriodSeconds: int = Field(30, ge=0)
    persistence: Persistence = Field(
        default_factory=Persistence,
        description=(
            "The data directory, /var/lib/matrix-stack: outbox, session, relation roots. Not used"
            " with\n"
            "outbox.postgres (an emptyDir then: nothing durable is there)."
        ),
    )
    outbox: Outbox = Field(
        default_factory=Outbox,
        description=(
            "Where the outbox (accepted messages not delivered yet), the relation roots and the "
            "bot's\n"
            "session live. Default: files in the data directory (persistence), one pod. See "
            "README.md,\n"
            '"Persistence and replicas".'
        ),
    )
    resources: dict[str, Any] = Field(
        {"requests": {"cpu": "20m", "memory": "96Mi"}, "limits": {"memory": "256Mi"}}
    )
    probes: Probes = Field(
        default_factory=lambda: Probes.model_validate(
            {"readiness": {"periodSeconds": 5, "failureThreshold": 2, "timeoutSeconds": 4}}
        )
    )
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
    containerSecurityContext: dict[str, Any] = Field(
        {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
    )
    serviceAccount: ServiceAccount = Field(default_factory=ServiceAccount)
    podAnnotations: dict[str, str] = Field({})
    podLabels: dict[str, str] = Field({})
    priorityClassName: str = Field("")
    nodeSelector: dict[str, str] = Field({})
    tolerations: list[dict[str, Any]] = Field([])
    affinity: dict[str, Any] = Field({})
    topologySpreadConstraints: list[dict[str, Any]] = Field([])
    extraVolumes: list[dict[str, Any]] = Field([])
    extraVolumeMounts: list[dict[str, Any]] = Field([])
    service: Service = Field(default_factory=Service)
    ingress: Ingress = Field(default_factory=Ingress)
    httpRoute: HttpRoute = Field(
        default_factory=lambda: HttpRoute.model_validate({"paths": ["/sentry", "/legacy"]}),
        description="Gateway API (gateway.networking.k8s.io/v1).",
    )
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
    sentry: Sentry = Field(
        default_factory=Sentry,
        description=(
            "Sentry side. Integration Platform (Settings > Developer Settings > Custom "
            "Integration):\n"
            "webhook URL https://<host>/sentry, the integration's client secret here."
        ),
    )
    routing: Routing = Field(
        default_factory=Routing,
        description=(
            "Where messages go: metric alert rule name first, then project slug or id, then the default room."
        ),
    )
    filters: Filters = Field(
        default_factory=Filters, description="Only these environments / levels (empty: all)."
    )
    tags: list[str] = Field(
        [], description="Event tags shown in messages (empty: the service's default list)."
    )
    msgtype: Literal["m.notice", "m.text"] = Field("m.notice")
    threads: bool = Field(
        True, description="Later events about an issue go into the thread of its first message."
    )
    postErrors: bool = Field(
        True, description="error.created arrives once per event (Business plan): noisy, but on by default."
    )
