"""Settings for `sentry-webhook` (environment prefix `SENTRY_WEBHOOK_`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from matrix_stack.services.sentry_webhook.format import DEFAULT_TAGS
from matrix_stack.shared.bridge.settings import ServiceSettings
from matrix_stack.shared.kit.settings import CommaList

Level = Literal["fatal", "error", "warning", "info", "debug", "sample"]


class SentryWebhookSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SENTRY_WEBHOOK_", extra="ignore")

    client_secret: SecretStr | None = Field(
        default=None, description="The integration's client secret: verifies Sentry-Hook-Signature on /sentry"
    )
    legacy_secret: SecretStr | None = Field(
        default=None, min_length=16, description="Secret in the URL of the legacy WebHooks plugin endpoint"
    )
    default_room: str | None = Field(
        default=None, pattern=r"^[!#].+", description="Room for unmapped projects"
    )
    project_rooms: dict[str, str] = Field(default_factory=dict, description="Project slug or id -> room")
    metric_alert_rooms: dict[str, str] = Field(
        default_factory=dict, description="Metric alert rule name -> room (before project_rooms)"
    )
    environments: CommaList = Field(default_factory=list, description="Only these environments (empty: all)")
    levels: CommaList = Field(default_factory=list, description="Only these levels (empty: all)")
    tags: CommaList = Field(default_factory=lambda: list(DEFAULT_TAGS), description="Event tags to show")
    sentry_url: str = Field(
        default="https://sentry.io",
        description="Sentry's address: links when a payload has none, and its API",
    )
    msgtype: Literal["m.notice", "m.text"] = "m.notice"
    threads: bool = Field(default=True, description="Later events about an issue go into its thread")
    post_errors: bool = Field(default=True, description="Post error.created (one webhook per event: noisy)")

    # Acting on issues from the room: on when the organization and the token are set.
    sentry_organization: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_-]*$",
        description="The organization's slug, for Sentry's API",
    )
    sentry_token: SecretStr | None = Field(
        default=None, description="An internal integration's token with Issue & Event: Read & Write"
    )
    actions_power_level: int = Field(default=50, description="Members at this power level or above may act")
    actions_allowed_users: CommaList = Field(
        default_factory=list, description="Users who may act whatever their power level"
    )
    actions_resolve_reactions: CommaList = Field(
        default_factory=lambda: ["✅"], description="Reactions that resolve the issue"
    )
    actions_ignore_reactions: CommaList = Field(
        default_factory=lambda: ["🔕", "🙈"],
        description="Reactions that archive the issue until it escalates",
    )
    actions_user_map: dict[str, str] = Field(
        default_factory=dict, description="Matrix user id -> Sentry user id or e-mail, for assign"
    )

    @property
    def actions_enabled(self) -> bool:
        return bool(self.sentry_organization and self.sentry_token and self.sentry_token.get_secret_value())

    @model_validator(mode="after")
    def _something_to_verify(self) -> SentryWebhookSettings:
        if self.client_secret is None and self.legacy_secret is None:
            raise ValueError(
                "set CLIENT_SECRET (Integration Platform) or LEGACY_SECRET (legacy plugin), or both"
            )
        if self.default_room is None and not self.project_rooms and not self.metric_alert_rooms:
            raise ValueError("set DEFAULT_ROOM or PROJECT_ROOMS: messages need a room")
        return self
