"""The ldap chart's values: each field's type, default and comment, declared once."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from chart_models.base import OMIT, Strict
from chart_models.common import (
    Autoscaling,
    CaBundle,
    Credential,
    PodDisruptionBudget,
    PodRuntimeValues,
    PodSpecValues,
    ProbedValues,
    Probes,
    PrometheusRule,
    ReplicatedValues,
    ServiceHeadValues,
    ServiceMonitor,
    Switch,
)


class Ports(Strict):
    ldap: int = Field(389, ge=1, le=65535)
    ldaps: int = Field(636, ge=1, le=65535, description="Only with tls.ldaps.enabled.")
    http: int = Field(8080, ge=1, le=65535, description="/healthz, /readyz, /metrics, /backends.")


class LdapService(Strict):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field("ClusterIP")
    annotations: dict[str, str] = Field({})
    loadBalancerSourceRanges: list[str] = Field(
        [], description="With type LoadBalancer: the client networks allowed."
    )
    ports: Ports = Field(default_factory=Ports)


class Backend(Strict):
    name: str = Field(pattern="^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    host: str = Field(min_length=1)
    port: int = Field(OMIT, ge=1, le=65535)
    tls: Literal["none", "starttls", "ldaps"] = Field(OMIT)
    ca: CaBundle = Field(
        OMIT,
        description="{secret, secretKey}, {configMap, configMapKey} or {value: PEM}; default: system CAs",
    )
    serverName: str = Field(OMIT)
    verify: bool = Field(OMIT)
    weight: int = Field(OMIT, ge=1, le=256)
    backup: bool = Field(OMIT)
    maxConnections: int = Field(OMIT, ge=0)
    proxyProtocol: bool = Field(OMIT)


class HealthCheck(Strict):
    type: Literal["anonymous_bind", "bind", "rootdse"] = Field(
        "anonymous_bind",
        description=(
            "anonymous_bind, bind (the check account: proves the directory can authenticate) or rootdse."
        ),
    )
    interval: float = Field(5, le=3600, gt=0)
    timeout: float = Field(2, le=60, gt=0)
    rise: int = Field(2, ge=1, le=100)
    fall: int = Field(2, ge=1, le=100)
    bindDN: str = Field(
        "",
        description=(
            'The check account, for type bind. The password is a credential: {value: "..."} (kept'
            " in\n"
            "this chart's Secret) or {secret: NAME, secretKey: KEY}."
        ),
    )
    password: Credential = Field(
        default_factory=Credential,
        description="{value: ...} stored in the chart's Secret, or {secret: NAME, secretKey: KEY}",
    )


class Tls(Strict):
    existingSecret: str = Field("", description="a kubernetes.io/tls Secret (tls.crt, tls.key)")
    starttls: Literal["", "terminate", "passthrough", "off"] = Field(
        "",
        description=(
            "terminate (needs the certificate), passthrough (the client's StartTLS goes end to "
            "end to the\n"
            "backend, which then must use tls: none; past every check of the proxy, so it needs\n"
            "readOnly: false) or off (StartTLS refused). Empty: terminate with a certificate, "
            "else off."
        ),
    )
    ldaps: Switch = Field(default_factory=lambda: Switch.model_validate({"enabled": False}))


class Timeouts(Strict):
    connect: float = Field(3, le=60, gt=0)
    idle: float = Field(120, le=86400, gt=0)
    response: float = Field(30, le=3600, gt=0)


class UpstreamPool(Strict):
    size: int = Field(32, ge=0, le=10000)
    idleSeconds: float = Field(20, le=3600, gt=0)


class BindFailureLimit(Strict):
    limit: int = Field(0, ge=0)
    window: float = Field(300, gt=0)


class NetworkPolicy(Strict):
    enabled: bool = Field(False)
    ldapFrom: list[dict[str, Any]] = Field(
        [],
        description=(
            "LDAP clients (Synapse's ldap3 provider, MAS's upstream, Dex...).\n"
            " - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: matrix}}"
        ),
    )
    metricsFrom: list[dict[str, Any]] = Field(
        [],
        description=(
            "Prometheus (metrics and /backends on the http port).\n"
            " - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}"
        ),
    )
    backendsTo: list[dict[str, Any]] = Field(
        [], description="Where the backends are (e.g. ipBlock of the directory servers)."
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
    extraIngress: list[dict[str, Any]] = Field([], description="More rules, as Kubernetes spells them.")
    extraEgress: list[dict[str, Any]] = Field([])


class LdapValues(PodSpecValues, ProbedValues, PodRuntimeValues, ReplicatedValues, ServiceHeadValues):
    """matrix-stack `ldap-proxy`: one highly available LDAP endpoint in front of your directory servers.
    Every value is described in README.md; values.schema.json rejects unknown keys.
    """

    component: str = Field("ldap-proxy")
    resources: dict[str, Any] = Field(
        {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"memory": "192Mi"}}
    )
    probes: Probes = Field(
        default_factory=lambda: Probes.model_validate(
            {"readiness": {"periodSeconds": 5, "failureThreshold": 2, "timeoutSeconds": 2}}
        )
    )
    service: LdapService = Field(default_factory=LdapService)
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
    podDisruptionBudget: PodDisruptionBudget = Field(
        default_factory=lambda: PodDisruptionBudget.model_validate({"enabled": True}),
        description="Set minAvailable or maxUnavailable (default: maxUnavailable 1).",
    )
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    backends: list[Backend] = Field(
        [],
        description=(
            "The directory servers (at least one). `name` is unique (logs, metrics, /backends); "
            "`port`\n"
            "defaults to 636 with `tls: ldaps`, else 389. `ca` verifies the backend's certificate"
            " (default:\n"
            "the system CAs): {secret: NAME, secretKey: KEY}, {configMap: NAME, configMapKey: "
            "KEY} (e.g. a\n"
            "trust-manager bundle) or {value: PEM}.\n"
            " - name: dc1\n"
            "   host: ldap-1.example.org\n"
            "   port: 389\n"
            "   tls: starttls          # none | starttls | ldaps\n"
            "   ca: {configMap: directory-ca, configMapKey: ca.crt}\n"
            '   serverName: ""         # name to verify and send as SNI; default host\n'
            "   verify: true\n"
            "   weight: 1              # round_robin / least_conn\n"
            "   backup: false          # used only while no other backend is up\n"
            "   maxConnections: 0      # 0: only the global limit\n"
            "   proxyProtocol: false   # send a PROXY protocol v2 header"
        ),
    )
    balance: Literal["first", "round_robin", "least_conn"] = Field(
        "first",
        description=(
            "first (every connection to the first healthy backend: binds land where a password "
            "was just\n"
            "written), round_robin or least_conn."
        ),
    )
    healthCheck: HealthCheck = Field(default_factory=HealthCheck)
    tls: Tls = Field(
        default_factory=Tls,
        description=(
            "The proxy's own certificate, for StartTLS termination and LDAPS: a Secret of type\n"
            "kubernetes.io/tls (tls.crt, tls.key), e.g. the one a cert-manager Certificate "
            "writes."
        ),
    )
    requireTLS: bool = Field(
        False, description="Refuse password binds on connections that are not encrypted."
    )
    readOnly: bool = Field(
        True, description="Refuse write operations: an authentication proxy only binds and searches."
    )
    allowedExtendedOps: list[Annotated[str, Field(pattern="^[0-9]+(\\.[0-9]+)+$")]] | None = Field(
        None, description="Extended operations let through (OIDs). null: StartTLS and WhoAmI."
    )
    timeouts: Timeouts = Field(
        default_factory=Timeouts,
        description=(
            "Seconds: connecting to a backend; an idle client connection; a request the backend "
            "has not\n"
            "begun to answer."
        ),
    )
    maxConnections: int = Field(1000, ge=1, description="Client connections per pod.")
    maxPduBytes: int = Field(65536, ge=1024)
    upstreamPool: UpstreamPool = Field(
        default_factory=UpstreamPool,
        description=(
            "Idle backend connections kept per backend and reused by client sessions that open "
            "with a bind\n"
            "(the bind resets the connection's identity); never with proxyProtocol. size 0: a new"
            " backend\n"
            "connection per client."
        ),
    )
    bindFailureLimit: BindFailureLimit = Field(
        default_factory=BindFailureLimit,
        description="Failed binds allowed per DN per window (seconds); 0: off.",
    )
    auditBinds: bool = Field(True)
    workers: int | None = Field(
        None,
        ge=1,
        le=64,
        description=(
            "Processes serving LDAP in each pod, on the same ports (see the README). null: 2 (1 with\n"
            "bindFailureLimit, which counts a DN's failures in one process). Each is ~40 MiB more."
        ),
    )
    podAntiAffinity: Literal["", "soft", "hard"] = Field(
        "soft",
        description=(
            'soft: prefer one pod per node; hard: require it; "": no preference. `affinity` replaces it.'
        ),
    )
    networkPolicy: NetworkPolicy = Field(
        default_factory=NetworkPolicy,
        description=(
            "NetworkPolicy (see the README): ingress to the LDAP ports and the http port, egress "
            "to DNS and\n"
            "the backends' ports. Peers are NetworkPolicyPeers (namespaceSelector, podSelector, "
            "ipBlock). An\n"
            "empty ingress list (*From) admits the pods of the release's namespace (a podSelector"
            " {}); an\n"
            "empty egress list (*To) allows any address on the rule's ports."
        ),
    )
