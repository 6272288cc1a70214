"""Settings for every service: environment variables with a per-service prefix, an optional YAML
file, and `<NAME>_FILE` variables that read any value (secrets above all) from a mounted file."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BeforeValidator, Field, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

S = TypeVar("S", bound="ProcessSettings")


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# A list that environment variables give comma-separated ("a,b"); files and YAML give real lists.
CommaList = Annotated[list[str], NoDecode, BeforeValidator(_split_commas)]


class _FileVariables(PydanticBaseSettingsSource):
    """`PREFIX_FIELD_FILE=/path` sets FIELD to the file's content (trailing newline removed)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        prefix = self.config.get("env_prefix", "")
        variable = f"{prefix}{field_name}_FILE".upper()
        path = os.environ.get(variable)
        if not path:
            return None, field_name, False
        if os.environ.get(variable.removesuffix("_FILE")) is not None:
            raise ValueError(f"{variable}: set {variable.removesuffix('_FILE')} or {variable}, not both")
        try:
            text = Path(path).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ValueError(f"{variable}: cannot read {path}: {exc.strerror}") from exc
        if self.field_is_complex(field):
            try:  # structured values (lists of hooks, maps): YAML, which includes JSON
                return yaml.safe_load(text), field_name, False
            except yaml.YAMLError as exc:
                raise ValueError(f"{variable}: {path} is not valid YAML/JSON: {exc}") from exc
        return text, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


class _YamlFile(PydanticBaseSettingsSource):
    """The file named by `PREFIX_CONFIG_FILE`, if any: a mapping of field names to values."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        prefix = self.config.get("env_prefix", "")
        variable = f"{prefix}CONFIG_FILE".upper()
        path = os.environ.get(variable)
        if not path:
            return {}
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"{variable}: cannot load {path}: {exc}") from exc
        if loaded is None:
            return {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{variable}: {path} must hold a mapping")
        return {str(key).replace("-", "_"): value for key, value in loaded.items()}


class ProcessSettings(BaseSettings):
    """What every process has, services and jobs alike: its logs, its secrets, and the sources
    settings come from."""

    model_config = SettingsConfigDict(extra="ignore", env_nested_delimiter="__")

    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$")
    log_json: bool = True

    def secrets(self) -> list[str]:
        """Every secret value, for log redaction."""
        return [
            value.get_secret_value()
            for value in (getattr(self, name) for name in type(self).model_fields)
            if isinstance(value, SecretStr) and value.get_secret_value()
        ]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _FileVariables(settings_cls), _YamlFile(settings_cls)


class KitSettings(ProcessSettings):
    """What every service has on top: its HTTP port and limits."""

    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    shutdown_drain_seconds: float = Field(default=10.0, ge=0)
    # An idle kept-alive connection is closed by the client first only if ours lasts longer than its
    # (httpx 5 s, aiohttp 15 s, AWS ALB and ingress-nginx 60 s): a close that meets a reused connection
    # loses the request sent on it ("disconnected without sending a response").
    keep_alive_seconds: int = Field(default=75, ge=1)


def first_error(error: ValidationError) -> tuple[list[str], str]:
    """The first problem pydantic found: its location's parts and its message."""
    first = error.errors()[0]
    return [str(part) for part in first["loc"]], first["msg"].removeprefix("Value error, ")


def describe_error(settings_cls: type[BaseSettings], error: ValidationError) -> str:
    """One line naming the variable at fault."""
    prefix = settings_cls.model_config.get("env_prefix", "")
    location, message = first_error(error)
    if not location:
        return f"config error: {message}"
    return f"config error: {prefix}{'_'.join(location).upper()}: {message}"


def describe_file_error(path: Path, error: ValidationError) -> str:
    """One line naming the key at fault in a configuration file (`matrix.user-id`)."""
    location, message = first_error(error)
    return f"config error: {path}: {'.'.join(location) or 'the file'}: {message}"


def load_or_exit(settings_cls: type[S], **overrides: Any) -> S:
    """Build settings, or print one line naming the bad variable and exit with status 2."""
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        print(describe_error(settings_cls, exc), file=sys.stderr)
        raise SystemExit(2) from None
    except ValueError as exc:  # from a file source: already names its variable
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
