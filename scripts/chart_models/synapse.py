"""The synapse chart's values: each field's type, default and comment, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field

from chart_models.base import OMIT, Strict
from chart_models.common import (
    Credential,
    GrafanaDashboards,
    Image,
    IngressTls,
    Switch,
)

# The pool kinds are the chart's own table (files/kinds.yaml), in its order: the templates read it too.
_KINDS = Path(__file__).resolve().parents[2] / "charts" / "synapse" / "files" / "kinds.yaml"
PoolKind = Literal[tuple(yaml.safe_load(_KINDS.read_text()))]  # type: ignore[valid-type]


class Redis(Strict):
    host: str = Field("")
    port: int = Field(6379, ge=1, le=65535)
    password: Credential = Field(
        default_factory=Credential,
        description=(
            "A credential ({value} or {secret, secretKey}); Synapse reads it from a file (password_path)."
        ),
    )


class Secrets(Strict):
    macaroon: Credential = Field(
        default_factory=Credential,
        description="{value: ...} stored in the chart's Secret, or {secret: NAME, secretKey: KEY}",
    )
    form: Credential = Field(
        default_factory=Credential,
        description="{value: ...} stored in the chart's Secret, or {secret: NAME, secretKey: KEY}",
    )
    registrationSharedSecret: Credential = Field(
        default_factory=Credential,
        description="{value: ...} stored in the chart's Secret, or {secret: NAME, secretKey: KEY}",
    )
    signingKey: Credential = Field(
        default_factory=Credential,
        description="{value: ...} stored in the chart's Secret, or {secret: NAME, secretKey: KEY}",
    )


class MediaPersistence(Strict):
    enabled: bool = Field(True)
    existingClaim: str = Field("")
    storageClass: str = Field("")
    accessMode: Literal["ReadWriteOnce", "ReadWriteMany"] = Field("ReadWriteOnce")
    size: str = Field("10Gi")


class Media(Strict):
    persistence: MediaPersistence = Field(default_factory=MediaPersistence)
    storageProviders: list[dict[str, Any]] = Field(
        [],
        description=(
            "Synapse media_storage_providers (e.g. an S3 provider module in a custom image), as "
            "Synapse takes them."
        ),
    )


class Postgres(Strict):
    host: str = Field("")
    port: int = Field(5432, ge=1, le=65535)
    database: str = Field(OMIT)
    user: str = Field(OMIT)
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field("prefer")
    password: Credential = Field(
        default_factory=Credential,
        description="credential: {value: ...} or {secret: NAME, secretKey: KEY}; passed as PGPASSWORD.",
    )


class PoolAutoscaling(Strict):
    enabled: bool = Field(False)
    minReplicas: int = Field(2, ge=1)
    maxReplicas: int = Field(10, ge=1)
    targetCPUUtilizationPercentage: int = Field(75, ge=1)


class Schedule(Strict):
    start: str = Field(description="cron, e.g. 0 7 * * 1-5")
    end: str = Field(description="cron, e.g. 0 19 * * 1-5")
    desiredReplicas: int = Field(ge=1)


class Keda(Strict):
    enabled: bool = Field(OMIT)
    minReplicas: int = Field(OMIT, ge=0)
    maxReplicas: int = Field(OMIT, ge=1)
    timezone: str = Field(OMIT)
    schedules: list[Schedule] = Field(OMIT)


class Pool(Strict):
    kind: PoolKind = Field()
    enabled: bool = Field(True)
    replicas: int = Field(OMIT, ge=1)
    resources: dict[str, Any] = Field(OMIT)
    nodeSelector: dict[str, str] = Field(OMIT)
    tolerations: list[dict[str, Any]] = Field(OMIT)
    affinity: dict[str, Any] = Field(OMIT)
    topologySpreadConstraints: list[dict[str, Any]] = Field(OMIT)
    priorityClassName: str = Field(OMIT)
    podAnnotations: dict[str, str] = Field(OMIT)
    autoscaling: PoolAutoscaling = Field(OMIT)
    keda: Keda = Field(OMIT)


class Experimental(Strict):
    msc4306: bool = Field(
        False, description="MSC4306 thread subscriptions: the thread_subscriptions writers and the endpoints."
    )


class MatrixRTCAppservice(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"enabled": {"const": True}}, "required": ["enabled"]},
            "then": {"properties": {"url": {"type": "string", "minLength": 1}}, "required": ["url"]},
        }
    )
    enabled: bool = Field(False)
    url: str = Field(
        "",
        pattern="^(https?://.+)?$",
        description=(
            "Where Synapse forwards the requests: the livekit-jwt Service, e.g.\n"
            '"http://{{ .Release.Name }}-livekit-jwt:8080" (templates allowed). Required when '
            "enabled."
        ),
    )
    id: str = Field(
        "livekit-jwt",
        min_length=1,
        description=(
            "The registration's id and sender_localpart (the sender never acts: no namespaces, url null)."
        ),
    )
    senderLocalpart: str = Field("livekit-jwt", pattern="^[a-z0-9._=/+-]+$")
    asToken: Credential = Field(
        default_factory=Credential,
        description=(
            "Credentials ({value} or {secret, secretKey}); left empty, generated once and kept in"
            " the\n"
            "chart's Secret (keys matrixrtc-as-token, matrixrtc-hs-token). livekit-jwt needs the "
            "same\n"
            "hsToken (its appservice.hsToken): one Secret referenced by both charts does it."
        ),
    )
    hsToken: Credential = Field(
        default_factory=Credential,
        description="{value: ...} stored in the chart's Secret, or {secret: NAME, secretKey: KEY}",
    )


class MatrixRTC(Strict):
    appservice: MatrixRTCAppservice = Field(default_factory=MatrixRTCAppservice)


class WellKnown(Strict):
    enabled: bool = Field(True)
    server: bool = Field(
        True,
        description=(
            'Serve /.well-known/matrix/server: {"m.server": "<serverName>:443"} (federation '
            "through the\n"
            "same HTTPS endpoint as clients)."
        ),
    )
    rtcFoci: list[dict[str, Any]] = Field(
        [],
        description=(
            "MatrixRTC foci for Element Call, e.g. [{type: livekit, livekit_service_url: "
            "https://rtc.example.org}]."
        ),
    )
    extraClientContent: dict[str, Any] = Field({})


class ConfigCheck(Strict):
    enabled: bool = Field(True)
    timeoutSeconds: int = Field(240, ge=30)
    resources: dict[str, Any] = Field(
        {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    )


class Pgbouncer(Strict):
    enabled: bool = Field(False)
    image: Image = Field(
        default_factory=lambda: Image.model_validate(
            {"registry": "docker.io", "repository": "edoburu/pgbouncer", "tag": "v1.24.1-p0"}
        )
    )
    replicas: int = Field(2, ge=1)
    poolMode: Literal["session", "transaction"] = Field("session")
    maxClientConn: int = Field(2000, ge=1)
    defaultPoolSize: int = Field(
        200,
        ge=1,
        description=(
            "Session mode holds a server connection per client connection: size it for\n"
            "(processes behind pgbouncer) × cp_max (10)."  # noqa: RUF001
        ),
    )
    bypassKinds: list[PoolKind] = Field(["main", "event_persister", "background"])
    resources: dict[str, Any] = Field(
        {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}}
    )


class PodMonitor(Strict):
    enabled: bool = Field(False)
    interval: str = Field("30s")
    labels: dict[str, str] = Field({})


class NetworkPolicy(Strict):
    enabled: bool = Field(False)
    ingressFrom: list[dict[str, Any]] = Field(
        [],
        description=(
            "Your ingress controller's or Gateway's pods: they reach the router (with "
            "router.enabled false:\n"
            "the Synapse processes), MAS and the admin UI.\n"
            " - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}"
        ),
    )
    clientsFrom: list[dict[str, Any]] = Field(
        [],
        description=(
            "In-cluster clients of the router (bots, bridges, application services, the "
            "matrix-stack\n"
            "services calling the client API): with ingressFrom, on the router's port.\n"
            " - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}\n"
            "   podSelector: {matchLabels: {app.kubernetes.io/name: "
            "matrix-alertmanager-receiver}}"
        ),
    )
    metricsFrom: list[dict[str, Any]] = Field(
        [],
        description=(
            "Prometheus: Synapse's metrics port (9000), the router's (9102), MAS's internal one "
            "(8081).\n"
            " - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}"
        ),
    )
    databaseTo: list[dict[str, Any]] = Field(
        [],
        description=(
            "PostgreSQL (postgres.port for Synapse and pgbouncer, mas.database.port for MAS), "
            "e.g.\n"
            "[{ipBlock: {cidr: 10.10.0.5/32}}] or its pods. Empty: any address on those ports.\n"
            " - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: databases}}\n"
            "   podSelector: {matchLabels: {cnpg.io/cluster: synapse-db}}"
        ),
    )
    redisTo: list[dict[str, Any]] = Field(
        [], description="Redis (redis.port; only with workers). Empty: any address on that port."
    )
    federationTo: list[dict[str, Any]] = Field(
        [],
        description=(
            "Federation and the rest of the web Synapse reaches: other homeservers, push "
            "gateways, identity\n"
            "servers, URL previews, OIDC providers without MAS. Usually the internet: leave empty"
            " (any\n"
            "address), or e.g. [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8, 172.16.0.0/12,\n"
            '192.168.0.0/16]}}, {ipBlock: {cidr: "::/0"}}].'
        ),
    )
    masUpstreamTo: list[dict[str, Any]] = Field(
        [],
        description=(
            "MAS's upstream OAuth2/OIDC providers and other HTTPS services it calls (443). Empty:"
            " any address."
        ),
    )
    matrixRTCTo: list[dict[str, Any]] = Field(
        [],
        description=(
            "With matrixRTC.appservice.enabled: where livekit-jwt is (on "
            "matrixRTC.appservice.url's port).\n"
            "Empty: any address on that port.\n"
            " - podSelector: {matchLabels: {app.kubernetes.io/name: livekit-jwt}}"
        ),
    )
    dnsTo: list[dict[str, Any]] = Field(
        [],
        description=(
            "Where DNS is, e.g. kube-dns: [{namespaceSelector: {matchLabels:\n"
            "{kubernetes.io/metadata.name: kube-system}}, podSelector: {matchLabels: {k8s-app: "
            "kube-dns}}}].\n"
            "Empty: any address on port 53 (which also works with NodeLocal DNSCache)."
        ),
    )
    extraIngress: list[dict[str, Any]] = Field(
        [],
        description=(
            "More rules for the Synapse processes' policy (<fullname>), as Kubernetes spells "
            "them: other\n"
            "application services, SMTP for email, an antivirus..."
        ),
    )
    extraEgress: list[dict[str, Any]] = Field([])
    federationPorts: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        [443, 8448],
        description=(
            "Their ports: 443 (.well-known delegations, push gateways, most of the web) and 8448 "
            "(the\n"
            "federation default); add 80 for URL previews of http:// links; [] allows every port "
            "(servers\n"
            "delegated to other ports)."
        ),
        json_schema_extra={"uniqueItems": True},
    )


class Selectors(Strict):
    synapse: str = Field("")
    router: str = Field("")


class SlowRequests(Strict):
    seconds: float = Field(5, le=10, gt=0)
    excludedServlets: list[Annotated[str, Field(pattern="^[A-Za-z0-9_]+$")]] = Field(
        ["SyncRestServlet", "SlidingSyncRestServlet", "EventStreamRestServlet"]
    )


class SynapsePrometheusRule(Strict):
    enabled: bool = Field(False)
    namespace: str = Field("", description="Where the PrometheusRule goes; empty: the release's namespace.")
    additionalLabels: dict[str, str] = Field(
        {},
        description=(
            "Labels your Prometheus selects rules by (its ruleSelector), e.g. release: kube-prometheus-stack."
        ),
    )
    runbookBaseUrl: str = Field(
        "",
        description=(
            "Where the README is read; runbook_url is this plus #<alert name in lower case>. "
            "Empty: the\n"
            "README's path in the repository, charts/synapse/README.md."
        ),
    )
    selectors: Selectors = Field(
        default_factory=Selectors,
        description=(
            "PromQL label matchers selecting the series; empty: the PodMonitors' jobs in the "
            "release's\n"
            'namespace (namespace="<namespace>", job="<namespace>/<fullname>" and '
            '".../<fullname>-router").'
        ),
    )
    slowRequests: SlowRequests = Field(
        default_factory=SlowRequests,
        description=(
            "SynapseSlowRequests: a pool's 99th percentile above `seconds` (at most 10, Synapse's"
            " largest\n"
            "finite bucket), long polls (servlet class names) left out."
        ),
    )


class MasSecrets(Strict):
    encryption: Credential = Field(
        default_factory=Credential,
        description="{value: ...} stored in the chart's Secret, or {secret: NAME, secretKey: KEY}",
    )
    signingKey: Credential = Field(
        default_factory=Credential,
        description="{value: ...} stored in the chart's Secret, or {secret: NAME, secretKey: KEY}",
    )
    synapseShared: Credential = Field(
        default_factory=Credential,
        description="{value: ...} stored in the chart's Secret, or {secret: NAME, secretKey: KEY}",
    )


class Mas(Strict):
    enabled: bool = Field(True)
    image: Image = Field(
        default_factory=lambda: Image.model_validate(
            {"registry": "ghcr.io", "repository": "element-hq/matrix-authentication-service", "tag": "1.23.0"}
        )
    )
    publicBaseurl: str = Field(
        "",
        pattern="^(https?://.+/)?$",
        description="Where users reach MAS, e.g. https://auth.example.org/ (required when enabled).",
    )
    replicas: int = Field(1, ge=1)
    resources: dict[str, Any] = Field(
        {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
    )
    database: Postgres = Field(
        default_factory=lambda: Postgres.model_validate({"database": "mas", "user": "mas"}),
        description="MAS's own PostgreSQL database (not Synapse's). The password is read from a file.",
    )
    secrets: MasSecrets = Field(
        default_factory=MasSecrets,
        description=(
            "Each a credential ({value} or {secret, secretKey}); left empty, generated once and "
            "kept.\n"
            "synapseShared is the secret MAS and Synapse share; signingKey a PEM private key (RSA"
            " or EC)."
        ),
    )
    passwords: bool = Field(
        True,
        description=("Local password accounts in MAS (off when every user comes from an upstream provider)."),
    )
    extraConfig: dict[str, Any] = Field(
        {}, description="Merged last into MAS's config.yaml (upstream_oauth2, email, branding, clients, ...)."
    )
    podAnnotations: dict[str, str] = Field({})
    nodeSelector: dict[str, str] = Field({})
    tolerations: list[dict[str, Any]] = Field([])
    affinity: dict[str, Any] = Field({})


class RouterTimeouts(Strict):
    default: str = Field("60s", pattern="^[0-9]+s$")
    media: str = Field("300s", pattern="^[0-9]+s$")
    longPoll: str = Field(
        "180s",
        pattern="^[0-9]+s$",
        description="Idle limit on long polls (sync, events), which have no overall timeout.",
    )


class RouterHealthCheck(Strict):
    interval: str = Field(
        "1s",
        pattern="^[0-9]+(ms|s)$",
        description=(
            "Envoy asks every Synapse process behind it for /health this often (also when idle), and\n"
            "stops sending to one after unhealthyThreshold failures in a row (a dead one within two\n"
            "intervals; its hashed keys move to the next instance on the ring), until one answer again."
        ),
    )
    timeout: str = Field(
        "3s",
        pattern="^[0-9]+(ms|s)$",
        description=(
            "A refused connection fails at once; an answer slower than this counts as a failure (a busy\n"
            "process's reactor can stall a second or two: that is no reason to take it out)."
        ),
    )
    unhealthyThreshold: int = Field(2, ge=1)
    healthyThreshold: int = Field(1, ge=1)


class RouterRetries(Strict):
    maxRetries: int = Field(
        2,
        ge=0,
        le=5,
        description=(
            "A request that cannot have reached Synapse (connection failed or refused, reset before it\n"
            "was sent) is tried again on another instance of its pool, and so is a GET, a HEAD or a\n"
            "PUT with a transaction id whose connection was reset; never a POST that may have reached\n"
            "Synapse. At most this many times, and retries in flight are at most budgetPercent of the\n"
            "requests in flight (at least minRetryConcurrency), so retries cannot amplify an outage."
        ),
    )
    budgetPercent: int = Field(25, ge=0, le=100)
    minRetryConcurrency: int = Field(20, ge=0)


class Overload(Strict):
    maxHeapBytes: int = Field(402653184, ge=1048576)
    maxConnections: int = Field(50000, ge=1)


class RouterService(Strict):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field("ClusterIP")
    port: int = Field(8008, ge=1, le=65535)


class Router(Strict):
    enabled: bool = Field(True)
    image: Image = Field(
        default_factory=lambda: Image.model_validate(
            {"registry": "docker.io", "repository": "envoyproxy/envoy", "tag": "v1.40.0"}
        )
    )
    replicas: int = Field(2, ge=1)
    resources: dict[str, Any] = Field(
        {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    )
    drainSeconds: int = Field(
        40,
        ge=0,
        description=(
            "A stopping router pod fails its readiness (out of the Service), closes each client\n"
            "connection after its current answer and still takes new ones, for this long; then exits.\n"
            "Long polls through it return meanwhile. Grace period: this plus 10."
        ),
    )
    trustedHops: int = Field(
        1,
        ge=0,
        description=(
            "Proxies in front of the router that append to X-Forwarded-For (an ingress "
            "controller: 1).\n"
            "The client address (federation hashing without an X-Matrix origin) is taken after "
            "these."
        ),
    )
    whoamiCacheSeconds: int = Field(
        300,
        ge=0,
        description=(
            "Sync is hashed by user: tokens that are not Synapse's syt_ tokens are resolved with "
            "whoami,\n"
            "cached per router thread for this long, at most this many entries."
        ),
    )
    whoamiCacheEntries: int = Field(100000, ge=1)
    maxUploadBytes: int = Field(
        104857600,
        ge=1,
        description=(
            "Media upload limit (Content-Length), bytes: refused with 413 M_TOO_LARGE before "
            "reaching a\n"
            "media process. Keep it at or above Synapse's max_upload_size (50M by default)."
        ),
    )
    timeouts: RouterTimeouts = Field(default_factory=RouterTimeouts)
    healthCheck: RouterHealthCheck = Field(default_factory=RouterHealthCheck)
    retries: RouterRetries = Field(default_factory=RouterRetries)
    overload: Overload = Field(
        default_factory=Overload,
        description=(
            "Envoy's overload manager: shrink the heap at 95%, stop accepting requests at 98% of this."
        ),
    )
    accessLog: bool = Field(
        True,
        description=(
            "JSON access log on stdout, naming the route, the pool and the hash key of each request."
        ),
    )
    debugHeader: bool = Field(
        False,
        description=(
            "Add an x-matrix-stack-pool response header naming the pool that answered (for debugging)."
        ),
    )
    service: RouterService = Field(default_factory=RouterService)
    autoscaling: PoolAutoscaling = Field(default_factory=PoolAutoscaling)


class AdminUi(Strict):
    enabled: bool = Field(False)
    image: Image = Field(
        default_factory=lambda: Image.model_validate(
            {"registry": "docker.io", "repository": "awesometechnologies/synapse-admin", "tag": "0.10.3"}
        )
    )
    replicas: int = Field(1, ge=1)
    resources: dict[str, Any] = Field(
        {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}
    )


class SynapseIngress(Strict):
    enabled: bool = Field(False)
    className: str = Field("")
    annotations: dict[str, str] = Field({})
    wellKnownHost: str = Field(
        "",
        description=(
            'Host names to serve /.well-known/matrix on ("" = serverName when it is not Synapse\'s host).'
        ),
    )
    adminUiHost: str = Field("")
    tls: list[IngressTls] = Field([])


class SynapseHttpRoute(Strict):
    enabled: bool = Field(False)
    annotations: dict[str, str] = Field({})
    parentRefs: list[dict[str, Any]] = Field([])
    wellKnownHost: str = Field("")
    adminUiHost: str = Field("")


class SynapseValues(Strict):
    """Synapse split into workers. Pools are named groups of identical processes; every piece of Synapse
    configuration that names instances (stream_writers, instance_map, pusher_instances, ...) is derived
    from them, never typed twice. Disable pools to shrink down to a plain monolith.
    """

    nameOverride: str = Field("")
    fullnameOverride: str = Field("")
    commonLabels: dict[str, str] = Field({})
    component: str = Field("homeserver")
    clusterDomain: str = Field(
        "cluster.local",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description=(
            "The cluster's DNS domain: in-cluster addresses (instance_map, the router's upstreams, MAS)\n"
            "are <service>.<namespace>.svc.<clusterDomain>."
        ),
    )
    global_: dict[str, Any] = Field(OMIT, alias="global")
    matrix_stack_lib: dict[str, Any] = Field(OMIT, alias="matrix-stack-lib")
    image: Image = Field(
        default_factory=lambda: Image.model_validate(
            {"registry": "ghcr.io", "repository": "element-hq/synapse", "tag": ""}
        )
    )
    serverName: str = Field("")
    publicBaseurl: str = Field("", pattern="^(https?://.+/)?$", description="with a trailing slash")
    redis: Redis = Field(default_factory=Redis)
    secrets: Secrets = Field(
        default_factory=Secrets,
        description=(
            "Synapse's secrets. Each is a credential ({value} or {secret, secretKey}); left "
            "empty, it is\n"
            "generated once and kept across upgrades (the signing key too)."
        ),
    )
    resources: dict[str, Any] = Field(
        {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        description="Every pod: resources and scheduling apply to all pools unless a pool sets its own.",
    )
    drainSeconds: int = Field(
        40,
        ge=0,
        description=(
            "A stopping pod of a pool with an HTTP listener leaves the router's view at once (no longer\n"
            "ready, out of DNS) and keeps answering what it has this long (preStop) before SIGTERM:\n"
            "long-polling /sync returns (clients wait 30 s), so an upgrade cuts nothing. Its\n"
            "terminationGracePeriodSeconds is this plus 30 (Synapse's own shutdown)."
        ),
    )
    podSecurityContext: dict[str, Any] = Field(
        {
            "runAsNonRoot": True,
            "runAsUser": 991,
            "runAsGroup": 991,
            "fsGroup": 991,
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
    nodeSelector: dict[str, str] = Field(
        {},
        description=(
            "Scheduling for every Synapse pod; a pool's own fields (same names) replace these for that pool."
        ),
    )
    tolerations: list[dict[str, Any]] = Field([])
    affinity: dict[str, Any] = Field({})
    topologySpreadConstraints: list[dict[str, Any]] = Field([])
    priorityClassName: str = Field("")
    podAnnotations: dict[str, str] = Field({})
    media: Media = Field(
        default_factory=Media,
        description=(
            "Media on a PVC shared by the media pools (ReadWriteMany when several media processes run)."
        ),
    )
    postgres: Postgres = Field(
        default_factory=lambda: Postgres.model_validate({"database": "synapse", "user": "synapse"})
    )
    pools: dict[str, Pool] = Field(
        {
            "main": {"kind": "main", "enabled": True, "replicas": 1},
            "typing": {"kind": "typing", "enabled": True, "replicas": 1},
            "to_device": {"kind": "to_device", "enabled": True, "replicas": 1},
            "account_data": {"kind": "account_data", "enabled": True, "replicas": 1},
            "presence": {"kind": "presence", "enabled": True, "replicas": 1},
            "push_rules": {"kind": "push_rules", "enabled": True, "replicas": 1},
            "receipts": {"kind": "receipts", "enabled": True, "replicas": 1},
            "device_lists": {"kind": "device_lists", "enabled": True, "replicas": 1},
            "thread_subscriptions": {"kind": "thread_subscriptions", "enabled": True, "replicas": 1},
            "quarantined_media": {"kind": "quarantined_media", "enabled": True, "replicas": 1},
            "event_persister": {"kind": "event_persister", "enabled": True, "replicas": 2},
            "media_repository": {"kind": "media_repository", "enabled": True, "replicas": 1},
            "media_background": {"kind": "media_background", "enabled": True, "replicas": 1},
            "room": {"kind": "room", "enabled": True, "replicas": 2},
            "sync": {"kind": "sync", "enabled": True, "replicas": 2},
            "federation_reader": {"kind": "federation_reader", "enabled": True, "replicas": 1},
            "client_reader": {"kind": "client_reader", "enabled": True, "replicas": 2},
            "user_dir": {"kind": "user_dir", "enabled": True, "replicas": 1},
            "background": {"kind": "background", "enabled": True, "replicas": 1},
            "pusher": {"kind": "pusher", "enabled": True, "replicas": 1},
            "federation_sender": {"kind": "federation_sender", "enabled": True, "replicas": 1},
        },
        description=(
            "Each pool: kind, enabled, replicas, resources; scheduling (nodeSelector, "
            "tolerations, affinity,\n"
            "topologySpreadConstraints, priorityClassName, podAnnotations) replacing the "
            "chart-wide fields; and\n"
            "for stateless kinds an optional autoscaling {enabled, minReplicas, maxReplicas,\n"
            "targetCPUUtilizationPercentage} (HPA) or keda {enabled, minReplicas, maxReplicas, "
            "timezone,\n"
            "schedules: [{start, end, desiredReplicas}]} (a KEDA cron ScaledObject; not both).\n"
            "Pool kinds: main (exactly one pool), typing, to_device, account_data, presence, "
            "push_rules\n"
            "(singleton stream writers), receipts, device_lists, thread_subscriptions, "
            "quarantined_media,\n"
            "event_persister (scalable stream writers), media_repository, media_background, room,"
            " sync,\n"
            "federation_reader, client_reader, user_dir (HTTP readers), background, pusher,\n"
            "federation_sender (no HTTP)."
        ),
    )
    experimental: Experimental = Field(default_factory=Experimental)
    matrixRTC: MatrixRTC = Field(
        default_factory=MatrixRTC,
        description=(
            "MatrixRTC, homeserver-native (MSC4512): the livekit-jwt service registered as an "
            "application\n"
            "service. Synapse authenticates the user (itself, or through MAS) and forwards\n"
            "/_matrix/client/{v*,unstable/*}/rtc/livekit/* to `url` with the registration's "
            "hs_token; the\n"
            "router sends those paths to the client_reader pools. See the README."
        ),
    )
    wellKnown: WellKnown = Field(
        default_factory=WellKnown,
        description="/.well-known/matrix/{client,server}, served by Synapse's client listener.",
    )
    configCheck: ConfigCheck = Field(
        default_factory=ConfigCheck,
        description=(
            "Before every install and upgrade, a hook Job in the release's Synapse image (image "
            "above) loads\n"
            "the new configuration as each process will, and the application service "
            "registrations it names.\n"
            "A bad setting fails the release with Synapse's own error before any pod rolls; the "
            "failed Job\n"
            "stays, with the error in its log (kubectl logs job/<fullname>-config-check). See the"
            " README,\n"
            '"Config check". timeoutSeconds stays under helm\'s own --timeout (5m by default), so '
            "a check that\n"
            "cannot finish fails as itself."
        ),
    )
    podDisruptionBudget: Switch = Field(
        default_factory=lambda: Switch.model_validate({"enabled": True}),
        description=(
            "A PodDisruptionBudget per pool (maxUnavailable 1) when the pool runs more than one replica."
        ),
    )
    pgbouncer: Pgbouncer = Field(
        default_factory=Pgbouncer,
        description=(
            "An optional pgbouncer in front of PostgreSQL. Processes of the bypass kinds (the "
            "heavy writers)\n"
            "keep direct connections; every other process connects through pgbouncer."
        ),
    )
    podMonitor: PodMonitor = Field(
        default_factory=PodMonitor,
        description=(
            "Prometheus Operator: one PodMonitor for every Synapse process (only when the CRD exists)."
        ),
    )
    networkPolicy: NetworkPolicy = Field(
        default_factory=NetworkPolicy,
        description=(
            'NetworkPolicies (see the README, "NetworkPolicy"): every pod of the release (the '
            "Synapse\n"
            "processes, the router, MAS, pgbouncer, the admin UI) admits and reaches only what it"
            " needs.\n"
            "Inside the release the chart writes the selectors itself: Synapse's HTTP listeners "
            "take only the\n"
            "router (and MAS, for main), the replication listeners only Synapse's processes, "
            "pgbouncer only\n"
            "the processes that use it. What lies outside is named here, as NetworkPolicyPeers\n"
            "(namespaceSelector, podSelector, ipBlock). An ingress rule whose lists (*From) are "
            "all empty\n"
            "admits the pods of the release's namespace; an empty egress list (*To) allows any "
            "address on the\n"
            "rule's ports."
        ),
    )
    grafanaDashboards: GrafanaDashboards = Field(
        default_factory=GrafanaDashboards,
        description=(
            "Grafana dashboards as ConfigMaps that Grafana's dashboard sidecar loads "
            "(kube-prometheus-stack's\n"
            "grafana.sidecar.dashboards): the pools (requests, latency, events, federation, "
            "caches, database) and, with\n"
            "the router, the router's (upstream requests and health, how a pool's requests spread"
            " over its instances). The sidecar finds them by `labels`\n"
            "(its `label`/`labelValue`); `annotations` can name a folder (grafana_folder), "
            "`namespace` puts\n"
            "them where the sidecar looks (empty: the release's namespace)."
        ),
    )
    prometheusRule: SynapsePrometheusRule = Field(
        default_factory=SynapsePrometheusRule,
        description=(
            "Alert rules for the Prometheus Operator: a PrometheusRule (only when its CRD exists)"
            " for the\n"
            "Synapse processes, the router and the media volume. They read what the PodMonitors "
            "above scrape\n"
            "(Synapse's series carry their pool), kube-state-metrics (readiness) and the kubelet "
            "(volume\n"
            'stats). The README has a section per alert ("Alerts"), which each runbook_url points'
            " at."
        ),
    )
    extraConfig: dict[str, Any] = Field(
        {}, description="Merged last into homeserver.yaml, for anything else."
    )
    mas: Mas = Field(
        default_factory=Mas,
        description=(
            "Matrix Authentication Service: logins, registration and tokens move from Synapse to "
            "MAS\n"
            "(Synapse's side: matrix_authentication_service, with the shared secret from a file)."
        ),
    )
    router: Router = Field(
        default_factory=Router,
        description=(
            "The router: Envoy in front of every Synapse process, sending each request to the "
            "pool that can\n"
            "serve it (see the README's routing table; `matrix-stack route explain` answers for "
            "any request)."
        ),
    )
    adminUi: AdminUi = Field(
        default_factory=AdminUi,
        description="A web admin UI for Synapse's admin API (synapse-admin), on its own host.",
    )
    ingress: SynapseIngress = Field(
        default_factory=SynapseIngress,
        description=(
            "Ingress: one rule per host. Synapse's host is publicBaseurl's, MAS's "
            "mas.publicBaseurl's;\n"
            "wellKnownHost (default serverName) gets /.well-known/matrix when it differs."
        ),
    )
    httpRoute: SynapseHttpRoute = Field(
        default_factory=SynapseHttpRoute,
        description="Gateway API HTTPRoutes for the same hosts and paths as the Ingress.",
    )
