"""Settings for `notify` (environment prefix `NOTIFY_`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore")

    token: SecretStr = Field(min_length=16, description="Bearer token callers must present")
    default_room: str | None = Field(default=None, description="Room id or alias for POST /notify")
    rooms: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Rooms callers may name (comma-separated); empty: any room"
    )
    msgtype: Literal["m.notice", "m.text"] = "m.notice"

    @field_validator("rooms", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
