"""The bridge charts' end-to-end encryption (`encryption`): on by default, the service's ENCRYPTION,
ENCRYPTION_KEY_FILE and KEY_SHARING(_ALLOWLIST) from values. The key: `encryption.key` when set (the
chart's Secret or the operator's, used as given); else on the chart's claim none (the service makes
its file there); else (outbox.postgres, an emptyDir) a random key in a Secret the chart keeps. Each
render is read back by the real service's settings, which refuse what the service would refuse."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from tests.charts import helm
from tests.charts.test_bridge_persistence import (
    BRIDGES,
    DATA_DIR,
    ENCRYPTION_SECRET,
    PREFIX,
    ci,
    data_volume,
    render,
)
from tests.charts.test_bridge_postgres_outbox import URL, env, on_postgres, pod, secret_file, service_settings

KEY = "an-operators-encryption-key-0123456789"


def generated(chart: str) -> str:
    return f"t-{chart}-encryption-key"


def key_of(rendered: dict[str, dict[str, Any]]) -> str:
    return base64.b64decode(rendered[ENCRYPTION_SECRET]["data"]["encryption-key"]).decode()


def checksum(rendered: dict[str, dict[str, Any]]) -> str:
    found: str = rendered["Deployment"]["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    return found


@pytest.mark.parametrize("chart", BRIDGES)
def test_sqlite_encrypts_with_the_services_own_key_file_on_the_claim(
    chart: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("minimal", "existing-claim"):
        rendered = render(chart, name)
        assert "persistentVolumeClaim" in data_volume(rendered)
        variables = env(rendered)
        prefix = PREFIX[chart]
        assert variables[f"{prefix}ENCRYPTION"] == "true"
        assert variables[f"{prefix}KEY_SHARING"] == "members"
        assert not {
            f"{prefix}ENCRYPTION_KEY",
            f"{prefix}ENCRYPTION_KEY_FILE",
            f"{prefix}KEY_SHARING_ALLOWLIST",
        } & set(variables)
        assert ENCRYPTION_SECRET not in rendered
        assert "encryption-key" not in rendered.get("Secret", {}).get("data", {})
        assert "encryption" not in helm.notes(chart, ci(chart, name))
    settings = service_settings(chart, render(chart), tmp_path, monkeypatch)
    assert (settings.encryption, settings.encryption_key, settings.key_sharing) == (True, None, "members")
    assert str(settings.encryption_key_file) == f"{DATA_DIR}/encryption.key"  # on the claim


@pytest.mark.parametrize("chart", BRIDGES)
def test_postgres_gets_a_generated_key_in_a_kept_secret(
    chart: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = render(chart, values=on_postgres(url={"value": URL}))
    prefix = PREFIX[chart]
    variables = env(rendered)
    assert variables[f"{prefix}ENCRYPTION"] == "true"
    assert f"{prefix}ENCRYPTION_KEY" not in variables  # the key itself never
    path = variables[f"{prefix}ENCRYPTION_KEY_FILE"]
    assert secret_file(pod(rendered), path) == (generated(chart), "encryption-key")
    secret = rendered[ENCRYPTION_SECRET]
    assert secret["metadata"]["name"] == generated(chart)
    assert secret["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert secret["metadata"]["labels"]["app.kubernetes.io/instance"] == "t"
    assert (
        "encryption-key" not in rendered["Secret"]["data"]
    )  # not in the chart's Secret, which uninstall deletes
    key = key_of(rendered)
    assert len(key) == 64
    assert key.isalnum()
    # Without a cluster to look it up in, each render makes a new key; it is not in the pods'
    # checksum, so an upgrade that reuses the cluster's key does not roll them either.
    again = render(chart, values=on_postgres(url={"value": URL}))
    assert key_of(again) != key
    assert checksum(again) == checksum(rendered)
    settings = service_settings(chart, rendered, tmp_path, monkeypatch)  # it refuses PostgreSQL without a key
    assert settings.encryption_key is not None
    assert settings.encryption_key.get_secret_value() == key
    notes = helm.notes(chart, ci(chart, "postgres-outbox"))
    assert f"encryption key is in the Secret {generated(chart)}" in notes
    assert "Uninstall leaves it (helm.sh/resource-policy:\nkeep)" in notes
    assert "give them encryption.key instead" in notes


@pytest.mark.parametrize("chart", BRIDGES)
def test_an_emptydir_gets_the_kept_secret_too(chart: str) -> None:
    """A key file on an emptyDir would be a new key, so a new cross-signing identity, with every pod."""
    rendered = render(chart, "emptydir")
    path = env(rendered)[f"{PREFIX[chart]}ENCRYPTION_KEY_FILE"]
    assert secret_file(pod(rendered), path) == (generated(chart), "encryption-key")
    assert rendered[ENCRYPTION_SECRET]["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    notes = helm.notes(chart, ci(chart, "emptydir"))
    assert "the bot's encryption state" in notes


@pytest.mark.parametrize("chart", BRIDGES)
@pytest.mark.parametrize("outbox", ["sqlite", "postgres"])
def test_an_operators_secret_is_used_as_given(chart: str, outbox: str) -> None:
    values: dict[str, Any] = {
        "encryption": {"key": {"secret": "{{ .Release.Name }}-e2ee", "secretKey": "bot.key"}}
    }
    if outbox == "postgres":
        values |= on_postgres()
    rendered = render(chart, values=values)
    path = env(rendered)[f"{PREFIX[chart]}ENCRYPTION_KEY_FILE"]
    assert path == "/secrets/ext/t-e2ee/bot.key"
    assert secret_file(pod(rendered), path) == ("t-e2ee", "bot.key")
    assert ENCRYPTION_SECRET not in rendered
    assert "encryption-key" not in rendered["Secret"]["data"]  # the chart's (the token is in it)
    assert "encryption key" not in helm.notes(chart, ci(chart, "minimal"), values=values)


@pytest.mark.parametrize("chart", [c for c in BRIDGES if ci(c, "existing-secrets").exists()])
def test_with_every_credential_in_operator_secrets_the_chart_renders_no_secret(chart: str) -> None:
    rendered = render(chart, "existing-secrets")
    assert "Secret" not in rendered
    assert ENCRYPTION_SECRET not in rendered
    path = env(rendered)[f"{PREFIX[chart]}ENCRYPTION_KEY_FILE"]
    assert secret_file(pod(rendered), path) == ("matrix-bot", "encryption-key")
    # On PostgreSQL too (its URL from an operator's Secret).
    rendered = render(chart, "existing-secrets", values=on_postgres())
    assert "Secret" not in rendered
    assert ENCRYPTION_SECRET not in rendered


@pytest.mark.parametrize("chart", BRIDGES)
def test_a_key_value_is_kept_in_the_charts_secret_and_rolls_the_pods(
    chart: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = render(
        chart, values={**on_postgres(url={"value": URL}), "encryption": {"key": {"value": KEY}}}
    )
    path = env(rendered)[f"{PREFIX[chart]}ENCRYPTION_KEY_FILE"]
    assert path == "/secrets/chart/encryption-key"
    assert secret_file(pod(rendered), path) == (f"t-{chart}", "encryption-key")
    assert base64.b64decode(rendered["Secret"]["data"]["encryption-key"]).decode() == KEY
    assert ENCRYPTION_SECRET not in rendered
    changed = render(
        chart, values={**on_postgres(url={"value": URL}), "encryption": {"key": {"value": KEY + "x"}}}
    )
    assert checksum(changed) != checksum(rendered)
    settings = service_settings(chart, rendered, tmp_path, monkeypatch)
    assert settings.encryption_key is not None
    assert settings.encryption_key.get_secret_value() == KEY


@pytest.mark.parametrize("chart", BRIDGES)
def test_key_sharing_reaches_the_service(chart: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prefix = PREFIX[chart]
    signed = env(render(chart, values={"encryption": {"keySharing": "cross-signed"}}))
    assert signed[f"{prefix}KEY_SHARING"] == "cross-signed"
    assert f"{prefix}KEY_SHARING_ALLOWLIST" not in signed
    listed = {
        "encryption": {"keySharing": "allowlist", "keySharingAllowlist": ["@ops:example.org", "example.net"]}
    }
    rendered = render(chart, values=listed)
    assert env(rendered)[f"{prefix}KEY_SHARING_ALLOWLIST"] == "@ops:example.org,example.net"
    settings = service_settings(chart, rendered, tmp_path, monkeypatch)
    assert (settings.key_sharing, settings.key_sharing_allowlist) == (
        "allowlist",
        ["@ops:example.org", "example.net"],
    )


@pytest.mark.parametrize("chart", BRIDGES)
def test_the_schema_refuses_what_the_service_would(chart: str) -> None:
    for encryption, message in (
        ({"keySharing": "allowlist"}, "at '/encryption/keySharingAllowlist': minItems: got 0, want 1"),
        ({"keySharing": "allowlist", "keySharingAllowlist": []}, "/encryption/keySharingAllowlist"),
        ({"keySharing": "everyone"}, "/encryption/keySharing"),
        ({"key": {"value": "too-short"}}, "at '/encryption/key/value': minLength: got 9, want 16"),
        ({"key": {"secret": "e2ee"}}, "/encryption/key"),
        ({"key": {"value": KEY, "secret": "e2ee", "secretKey": "k"}}, "/encryption/key"),
        ({"keyFile": "/x"}, "keyFile"),  # unknown keys fail
    ):
        with pytest.raises(helm.RenderError) as failed:
            helm.template(chart, ci(chart, "minimal"), values={"encryption": encryption})
        assert message in str(failed.value), encryption


@pytest.mark.parametrize("chart", BRIDGES)
def test_disabled_says_so_and_needs_no_key(
    chart: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    off = {"encryption": {"enabled": False}}
    prefix = PREFIX[chart]
    for values in (off, {**on_postgres(), **off}):
        rendered = render(chart, values=values)
        variables = env(rendered)
        assert variables[f"{prefix}ENCRYPTION"] == "false"
        assert not [name for name in variables if "KEY_SHARING" in name or "ENCRYPTION_KEY" in name]
        assert ENCRYPTION_SECRET not in rendered
        notes = helm.notes(chart, ci(chart, "minimal"), values=values)
        assert (
            "NOTE: encryption.enabled is false: messages for rooms with encryption on stay in the outbox"
            in notes
        )
    # The service starts on PostgreSQL without a key when encryption is off.
    settings = service_settings(
        chart, render(chart, values={**on_postgres(url={"value": URL}), **off}), tmp_path, monkeypatch
    )
    assert (settings.encryption, settings.encryption_key) == (False, None)
