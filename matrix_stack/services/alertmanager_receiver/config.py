"""Configuration: metio/matrix-alertmanager-receiver's file format (kebab-case YAML with `${ENV}`
substitution), plus a `receiver:` section for what metio does not have. Template bodies are Jinja2.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict

from matrix_stack.services.alertmanager_receiver import defaults
from matrix_stack.shared.bridge.settings import ServiceSettings
from matrix_stack.shared.kit.settings import describe_error, describe_file_error
from matrix_stack.shared.matrix.replies import parse_duration

_ENV_REFERENCE = re.compile(r"\$\{(\w+)\}")


class _Kebab(BaseModel):
    # metio's loader ignores unknown keys; a metio file must load unchanged.
    model_config = ConfigDict(
        extra="ignore", populate_by_name=True, alias_generator=lambda n: n.replace("_", "-")
    )


class HttpConfig(_Kebab):
    address: str = ""
    port: int = Field(ge=1, le=65535)
    alerts_path_prefix: str = "/alerts"
    metrics_path: str = "/metrics"
    metrics_enabled: bool = False
    basic_username: str = "alertmanager"
    basic_password: SecretStr | None = None

    @field_validator("basic_username")
    @classmethod
    def _default_username(cls, value: str) -> str:
        return value.strip() or "alertmanager"


class MatrixConfig(_Kebab):
    homeserver_url: str
    user_id: str = Field(pattern=r"^@[^:]+:.+$")
    access_token: SecretStr | None = None
    password: SecretStr | None = None  # ours: log in once instead of a token
    proxy: str = ""
    room_mapping: dict[str, str] = Field(default_factory=dict)

    @field_validator("room_mapping")
    @classmethod
    def _no_empty_rooms(cls, value: dict[str, str]) -> dict[str, str]:
        empty = [name for name, room in value.items() if not room]
        if empty:
            raise ValueError(f"room-mapping {empty[0]!r} has no room")
        return value


class ComputedValue(_Kebab):
    values: dict[str, str] = Field(default_factory=dict)
    when_matching_labels: dict[str, str] = Field(default_factory=dict)
    when_matching_annotations: dict[str, str] = Field(default_factory=dict)
    when_matching_status: str = ""


class TemplatingConfig(_Kebab):
    external_url_mapping: dict[str, str] = Field(default_factory=dict)
    generator_url_mapping: dict[str, str] = Field(default_factory=dict)
    computed_values: list[ComputedValue] = Field(default_factory=list)
    firing_template: str = defaults.FIRING
    resolved_template: str = defaults.RESOLVED
    group_template: str = defaults.GROUP  # ours: one message per notification group

    @field_validator("firing_template")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("firing-template is empty")
        return value


class ReceiverConfig(_Kebab):
    """What metio does not do."""

    message_mode: Literal["group", "alert"] = "group"
    on_resolve: Literal["edit", "thread", "both", "new"] = "edit"
    ping_room_severities: list[str] = Field(default_factory=list)
    msgtype: Literal["m.text", "m.notice"] = "m.text"


# Reactions that silence an alert by default: the obvious "quiet" ones.
DEFAULT_REACTIONS = ["🔕", "🔇", "🤫", "😴", "💤"]


class ActionsConfig(_Kebab):
    """Acting on alerts from the room (ours): on when `alertmanager-url` is set."""

    alertmanager_url: str | None = None
    alertmanager_username: str | None = None  # basic auth (web.config.file), with the password below
    alertmanager_password: SecretStr | None = None
    alertmanager_bearer_token: SecretStr | None = None
    reactions: list[str] = Field(default_factory=lambda: list(DEFAULT_REACTIONS))
    power_level: int = 50  # members at this power level or above may act
    allowed_users: list[str] = Field(default_factory=list)  # may act whatever their power level
    until_resolved_max: str = "7d"  # how long a silence "until resolved" lasts if it never resolves
    # How often the receiver looks at its silences: ended (resolved, expired, removed in the UI)?
    look_seconds: float = Field(default=15.0, gt=0)

    @field_validator("until_resolved_max")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)  # a bad one fails at start-up, not at the first reaction
        return value

    @property
    def enabled(self) -> bool:
        return bool(self.alertmanager_url)


class FileConfig(_Kebab):
    http: HttpConfig
    matrix: MatrixConfig
    templating: TemplatingConfig = Field(default_factory=TemplatingConfig)
    receiver: ReceiverConfig = Field(default_factory=ReceiverConfig)
    actions: ActionsConfig = Field(default_factory=ActionsConfig)


def substitute_environment(text: str) -> str:
    """metio's `${NAME}`: replaced by the variable when it exists, left as it is otherwise."""
    return _ENV_REFERENCE.sub(lambda m: os.environ.get(m.group(1), m.group(0)), text)


def load_file(path: Path) -> FileConfig:
    loaded = yaml.safe_load(substitute_environment(path.read_text()))
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} must hold a mapping")
    return FileConfig.model_validate(loaded)


class AlertmanagerReceiverSettings(ServiceSettings):
    """Built from the config file (`--config-path` or ALERTMANAGER_RECEIVER_CONFIG_PATH); the core
    settings not in metio's format (data dir, log format...) come from ALERTMANAGER_RECEIVER_* variables."""

    model_config = SettingsConfigDict(env_prefix="ALERTMANAGER_RECEIVER_", extra="ignore")

    file: FileConfig
    # Kubernetes keeps these out of the config file: ALERTMANAGER_RECEIVER_BASIC_PASSWORD_FILE.
    basic_password: SecretStr | None = None
    alertmanager_password: SecretStr | None = None  # actions' basic auth to Alertmanager
    alertmanager_bearer_token: SecretStr | None = None

    @property
    def effective_basic_password(self) -> SecretStr | None:
        return self.file.http.basic_password or self.basic_password

    def secrets(self) -> list[str]:
        actions = self.file.actions
        values = (
            self.file.http.basic_password,
            actions.alertmanager_password,
            actions.alertmanager_bearer_token,
        )
        return super().secrets() + [value.get_secret_value() for value in values if value is not None]


def settings_from_file(config: FileConfig, **overrides: Any) -> AlertmanagerReceiverSettings:
    values: dict[str, Any] = {
        "file": config,
        "homeserver": config.matrix.homeserver_url,
        "user_id": config.matrix.user_id,
        "host": config.http.address or "0.0.0.0",  # metio binds all interfaces by default
        "port": config.http.port,
    }
    # Credentials in the file win; otherwise ALERTMANAGER_RECEIVER_ACCESS_TOKEN(_FILE) and friends.
    for name in ("access_token", "password"):
        value = getattr(config.matrix, name)
        if value is not None:
            values[name] = value
    values.update(overrides)
    return AlertmanagerReceiverSettings(**values)


def from_command_line() -> AlertmanagerReceiverSettings:
    """metio's flags, or the file named by ALERTMANAGER_RECEIVER_CONFIG_PATH; exits 2 on a bad one."""
    parser = argparse.ArgumentParser(prog="alertmanager-receiver")
    parser.add_argument(
        "--config-path", type=Path, default=os.environ.get("ALERTMANAGER_RECEIVER_CONFIG_PATH")
    )
    parser.add_argument("--log-level", choices=["error", "warn", "info", "debug"], default=None)
    args = parser.parse_args()
    if args.config_path is None:
        print("config error: give --config-path or ALERTMANAGER_RECEIVER_CONFIG_PATH", file=sys.stderr)
        sys.exit(2)
    overrides = (
        {"log_level": {"warn": "WARNING"}.get(args.log_level, args.log_level.upper())}
        if args.log_level
        else {}
    )
    try:
        file = load_file(args.config_path)
    except ValidationError as exc:
        print(describe_file_error(args.config_path, exc), file=sys.stderr)
        sys.exit(2)
    except (OSError, ValueError) as exc:
        print(f"config error: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        settings = settings_from_file(file, **overrides)
    except ValidationError as exc:
        print(describe_error(AlertmanagerReceiverSettings, exc), file=sys.stderr)
        sys.exit(2)
    return settings
