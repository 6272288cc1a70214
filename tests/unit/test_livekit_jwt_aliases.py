"""lk-jwt-service's variables read as ours: each value as it means there, precedence as there, and
what has no equal here refused in one line."""

from __future__ import annotations

import pytest

from matrix_stack.services.livekit_jwt.aliases import Unsupported, resolve


def test_values_spelled_as_lk_jwt_service_spells_them() -> None:
    aliased = resolve({
        "LIVEKIT_FULL_ACCESS_HOMESERVERS": " a.org, b.org  c.org ",
        "LIVEKIT_SANITY_CHECK_INTERVAL_SECONDS": "30",
        "LIVEKIT_LOG_LEVEL": "Warn",
        "LIVEKIT_JWT_BIND": ":8081",
        "LIVEKIT_JWT_REPLICA_IP": "10.1.2.3",
        "UNRELATED": "kept",
    })  # fmt: skip
    env = aliased.environ
    assert env["LIVEKIT_JWT_FULL_ACCESS_HOMESERVERS"] == "a.org,b.org,c.org"
    assert env["LIVEKIT_JWT_SANITY_CHECK_INTERVAL_SECONDS"] == "30"
    assert env["LIVEKIT_JWT_LOG_LEVEL"] == "WARNING"
    assert (env["LIVEKIT_JWT_PORT"], "LIVEKIT_JWT_HOST" in env) == ("8081", False)  # every address
    assert env["LIVEKIT_JWT_REPLICA"] == "10.1.2.3"
    assert env["UNRELATED"] == "kept"
    assert len(aliased.used) == 5


@pytest.mark.parametrize(
    ("bind", "host", "port"),
    [("[::1]:9000", "::1", "9000"), ("0.0.0.0:80", "0.0.0.0", "80"), ("8080", None, "8080")],
)
def test_bind(bind: str, host: str | None, port: str) -> None:
    env = resolve({"LIVEKIT_JWT_BIND": bind}).environ
    assert (env.get("LIVEKIT_JWT_HOST"), env["LIVEKIT_JWT_PORT"]) == (host, port)


def test_a_file_overrides_the_plain_variable_as_there() -> None:
    aliased = resolve({"LIVEKIT_KEY": "plain", "LIVEKIT_KEY_FROM_FILE": "/k", "LIVEKIT_SECRET": "s"})
    assert "LIVEKIT_JWT_KEY" not in aliased.environ
    assert aliased.environ["LIVEKIT_JWT_KEY_FILE"] == "/k"
    assert "LIVEKIT_KEY not read: LIVEKIT_KEY_FROM_FILE overrides it, as in lk-jwt-service" in aliased.used
    keys_file = resolve({"LIVEKIT_KEY_FILE": "/keys", "LIVEKIT_SECRET_FROM_FILE": "/s"}).environ
    assert (keys_file["LIVEKIT_JWT_KEYS_FILE"], "LIVEKIT_JWT_SECRET_FILE" in keys_file) == ("/keys", False)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"LIVEKIT_REDIS_URL": "redis://r"}, "config error: LIVEKIT_REDIS_URL: Redis is not supported"),
        ({"LIVEKIT_REDIS_PASSWORD": "p"}, "config error: LIVEKIT_REDIS_PASSWORD: Redis is not supported"),
        ({"LIVEKIT_AS_TOKEN": "t"}, "config error: LIVEKIT_AS_TOKEN: lk-jwt-service's application-service"),
        (
            {"LIVEKIT_SANITY_CHECK_INTERVAL_SECONDS": "-1"},
            "config error: LIVEKIT_SANITY_CHECK_INTERVAL_SECONDS",
        ),
        ({"LIVEKIT_LOG_LEVEL": "trace"}, "config error: LIVEKIT_LOG_LEVEL: 'trace' is not"),
        ({"LIVEKIT_JWT_BIND": ":8080", "LIVEKIT_JWT_PORT": "8080"}, "config error: LIVEKIT_JWT_BIND and"),
        ({"LIVEKIT_JWT_BIND": "host:99999"}, "config error: LIVEKIT_JWT_BIND: 'host:99999'"),
        ({"LIVEKIT_URL": "ws://a", "LIVEKIT_JWT_LIVEKIT_URL": "ws://b"}, "config error: LIVEKIT_URL and"),
    ],
)
def test_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(Unsupported) as refused:
        resolve(environ)
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


def test_an_empty_redis_url_is_off_there_too() -> None:
    assert resolve({"LIVEKIT_REDIS_URL": ""}).used == []


def test_the_older_name_of_full_access_homeservers() -> None:
    assert (
        resolve({"LIVEKIT_LOCAL_HOMESERVERS": "a.org b.org"}).environ["LIVEKIT_JWT_FULL_ACCESS_HOMESERVERS"]
        == "a.org,b.org"
    )
    both = resolve({"LIVEKIT_LOCAL_HOMESERVERS": "old.org", "LIVEKIT_FULL_ACCESS_HOMESERVERS": "new.org"})
    assert both.environ["LIVEKIT_JWT_FULL_ACCESS_HOMESERVERS"] == "new.org"
