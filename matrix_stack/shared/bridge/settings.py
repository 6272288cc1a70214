"""A Matrix bridge's settings: where the homeserver is, who the bot is, where its outbox lives."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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
    encryption: bool = Field(
        default=True, description="Encrypt in rooms that have encryption on (off: such rooms get nothing)"
    )
    encryption_key: SecretStr | None = Field(
        default=None,
        description="Secret the crypto state and the cross-signing keys derive from; default"
        " <data_dir>/encryption.key, made on first start (required with OUTBOX_URL)",
    )
    key_sharing: Literal["members", "cross-signed", "allowlist"] = Field(
        default="members",
        description="Devices that get room keys: every member's, only those their owner cross-signed,"
        " or the allow-list's",
    )
    key_sharing_allowlist: CommaList = Field(
        default_factory=list,
        description="Users or servers whose devices get room keys (key_sharing=allowlist)",
    )

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

    @model_validator(mode="after")
    def _encryption(self) -> ServiceSettings:
        prefix = str(self.model_config.get("env_prefix", ""))
        if self.encryption and self.encryption_key is None and self.outbox_url is not None:
            raise ValueError(
                f"{prefix}ENCRYPTION_KEY (or {prefix}ENCRYPTION_KEY_FILE): set it, the same Secret for every"
                " replica, when the outbox is PostgreSQL (or turn ENCRYPTION off)"
            )
        if self.encryption_key is not None and len(self.encryption_key.get_secret_value().encode()) < 16:
            raise ValueError(f"{prefix}ENCRYPTION_KEY: use at least 16 bytes (32 random bytes, say)")
        if self.key_sharing == "allowlist" and not self.key_sharing_allowlist:
            raise ValueError(f"{prefix}KEY_SHARING_ALLOWLIST: set it when KEY_SHARING is allowlist")
        return self

    @property
    def encryption_key_file(self) -> Path:
        return self.data_dir / "encryption.key"

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
