"""The webhook chart's values: each field's type, default and comment, declared once."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from chart_models.base import OMIT, Strict
from chart_models.common import (
    Autoscaling,
    BridgeNetworkPolicy,
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


class Hook(Strict):
    id: str = Field(pattern="^[A-Za-z0-9_-]{22,128}$", description="secret; `slack-webhook new-hook-id`")
    room: str = Field(pattern="^[!#].+")
    name: str = Field(OMIT)
    msgtype: Literal["m.notice", "m.text"] = Field(OMIT)
    displayName: str = Field(OMIT)
    bearerToken: str = Field(OMIT)
    rateLimit: float = Field(OMIT, gt=0)
    burst: int = Field(OMIT, ge=1)
    roomMentions: bool = Field(OMIT)
    users: dict[str, str] = Field(OMIT)


class HooksSecret(Strict):
    secret: str = Field(OMIT, min_length=1)
    secretKey: str = Field(OMIT, min_length=1)


class WebhookValues(Strict):
    """matrix-stack `slack-webhook`: Slack-compatible incoming webhooks into Matrix rooms.
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
    matrix: MatrixBot = Field(default_factory=MatrixBot, description="The bot account the hooks post as.")
    logLevel: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field("INFO")
    extraEnv: list[dict[str, Any]] = Field([])
    replicaCount: int = Field(
        1,
        ge=0,
        description=(
            "One pod by default. The outbox and the bot's session are SQLite and JSON files in "
            "the data\n"
            "directory, which one pod owns: more than 1 fails unless the outbox is on PostgreSQL\n"
            "(outbox.postgres), which any number of replicas share. 0 stops the service. See "
            "README.md,\n"
            '"Persistence and replicas".'
        ),
    )
    terminationGracePeriodSeconds: int = Field(30, ge=0)
    persistence: Persistence = Field(
        default_factory=Persistence,
        description=(
            "The data directory, /var/lib/matrix-stack: outbox, session. Not used with "
            "outbox.postgres (an\n"
            "emptyDir then: nothing durable is there)."
        ),
    )
    outbox: Outbox = Field(
        default_factory=Outbox,
        description=(
            "Where the outbox (accepted messages not delivered yet) and the bot's session live. "
            "Default:\n"
            'files in the data directory (persistence), one pod. See README.md, "Persistence and '
            'replicas".'
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
        default_factory=lambda: HttpRoute.model_validate({"paths": ["/hooks", "/services"]}),
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
    hooks: list[Hook] = Field(
        [],
        description=(
            "The webhooks. Each `id` is a secret (generate: `slack-webhook new-hook-id`), so the "
            "list is stored\n"
            "in a Secret. Or keep the whole list in your own Secret with hooksSecret (same YAML "
            "shape,\n"
            "snake_case keys as the service reads them).\n"
            ' - id: "generate-me-with-slack-webhook-new-hook-id"\n'
            '   room: "#alerts:example.org"\n'
            "   name: alerts\n"
            "   msgtype: m.notice\n"
            "   displayName: Grafana\n"
            '   bearerToken: ""\n'
            "   rateLimit: 1\n"
            "   burst: 10\n"
            "   roomMentions: false\n"
            '   users: {U012AB3CD: "@alice:example.org"}'
        ),
    )
    hooksSecret: HooksSecret = Field(default_factory=HooksSecret)
    users: dict[str, str] = Field(
        {}, description="Slack user id -> Matrix user id, for <@U...> mentions in every hook."
    )
