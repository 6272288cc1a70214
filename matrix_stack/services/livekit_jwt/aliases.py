"""lk-jwt-service's environment variables, so that a deployment of it (ess-helm's, or one's own)
moves over unchanged: each that means the same here becomes its LIVEKIT_JWT_* setting, and the
service says so in one line at start; one that has no equal here is refused in one line (exit 2),
never ignored. Read from lk-jwt-service 0.6 and its newest source (see the README's migration).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# lk-jwt-service's name -> ours, for those that take the same value as they are
SAME = {
    "LIVEKIT_URL": "LIVEKIT_JWT_LIVEKIT_URL",
    "LIVEKIT_KEY": "LIVEKIT_JWT_KEY",
    "LIVEKIT_SECRET": "LIVEKIT_JWT_SECRET",
    "LIVEKIT_KEY_FROM_FILE": "LIVEKIT_JWT_KEY_FILE",
    "LIVEKIT_SECRET_FROM_FILE": "LIVEKIT_JWT_SECRET_FILE",
    "LIVEKIT_KEY_FILE": "LIVEKIT_JWT_KEYS_FILE",  # one `key:secret` line, as our keys file
    "LIVEKIT_CS_API_URL_OVERRIDES": "LIVEKIT_JWT_CS_API_OVERRIDES",
    "LIVEKIT_JWT_REPLICA_IP": "LIVEKIT_JWT_REPLICA",  # the replica's name in leases (its chart's pod IP)
}
# ...and those whose value is spelled differently (see `_translate`)
TRANSLATED = {
    "LIVEKIT_FULL_ACCESS_HOMESERVERS": "LIVEKIT_JWT_FULL_ACCESS_HOMESERVERS",
    "LIVEKIT_LOCAL_HOMESERVERS": "LIVEKIT_JWT_FULL_ACCESS_HOMESERVERS",  # 0.4.x's older name for it
    "LIVEKIT_SANITY_CHECK_INTERVAL_SECONDS": "LIVEKIT_JWT_SANITY_CHECK_INTERVAL_SECONDS",
    "LIVEKIT_LOG_LEVEL": "LIVEKIT_JWT_LOG_LEVEL",
}
_REDIS = (
    "Redis is not supported: delegation jobs are kept in LIVEKIT_JWT_DATA_DIR (one replica) or in"
    " PostgreSQL shared by every replica (LIVEKIT_JWT_DATABASE_URL); see the README's migration section"
)
_APPSERVICE = (
    "lk-jwt-service's application-service mode is not supported; the homeserver-native mode (MSC4512)"
    " is LIVEKIT_JWT_APPSERVICE_TOKEN and LIVEKIT_JWT_HOMESERVER_NAME"
)
UNSUPPORTED = {
    "LIVEKIT_INSECURE_SKIP_VERIFY_TLS": "TLS is always verified here: give the homeservers' CA with"
    " LIVEKIT_JWT_FEDERATION_CA_FILE",
    "LIVEKIT_REDIS_URL": _REDIS,
    "LIVEKIT_REDIS_PASSWORD": _REDIS,
    "LIVEKIT_AS_TOKEN": _APPSERVICE,
    "LIVEKIT_HS_TOKEN": _APPSERVICE,
    "LIVEKIT_AS_REGISTRATION_FILE": _APPSERVICE,
    "LIVEKIT_HS_SERVER_NAME": _APPSERVICE,
}
# lk-jwt-service reads a *_FROM_FILE before the plain variable, and its keys file before both
_OVERRIDDEN_BY = {
    "LIVEKIT_KEY": ("LIVEKIT_KEY_FILE", "LIVEKIT_KEY_FROM_FILE"),
    "LIVEKIT_SECRET": ("LIVEKIT_KEY_FILE", "LIVEKIT_SECRET_FROM_FILE"),
    "LIVEKIT_KEY_FROM_FILE": ("LIVEKIT_KEY_FILE",),
    "LIVEKIT_SECRET_FROM_FILE": ("LIVEKIT_KEY_FILE",),
    "LIVEKIT_LOCAL_HOMESERVERS": ("LIVEKIT_FULL_ACCESS_HOMESERVERS",),
}
_LOG_LEVELS = {"debug": "DEBUG", "info": "INFO", "warn": "WARNING", "warning": "WARNING", "error": "ERROR"}
_BIND = re.compile(r"^(?:(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\[\]]*):)?(?P<port>[0-9]{1,5})$")


class Unsupported(ValueError):
    """A variable of lk-jwt-service's with no equal here; the message is the one line to print."""


@dataclass
class Aliased:
    """The environment to read our settings from, and what each alias used became."""

    environ: dict[str, str]
    used: list[str] = field(default_factory=list)  # one line each, for the log at start


def _translate(name: str, value: str) -> str:
    if name.endswith("_HOMESERVERS"):  # comma or space separated there, commas here
        return ",".join(value.replace(",", " ").split())
    if name == "LIVEKIT_SANITY_CHECK_INTERVAL_SECONDS":
        if not value.strip().isdigit():
            raise Unsupported(f"config error: {name}: {value!r} is not a non-negative number of seconds")
        return value.strip()
    level = _LOG_LEVELS.get(value.strip().lower())
    if level is None:
        raise Unsupported(f"config error: {name}: {value!r} is not debug, info, warn or error")
    return level


def _bind(value: str) -> dict[str, str]:
    """LIVEKIT_JWT_BIND: `:8080`, `host:8080`, `[::1]:8080` or `8080` (what its healthcheck reads)."""
    found = _BIND.match(value.strip())
    if found is None or not 1 <= int(found["port"]) <= 65535:
        raise Unsupported(f"config error: LIVEKIT_JWT_BIND: {value!r} is not [host]:port")
    host = (found["host"] or "").strip("[]")
    return {"LIVEKIT_JWT_PORT": found["port"], **({"LIVEKIT_JWT_HOST": host} if host else {})}


def resolve(environ: Mapping[str, str]) -> Aliased:
    """Our environment with lk-jwt-service's variables in it. Raises Unsupported."""
    for name, why in UNSUPPORTED.items():
        if environ.get(name, "").strip():  # set but empty means off there too
            raise Unsupported(f"config error: {name}: {why}")
    env = dict(environ)
    aliased = Aliased(env)

    def put(alias: str, ours: str, value: str) -> None:
        if ours in environ and environ[ours] != value:
            raise Unsupported(f"config error: {alias} and {ours} are both set, differently: set one")
        env[ours] = value
        aliased.used.append(f"{alias} read as {ours} (lk-jwt-service's variable)")

    for alias, ours in (SAME | TRANSLATED).items():
        value = environ.get(alias)
        if value is None:
            continue
        winner = next((other for other in _OVERRIDDEN_BY.get(alias, ()) if environ.get(other)), None)
        if winner is not None:
            aliased.used.append(f"{alias} not read: {winner} overrides it, as in lk-jwt-service")
            continue
        put(alias, ours, _translate(alias, value) if alias in TRANSLATED else value.strip())
    if (bind := environ.get("LIVEKIT_JWT_BIND")) is not None:
        if "LIVEKIT_JWT_PORT" in environ:  # lk-jwt-service refuses both too
            raise Unsupported("config error: LIVEKIT_JWT_BIND and LIVEKIT_JWT_PORT are both set: set one")
        for ours, value in _bind(bind).items():
            put("LIVEKIT_JWT_BIND", ours, value)
    return aliased
