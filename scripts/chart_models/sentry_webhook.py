"""The sentry-webhook chart's values: each field's type, default and comment, declared once."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from chart_models.base import Strict
from chart_models.bridge import BridgeReadme, BridgeValues
from chart_models.common import (
    BridgeNetworkPolicy,
    Credential,
    HttpRoute,
    MatrixBot,
    Outbox,
    Persistence,
)
from matrix_stack.services.sentry_webhook.config import SentryWebhookSettings


def _service_default(name: str) -> Any:
    """The service's default for a setting: the chart's is the same, read from there."""
    return SentryWebhookSettings.model_fields[name].get_default(call_default_factory=True)


# Lists go to the service comma-separated (SENTRY_WEBHOOK_ACTIONS_*): an item cannot hold a comma.
_Reaction = Annotated[str, Field(pattern="^[^,]+$")]
_MatrixUser = Annotated[str, Field(pattern="^@[^,:]+:[^,]+$")]


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
        _service_default("sentry_url"),
        pattern="^https?://",
        description=(
            "For links when a payload carries none; with actions, the API the bot calls (its port is\n"
            "the NetworkPolicy's egress to Sentry)."
        ),
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


class ActionsSentry(Strict):
    organization: str = Field(
        "",
        pattern="^([a-z0-9][a-z0-9_-]*)?$",
        description="The organization's slug for Sentry's API (sentry.url). Empty: no actions.",
    )
    token: Credential = Field(
        default_factory=Credential,
        description=(
            "An internal integration's token with Issue & Event: Read & Write; {value: ...} "
            "stored in the\n"
            "chart's Secret, or {secret: NAME, secretKey: KEY}. Required with organization."
        ),
    )


class Actions(Strict):
    sentry: ActionsSentry = Field(
        default_factory=ActionsSentry,
        description="Sentry's API, on sentry.url; actions are on when organization is set.",
    )
    powerLevel: int = Field(
        _service_default("actions_power_level"),
        description="Room members at this power level or above may act.",
    )
    allowedUsers: list[_MatrixUser] = Field(
        _service_default("actions_allowed_users"),
        description='May act whatever their power level: ["@alice:example.org"].',
    )
    resolveReactions: list[_Reaction] = Field(
        _service_default("actions_resolve_reactions"),
        description="Reactions on an issue's message that resolve it.",
    )
    ignoreReactions: list[_Reaction] = Field(
        _service_default("actions_ignore_reactions"),
        description="Reactions on an issue's message that archive it until it escalates.",
    )
    userMap: dict[_MatrixUser, Annotated[str, Field(min_length=1)]] = Field(
        _service_default("actions_user_map"),
        description=(
            "For `assign @user:server`: Matrix user id -> Sentry user id or e-mail.\n"
            ' "@alice:example.org": alice@example.org'
        ),
        json_schema_extra={"additionalProperties": False},  # keys are Matrix user ids
    )


class SentryNetworkPolicy(BridgeNetworkPolicy):
    sentryTo: list[dict[str, Any]] = Field(
        [],
        description=(
            "With actions: where Sentry is, on sentry.url's port (empty: any address; sentry.io "
            "is outside\n"
            "the cluster). A self-hosted Sentry:\n"
            " - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: sentry}}\n"
            "   podSelector: {matchLabels: {app: sentry, role: web}}"
        ),
    )


class SentryWebhookValues(BridgeValues):
    """matrix-stack `sentry-webhook`: Sentry alerts and issue events into Matrix rooms.
    Every value is described in README.md; values.schema.json rejects unknown keys.
    """

    README = BridgeReadme(
        roots=(
            "the first message of each Sentry issue, which later messages about it reply to (`threads: true`)"
        ),
        roots_lost=(
            "the thread roots: later events about an issue post new messages instead of replying in "
            "its thread"
        ),
        clients=(
            "a self-hosted Sentry posting to the Service directly (its web and worker pods); sentry.io comes "
            "through the ingress controller"
        ),
        clients_example=(
            "  clientsFrom:  # a self-hosted Sentry in the sentry namespace\n"
            "    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: sentry}}\n"
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
        default_factory=lambda: HttpRoute.model_validate({"paths": ["/sentry", "/legacy"]}),
        description="Gateway API (gateway.networking.k8s.io/v1).",
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
    actions: Actions = Field(
        default_factory=Actions,
        description=(
            "Acting on Sentry issues from the room: reactions resolve or archive, replies resolve,"
            " ignore,\n"
            "assign. Needs encryption.enabled (the bot follows its rooms through it). See README.md,\n"
            '"Acting from the room".'
        ),
    )
    networkPolicy: SentryNetworkPolicy = Field(
        default_factory=SentryNetworkPolicy,
        description=BridgeValues.model_fields["networkPolicy"].description,
    )
