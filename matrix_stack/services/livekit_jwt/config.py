"""Settings for `livekit-jwt` (environment prefix `LIVEKIT_JWT_`, `*_FILE` for any value)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from matrix_stack.shared.kit.settings import CommaList, KitSettings
from matrix_stack.shared.outbox.conninfo import passwords

# How rooms and identities are derived, by the lk-jwt-service version whose clients must keep working:
# v0.4.3 (JSON arrays; what current Element Call and matrix-js-sdk compute), v0.4.1 (pipe-joined,
# base64), v0.4.0 (hex room, member id as identity).
HashScheme = Literal["v0.4.3", "v0.4.1", "v0.4.0"]


class LivekitJwtSettings(KitSettings):
    model_config = SettingsConfigDict(env_prefix="LIVEKIT_JWT_", extra="ignore", env_nested_delimiter="__")

    livekit_url: str = Field(pattern=r"^wss?://[^\s/]+", description="The SFU's URL, given to clients")
    livekit_api_url: str | None = Field(
        default=None, pattern=r"^https?://", description="RoomService URL; default livekit_url, ws→http"
    )
    key: SecretStr | None = Field(default=None, description="LiveKit API key")
    secret: SecretStr | None = Field(default=None, description="LiveKit API secret")
    keys_file: Path | None = Field(default=None, description="A LiveKit keys file, `key: secret`")
    full_access_homeservers: CommaList = Field(
        min_length=1, description="Server names whose users may create rooms; `*` for any (explicit only)"
    )
    hash_scheme: HashScheme = "v0.4.3"
    can_update_own_metadata: bool = Field(default=False, description="MSC4195 recommends false")
    room_empty_timeout: int = Field(default=300, ge=0)
    room_departure_timeout: int = Field(default=20, ge=0)
    token_ttl_seconds: int = Field(default=3600, ge=60, le=86400)

    # MSC4512: Synapse forwards /_matrix/client/*/rtc/livekit/* to this service as an application
    # service, having authenticated the user; local users then need no OpenID round trip.
    appservice_token: SecretStr | None = Field(
        default=None, description="The registration's hs_token, which Synapse presents; enables the routes"
    )
    homeserver_name: str | None = Field(default=None, description="The server name of that homeserver")

    # MSC4140 delegated leave: jobs kept in <data_dir>/delegations.sqlite3 (one replica), or in
    # PostgreSQL shared by every replica (database_url)
    delegation: bool = Field(default=True, description="Accept delayed leave events to send for clients")
    data_dir: Path = Path("data")
    database_url: SecretStr | None = Field(
        default=None, description="PostgreSQL (libpq URL or key=value string) shared by every replica"
    )
    database_schema: str = Field(default="livekit_jwt", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    delegation_lease_seconds: float = Field(
        default=3.0, ge=1, le=60, description="A job's lease: a dead replica's jobs move within 4/3 of it"
    )
    replica: str | None = Field(default=None, description="This replica's name in leases; default the host's")
    sanity_check_interval_seconds: int = Field(
        default=0, ge=0, description="Ask the SFU whether joined participants are still there; 0: never"
    )
    cs_api_overrides: CommaList = Field(
        default_factory=list, description="server_name=https://base: a homeserver's client-server API"
    )
    delegation_join_grace: float = Field(
        default=60.0, gt=0, description="Seconds a delegation waits for its participant to reach the SFU"
    )

    # Federation lookups (OpenID userinfo): SSRF-safe unless the allow-list says otherwise.
    federation_allow: CommaList = Field(
        default_factory=list,
        description="CIDRs or server names the lookup may reach although private (e.g. 10.0.0.0/8)",
    )
    federation_overrides: CommaList = Field(
        default_factory=list,
        description="server_name=host:port: where a homeserver's federation API is (e.g. in-cluster)",
    )
    federation_ca_file: Path | None = Field(default=None, description="Extra CA bundle for federation TLS")
    federation_timeout: float = Field(default=10.0, gt=0, le=60)
    dns_servers: CommaList = Field(default_factory=list, description="host[:port] resolvers; default system")

    # lk-jwt-service's variables this start read (aliases.py), one line each for the log
    _aliases_used: list[str] = PrivateAttr(default_factory=list)

    @property
    def aliases_used(self) -> list[str]:
        return self._aliases_used

    @aliases_used.setter
    def aliases_used(self, lines: list[str]) -> None:
        self._aliases_used = lines

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            passwords(value.get_secret_value())  # ValueError naming the problem, never the string
        return value

    @model_validator(mode="after")
    def _credentials(self) -> LivekitJwtSettings:
        if (self.appservice_token is None) != (self.homeserver_name is None):
            raise ValueError("set LIVEKIT_JWT_APPSERVICE_TOKEN and LIVEKIT_JWT_HOMESERVER_NAME together")
        if self.keys_file is None and (self.key is None or self.secret is None):
            raise ValueError(
                "set LIVEKIT_JWT_KEY and LIVEKIT_JWT_SECRET (or their _FILE), or LIVEKIT_JWT_KEYS_FILE"
            )
        return self
