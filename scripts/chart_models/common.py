"""The values parts more than one chart shares, declared once."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from chart_models.base import OMIT, Strict


class Image(Strict):
    registry: str = Field(OMIT)
    repository: str = Field(min_length=1)
    tag: str = Field(
        OMIT, description="Defaults to the chart's appVersion. A digest, when set, wins over the tag."
    )
    digest: str = Field("", pattern="^(sha256:[a-f0-9]{64})?$")
    pullPolicy: Literal["Always", "IfNotPresent", "Never"] = Field("IfNotPresent")


class ImagePullSecret(Strict):
    name: str = Field(OMIT)


class ServiceAccount(Strict):
    create: bool = Field(True)
    name: str = Field("")
    annotations: dict[str, str] = Field({})


class Credential(Strict):
    """{value: ...} stored in the chart's Secret, or {secret: NAME, secretKey: KEY}."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {
                    "required": ["value"],
                    "not": {"anyOf": [{"required": ["secret"]}, {"required": ["secretKey"]}]},
                },
                {"required": ["secret", "secretKey"], "not": {"required": ["value"]}},
                {"maxProperties": 0},
            ]
        }
    )
    value: str = Field(OMIT, min_length=1)
    secret: str = Field(OMIT, min_length=1)
    secretKey: str = Field(OMIT, min_length=1)


class CaBundle(Strict):
    """{secret, secretKey}, {configMap, configMapKey} or {value: PEM}; default: system CAs"""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["value"], "maxProperties": 1},
                {"required": ["secret", "secretKey"], "maxProperties": 2},
                {"required": ["configMap", "configMapKey"], "maxProperties": 2},
                {"maxProperties": 0},
            ]
        }
    )
    value: str = Field(OMIT, min_length=1)
    secret: str = Field(OMIT, min_length=1)
    secretKey: str = Field(OMIT, min_length=1)
    configMap: str = Field(OMIT, min_length=1)
    configMapKey: str = Field(OMIT, min_length=1)


class Probe(Strict):
    initialDelaySeconds: int = Field(OMIT, ge=0)
    periodSeconds: int = Field(OMIT, ge=0)
    timeoutSeconds: int = Field(OMIT, ge=0)
    failureThreshold: int = Field(OMIT, ge=0)
    successThreshold: int = Field(OMIT, ge=0)


class Probes(Strict):
    startup: Probe = Field(
        default_factory=lambda: Probe.model_validate(
            {"periodSeconds": 2, "failureThreshold": 30, "timeoutSeconds": 2}
        )
    )
    liveness: Probe = Field(
        default_factory=lambda: Probe.model_validate(
            {"periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 2}
        )
    )
    readiness: Probe = Field(OMIT)


class ServiceMonitor(Strict):
    enabled: bool = Field(False)
    interval: str = Field("30s")
    scrapeTimeout: str = Field("10s")
    labels: dict[str, str] = Field({})


class PrometheusRule(Strict):
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
            "README's path in the repository, charts/<chart>/README.md."
        ),
    )
    selector: str = Field(
        "",
        description=(
            "PromQL label matchers selecting the service's series; empty: the ServiceMonitor's "
            "job in the\n"
            'release\'s namespace (namespace="<namespace>", job="<fullname>").'
        ),
    )


class PodDisruptionBudget(Strict):
    enabled: bool = Field(OMIT)
    minAvailable: int | str | None = Field(None)
    maxUnavailable: int | str | None = Field(None)


class Autoscaling(Strict):
    enabled: bool = Field(False)
    minReplicas: int = Field(2, ge=1)
    maxReplicas: int = Field(6, ge=1)
    targetCPUUtilizationPercentage: Annotated[int, Field(ge=1)] | None = Field(75)
    targetMemoryUtilizationPercentage: Annotated[int, Field(ge=1)] | None = Field(None)


class Switch(Strict):
    enabled: bool = Field(OMIT)


class Service(Strict):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field("ClusterIP")
    port: int = Field(8080, ge=1, le=65535)
    annotations: dict[str, str] = Field({})


class IngressTls(Strict):
    secretName: str = Field(OMIT)
    hosts: list[str] = Field(OMIT)


class MatrixBot(Strict):
    homeserver: str = Field(
        "", pattern="^(https?://.+)?$", description="Client API base URL of the homeserver."
    )
    userId: str = Field(
        "", pattern="^(@[^:]+:.+)?$", description='Full user id of the bot, e.g. "@alerts:example.org".'
    )
    accessToken: Credential = Field(
        default_factory=Credential,
        description=(
            'A credential is {value: "..."} (kept in this chart\'s Secret) or {secret: NAME, secretKey: KEY}.'
        ),
    )
    password: Credential = Field(
        default_factory=Credential,
        description=(
            "Used only without an access token: logs in once and keeps the token on the data "
            "volume\n"
            "(with outbox.postgres: in PostgreSQL, one device for every replica)."
        ),
    )
    inviteAllowlist: list[str] = Field([], description="Users or servers whose room invites the bot accepts.")


class Persistence(Strict):
    enabled: bool = Field(
        True,
        description=(
            "On a PersistentVolumeClaim (the chart's, or existingClaim): what the pod accepted "
            "survives its\n"
            "deletion. The Deployment then uses the Recreate strategy."
        ),
    )
    acceptDataLoss: bool = Field(
        False,
        description=(
            "Needed with enabled: false, which puts the data on an emptyDir: a pod that goes away"
            " loses the\n"
            "messages it accepted and had not delivered, and the thread/edit roots. Without it, "
            "false fails."
        ),
    )
    existingClaim: str = Field(
        "",
        description=(
            'Your own claim (templates allowed, e.g. "{{ .Release.Name }}-data"); the chart then makes none.'
        ),
    )
    storageClass: str = Field(
        "", description="Of the chart's claim. storageClass empty: the cluster's default."
    )
    accessModes: list[Literal["ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany"]] = Field(
        ["ReadWriteOnce"], min_length=1, json_schema_extra={"uniqueItems": True}
    )
    size: str = Field("1Gi", pattern="^[0-9]+(\\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$")
    annotations: dict[str, str] = Field(
        {},
        description=(
            "On the chart's claim, which also gets helm.sh/resource-policy: keep (uninstall "
            "leaves it and\n"
            'the undelivered messages) unless set here: "" deletes the claim on uninstall.'
        ),
    )


class OutboxPostgres(Strict):
    enabled: bool = Field(
        False,
        description=(
            "In PostgreSQL, shared by every replica: replicaCount above 1, autoscaling and any "
            "PDB are\n"
            "allowed; persistence is not used (the data directory is an emptyDir and holds "
            "nothing\n"
            "durable) and the Deployment rolls (RollingUpdate)."
        ),
    )
    url: Credential = Field(
        default_factory=Credential,
        description=(
            "Required when enabled: a libpq URL "
            "(postgresql://user:pass@host:5432/db?sslmode=verify-full)\n"
            "or key=value string (host=... dbname=...), as a credential: {secret: NAME, "
            "secretKey: KEY}\n"
            "(your Secret, e.g. the `uri` key of a CloudNativePG app Secret: the password belongs\n"
            'there) or {value: "..."} (kept in this chart\'s Secret). Mounted as a file\n'
            "(ALERTMANAGER_RECEIVER_OUTBOX_URL_FILE).\n"
            "Point it at PostgreSQL directly or at pgbouncer in session mode: LISTEN/NOTIFY and "
            "advisory\n"
            "locks do not work through transaction pooling. The service creates its schema and "
            "tables on\n"
            "first start: the role needs CREATE on the database, or a schema it owns made "
            "beforehand."
        ),
    )
    schema_: str = Field(
        "",
        alias="schema",
        pattern="^([a-z_][a-z0-9_]{0,62})?$",
        description=(
            "The schema of this deployment's tables, one per deployment (two releases on one "
            "database\n"
            "need two): lower-case letters, digits and _, at most 63. Empty: "
            "alertmanager_receiver."
        ),
    )
    leaseSeconds: float = Field(
        10,
        ge=2,
        le=300,
        description=(
            "A room's sender lease: one replica sends to a room at a time; a dead replica's rooms"
            " are\n"
            "taken over within about 4/3 of it (2 to 300 seconds)."
        ),
    )
    poolSize: int = Field(4, ge=2, le=100, description="Connections per replica (2 to 100).")


class EncryptionKey(Credential):
    """A credential whose value is at least 16 bytes, as the service requires of the key."""

    value: str = Field(OMIT, min_length=16)


class Encryption(Strict):
    """End-to-end encryption: the service's ENCRYPTION, ENCRYPTION_KEY(_FILE), KEY_SHARING(_ALLOWLIST)."""

    model_config = ConfigDict(
        json_schema_extra={
            "if": {"properties": {"keySharing": {"const": "allowlist"}}, "required": ["keySharing"]},
            "then": {
                "properties": {"keySharingAllowlist": {"minItems": 1}},
                "required": ["keySharingAllowlist"],
            },
        }
    )
    enabled: bool = Field(
        True,
        description=(
            "Encrypt in the rooms that have encryption on. Off: such rooms get nothing (their "
            "messages stay\n"
            "in the outbox, never sent in plaintext)."
        ),
    )
    key: EncryptionKey = Field(
        default_factory=EncryptionKey,
        description=(
            "The secret (at least 16 bytes) the bot's crypto state at rest and its cross-signing "
            "keys derive\n"
            "from, a credential: {secret: NAME, secretKey: KEY} or {value: ...}. Empty: on the "
            "chart's claim\n"
            "(SQLite), a file the service makes there on first start; without a claim "
            "(outbox.postgres,\n"
            "or an emptyDir), a random key the chart makes in the Secret <fullname>-encryption-key, "
            "reused\n"
            "on upgrade and kept on uninstall (helm.sh/resource-policy: keep). Every replica uses "
            "the same.\n"
            "Changing it loses the crypto state (the bot needs a new device) and its "
            "cross-signing identity."
        ),
    )
    keySharing: Literal["members", "cross-signed", "allowlist"] = Field(
        "members",
        description=(
            "Whose devices get the room keys: every device of the room's members (members), "
            "only devices\n"
            "their owner cross-signed (cross-signed), or the devices of keySharingAllowlist "
            "(allowlist)."
        ),
    )
    keySharingAllowlist: list[Annotated[str, Field(min_length=1)]] = Field(
        [],
        description=(
            'Users ("@alice:example.org") or servers ("example.org") whose devices get room '
            "keys; required\n"
            "with keySharing: allowlist."
        ),
    )


class Outbox(Strict):
    postgres: OutboxPostgres = Field(default_factory=OutboxPostgres)


class IngressPath(Strict):
    path: str = Field(pattern="^/")
    pathType: Literal["Prefix", "Exact", "ImplementationSpecific"] = Field(OMIT)


class IngressHost(Strict):
    host: str = Field()
    paths: list[IngressPath] = Field(OMIT)


class Ingress(Strict):
    enabled: bool = Field(False)
    className: str = Field("")
    annotations: dict[str, str] = Field({})
    hosts: list[IngressHost] = Field(
        [], description=(" - host: alerts.example.org\n   paths: [{path: /alerts, pathType: Prefix}]")
    )
    tls: list[IngressTls] = Field([])


class HttpRoute(Strict):
    enabled: bool = Field(False)
    annotations: dict[str, str] = Field({})
    parentRefs: list[dict[str, Any]] = Field([])
    hostnames: list[str] = Field([])
    paths: list[Annotated[str, Field(pattern="^/")]] = Field(OMIT)


class GrafanaDashboards(Strict):
    enabled: bool = Field(False)
    namespace: str = Field("")
    labels: dict[str, str] = Field({"grafana_dashboard": "1"})
    annotations: dict[str, str] = Field({})


class BridgeNetworkPolicy(Strict):
    enabled: bool = Field(False)
    ingressFrom: list[dict[str, Any]] = Field(
        [],
        description=(
            "Your ingress controller's or Gateway's pods (external senders come through it).\n"
            " - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}"
        ),
    )
    clientsFrom: list[dict[str, Any]] = Field(
        [],
        description=(
            "In-cluster senders posting to the Service directly: Alertmanager.\n"
            " - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}\n"
            "   podSelector: {matchLabels: {app.kubernetes.io/name: alertmanager}}"
        ),
    )
    metricsFrom: list[dict[str, Any]] = Field(
        [],
        description=(
            "Prometheus (/metrics).\n"
            " - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}"
        ),
    )
    homeserverTo: list[dict[str, Any]] = Field(
        [],
        description=(
            "Where the homeserver is, on matrix.homeserver's port (443 for https, 80 for http, or"
            " the\n"
            "URL's). In the cluster, e.g. the synapse chart's router: [{namespaceSelector: "
            "{matchLabels:\n"
            "{kubernetes.io/metadata.name: matrix}}, podSelector: {matchLabels: "
            "{app.kubernetes.io/component:\n"
            "router}}}] (the pods' port must be the URL's: a Service mapping another port needs "
            "extraEgress)."
        ),
    )
    databaseTo: list[dict[str, Any]] = Field(
        [],
        description=(
            "With outbox.postgres: where PostgreSQL (or its pgbouncer) is, and its port (the URL "
            "is a\n"
            "secret, so the chart does not read it from there).\n"
            " - podSelector: {matchLabels: {cnpg.io/cluster: outbox-db}}"
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
    extraIngress: list[dict[str, Any]] = Field([], description="More rules, as Kubernetes spells them.")
    extraEgress: list[dict[str, Any]] = Field([])
    databasePort: int = Field(5432, ge=1, le=65535)


# The pod-level values every service chart has, declared once. A chart's model inherits the groups it
# takes (a CronJob has no probes), most specific first, e.g. `class X(PodSpecValues, ProbedValues,
# PodRuntimeValues, ServiceHeadValues)`: pydantic orders fields from the last base to the first, and
# values.yaml follows that order. A chart redeclares a field only where its default differs; a
# redeclared field keeps its place.


class ServiceHeadValues(Strict):
    """Naming, the image and the process's environment: the head of every service chart's values."""

    nameOverride: str = Field("")
    fullnameOverride: str = Field("")
    commonLabels: dict[str, str] = Field({})
    component: str = Field(OMIT)  # each chart sets its own
    global_: dict[str, Any] = Field(OMIT, alias="global")
    matrix_stack_lib: dict[str, Any] = Field(OMIT, alias="matrix-stack-lib")
    image: Image = Field(
        default_factory=lambda: Image.model_validate(
            {"registry": "ghcr.io", "repository": "matrix-stack/matrix-stack", "tag": ""}
        )
    )
    imagePullSecrets: list[ImagePullSecret] = Field([])
    logLevel: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field("INFO")
    extraEnv: list[dict[str, Any]] = Field([])


class ReplicatedValues(Strict):
    """A Deployment's replica count, between the head and the runtime values."""

    replicaCount: int = Field(2, ge=0)


class PodRuntimeValues(Strict):
    """How long a pod may take to stop and what it may use."""

    terminationGracePeriodSeconds: int = Field(30, ge=0)
    resources: dict[str, Any] = Field(
        {"requests": {"cpu": "20m", "memory": "96Mi"}, "limits": {"memory": "256Mi"}}
    )


class ProbedValues(Strict):
    """A long-running server's probes (a Job's pods have none)."""

    probes: Probes = Field(
        default_factory=lambda: Probes.model_validate(
            {"readiness": {"periodSeconds": 5, "failureThreshold": 2, "timeoutSeconds": 4}}
        )
    )


class PodSpecValues(Strict):
    """Security contexts, the service account, pod metadata, scheduling and extra volumes."""

    podSecurityContext: dict[str, Any] = Field(
        {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
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
