"""The webhook chart's values: each field's type, default and comment, declared once."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from chart_models.base import OMIT, Strict
from chart_models.bridge import BridgeReadme, BridgeValues
from chart_models.common import (
    HttpRoute,
    MatrixBot,
    Outbox,
    Persistence,
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


class WebhookValues(BridgeValues):
    """matrix-stack `slack-webhook`: Slack-compatible incoming webhooks into Matrix rooms.
    Every value is described in README.md; values.schema.json rejects unknown keys.
    """

    README = BridgeReadme(
        roots=None,
        roots_lost="",
        clients=(
            "in-cluster senders posting to the Service directly (Alertmanager's `slack_configs`, "
            "Grafana, CI jobs)"
        ),
        clients_example=(
            "  clientsFrom:  # Alertmanager's slack_configs posting to the Service\n"
            "    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}\n"
            "      podSelector: {matchLabels: {app.kubernetes.io/name: alertmanager}}\n"
        ),
    )

    matrix: MatrixBot = Field(default_factory=MatrixBot, description="The bot account the hooks post as.")
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
    httpRoute: HttpRoute = Field(
        default_factory=lambda: HttpRoute.model_validate({"paths": ["/hooks", "/services"]}),
        description="Gateway API (gateway.networking.k8s.io/v1).",
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
