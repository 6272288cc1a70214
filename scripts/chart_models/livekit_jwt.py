"""The livekit-jwt chart's values: each field's type, default and comment, declared once."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from chart_models.base import Strict
from chart_models.common import (
    Autoscaling,
    CaBundle,
    Credential,
    IngressTls,
    PodDisruptionBudget,
    PodRuntimeValues,
    PodSpecValues,
    ProbedValues,
    PrometheusRule,
    ReplicatedValues,
    Service,
    ServiceHeadValues,
    ServiceMonitor,
)


class Appservice(Strict):
    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"enabled": {"const": True}}, "required": ["enabled"]},
            "then": {
                "properties": {
                    "homeserverName": {"type": "string", "minLength": 1},
                    "hsToken": {"minProperties": 1},
                },
                "required": ["homeserverName", "hsToken"],
            },
        }
    )
    enabled: bool = Field(False)
    homeserverName: str = Field(
        "",
        pattern="^([A-Za-z0-9.-]+(:[0-9]{1,5})?|\\[[0-9A-Fa-f:.]+\\](:[0-9]{1,5})?)?$",
        description="The homeserver's server name (the synapse chart's serverName), e.g. example.org.",
    )
    hsToken: Credential = Field(
        default_factory=Credential,
        description="{value: ...} stored in the chart's Secret, or {secret: NAME, secretKey: KEY}",
    )


class DelegationDatabase(Strict):
    url: Credential = Field(
        default_factory=Credential,
        description=(
            "PostgreSQL every replica shares, as a libpq URL or key=value string (it holds a "
            "password):\n"
            "{secret: NAME, secretKey: KEY} (your Secret) or {value: ...} (this chart's Secret). "
            "Unset: each\n"
            "pod keeps its jobs in its own SQLite file, safe with one replica only."
        ),
    )
    schema_: str = Field(
        "livekit_jwt",
        alias="schema",
        pattern="^[a-z_][a-z0-9_]{0,62}$",
        description="The schema for the jobs' table (made on first start, if the role may).",
    )
    leaseSeconds: float = Field(
        3,
        ge=1,
        le=60,
        description=(
            "A job's lease: a replica that dies hands its jobs over within 4/3 of it. Keep 4/3 of "
            "it under\n"
            "two thirds of the shortest delayed-leave timeout your clients delegate."
        ),
    )


class Delegation(Strict):
    enabled: bool = Field(True)
    database: DelegationDatabase = Field(default_factory=DelegationDatabase)
    sanityCheckIntervalSeconds: int = Field(
        30,
        ge=0,
        description=(
            "Every so many seconds, ask the SFU (ListParticipants) whether joined participants are "
            "still\n"
            "there, and send the leave of those gone without a webhook; 0: webhooks only."
        ),
    )


class Override(Strict):
    serverName: str = Field(pattern="^([A-Za-z0-9.-]+(:[0-9]{1,5})?|\\[[0-9A-Fa-f:.]+\\](:[0-9]{1,5})?)$")
    target: str = Field(pattern="^[A-Za-z0-9.:\\[\\]-]+:[0-9]{1,5}$")


class Federation(Strict):
    allow: list[
        Annotated[
            str,
            Field(
                pattern="^([A-Za-z0-9.-]+(:[0-9]{1,5})?|\\[[0-9A-Fa-f:.]+\\](:[0-9]{1,5})?|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*|[0-9A-Fa-f:.]+/[0-9]{1,3})$",
                description="a CIDR or a server name",
            ),
        ]
    ] = Field([], description=(" - 10.0.0.0/8\n - matrix.internal.example.org"))
    caBundle: CaBundle = Field(
        default_factory=CaBundle,
        description=(
            "Extra CA bundle for the homeservers' TLS, besides the system CAs: {secret: NAME, "
            "secretKey:\n"
            "KEY}, {configMap: NAME, configMapKey: KEY} (e.g. a trust-manager bundle) or {value: "
            "PEM}."
        ),
    )
    timeout: float = Field(10, le=60, gt=0, description="Seconds per lookup.")
    dnsServers: list[
        Annotated[
            str,
            Field(
                pattern="^([0-9.]+(:[0-9]{1,5})?|\\[[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*\\](:[0-9]{1,5})?|[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*)$",
                description="an IP address, optional port (IPv6 in brackets then)",
            ),
        ]
    ] = Field(
        [],
        description=(
            "DNS resolvers (host[:port]) for the server-name lookups; empty: the pod's (cluster DNS)."
        ),
    )
    overrides: list[Override] = Field(
        [],
        description=(
            "Homeservers reached at a fixed host:port, skipping resolution (the in-cluster one's "
            "TLS\n"
            "federation listener): {serverName: example.org, target: "
            "synapse-federation.matrix.svc:8448}.\n"
            "The target's address must still be allowed (allow: the server name)."
        ),
    )


class IngressHostName(Strict):
    host: str = Field(min_length=1)


class LivekitIngress(Strict):
    enabled: bool = Field(False)
    className: str = Field("")
    annotations: dict[str, str] = Field({})
    hosts: list[IngressHostName] = Field([], description=" - host: rtc.example.org")
    tls: list[IngressTls] = Field([])


class LivekitHttpRoute(Strict):
    enabled: bool = Field(False)
    annotations: dict[str, str] = Field({})
    parentRefs: list[dict[str, Any]] = Field([])
    hostnames: list[str] = Field([])


class NetworkPolicy(Strict):
    enabled: bool = Field(False)
    ingressFrom: list[dict[str, Any]] = Field(
        [],
        description=(
            "Your ingress controller's or Gateway's pods (the token endpoints are published "
            "through it).\n"
            " - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}"
        ),
    )
    clientsFrom: list[dict[str, Any]] = Field(
        [],
        description=(
            "In-cluster callers of the Service: Synapse in homeserver-native mode "
            "(appservice.enabled),\n"
            "the SFU.\n"
            " - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: matrix}}\n"
            "   podSelector: {matchLabels: {app.kubernetes.io/name: synapse}}"
        ),
    )
    metricsFrom: list[dict[str, Any]] = Field(
        [],
        description=(
            "Prometheus (/metrics is on 8080 too).\n"
            " - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}"
        ),
    )
    federationTo: list[dict[str, Any]] = Field(
        [],
        description=(
            "Where the homeservers are (the OpenID userinfo check). Usually the internet: leave "
            "empty, or\n"
            "e.g. [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}]."
        ),
    )
    sfuTo: list[dict[str, Any]] = Field(
        [], description="Where the SFU's API is (its port from livekitApiUrl, else livekitUrl)."
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
    databaseTo: list[dict[str, Any]] = Field(
        [],
        description=(
            "With delegation.database.url: where PostgreSQL (or its pgbouncer) is; its port is "
            "databasePort\n"
            "(the URL is a secret, so the chart does not read it from there).\n"
            " - podSelector: {matchLabels: {cnpg.io/cluster: rtc-db}}"
        ),
    )
    databasePort: int = Field(5432, ge=1, le=65535)
    extraEgress: list[dict[str, Any]] = Field([])
    federationPorts: list[Annotated[int, Field(ge=1, le=65535)]] = Field(
        [443, 8448],
        description=(
            "Their ports: 443 (.well-known delegations) and 8448 (the default); [] allows every "
            "port\n"
            "(homeservers delegated to other ports)."
        ),
        json_schema_extra={"uniqueItems": True},
    )


class LivekitJwtValues(PodSpecValues, ProbedValues, PodRuntimeValues, ReplicatedValues, ServiceHeadValues):
    """matrix-stack `livekit-jwt`: the MatrixRTC authorisation service in front of a LiveKit SFU. Matrix
    clients (Element Call) trade an OpenID token of their homeserver for a LiveKit token here.
    Every value is described in README.md; values.schema.json rejects unknown keys.
    """

    model_config = ConfigDict(json_schema_extra={"required": ["livekitUrl", "fullAccessHomeservers"]})
    component: str = Field("livekit-jwt")
    service: Service = Field(
        default_factory=Service,
        description=(
            "/get_token, /sfu/get, /delegate_delayed_leave, /sfu_webhook, /healthz, /readyz, "
            "/metrics\n"
            "(and /_matrix/client/*/rtc/livekit/* with appservice.enabled, for the homeserver)."
        ),
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
    podDisruptionBudget: PodDisruptionBudget = Field(
        default_factory=lambda: PodDisruptionBudget.model_validate({"enabled": True}),
        description="Set minAvailable or maxUnavailable (default: maxUnavailable 1).",
    )
    autoscaling: Autoscaling = Field(default_factory=Autoscaling)
    livekitUrl: str = Field(
        "",
        pattern="^wss?://[^\\s/]+",
        description=(
            "Required: the SFU's URL as clients reach it, ws:// or wss:// (e.g. wss://sfu.example.org)."
        ),
    )
    livekitApiUrl: str = Field(
        "",
        pattern="^(https?://\\S+)?$",
        description=(
            "The SFU's RoomService API (http:// or https://), when the service should not reach "
            "it through\n"
            "livekitUrl (ws→http, wss→https), e.g. http://livekit.livekit.svc:7880 inside the "
            "cluster."
        ),
    )
    livekitKey: Credential = Field(
        default_factory=Credential,
        description=(
            'The API key and secret the SFU knows (its `keys`). Each a credential: {value: "..."}'
            " (kept in\n"
            "this chart's Secret) or {secret: NAME, secretKey: KEY} (your Secret). Or "
            "livekitKeysFile: a\n"
            "LiveKit keys file (one line `key: secret`) as a credential; not together with the "
            "pair."
        ),
    )
    livekitSecret: Credential = Field(
        default_factory=Credential,
        description="{value: ...} stored in the chart's Secret, or {secret: NAME, secretKey: KEY}",
    )
    livekitKeysFile: Credential = Field(
        default_factory=Credential,
        description="{value: ...} stored in the chart's Secret, or {secret: NAME, secretKey: KEY}",
    )
    fullAccessHomeservers: list[
        Annotated[
            str, Field(pattern="^(\\*|[A-Za-z0-9.-]+(:[0-9]{1,5})?|\\[[0-9A-Fa-f:.]+\\](:[0-9]{1,5})?)$")
        ]
    ] = Field(
        [],
        min_length=1,
        description=(
            "Required, at least one: the server names whose users may create LiveKit rooms "
            "(everyone else\n"
            'may only join rooms that exist). ["*"] allows every homeserver, and only when '
            "written so.\n"
            " - example.org"
        ),
        json_schema_extra={"uniqueItems": True, "if": {"contains": {"const": "*"}}, "then": {"maxItems": 1}},
    )
    hashScheme: Literal["v0.4.3", "v0.4.1", "v0.4.0"] = Field(
        "v0.4.3",
        description=(
            "How LiveKit room names and participant identities are derived: the lk-jwt-service "
            "version whose\n"
            "clients you serve. v0.4.3 (current Element Call and matrix-js-sdk), v0.4.1 or "
            "v0.4.0. See README."
        ),
    )
    canUpdateOwnMetadata: bool = Field(
        False, description="Let participants change their own LiveKit metadata (MSC4195 recommends false)."
    )
    roomEmptyTimeout: int = Field(
        300,
        ge=0,
        description=(
            "Seconds, for the rooms this service creates on the SFU: one nobody joined closes "
            "after\n"
            "roomEmptyTimeout, one everybody left after roomDepartureTimeout. A token lives\n"
            "tokenTtlSeconds (60..86400)."
        ),
    )
    roomDepartureTimeout: int = Field(20, ge=0)
    tokenTtlSeconds: int = Field(3600, ge=60, le=86400)
    delegation: Delegation = Field(
        default_factory=Delegation,
        description=(
            "MSC4140 delegated leave (/delegate_delayed_leave, /sfu_webhook): the service keeps a "
            "client's\n"
            "delayed leave event from firing while the participant is on the SFU and sends it when "
            "they go.\n"
            "The SFU's webhooks reach any pod, so with more than one (replicaCount above 1, "
            "autoscaling)\n"
            "it needs database.url; without one it is only turned on for a single replica (NOTES "
            "say so).\n"
            "Off, clients that ask to delegate get 400 and keep their own delayed events."
        ),
    )
    appservice: Appservice = Field(
        default_factory=Appservice,
        description=(
            "Homeserver-native mode (MSC4512): the service as an application service of your "
            "homeserver,\n"
            "which authenticates its users and forwards "
            "/_matrix/client/{v*,unstable/*}/rtc/livekit/* here\n"
            "(the synapse chart's matrixRTC.appservice). hsToken is the registration's hs_token, "
            "the same\n"
            "credential the synapse chart uses ({value} or {secret, secretKey}; one Secret for "
            "both)."
        ),
    )
    federation: Federation = Field(
        default_factory=Federation,
        description=(
            "The OpenID check asks the user's homeserver (federation /openid/userinfo, port 443 "
            "or 8448).\n"
            "Private addresses are refused unless `allow` lists them (CIDRs, or server names)."
        ),
    )
    podAntiAffinity: Literal["", "soft", "hard"] = Field(
        "soft",
        description=(
            'soft: prefer one pod per node; hard: require it; "": no preference. `affinity` replaces it.'
        ),
    )
    ingress: LivekitIngress = Field(
        default_factory=LivekitIngress,
        description=(
            "Publishes only the token endpoints (/get_token, /sfu/get, /delegate_delayed_leave, "
            "Exact) at\n"
            "the root of each host; /metrics, /readyz and /sfu_webhook stay inside the cluster."
        ),
    )
    httpRoute: LivekitHttpRoute = Field(
        default_factory=LivekitHttpRoute,
        description="Gateway API (gateway.networking.k8s.io/v1): the same paths.",
    )
    networkPolicy: NetworkPolicy = Field(
        default_factory=NetworkPolicy,
        description=(
            "NetworkPolicy (see the README): ingress to 8080, egress to DNS, the homeservers and "
            "the SFU's\n"
            "API. Peers are NetworkPolicyPeers (namespaceSelector, podSelector, ipBlock). An "
            "empty ingress\n"
            "list (*From) admits the pods of the release's namespace; an empty egress list (*To) "
            "allows any\n"
            "address on the rule's ports."
        ),
    )
