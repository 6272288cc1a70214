"""Settings for `notify` (environment prefix `NOTIFY_`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from matrix_stack.shared.bridge.settings import ServiceSettings
from matrix_stack.shared.kit.settings import CommaList


class NotifySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="NOTIFY_", extra="ignore")

    token: SecretStr = Field(min_length=16, description="Bearer token callers must present")
    default_room: str | None = Field(default=None, description="Room id or alias for POST /notify")
    rooms: CommaList = Field(
        default_factory=list, description="Rooms callers may name (comma-separated); empty: any room"
    )
    msgtype: Literal["m.notice", "m.text"] = "m.notice"
