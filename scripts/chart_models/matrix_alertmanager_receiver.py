"""The matrix-alertmanager-receiver chart's values: each field's type, default and comment, declared once."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from chart_models.base import OMIT, Strict
from chart_models.bridge import BridgeReadme, BridgeValues
from chart_models.common import (
    BridgeNetworkPolicy,
    Credential,
    HttpRoute,
    MatrixBot,
    Outbox,
    Persistence,
)
from matrix_stack.services.alertmanager_receiver.config import ActionsConfig

# The service's defaults for acting from the room: the chart's are the same, read from there.
_ACTIONS = ActionsConfig()


class ComputedValue(Strict):
    values: dict[str, str] = Field(OMIT)
    when_matching_labels: dict[str, str] = Field(OMIT, alias="when-matching-labels")
    when_matching_annotations: dict[str, str] = Field(OMIT, alias="when-matching-annotations")
    when_matching_status: str = Field(OMIT, alias="when-matching-status")


class Config(Strict):
    alertsPathPrefix: str = Field("/alerts", pattern="^/")
    basicUsername: str = Field("alertmanager")
    roomMapping: dict[str, Annotated[str, Field(pattern="^[!#].+")]] = Field(
        {},
        description=(
            'Short names for rooms: Alertmanager posts to /alerts/<name>.\n ops: "!abcdef:example.org"'
        ),
    )
    externalUrlMapping: dict[str, str] = Field({})
    generatorUrlMapping: dict[str, str] = Field({})
    computedValues: list[ComputedValue] = Field(
        [], description="metio's computed-values (merged top to bottom, later wins)."
    )
    firingTemplate: str = Field(
        "",
        description=(
            "Jinja2 templates; empty: the service's defaults (metio's README templates, re-expressed)."
        ),
    )
    resolvedTemplate: str = Field("")
    groupTemplate: str = Field("")
    messageMode: Literal["group", "alert"] = Field(
        "group",
        description="group: one message per notification group; alert: one per alert (metio's behaviour).",
    )
    onResolve: Literal["edit", "thread", "both", "new"] = Field(
        "edit",
        description=(
            "On resolve: edit the firing message, reply in its thread, both, or post a new message (metio)."
        ),
    )
    pingRoomSeverities: list[str] = Field(
        [], description="Severities whose firing alerts ping the room (@room)."
    )
    msgtype: Literal["m.notice", "m.text"] = Field("m.text")


class BasicAuth(Strict):
    password: Credential = Field(
        default_factory=Credential,
        description="{value: ...} stored in the chart's Secret, or {secret: NAME, secretKey: KEY}",
    )


class ActionsAlertmanager(Strict):
    url: str = Field(
        "",
        pattern="^(https?://.+)?$",
        description=(
            "Alertmanager's URL as the receiver reaches it, e.g.\n"
            "http://kube-prometheus-stack-alertmanager.monitoring.svc:9093. Empty: no actions."
        ),
    )
    username: str = Field("", description="Basic auth (Alertmanager's web.config.file), with password.")
    password: Credential = Field(
        default_factory=Credential,
        description="{value: ...} stored in the chart's Secret, or {secret: NAME, secretKey: KEY}",
    )
    bearerToken: Credential = Field(
        default_factory=Credential,
        description="Instead of basic auth (an authenticating proxy in front of Alertmanager); a credential.",
    )


class Actions(Strict):
    alertmanager: ActionsAlertmanager = Field(
        default_factory=ActionsAlertmanager,
        description="The Alertmanager the silences go to; actions are on when its url is set.",
    )
    reactions: list[Annotated[str, Field(min_length=1)]] = Field(
        list(_ACTIONS.reactions), description="Reactions on an alert's message that silence it."
    )
    powerLevel: int = Field(
        _ACTIONS.power_level, description="Room members at this power level or above may act."
    )
    allowedUsers: list[Annotated[str, Field(pattern="^@.+:.+")]] = Field(
        [], description='May act whatever their power level: ["@alice:example.org"].'
    )
    untilResolvedMax: str = Field(
        _ACTIONS.until_resolved_max,
        min_length=1,
        description="How long a silence 'until resolved' lasts if its alerts never resolve (90s, 2h, 1w).",
    )
    lookSeconds: float = Field(
        _ACTIONS.look_seconds,
        gt=0,
        description=(
            "How often the receiver looks at its silences (ended: resolved, expired, removed in the UI)."
        ),
    )


class ReceiverNetworkPolicy(BridgeNetworkPolicy):
    alertmanagerTo: list[dict[str, Any]] = Field(
        [],
        description=(
            "With actions: where Alertmanager is, on actions.alertmanager.url's port (empty: any "
            "address).\n"
            " - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}\n"
            "   podSelector: {matchLabels: {app.kubernetes.io/name: alertmanager}}"
        ),
    )


class MatrixAlertmanagerReceiverValues(BridgeValues):
    """matrix-stack `alertmanager-receiver`: Prometheus Alertmanager into Matrix rooms.
    Every value is described in README.md; values.schema.json rejects unknown keys.
    """

    README = BridgeReadme(
        roots=(
            "the firing message of each group or alert, which a resolve edits or replies to "
            "(`config.onResolve`)"
        ),
        roots_lost=(
            "the firing messages: a resolve then posts a new message instead of editing or threading "
            "onto its firing one"
        ),
        clients="Alertmanager, which usually posts to the Service directly",
        clients_example=(
            "  clientsFrom:  # Alertmanager (kube-prometheus-stack's, in monitoring)\n"
            "    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}\n"
            "      podSelector: {matchLabels: {app.kubernetes.io/name: alertmanager}}\n"
        ),
        alerts_note=(
            "This chart's own alerts reach Matrix through this chart: when it is down they cannot. "
            "Route\n`MatrixStackServiceDown`, `MatrixStackServiceNotReady` and "
            "`MatrixStackOutboxDeliveriesFailing` of\nits job to a second receiver as well (e-mail, a "
            "pager), or watch them from another Alertmanager.\n"
        ),
    )

    matrix: MatrixBot = Field(default_factory=MatrixBot, description="The bot account the service posts as.")
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
    httpRoute: HttpRoute = Field(
        default_factory=lambda: HttpRoute.model_validate({"paths": ["/alerts"]}),
        description="Gateway API (gateway.networking.k8s.io/v1).",
    )
    config: Config = Field(
        default_factory=Config,
        description=(
            "The receiver's configuration file (metio's format, rendered into a ConfigMap; no secrets in it)."
        ),
    )
    basicAuth: BasicAuth = Field(
        default_factory=BasicAuth,
        description=(
            "Basic auth on the alerts endpoint: a credential ({value} or {secret, secretKey}); empty: none."
        ),
    )
    actions: Actions = Field(
        default_factory=Actions,
        description=(
            "Acting on alerts from the room: a reaction silences the alert in Alertmanager, "
            "replies and\n"
            "!alert commands silence, unsilence, list and expire. Needs encryption.enabled (the bot "
            "follows\n"
            'its rooms through it). See README.md, "Acting from the room".'
        ),
    )
    networkPolicy: ReceiverNetworkPolicy = Field(
        default_factory=ReceiverNetworkPolicy,
        description=BridgeValues.model_fields["networkPolicy"].description,
    )
