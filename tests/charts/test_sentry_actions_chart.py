"""The sentry-webhook chart's `actions`: what it renders loads in the real service, the token stays in
Secrets, the NetworkPolicy lets the bot reach Sentry's API."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from matrix_stack.services.sentry_webhook.config import SentryWebhookSettings
from tests.charts import helm

CHART = "sentry-webhook"
CI = helm.CHARTS / CHART / "ci"
ACTIONS = CI / "actions-values.yaml"
MINIMAL = CI / "minimal-values.yaml"
TOKEN = "sntrys_actions_token_0123456789"  # actions-values.yaml's


def by_kind(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in documents}


def container(rendered: dict[str, dict[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = rendered["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    return found


def env_of(rendered: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(rendered)["env"]}


def load(
    rendered: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> SentryWebhookSettings:
    """The settings the service builds from the rendered env, with the Secret's files where the
    *_FILE variables point."""
    secret = {k: base64.b64decode(v).decode() for k, v in rendered.get("Secret", {}).get("data", {}).items()}
    for name, value in env_of(rendered).items():
        if name.endswith("_FILE"):
            path = tmp_path / Path(value).name
            path.write_text(secret.get(Path(value).name, "from-an-existing-secret"))
            value = str(path)
        monkeypatch.setenv(name, value)
    return SentryWebhookSettings()


def test_actions_load_in_the_service_and_the_token_stays_in_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = by_kind(helm.template(CHART, ACTIONS))
    for kind, document in rendered.items():
        if kind != "Secret":  # not in the env, annotations or anywhere else in plain text
            assert TOKEN not in yaml.safe_dump(document, allow_unicode=True), kind
    env = env_of(rendered)
    assert env["SENTRY_WEBHOOK_SENTRY_TOKEN_FILE"] == "/secrets/chart/sentry-token"
    assert "SENTRY_WEBHOOK_SENTRY_TOKEN" not in env
    assert "/secrets/chart" in {m["mountPath"] for m in container(rendered)["volumeMounts"]}
    settings = load(rendered, tmp_path, monkeypatch)
    assert settings.actions_enabled
    assert (settings.sentry_url, settings.sentry_organization) == ("https://sentry.example.org", "acme")
    assert settings.sentry_token is not None
    assert settings.sentry_token.get_secret_value() == TOKEN
    assert TOKEN in settings.secrets()  # redacted from the logs
    assert settings.actions_power_level == 25
    assert settings.actions_allowed_users == ["@oncall:example.org", "@lead:example.org"]
    assert (settings.actions_resolve_reactions, settings.actions_ignore_reactions) == (["✅", "👍"], ["🙈"])
    assert settings.actions_user_map == {"@alice:example.org": "alice@example.org", "@bob:example.org": "42"}


def test_defaults_are_the_service_s_and_actions_are_off_without_an_organization(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = by_kind(helm.template(CHART, MINIMAL))
    assert not [
        n for n in env_of(plain) if n.startswith(("SENTRY_WEBHOOK_ACTIONS", "SENTRY_WEBHOOK_SENTRY_TO"))
    ]
    assert "SENTRY_WEBHOOK_SENTRY_ORGANIZATION" not in env_of(plain)
    # a token without an organization is not stored or mounted either
    unused = {"actions": {"sentry": {"token": {"value": TOKEN}}}}
    assert "sentry-token" not in by_kind(helm.template(CHART, MINIMAL, values=unused))["Secret"]["data"]

    on = {"actions": {"sentry": {"organization": "acme", "token": {"value": TOKEN}}}}
    settings = load(by_kind(helm.template(CHART, MINIMAL, values=on)), tmp_path, monkeypatch)
    assert settings.actions_enabled
    assert settings.sentry_url == "https://sentry.io"
    assert (settings.actions_power_level, settings.actions_allowed_users) == (50, [])
    assert (settings.actions_resolve_reactions, settings.actions_ignore_reactions) == (["✅"], ["🔕", "🙈"])
    assert settings.actions_user_map == {}


def test_token_from_an_existing_secret_and_egress_to_any_address_on_the_url_s_port() -> None:
    values = {
        "sentry": {"url": "http://sentry-web.sentry.svc:9000"},
        "actions": {
            "sentry": {"organization": "acme", "token": {"secret": "sentry-api", "secretKey": "token"}}
        },
        "networkPolicy": {"enabled": True},
    }
    rendered = by_kind(helm.template(CHART, MINIMAL, values=values))
    spec = rendered["Deployment"]["spec"]["template"]["spec"]
    assert env_of(rendered)["SENTRY_WEBHOOK_SENTRY_TOKEN_FILE"] == "/secrets/ext/sentry-api/token"
    assert "sentry-token" not in rendered["Secret"]["data"]
    assert "sentry-api" in [v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v]
    egress = rendered["NetworkPolicy"]["spec"]["egress"]
    assert egress[-1] == {"ports": [{"port": 9000, "protocol": "TCP"}]}  # sentryTo empty: anywhere
    assert len(egress) == 3  # DNS, the homeserver, Sentry


def test_egress_to_the_named_sentry_and_none_without_actions() -> None:
    rendered = by_kind(helm.template(CHART, ACTIONS))
    assert rendered["NetworkPolicy"]["spec"]["egress"][-1] == {
        "ports": [{"port": 443, "protocol": "TCP"}],
        "to": [{"ipBlock": {"cidr": "203.0.113.10/32"}}],
    }
    plain = by_kind(helm.template(CHART, MINIMAL, values={"networkPolicy": {"enabled": True}}))
    assert [r["ports"][0]["port"] for r in plain["NetworkPolicy"]["spec"]["egress"]] == [53, 443]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"encryption": {"enabled": False}}, "actions need encryption.enabled"),
        ({"actions": {"sentry": {"token": {}}}}, "needs actions.sentry.token"),
        ({"actions": {"sentry": {"organization": "Acme Corp"}}}, "organization"),
        ({"actions": {"allowedUsers": ["alice"]}}, "allowedUsers"),
        ({"actions": {"resolveReactions": ["✅,👍"]}}, "resolveReactions"),
        ({"actions": {"userMap": {"alice": "alice@example.org"}}}, "userMap"),
        ({"actions": {"powerLevel": "moderator"}}, "powerLevel"),
        ({"sentry": {"url": "sentry.example.org"}}, "url"),
    ],
)
def test_refused(values: dict[str, Any], message: str) -> None:
    on = {"organization": "acme", "token": {"value": TOKEN}}
    merged = {**values, "actions": {**values.get("actions", {})}}
    merged["actions"]["sentry"] = {**on, **merged["actions"].get("sentry", {})}
    with pytest.raises(helm.RenderError, match=message):
        helm.template(CHART, MINIMAL, values=merged)


def test_notes_say_which_organization_the_room_acts_on() -> None:
    notes = helm.notes(CHART, ACTIONS)
    assert "change issues of acme in https://sentry.example.org" in notes
    assert "✅ 👍 resolve, 🙈 archive" in notes
    assert "Acting from the room" not in helm.notes(CHART, MINIMAL)
