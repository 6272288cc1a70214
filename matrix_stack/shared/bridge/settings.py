"""A Matrix bridge's settings: where the homeserver is, who the bot is, where its outbox lives."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from matrix_stack.shared.kit.settings import CommaList, KitSettings


class ServiceSettings(KitSettings):
    """A Matrix bridge: where the homeserver is, who the bot is, where its data lives."""

    homeserver: str = Field(description="Homeserver base URL, or a server name to discover")
    user_id: str = Field(pattern=r"^@[^:]+:.+$", description="The bot's full Matrix user id")
    access_token: SecretStr | None = None
    password: SecretStr | None = None
    device_name: str = "matrix-stack"
    data_dir: Path = Path("data")
    outbox_path: Path | None = Field(default=None, description="Default: <data_dir>/outbox.sqlite3")
    invite_allowlist: CommaList = Field(
        default_factory=list, description="Users or servers whose invites are accepted (comma-separated)"
    )
    backoff_max_seconds: float = Field(default=60.0, gt=0)
    outbox_retention_seconds: float = Field(default=7 * 24 * 3600.0, gt=0, description="Sent deliveries kept")
    relation_retention_seconds: float = Field(
        default=7 * 24 * 3600.0, gt=0, description="A resolved issue or alert still takes relations this long"
    )
    outbox_url: SecretStr | None = Field(
        default=None, description="PostgreSQL (libpq URL or key=value string) shared by every replica"
    )
    outbox_schema: str | None = Field(
        default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$", description="Default: the service's name"
    )
    outbox_lease_seconds: float = Field(default=10.0, ge=2, le=300, description="A room's sender lease")
    outbox_pool_size: int = Field(default=4, ge=2, le=100)

    @field_validator("outbox_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            from matrix_stack.shared.outbox.conninfo import passwords

            passwords(value.get_secret_value())  # ValueError naming the problem, never the string
        return value

    @model_validator(mode="after")
    def _credentials(self) -> ServiceSettings:
        if self.access_token is None and self.password is None:
            raise ValueError("set ACCESS_TOKEN (or ACCESS_TOKEN_FILE), or PASSWORD (or PASSWORD_FILE)")
        return self

    @property
    def outbox_file(self) -> Path:
        return self.outbox_path or self.data_dir / "outbox.sqlite3"

    @property
    def session_file(self) -> Path:
        return self.data_dir / "session.json"

    @property
    def outbox_schema_name(self) -> str:
        """The PostgreSQL schema of this deployment's outbox: set, or the service's (`sentry_webhook`)."""
        return (
            self.outbox_schema or str(self.model_config.get("env_prefix", "")).strip("_").lower() or "outbox"
        )
