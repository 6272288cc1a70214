"""The compress-state chart's values: each field's type, default and comment, declared once."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from chart_models.base import OMIT, Strict
from chart_models.common import (
    CaBundle,
    Credential,
    PodRuntimeValues,
    PodSpecValues,
    ServiceAccount,
    ServiceHeadValues,
)


class Database(Strict):
    url: Credential = Field(
        default_factory=Credential,
        description=(
            "A libpq URL (postgresql://user:pass@host:5432/synapse?sslmode=verify-full) or "
            "key/value string\n"
            "(host=... dbname=...), as a credential: {secret: NAME, secretKey: KEY} (your Secret,"
            " e.g. the\n"
            '`uri` key of a CloudNativePG app Secret) or {value: "..."} (kept in this chart\'s '
            "Secret).\n"
            "Read from a mounted file (COMPRESS_STATE_DATABASE_URL_FILE), never put into args or "
            "a shell."
        ),
    )
    host: str = Field("", description="Or libpq's variables: PGHOST, PGPORT, PGUSER, PGDATABASE.")
    port: int = Field(5432, ge=1, le=65535)
    user: str = Field("synapse")
    name: str = Field("synapse")
    password: Credential = Field(
        default_factory=Credential,
        description=(
            'A credential: {secret: NAME, secretKey: KEY} or {value: "..."}; mounted as a file\n'
            "(COMPRESS_STATE_PASSWORD_FILE). Also with `url`: it then replaces the URL's "
            "password."
        ),
    )
    sslMode: Literal["", "disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        "",
        description=(
            "PGSSLMODE: disable, allow, prefer, require, verify-ca or verify-full. Empty: "
            "verify-full when\n"
            "`ca` is set, else prefer (TLS when the server offers it, unverified)."
        ),
    )
    ca: CaBundle = Field(
        default_factory=CaBundle,
        description=(
            "The CA that signed the server's certificate (PGSSLROOTCERT): {secret: NAME, "
            "secretKey: KEY},\n"
            "{configMap: NAME, configMapKey: KEY} (e.g. a trust-manager Bundle) or {value: PEM}."
        ),
    )
    connectTimeoutSeconds: int = Field(
        10,
        ge=0,
        description=(
            "PGCONNECT_TIMEOUT: give up connecting after this many seconds (exit 2); 0: wait forever."
        ),
    )


class Pushgateway(Strict):
    url: str = Field("", pattern="^(https?://[^\\s]+)?$", description="no credentials: it is an argument")
    job: str = Field("", pattern="^[^/\\s]*$")


class CronJob(Strict):
    enabled: bool = Field(True)
    schedule: str = Field(
        "17 3 * * *",
        pattern="^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|\\S+(\\s+\\S+){4})$",
        description="cron, e.g. 17 3 * * *; the time zone goes in timeZone",
    )
    timeZone: str = Field(
        "",
        description=(
            "An IANA time zone for the schedule (e.g. Europe/Berlin); empty: the controller's (usually UTC)."
        ),
    )
    suspend: bool = Field(False)
    startingDeadlineSeconds: Annotated[int, Field(ge=10)] | None = Field(
        3600,
        description=(
            "A run missed by more than this (controller down, suspended) is skipped, not started late."
        ),
    )
    successfulJobsHistoryLimit: int = Field(3, ge=0)
    failedJobsHistoryLimit: int = Field(3, ge=0)
    activeDeadlineSeconds: Annotated[int, Field(ge=1)] | None = Field(
        14400, description="Each run: stopped after this long (a failed Job, reason DeadlineExceeded)."
    )
    backoffLimit: int = Field(
        0,
        ge=0,
        description=(
            "Retries of a run whose pod failed for another reason than the tool's own exit codes "
            "1-3\n"
            "(those fail the Job at once) or a disruption (a drained node: replaced, not "
            "counted)."
        ),
    )
    ttlSecondsAfterFinished: Annotated[int, Field(ge=0)] | None = Field(
        None, description="Delete finished Jobs after this long; null: keep the history limits' worth."
    )


class Overrides(Strict):
    levels: list[Annotated[int, Field(ge=1)]] = Field(
        OMIT,
        min_length=1,
        description="chain lengths per level, lowest first; chunkSize must be at least the first",
    )
    chunkSize: int = Field(OMIT, ge=1)
    chunks: int = Field(OMIT, ge=1)
    room: str = Field(OMIT, pattern="^(![^\\s]+)?$", description="a room id (!id:server); empty: every room")
    dryRun: bool = Field(OMIT)
    verify: bool = Field(OMIT)
    maxGroupsPerSecond: Annotated[float, Field(gt=0)] | None = Field(OMIT)
    lockTimeoutSeconds: float = Field(OMIT, gt=0)
    rustProgress: Literal["resume", "ignore"] = Field(OMIT)
    logLevel: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(OMIT)


class Job(Strict):
    enabled: bool = Field(False)
    activeDeadlineSeconds: Annotated[int, Field(ge=1)] | None = Field(86400)
    backoffLimit: int = Field(0, ge=0)
    ttlSecondsAfterFinished: Annotated[int, Field(ge=0)] | None = Field(None)
    overrides: Overrides = Field(
        default_factory=Overrides,
        description=(
            "Tool values for this Job only, e.g. {chunks: 5000}: levels, chunkSize, chunks, room,"
            " dryRun,\n"
            "verify, maxGroupsPerSecond, lockTimeoutSeconds, rustProgress, logLevel."
        ),
    )


class NetworkPolicy(Strict):
    enabled: bool = Field(False)
    databaseTo: list[dict[str, Any]] = Field(
        [],
        description=(
            "Where PostgreSQL is (e.g. its pods, or an ipBlock), on database.port.\n"
            " - podSelector: {matchLabels: {cnpg.io/cluster: synapse-db}}"
        ),
    )
    pushgatewayTo: list[dict[str, Any]] = Field(
        [], description="Where the Pushgateway is, on its URL's port."
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
    extraEgress: list[dict[str, Any]] = Field([], description="More rules, as Kubernetes spells them.")


class CompressStateValues(PodSpecValues, PodRuntimeValues, ServiceHeadValues):
    """matrix-stack `compress-state`: rewrites Synapse's state groups as short delta chains, every
    rewrite verified before it commits, run by a CronJob (and, optionally, a one-off Job).
    Every value is described in README.md; values.schema.json rejects unknown keys.
    """

    component: str = Field("compress-state")
    terminationGracePeriodSeconds: int = Field(
        60, ge=0, description="The tool stops after the state group in hand on SIGTERM."
    )
    resources: dict[str, Any] = Field(
        {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        description=("The run's memory grows with chunkSize and the state of the biggest rooms; see README."),
    )
    serviceAccount: ServiceAccount = Field(
        default_factory=ServiceAccount,
        description="The pods never talk to the Kubernetes API: the account's token is not mounted.",
    )
    levels: list[Annotated[int, Field(ge=1)]] = Field(
        [100, 50, 25],
        min_length=1,
        description=(
            "What a run does (the tool's flags).\nChain lengths per level, lowest first (--levels 100,50,25)."
        ),
    )
    chunkSize: int = Field(
        500,
        ge=1,
        description="State groups of one room loaded at once (--chunk-size); at least the first level.",
    )
    chunks: int = Field(100, ge=1, description="Chunks compressed per run (--chunks): a run's size.")
    room: str = Field(
        "",
        pattern="^(![^\\s]+)?$",
        description="Compress this room only (--room '!id:server'); empty: every room.",
    )
    dryRun: bool = Field(False, description="Report what a run would save; write nothing (--dry-run).")
    verify: bool = Field(
        True,
        description=(
            "Check every rewritten group's state before its transaction commits; false: --no-verify (do not)."
        ),
    )
    maxGroupsPerSecond: Annotated[float, Field(gt=0)] | None = Field(
        None, description="Rate limit on rewritten state groups (--max-groups-per-second); null: none."
    )
    lockTimeoutSeconds: float = Field(
        5, gt=0, description="Wait this long for a row Synapse holds, then leave that group for the next run."
    )
    rustProgress: Literal["resume", "ignore"] = Field(
        "resume",
        description=(
            "resume: continue rooms the Rust synapse_auto_compressor worked on; ignore: start them anew."
        ),
    )
    database: Database = Field(
        default_factory=Database,
        description=(
            "Synapse's database. Either `url`, or `host` (with port, user, name and a password), not both."
        ),
    )
    pushgateway: Pushgateway = Field(
        default_factory=Pushgateway,
        description=(
            "Push each run's metrics to a Prometheus Pushgateway (--pushgateway-url), under `job`\n"
            "(COMPRESS_STATE_PUSHGATEWAY_JOB; empty: compress-state). One job name per release."
        ),
    )
    cronJob: CronJob = Field(
        default_factory=CronJob,
        description=(
            "The nightly run. concurrencyPolicy is always Forbid (a second run beside a running "
            "one would\n"
            "only find the tool's lock held and exit 3)."
        ),
    )
    job: Job = Field(
        default_factory=Job,
        description=(
            "A one-off Job, e.g. for the first large run; runs once per install or change (see "
            "README).\n"
            "Harmless beside the CronJob: whichever starts second finds the lock held and exits "
            "3."
        ),
    )
    networkPolicy: NetworkPolicy = Field(
        default_factory=NetworkPolicy,
        description=(
            "NetworkPolicy (see the README): egress to DNS, PostgreSQL and the Pushgateway only; "
            "no ingress\n"
            "(nothing listens). Peers are NetworkPolicyPeers (namespaceSelector, podSelector, "
            "ipBlock); an\n"
            "empty list allows any address on the rule's port."
        ),
    )
