"""Settings for `slack-webhook` (environment prefix `SLACK_WEBHOOK_`)."""

from __future__ import annotations

import secrets
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from matrix_stack.shared.bridge.settings import ServiceSettings

HOOK_ID_PATTERN = r"^[A-Za-z0-9_-]{22,128}$"  # 22 URL-safe base64 characters carry 132 bits


def new_hook_id() -> str:
    """A fresh hook id: 192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


class Hook(BaseModel):
    """One incoming webhook: a secret id bound to a room."""

    model_config = ConfigDict(extra="forbid")

    id: SecretStr = Field(description="The secret in the URL; generate with `slack-webhook new-hook-id`")
    room: str = Field(pattern=r"^[!#].+", description="Room id or alias")
    name: str | None = Field(default=None, description="Shown in logs instead of the secret id")
    msgtype: Literal["m.notice", "m.text"] = "m.notice"
    display_name: str | None = Field(default=None, description="Prefix every message with this name")
    bearer_token: SecretStr | None = Field(default=None, description="Also require Authorization: Bearer")
    rate_limit: float | None = Field(default=None, gt=0, description="Messages per second")
    burst: int = Field(default=10, ge=1)
    room_mentions: bool = Field(default=False, description="Let <!here>/<!channel> ping the room")
    users: dict[str, str] = Field(default_factory=dict, description="Slack user id -> Matrix user id")

    @model_validator(mode="after")
    def _strong_id(self) -> Hook:
        import re

        if not re.fullmatch(HOOK_ID_PATTERN, self.id.get_secret_value()):
            raise ValueError(
                "a hook id needs 22-128 characters of A-Z a-z 0-9 _ - (use `slack-webhook new-hook-id`)"
            )
        return self

    @property
    def label(self) -> str:
        return self.name or self.room


class SlackWebhookSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SLACK_WEBHOOK_", extra="ignore")

    hooks: list[Hook] = Field(default_factory=list, description="The webhooks (JSON/YAML list)")
    users: dict[str, str] = Field(
        default_factory=dict, description="Slack user id -> Matrix user id, all hooks"
    )

    @model_validator(mode="after")
    def _unique_ids(self) -> SlackWebhookSettings:
        ids = [hook.id.get_secret_value() for hook in self.hooks]
        if len(ids) != len(set(ids)):
            raise ValueError("two hooks share an id")
        return self

    def secrets(self) -> list[str]:
        values = super().secrets()
        for hook in self.hooks:
            values.append(hook.id.get_secret_value())
            if hook.bearer_token is not None:
                values.append(hook.bearer_token.get_secret_value())
        return values
