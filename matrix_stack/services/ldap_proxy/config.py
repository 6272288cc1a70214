"""Settings for `ldap-proxy` (environment prefix `LDAP_PROXY_`; backends from the YAML file named by
`LDAP_PROXY_CONFIG_FILE`, or JSON in `LDAP_PROXY_BACKENDS`)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from matrix_stack.shared.kit.settings import CommaList, KitSettings

STARTTLS_OID = "1.3.6.1.4.1.1466.20037"
# Two processes serving LDAP. In the ldap benchmark (2 cores), with 3-4 busy loops queued beside it,
# one process got 0.74-1.04x haproxy's logins/s (one thread's share of the CPUs, haproxy two), two
# 1.27-1.61x; under the machine's usual load they tie, the second costing ~10-15% more CPU per login
# and ~40 MiB.
DEFAULT_WORKERS = 2
WHOAMI_OID = "1.3.6.1.4.1.4203.1.11.3"


class UpstreamTls(StrEnum):
    none = "none"
    starttls = "starttls"
    ldaps = "ldaps"


class Balance(StrEnum):
    # `first`: every connection to the first healthy backend, so a user who just changed a password
    # binds where it was written (replicating directories lag).
    first = "first"
    round_robin = "round_robin"
    least_conn = "least_conn"


class CheckType(StrEnum):
    anonymous_bind = "anonymous_bind"  # what haproxy's `option ldap-check` sends
    bind = "bind"  # the service account: proves the directory can authenticate, not just answer
    rootdse = "rootdse"  # a base search of "": works where anonymous binds are disabled


class Backend(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
    host: str = Field(min_length=1)
    port: int | None = Field(default=None, ge=1, le=65535, description="Default: 636 for ldaps, else 389")
    tls: UpstreamTls = UpstreamTls.none
    ca_file: Path | None = Field(default=None, description="CA bundle for the backend; default: system CAs")
    server_name: str | None = Field(default=None, description="Name to verify and send as SNI; default host")
    verify: bool = True
    weight: int = Field(default=1, ge=1, le=256)
    backup: bool = Field(default=False, description="Used only while no other backend is up")
    max_connections: int = Field(default=0, ge=0, description="0: no limit beyond the global one")
    proxy_protocol: bool = Field(default=False, description="Send a PROXY protocol v2 header")

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port or (636 if self.tls is UpstreamTls.ldaps else 389)


class LdapProxySettings(KitSettings):
    """`port` is the HTTP control plane; `listen_port` the LDAP listener."""

    model_config = SettingsConfigDict(env_prefix="LDAP_PROXY_", extra="ignore", env_nested_delimiter="__")

    listen_host: str = "0.0.0.0"
    listen_port: int = Field(default=3389, ge=1, le=65535)
    ldaps_port: int | None = Field(default=None, ge=1, le=65535, description="LDAPS listener; needs a cert")
    tls_cert_file: Path | None = Field(default=None, description="The proxy's certificate chain (PEM)")
    tls_key_file: Path | None = Field(default=None, description="Its private key (PEM)")
    starttls: Literal["terminate", "passthrough", "off"] | None = Field(
        default=None,
        description="Default: terminate with a certificate, else off; passthrough only when set",
    )
    certificate_reload_seconds: float = Field(
        default=30.0, ge=1, description="How often the certificate files are checked for a renewal"
    )
    require_tls: bool = Field(default=False, description="Refuse password binds on plain connections (13)")

    backends: list[Backend] = Field(min_length=1)
    balance: Balance = Balance.first

    check_type: CheckType = CheckType.anonymous_bind
    check_interval: float = Field(default=5.0, gt=0, le=3600)
    check_timeout: float = Field(default=2.0, gt=0, le=60)
    check_rise: int = Field(default=2, ge=1, le=100)
    check_fall: int = Field(default=2, ge=1, le=100)
    check_bind_dn: str | None = None
    check_password: SecretStr | None = None

    connect_timeout: float = Field(default=3.0, gt=0, le=60)
    idle_timeout: float = Field(default=120.0, gt=0, le=86400)
    response_timeout: float = Field(
        default=30.0, gt=0, le=3600, description="A request the backend has not begun to answer is dropped"
    )
    max_connections: int = Field(default=1000, ge=1)
    upstream_pool_size: int = Field(
        default=32, ge=0, le=10_000,
        description="Idle connections kept per backend for sessions that begin with a bind; 0: off",
    )  # fmt: skip
    upstream_pool_idle_seconds: float = Field(default=20.0, gt=0, le=3600)
    max_pdu_bytes: int = Field(default=64 * 1024, ge=1024, description="Largest request a client may send")

    read_only: bool = True
    allowed_extended_ops: CommaList = Field(default_factory=lambda: [STARTTLS_OID, WHOAMI_OID])
    bind_failure_limit: int = Field(default=0, ge=0, description="Failed binds per DN per window; 0: off")
    bind_failure_window: float = Field(default=300.0, gt=0)
    audit_binds: bool = True
    workers: int | None = Field(
        default=None, ge=1, le=64,
        description=f"Processes serving LDAP on the same ports (SO_REUSEPORT); default {DEFAULT_WORKERS}, "
        "1 with the failed-bind limit (it counts a DN's failures in one process)",
    )  # fmt: skip

    @model_validator(mode="after")
    def _consistent(self) -> LdapProxySettings:
        names = [backend.name for backend in self.backends]
        if len(set(names)) != len(names):
            raise ValueError(f"LDAP_PROXY_BACKENDS: names must be unique: {names}")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("set both LDAP_PROXY_TLS_CERT_FILE and LDAP_PROXY_TLS_KEY_FILE, or neither")
        if self.ldaps_port is not None and self.tls_cert_file is None:
            raise ValueError("LDAP_PROXY_LDAPS_PORT needs LDAP_PROXY_TLS_CERT_FILE and TLS_KEY_FILE")
        if self.starttls == "terminate" and self.tls_cert_file is None:
            raise ValueError("LDAP_PROXY_STARTTLS=terminate needs LDAP_PROXY_TLS_CERT_FILE and TLS_KEY_FILE")
        if self.starttls_mode == "passthrough" and self.read_only:
            raise ValueError(
                "LDAP_PROXY_STARTTLS=passthrough hands the connection to the directory after StartTLS, "
                "past read-only, the bind audit and the bind limit: terminate it (LDAP_PROXY_TLS_CERT_FILE) "
                "or accept that with LDAP_PROXY_READ_ONLY=false"
            )
        if self.starttls_mode == "passthrough":
            encrypted = [backend.name for backend in self.backends if backend.tls is not UpstreamTls.none]
            if encrypted:  # the client's TLS goes end to end: the proxy cannot add its own upstream
                raise ValueError(
                    f"LDAP_PROXY_STARTTLS=passthrough needs backends with tls none, not {encrypted}"
                )
        if self.check_type is CheckType.bind and not (self.check_bind_dn and self.check_password):
            raise ValueError(
                "LDAP_PROXY_CHECK_TYPE=bind needs LDAP_PROXY_CHECK_BIND_DN and LDAP_PROXY_CHECK_PASSWORD "
                "(or LDAP_PROXY_CHECK_PASSWORD_FILE)"
            )
        if self.workers is not None and self.workers > 1 and self.bind_failure_limit:
            raise ValueError(
                "LDAP_PROXY_WORKERS above 1 with LDAP_PROXY_BIND_FAILURE_LIMIT: the limit counts a DN's "
                "failures in one process, and each worker would allow as many; leave workers unset (1 with "
                "the limit) or set it to 1"
            )
        if self.check_timeout >= self.check_interval:
            raise ValueError("LDAP_PROXY_CHECK_TIMEOUT must be shorter than LDAP_PROXY_CHECK_INTERVAL")
        if self.listen_port in (self.port, self.ldaps_port) or self.port == self.ldaps_port:
            raise ValueError(
                "LDAP_PROXY_LISTEN_PORT, LDAP_PROXY_LDAPS_PORT and LDAP_PROXY_PORT (HTTP) must differ"
            )
        return self

    def for_workers(self) -> dict[str, Any]:
        """Every field as plain JSON, secrets included: what the main process hands the other workers
        (over their socketpair), so they serve exactly its settings however it got them."""
        values = self.model_dump(mode="json")
        for name in type(self).model_fields:
            if isinstance(secret := getattr(self, name), SecretStr):
                values[name] = secret.get_secret_value()
        return values

    @property
    def worker_count(self) -> int:
        """Processes serving LDAP: as set, else the measured default (1 with the failed-bind limit)."""
        return self.workers or (1 if self.bind_failure_limit else DEFAULT_WORKERS)

    def share(self, limit: int) -> int:
        """One worker's part of a limit for the whole proxy (connections): the connections the kernel
        spreads over the workers' listeners meet one worker's limit each (0: no limit stays none)."""
        return -(-limit // self.worker_count)

    @property
    def starttls_mode(self) -> Literal["terminate", "passthrough", "off"]:
        """Terminate with a certificate; pass through only when asked; else StartTLS is answered
        `unavailable`."""
        return self.starttls or ("terminate" if self.tls_cert_file else "off")
