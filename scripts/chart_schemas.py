"""Write (or, with --check, verify) every chart's values.schema.json.

The parts every service chart shares are defined once here; each chart adds its own, and which
shared parts it has follows from its service's kind in `matrix_stack/services/catalog.py`. Every object
gets `additionalProperties: false`, so a typo in values fails `helm lint`/`install` at once.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from matrix_stack.services.catalog import SERVICES, Kind, charts

CHARTS = Path(__file__).resolve().parent.parent / "charts"

Schema = dict[str, Any]


def obj(properties: dict[str, Schema], required: list[str] | None = None, **extra: Any) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False, **extra}
    if required:
        schema["required"] = required
    return schema


def string(**extra: Any) -> Schema:
    return {"type": "string", **extra}


def free_map() -> Schema:
    """A map passed through to Kubernetes as is (labels, annotations, affinity...)."""
    return {"type": "object"}


def string_map() -> Schema:
    return {"type": "object", "additionalProperties": {"type": "string"}}


def array(items: Schema | None = None) -> Schema:
    return {"type": "array", "items": items or {}}


BOOL: Schema = {"type": "boolean"}
INT: Schema = {"type": "integer"}
NULLABLE_INT_OR_PERCENT: Schema = {"type": ["integer", "string", "null"]}

CREDENTIAL: Schema = {
    "description": "{value: ...} stored in the chart's Secret, or {secret: NAME, secretKey: KEY}",
    "type": "object",
    "properties": {
        "value": string(minLength=1),
        "secret": string(minLength=1),
        "secretKey": string(minLength=1),
    },
    "additionalProperties": False,
    "oneOf": [
        {"required": ["value"], "not": {"anyOf": [{"required": ["secret"]}, {"required": ["secretKey"]}]}},
        {"required": ["secret", "secretKey"], "not": {"required": ["value"]}},
        {"maxProperties": 0},
    ],
}

PROBE_FIELDS = (
    "initialDelaySeconds",
    "periodSeconds",
    "timeoutSeconds",
    "failureThreshold",
    "successThreshold",
)
PROBE = obj({field: {"type": "integer", "minimum": 0} for field in PROBE_FIELDS})

IMAGE = obj(
    {
        "registry": string(),
        "repository": string(minLength=1),
        "tag": string(),
        "digest": string(pattern=r"^(sha256:[a-f0-9]{64})?$"),
        "pullPolicy": string(enum=["Always", "IfNotPresent", "Never"]),
    },
    ["repository"],
)

# What every chart's templates read for names and labels (the library's helpers).
NAMING: dict[str, Schema] = {
    "nameOverride": string(),
    "fullnameOverride": string(),
    "commonLabels": string_map(),
    "component": string(),
    "global": free_map(),
    "matrix-stack-lib": free_map(),
}


def ingress(*, paths: bool = True) -> Schema:
    """The library's Ingress (`msl.ingress`). With paths false the chart fixes the paths (`msl.ingress`
    called with a "paths" list) and a host is only its name."""
    host: dict[str, Schema] = {"host": string() if paths else string(minLength=1)}
    if paths:
        path_type = string(enum=["Prefix", "Exact", "ImplementationSpecific"])
        host["paths"] = array(obj({"path": string(pattern="^/"), "pathType": path_type}, ["path"]))
    return obj(
        {
            "enabled": BOOL,
            "className": string(),
            "annotations": string_map(),
            "hosts": array(obj(host, ["host"])),
            "tls": array(obj({"secretName": string(), "hosts": array(string())})),
        }
    )


def http_route(*, paths: bool = True) -> Schema:
    """The library's HTTPRoute (`msl.httpRoute`); with paths false the chart fixes the paths."""
    properties: dict[str, Schema] = {
        "enabled": BOOL,
        "annotations": string_map(),
        "parentRefs": array(free_map()),
        "hostnames": array(string()),
    }
    if paths:
        properties["paths"] = array(string(pattern="^/"))
    return obj(properties)


# A bridge's data directory (the library's msl.pvc, msl.singleWriter.check): a claim, or an emptyDir
# only with acceptDataLoss (or the outbox on PostgreSQL). The templates, not the schema, refuse what
# one pod cannot do (several replicas, an HPA), so the operator reads why.
PERSISTENCE = obj(
    {
        "enabled": BOOL,
        "acceptDataLoss": {**BOOL, "description": "with enabled false: an emptyDir, lost with the pod"},
        "existingClaim": string(description="your claim (templates allowed); the chart then makes none"),
        "storageClass": string(),
        "accessModes": {
            **array(string(enum=["ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany"])),
            "minItems": 1,
            "uniqueItems": True,
        },
        "size": string(pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$"),
        "annotations": string_map(),
    }
)

# A bridge's outbox, relation roots and session in PostgreSQL (the library's msl.outboxPostgres),
# shared by any number of replicas. The templates, not the schema, require url when enabled.
OUTBOX = obj(
    {
        "postgres": obj(
            {
                "enabled": BOOL,
                "url": {
                    **CREDENTIAL,
                    "description": "a libpq URL or key=value string: " + CREDENTIAL["description"],
                },
                "schema": string(
                    pattern=r"^([a-z_][a-z0-9_]{0,62})?$", description="empty: the service's name"
                ),
                "leaseSeconds": {"type": "number", "minimum": 2, "maximum": 300},
                "poolSize": {"type": "integer", "minimum": 2, "maximum": 100},
            }
        )
    }
)

# Alert rules (the library's msl.prometheusRule); each chart adds how its series are selected.
PROMETHEUS_RULE: dict[str, Schema] = {
    "enabled": BOOL,
    "namespace": string(),
    "additionalLabels": string_map(),
    "runbookBaseUrl": string(description="runbook_url is this plus #<alert name in lower case>"),
}

# Grafana dashboards as ConfigMaps for Grafana's sidecar (the library's msl.dashboardConfigMap).
GRAFANA_DASHBOARDS = obj(
    {"enabled": BOOL, "namespace": string(), "labels": string_map(), "annotations": string_map()}
)

# NetworkPolicy values (the library's msl.networkPolicy): the switch, where DNS is, extra rules, and
# each chart's peer lists (NetworkPolicyPeers, passed through), the same name for the same peer in
# every chart (ingressFrom, clientsFrom, metricsFrom, databaseTo...).
PEERS = array(free_map())
PORTS: Schema = {**array({"type": "integer", "minimum": 1, "maximum": 65535}), "uniqueItems": True}


def network_policy(peers: list[str], *, ingress: bool = True, **extra: Schema) -> Schema:
    properties: dict[str, Schema] = {"enabled": BOOL, **{name: PEERS for name in peers}, "dnsTo": PEERS}
    if ingress:
        properties["extraIngress"] = array(free_map())
    return obj({**properties, "extraEgress": array(free_map()), **extra})


# A bridge's policy (msl.networkPolicy.bridge).
BRIDGE_NETWORK_POLICY = network_policy(
    ["ingressFrom", "clientsFrom", "metricsFrom", "homeserverTo", "databaseTo"],
    databasePort={"type": "integer", "minimum": 1, "maximum": 65535},
)

# What only a Matrix bridge chart has (msl.deployment's default): the bot account, the outbox's
# volume or database, and HTTP exposure through an Ingress or HTTPRoute.
BRIDGE_ONLY = (
    "matrix",
    "persistence",
    "outbox",
    "ingress",
    "httpRoute",
    "networkPolicy",
    "grafanaDashboards",
)


@dataclass(frozen=True)
class Own:
    """A service chart's own values, and those of them that must be given."""

    values: dict[str, Schema]
    required: list[str] | None = None


def service_chart(
    specific: dict[str, Schema], *, bridge: bool = True, required: list[str] | None = None
) -> Schema:
    """Values every service chart has (the library's contract), plus the chart's own, of which
    `required` must be given. A chart that is not a bridge (`msl.deployment` with bridge false) has
    the rest; its `service` is its own, and so are its `ingress` and `httpRoute` if it has them."""
    common: dict[str, Schema] = {
        **NAMING,
        "image": IMAGE,
        "imagePullSecrets": array(obj({"name": string()})),
        "matrix": obj(
            {
                "homeserver": string(pattern=r"^(https?://.+)?$"),
                "userId": string(pattern=r"^(@[^:]+:.+)?$"),
                "accessToken": CREDENTIAL,
                "password": CREDENTIAL,
                "inviteAllowlist": array(string()),
            }
        ),
        "logLevel": string(enum=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
        "extraEnv": array(free_map()),
        "replicaCount": {"type": "integer", "minimum": 0},
        "terminationGracePeriodSeconds": {"type": "integer", "minimum": 0},
        "persistence": PERSISTENCE,
        "outbox": OUTBOX,
        "resources": free_map(),
        "probes": obj({"startup": PROBE, "liveness": PROBE, "readiness": PROBE}),
        "podSecurityContext": free_map(),
        "containerSecurityContext": free_map(),
        "serviceAccount": obj({"create": BOOL, "name": string(), "annotations": string_map()}),
        "podAnnotations": string_map(),
        "podLabels": string_map(),
        "priorityClassName": string(),
        "nodeSelector": string_map(),
        "tolerations": array(free_map()),
        "affinity": free_map(),
        "topologySpreadConstraints": array(free_map()),
        "extraVolumes": array(free_map()),
        "extraVolumeMounts": array(free_map()),
        "service": obj(
            {
                "type": string(enum=["ClusterIP", "NodePort", "LoadBalancer"]),
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "annotations": string_map(),
            }
        ),
        "ingress": ingress(),
        "httpRoute": http_route(),
        "serviceMonitor": obj(
            {"enabled": BOOL, "interval": string(), "scrapeTimeout": string(), "labels": string_map()}
        ),
        "prometheusRule": obj({**PROMETHEUS_RULE, "selector": string()}),
        "grafanaDashboards": GRAFANA_DASHBOARDS,
        "networkPolicy": BRIDGE_NETWORK_POLICY,
        "podDisruptionBudget": obj(
            {
                "enabled": BOOL,
                "minAvailable": NULLABLE_INT_OR_PERCENT,
                "maxUnavailable": NULLABLE_INT_OR_PERCENT,
            }
        ),
        "autoscaling": obj(
            {
                "enabled": BOOL,
                "minReplicas": {"type": "integer", "minimum": 1},
                "maxReplicas": {"type": "integer", "minimum": 1},
                "targetCPUUtilizationPercentage": {"type": ["integer", "null"], "minimum": 1},
                "targetMemoryUtilizationPercentage": {"type": ["integer", "null"], "minimum": 1},
            }
        ),
    }
    if not bridge:
        common = {key: schema for key, schema in common.items() if key not in BRIDGE_ONLY}
    return {"$schema": "https://json-schema.org/draft-07/schema#", **obj({**common, **specific}, required)}


HOOK = obj(
    {
        "id": string(pattern=r"^[A-Za-z0-9_-]{22,128}$", description="secret; `slack-webhook new-hook-id`"),
        "room": string(pattern=r"^[!#].+"),
        "name": string(),
        "msgtype": string(enum=["m.notice", "m.text"]),
        "displayName": string(),
        "bearerToken": string(),
        "rateLimit": {"type": "number", "exclusiveMinimum": 0},
        "burst": {"type": "integer", "minimum": 1},
        "roomMentions": BOOL,
        "users": string_map(),
    },
    ["id", "room"],
)

ROOM = string(pattern=r"^[!#].+")
LEVELS = ["fatal", "error", "warning", "info", "debug", "sample"]

# The synapse chart's pool kinds: its own table, in its order (the templates read the same file).
POOL_KINDS = list(yaml.safe_load((CHARTS / "synapse" / "files" / "kinds.yaml").read_text()))

# A PostgreSQL connection (Synapse's and MAS's databases).
POSTGRES = obj(
    {
        "host": string(),
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "database": string(),
        "user": string(),
        "sslmode": string(enum=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
        "password": CREDENTIAL,
    }
)

# An HPA on CPU (the synapse chart's pools and router).
CPU_AUTOSCALING = obj(
    {
        "enabled": BOOL,
        "minReplicas": {"type": "integer", "minimum": 1},
        "maxReplicas": {"type": "integer", "minimum": 1},
        "targetCPUUtilizationPercentage": {"type": "integer", "minimum": 1},
    }
)

# Pod scheduling fields, chart-wide and per pool (a pool's own replace the chart-wide ones).
SCHEDULING: dict[str, Schema] = {
    "nodeSelector": string_map(),
    "tolerations": array(free_map()),
    "affinity": free_map(),
    "topologySpreadConstraints": array(free_map()),
    "priorityClassName": string(),
    "podAnnotations": string_map(),
}

# What a Matrix user localpart may hold (a registration's sender_localpart must not need URL encoding).
LOCALPART = string(pattern=r"^[a-z0-9._=/+-]+$")


def required_when_enabled(schema: Schema, fields: dict[str, Schema]) -> Schema:
    """`schema` (an object with `enabled`) that, when enabled, requires each of `fields` as given."""
    return {
        **schema,
        "if": {"properties": {"enabled": {"const": True}}, "required": ["enabled"]},
        "then": {"properties": fields, "required": list(fields)},
    }


# The synapse chart's MSC4512 registration of livekit-jwt (its own hsToken pairs with livekit-jwt's).
MATRIXRTC_APPSERVICE = required_when_enabled(
    obj(
        {
            "enabled": BOOL,
            "url": string(
                pattern=r"^(https?://.+)?$",
                description="livekit-jwt's Service, where Synapse forwards rtc/livekit (templates allowed)",
            ),
            "id": string(minLength=1),
            "senderLocalpart": LOCALPART,
            "asToken": CREDENTIAL,
            "hsToken": CREDENTIAL,
        }
    ),
    {"url": string(minLength=1)},
)

SYNAPSE: Schema = {
    "$schema": "https://json-schema.org/draft-07/schema#",
    **obj(
        {
            **NAMING,
            "image": IMAGE,
            "serverName": string(),
            "publicBaseurl": string(pattern=r"^(https?://.+/)?$", description="with a trailing slash"),
            "redis": obj(
                {
                    "host": string(),
                    "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                    "password": CREDENTIAL,
                }
            ),
            "secrets": obj(
                {key: CREDENTIAL for key in ("macaroon", "form", "registrationSharedSecret", "signingKey")}
            ),
            "resources": free_map(),
            "podSecurityContext": free_map(),
            "containerSecurityContext": free_map(),
            **SCHEDULING,
            "media": obj(
                {
                    "persistence": obj(
                        {
                            "enabled": BOOL,
                            "existingClaim": string(),
                            "storageClass": string(),
                            "accessMode": string(enum=["ReadWriteOnce", "ReadWriteMany"]),
                            "size": string(),
                        }
                    ),
                    "storageProviders": array(free_map()),
                }
            ),
            "postgres": POSTGRES,
            "pools": {
                "type": "object",
                "additionalProperties": obj(
                    {
                        "kind": string(enum=POOL_KINDS),
                        "enabled": BOOL,
                        "replicas": {"type": "integer", "minimum": 1},
                        "resources": free_map(),
                        **SCHEDULING,
                        "autoscaling": CPU_AUTOSCALING,
                        "keda": obj(
                            {
                                "enabled": BOOL,
                                "minReplicas": {"type": "integer", "minimum": 0},
                                "maxReplicas": {"type": "integer", "minimum": 1},
                                "timezone": string(),
                                "schedules": array(
                                    obj(
                                        {
                                            "start": string(description="cron, e.g. 0 7 * * 1-5"),
                                            "end": string(description="cron, e.g. 0 19 * * 1-5"),
                                            "desiredReplicas": {"type": "integer", "minimum": 1},
                                        },
                                        ["start", "end", "desiredReplicas"],
                                    )
                                ),
                            }
                        ),
                    },
                    ["kind"],
                ),
            },
            "experimental": obj({"msc4306": BOOL}),
            "matrixRTC": obj({"appservice": MATRIXRTC_APPSERVICE}),
            "wellKnown": obj(
                {
                    "enabled": BOOL,
                    "server": BOOL,
                    "rtcFoci": array(free_map()),
                    "extraClientContent": free_map(),
                }
            ),
            "configCheck": obj(
                {
                    "enabled": BOOL,
                    "timeoutSeconds": {"type": "integer", "minimum": 30},
                    "resources": free_map(),
                }
            ),
            "podDisruptionBudget": obj({"enabled": BOOL}),
            "pgbouncer": obj(
                {
                    "enabled": BOOL,
                    "image": IMAGE,
                    "replicas": {"type": "integer", "minimum": 1},
                    "poolMode": string(enum=["session", "transaction"]),
                    "maxClientConn": {"type": "integer", "minimum": 1},
                    "defaultPoolSize": {"type": "integer", "minimum": 1},
                    "bypassKinds": array(string(enum=POOL_KINDS)),
                    "resources": free_map(),
                }
            ),
            "podMonitor": obj({"enabled": BOOL, "interval": string(), "labels": string_map()}),
            "networkPolicy": network_policy(
                [
                    "ingressFrom",
                    "clientsFrom",
                    "metricsFrom",
                    "databaseTo",
                    "redisTo",
                    "federationTo",
                    "masUpstreamTo",
                    "matrixRTCTo",
                ],
                federationPorts=PORTS,
            ),
            "grafanaDashboards": GRAFANA_DASHBOARDS,
            "prometheusRule": obj(
                {
                    **PROMETHEUS_RULE,
                    "selectors": obj({"synapse": string(), "router": string()}),
                    "slowRequests": obj(
                        {
                            "seconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 10},
                            "excludedServlets": array(string(pattern=r"^[A-Za-z0-9_]+$")),
                        }
                    ),
                }
            ),
            "extraConfig": free_map(),
            "mas": obj(
                {
                    "enabled": BOOL,
                    "image": IMAGE,
                    "publicBaseurl": string(
                        pattern=r"^(https?://.+/)?$", description="with a trailing slash"
                    ),
                    "replicas": {"type": "integer", "minimum": 1},
                    "resources": free_map(),
                    "database": POSTGRES,
                    "secrets": obj(
                        {key: CREDENTIAL for key in ("encryption", "signingKey", "synapseShared")}
                    ),
                    "passwords": BOOL,
                    "extraConfig": free_map(),
                    "podAnnotations": string_map(),
                    "nodeSelector": string_map(),
                    "tolerations": array(free_map()),
                    "affinity": free_map(),
                }
            ),
            "router": obj(
                {
                    "enabled": BOOL,
                    "image": IMAGE,
                    "replicas": {"type": "integer", "minimum": 1},
                    "resources": free_map(),
                    "trustedHops": {"type": "integer", "minimum": 0},
                    "whoamiCacheSeconds": {"type": "integer", "minimum": 0},
                    "whoamiCacheEntries": {"type": "integer", "minimum": 1},
                    "maxUploadBytes": {"type": "integer", "minimum": 1},
                    "timeouts": obj(
                        {key: string(pattern=r"^[0-9]+s$") for key in ("default", "media", "longPoll")}
                    ),
                    "overload": obj(
                        {
                            "maxHeapBytes": {"type": "integer", "minimum": 1048576},
                            "maxConnections": {"type": "integer", "minimum": 1},
                        }
                    ),
                    "accessLog": BOOL,
                    "debugHeader": BOOL,
                    "service": obj(
                        {
                            "type": string(enum=["ClusterIP", "NodePort", "LoadBalancer"]),
                            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                        }
                    ),
                    "autoscaling": CPU_AUTOSCALING,
                }
            ),
            "adminUi": obj(
                {
                    "enabled": BOOL,
                    "image": IMAGE,
                    "replicas": {"type": "integer", "minimum": 1},
                    "resources": free_map(),
                }
            ),
            "ingress": obj(
                {
                    "enabled": BOOL,
                    "className": string(),
                    "annotations": string_map(),
                    "wellKnownHost": string(),
                    "adminUiHost": string(),
                    "tls": array(obj({"secretName": string(), "hosts": array(string())})),
                }
            ),
            "httpRoute": obj(
                {
                    "enabled": BOOL,
                    "annotations": string_map(),
                    "parentRefs": array(free_map()),
                    "wellKnownHost": string(),
                    "adminUiHost": string(),
                }
            ),
        }
    ),
}

PORT: Schema = {"type": "integer", "minimum": 1, "maximum": 65535}
SECONDS: Schema = {"type": "number", "exclusiveMinimum": 0}

# A backend's CA: a Secret's key, a ConfigMap's key (trust-manager bundles), or a PEM value.
CA: Schema = {
    "description": "{secret, secretKey}, {configMap, configMapKey} or {value: PEM}; default: system CAs",
    "type": "object",
    "properties": {
        "value": string(minLength=1),
        "secret": string(minLength=1),
        "secretKey": string(minLength=1),
        "configMap": string(minLength=1),
        "configMapKey": string(minLength=1),
    },
    "additionalProperties": False,
    "oneOf": [
        {"required": ["value"], "maxProperties": 1},
        {"required": ["secret", "secretKey"], "maxProperties": 2},
        {"required": ["configMap", "configMapKey"], "maxProperties": 2},
        {"maxProperties": 0},
    ],
}

LDAP_BACKEND = obj(
    {
        "name": string(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"),
        "host": string(minLength=1),
        "port": PORT,
        "tls": string(enum=["none", "starttls", "ldaps"]),
        "ca": CA,
        "serverName": string(),
        "verify": BOOL,
        "weight": {"type": "integer", "minimum": 1, "maximum": 256},
        "backup": BOOL,
        "maxConnections": {"type": "integer", "minimum": 0},
        "proxyProtocol": BOOL,
    },
    ["name", "host"],
)

LDAP = Own(
    {
        "backends": array(LDAP_BACKEND),
        "balance": string(enum=["first", "round_robin", "least_conn"]),
        "healthCheck": obj(
            {
                "type": string(enum=["anonymous_bind", "bind", "rootdse"]),
                "interval": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
                "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 60},
                "rise": {"type": "integer", "minimum": 1, "maximum": 100},
                "fall": {"type": "integer", "minimum": 1, "maximum": 100},
                "bindDN": string(),
                "password": CREDENTIAL,
            }
        ),
        "tls": obj(
            {
                "existingSecret": string(description="a kubernetes.io/tls Secret (tls.crt, tls.key)"),
                "starttls": string(enum=["", "terminate", "passthrough", "off"]),
                "ldaps": obj({"enabled": BOOL}),
            }
        ),
        "requireTLS": BOOL,
        "readOnly": BOOL,
        "allowedExtendedOps": {
            "type": ["array", "null"],
            "items": string(pattern=r"^[0-9]+(\.[0-9]+)+$"),
        },
        "timeouts": obj(
            {
                "connect": {**SECONDS, "maximum": 60},
                "idle": {**SECONDS, "maximum": 86400},
                "response": {**SECONDS, "maximum": 3600},
            }
        ),
        "maxConnections": {"type": "integer", "minimum": 1},
        "maxPduBytes": {"type": "integer", "minimum": 1024},
        "upstreamPool": obj(
            {
                "size": {"type": "integer", "minimum": 0, "maximum": 10000},
                "idleSeconds": {**SECONDS, "maximum": 3600},
            }
        ),
        "bindFailureLimit": obj({"limit": {"type": "integer", "minimum": 0}, "window": SECONDS}),
        "auditBinds": BOOL,
        "podAntiAffinity": string(enum=["", "soft", "hard"]),
        "service": obj(
            {
                "type": string(enum=["ClusterIP", "NodePort", "LoadBalancer"]),
                "annotations": string_map(),
                "loadBalancerSourceRanges": array(string()),
                "ports": obj({"ldap": PORT, "ldaps": PORT, "http": PORT}),
            }
        ),
        "networkPolicy": network_policy(["ldapFrom", "metricsFrom", "backendsTo"]),
    },
)

# A Matrix server name (host name, IPv4 or [IPv6], optional port); an IP address, v4 or v6.
SERVER_NAME = r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?"
IPV6 = r"[0-9A-Fa-f.]*:[0-9A-Fa-f:.]*"

LIVEKIT_JWT = Own(
    {
        "livekitUrl": string(pattern=r"^wss?://[^\s/]+", description="the SFU's URL, given to clients"),
        "livekitApiUrl": string(pattern=r"^(https?://\S+)?$", description="RoomService URL"),
        "livekitKey": CREDENTIAL,
        "livekitSecret": CREDENTIAL,
        "livekitKeysFile": CREDENTIAL,
        "fullAccessHomeservers": {
            "description": 'server names whose users may create rooms; ["*"]: any (only alone)',
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": string(pattern=rf"^(\*|{SERVER_NAME})$"),
            "if": {"contains": {"const": "*"}},
            "then": {"maxItems": 1},
        },
        "hashScheme": string(enum=["v0.4.3", "v0.4.1", "v0.4.0"]),
        "canUpdateOwnMetadata": BOOL,
        "roomEmptyTimeout": {"type": "integer", "minimum": 0},
        "roomDepartureTimeout": {"type": "integer", "minimum": 0},
        "tokenTtlSeconds": {"type": "integer", "minimum": 60, "maximum": 86400},
        "delegation": obj({"enabled": BOOL}),
        "appservice": required_when_enabled(
            obj(
                {
                    "enabled": BOOL,
                    "homeserverName": string(
                        pattern=rf"^({SERVER_NAME})?$", description="the homeserver's server name"
                    ),
                    "hsToken": CREDENTIAL,
                }
            ),
            {"homeserverName": string(minLength=1), "hsToken": {"minProperties": 1}},
        ),
        "federation": obj(
            {
                "allow": array(
                    string(
                        pattern=rf"^({SERVER_NAME}|{IPV6}|[0-9A-Fa-f:.]+/[0-9]{{1,3}})$",
                        description="a CIDR or a server name",
                    )
                ),
                "caBundle": CA,
                "timeout": {**SECONDS, "maximum": 60},
                "dnsServers": array(
                    string(
                        pattern=rf"^([0-9.]+(:[0-9]{{1,5}})?|\[{IPV6}\](:[0-9]{{1,5}})?|{IPV6})$",
                        description="an IP address, optional port (IPv6 in brackets then)",
                    )
                ),
                "overrides": array(
                    obj(
                        {
                            "serverName": string(pattern=rf"^({SERVER_NAME})$"),
                            "target": string(pattern=r"^[A-Za-z0-9.:\[\]-]+:[0-9]{1,5}$"),
                        },
                        required=["serverName", "target"],
                    )
                ),
            }
        ),
        "podAntiAffinity": string(enum=["", "soft", "hard"]),
        "ingress": ingress(paths=False),
        "httpRoute": http_route(paths=False),
        "networkPolicy": network_policy(
            ["ingressFrom", "clientsFrom", "metricsFrom", "federationTo", "sfuTo"], federationPorts=PORTS
        ),
    },
    required=["livekitUrl", "fullAccessHomeservers"],
)

# What only a long-running service has (msl.deployment): replicas, probes, a Service and its
# monitor, a PDB, an HPA.
SERVICE_ONLY = (
    "replicaCount", "probes", "service", "serviceMonitor", "prometheusRule", "podDisruptionBudget",
    "autoscaling",
)  # fmt: skip


def job_chart(specific: dict[str, Schema], *, required: list[str] | None = None) -> Schema:
    """Values of a chart whose workload runs to completion (`msl.cronJob`, `msl.job`): a service
    chart's image, pod and naming values without what only a running service has."""
    shared = service_chart({}, bridge=False)["properties"]
    common = {key: schema for key, schema in shared.items() if key not in SERVICE_ONLY}
    return {"$schema": "https://json-schema.org/draft-07/schema#", **obj({**common, **specific}, required)}


NULLABLE_SECONDS: Schema = {"type": ["integer", "null"], "minimum": 0}

# compress-state's own values, which a one-off Job may override (job.overrides).
COMPRESS_STATE_TOOL: dict[str, Schema] = {
    "levels": {
        "description": "chain lengths per level, lowest first; chunkSize must be at least the first",
        **array({"type": "integer", "minimum": 1}),
        "minItems": 1,
    },
    "chunkSize": {"type": "integer", "minimum": 1},
    "chunks": {"type": "integer", "minimum": 1},
    "room": string(pattern=r"^(![^\s]+)?$", description="a room id (!id:server); empty: every room"),
    "dryRun": BOOL,
    "verify": BOOL,
    "maxGroupsPerSecond": {"type": ["number", "null"], "exclusiveMinimum": 0},
    "lockTimeoutSeconds": SECONDS,
    "rustProgress": string(enum=["resume", "ignore"]),
    "logLevel": string(enum=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
}

COMPRESS_STATE = Own(
    {
        **COMPRESS_STATE_TOOL,
        "database": obj(
            {
                "url": {
                    **CREDENTIAL,
                    "description": "a libpq URL or key/value string: " + CREDENTIAL["description"],
                },
                "host": string(),
                "port": PORT,
                "user": string(),
                "name": string(),
                "password": CREDENTIAL,
                "sslMode": string(
                    enum=["", "disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
                ),
                "ca": CA,
                "connectTimeoutSeconds": {"type": "integer", "minimum": 0},
            }
        ),
        "pushgateway": obj(
            {
                "url": string(
                    pattern=r"^(https?://[^\s]+)?$", description="no credentials: it is an argument"
                ),
                "job": string(pattern=r"^[^/\s]*$"),
            }
        ),
        "cronJob": obj(
            {
                "enabled": BOOL,
                "schedule": string(
                    pattern=r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|\S+(\s+\S+){4})$",
                    description="cron, e.g. 17 3 * * *; the time zone goes in timeZone",
                ),
                "timeZone": string(description="an IANA time zone, e.g. Europe/Berlin"),
                "suspend": BOOL,
                "startingDeadlineSeconds": {"type": ["integer", "null"], "minimum": 10},
                "successfulJobsHistoryLimit": {"type": "integer", "minimum": 0},
                "failedJobsHistoryLimit": {"type": "integer", "minimum": 0},
                "activeDeadlineSeconds": {"type": ["integer", "null"], "minimum": 1},
                "backoffLimit": {"type": "integer", "minimum": 0},
                "ttlSecondsAfterFinished": NULLABLE_SECONDS,
            }
        ),
        "job": obj(
            {
                "enabled": BOOL,
                "activeDeadlineSeconds": {"type": ["integer", "null"], "minimum": 1},
                "backoffLimit": {"type": "integer", "minimum": 0},
                "ttlSecondsAfterFinished": NULLABLE_SECONDS,
                "overrides": obj(COMPRESS_STATE_TOOL),
            }
        ),
        "networkPolicy": network_policy(["databaseTo", "pushgatewayTo"], ingress=False),
    }
)

# Each service chart's own values, by chart; what it shares with the others follows from its kind in
# the catalog of the services.
OWN: dict[str, Own] = {
    "ldap": LDAP,
    "livekit-jwt": LIVEKIT_JWT,
    "compress-state": COMPRESS_STATE,
    "matrix-alertmanager-receiver": Own(
        {
            "config": obj(
                {
                    "alertsPathPrefix": string(pattern="^/"),
                    "basicUsername": string(),
                    "roomMapping": {"type": "object", "additionalProperties": ROOM},
                    "externalUrlMapping": string_map(),
                    "generatorUrlMapping": string_map(),
                    "computedValues": array(
                        {
                            "type": "object",
                            "properties": {
                                "values": string_map(),
                                "when-matching-labels": string_map(),
                                "when-matching-annotations": string_map(),
                                "when-matching-status": string(),
                            },
                            "additionalProperties": False,
                        }
                    ),
                    "firingTemplate": string(),
                    "resolvedTemplate": string(),
                    "groupTemplate": string(),
                    "messageMode": string(enum=["group", "alert"]),
                    "onResolve": string(enum=["edit", "thread", "both", "new"]),
                    "pingRoomSeverities": array(string()),
                    "msgtype": string(enum=["m.notice", "m.text"]),
                }
            ),
            "basicAuth": obj({"password": CREDENTIAL}),
        }
    ),
    "sentry-webhook": Own(
        {
            "sentry": obj(
                {"clientSecret": CREDENTIAL, "legacySecret": CREDENTIAL, "url": string(pattern="^https?://")}
            ),
            "routing": obj(
                {
                    "defaultRoom": string(pattern=r"^([!#].+)?$"),
                    "projectRooms": {"type": "object", "additionalProperties": ROOM},
                    "metricAlertRooms": {"type": "object", "additionalProperties": ROOM},
                }
            ),
            "filters": obj({"environments": array(string()), "levels": array(string(enum=LEVELS))}),
            "tags": array(string()),
            "msgtype": string(enum=["m.notice", "m.text"]),
            "threads": BOOL,
            "postErrors": BOOL,
        }
    ),
    "webhook": Own(
        {
            "hooks": array(HOOK),
            "hooksSecret": obj({"secret": string(minLength=1), "secretKey": string(minLength=1)}),
            "users": string_map(),
        }
    ),
}


def service_schema(chart: str, kind: Kind) -> Schema:
    """A service chart's values: its own on top of what every chart of its kind has."""
    own = OWN[chart]
    if kind == "job":
        return job_chart(own.values, required=own.required)
    return service_chart(own.values, bridge=kind == "bridge", required=own.required)


def schemas() -> dict[str, Schema]:
    """Every chart's schema: the homeserver's and one per service chart in the catalog."""
    if set(OWN) != set(charts()):
        raise SystemExit(f"OWN has charts {sorted(OWN)}, the catalog of the services {sorted(charts())}")
    return {"synapse": SYNAPSE, **{s.chart: service_schema(s.chart, s.kind) for s in SERVICES if s.chart}}


def render(schema: Schema) -> str:
    return json.dumps(schema, indent=2) + "\n"


def main() -> int:
    check = "--check" in sys.argv[1:]
    stale = []
    for chart, schema in schemas().items():
        path = CHARTS / chart / "values.schema.json"
        text = render(schema)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print("stale (run python scripts/chart_schemas.py):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
