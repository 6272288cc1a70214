"""The receiver chart's `actions`: what it renders loads in the real service, secrets stay in Secrets."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from matrix_stack.services.alertmanager_receiver.config import (
    DEFAULT_REACTIONS,
    AlertmanagerReceiverSettings,
    load_file,
    settings_from_file,
)
from matrix_stack.shared.matrix.replies import parse_duration
from tests.charts import helm

CHART = "matrix-alertmanager-receiver"
CI = helm.CHARTS / CHART / "ci"
ACTIONS = CI / "actions-values.yaml"
MINIMAL = CI / "minimal-values.yaml"
PASSWORD = "alertmanager-password-0123"  # actions-values.yaml's


def by_kind(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in documents}


def container(rendered: dict[str, dict[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = rendered["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    return found


def load(
    rendered: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AlertmanagerReceiverSettings:
    """The settings the service builds from the rendered ConfigMap and the env, with the Secret's
    files where the *_FILE variables point."""
    config = tmp_path / "config.yaml"
    config.write_text(rendered["ConfigMap"]["data"]["config.yaml"])
    secret = {k: base64.b64decode(v).decode() for k, v in rendered.get("Secret", {}).get("data", {}).items()}
    for variable in container(rendered)["env"]:
        value = variable["value"]
        if variable["name"].endswith("_FILE"):
            path = tmp_path / Path(value).name
            path.write_text(secret.get(Path(value).name, "from-an-existing-secret"))
            value = str(path)
        monkeypatch.setenv(variable["name"], value)
    return settings_from_file(load_file(config), data_dir=tmp_path / "data")


def test_actions_load_in_the_service_and_the_password_stays_in_the_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = by_kind(helm.template(CHART, ACTIONS))
    assert PASSWORD not in yaml.safe_dump(rendered["ConfigMap"])
    env = {e["name"]: e["value"] for e in container(rendered)["env"]}
    assert env["ALERTMANAGER_RECEIVER_ALERTMANAGER_PASSWORD_FILE"] == "/secrets/chart/alertmanager-password"
    assert "ALERTMANAGER_RECEIVER_ALERTMANAGER_BEARER_TOKEN_FILE" not in env
    mounts = {m["mountPath"] for m in container(rendered)["volumeMounts"]}
    assert "/secrets/chart" in mounts
    settings = load(rendered, tmp_path, monkeypatch)
    actions = settings.file.actions
    assert actions.enabled
    assert actions.alertmanager_url == "http://kube-prometheus-stack-alertmanager.monitoring.svc:9093"
    assert actions.alertmanager_username == "matrix-receiver"
    assert actions.alertmanager_password is None  # not in the file: from the environment
    assert settings.alertmanager_password is not None
    assert settings.alertmanager_password.get_secret_value() == PASSWORD
    assert actions.reactions == ["🔕", "👀"]
    assert (actions.power_level, actions.allowed_users) == (25, ["@oncall:example.org"])
    assert parse_duration(actions.until_resolved_max).days == 3
    assert actions.look_seconds == 30
    assert PASSWORD in settings.secrets()  # redacted from the logs


def test_defaults_are_the_service_s_and_actions_are_off_without_a_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = by_kind(helm.template(CHART, MINIMAL))
    assert "actions" not in yaml.safe_load(plain["ConfigMap"]["data"]["config.yaml"])
    assert not any("ALERTMANAGER_RECEIVER_ALERTMANAGER" in e["name"] for e in container(plain)["env"])
    # credentials without a url are not mounted either
    unused = {"actions": {"alertmanager": {"username": "u", "password": {"value": PASSWORD}}}}
    assert (
        "alertmanager-password" not in by_kind(helm.template(CHART, MINIMAL, values=unused))["Secret"]["data"]
    )

    on = by_kind(
        helm.template(CHART, MINIMAL, values={"actions": {"alertmanager": {"url": "https://am.example.org"}}})
    )
    actions = load(on, tmp_path, monkeypatch).file.actions
    assert actions.alertmanager_url == "https://am.example.org"
    assert actions.alertmanager_username is None
    assert actions.reactions == DEFAULT_REACTIONS
    assert (actions.power_level, actions.until_resolved_max, actions.look_seconds) == (50, "7d", 15)


def test_bearer_token_from_an_existing_secret() -> None:
    values = {
        "actions": {
            "alertmanager": {
                "url": "https://alertmanager.example.org",
                "bearerToken": {"secret": "am-proxy", "secretKey": "token"},
            }
        },
        "networkPolicy": {"enabled": True},
    }
    rendered = by_kind(helm.template(CHART, MINIMAL, values=values))
    spec = rendered["Deployment"]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env["ALERTMANAGER_RECEIVER_ALERTMANAGER_BEARER_TOKEN_FILE"] == "/secrets/ext/am-proxy/token"
    assert "ALERTMANAGER_RECEIVER_ALERTMANAGER_PASSWORD_FILE" not in env
    assert "am-proxy" in [v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v]
    # https without a port: 443, to any address (alertmanagerTo empty)
    egress = rendered["NetworkPolicy"]["spec"]["egress"]
    assert egress[-1] == {"ports": [{"port": 443, "protocol": "TCP"}]}
    assert len(egress) == 3  # DNS, the homeserver (443 too), Alertmanager


def test_network_policy_has_no_alertmanager_rule_without_actions() -> None:
    rendered = by_kind(helm.template(CHART, MINIMAL, values={"networkPolicy": {"enabled": True}}))
    assert [r["ports"][0]["port"] for r in rendered["NetworkPolicy"]["spec"]["egress"]] == [53, 443]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"encryption": {"enabled": False}}, "actions need encryption.enabled"),
        (
            {
                "actions": {
                    "alertmanager": {
                        "username": "u",
                        "password": {"value": "p"},
                        "bearerToken": {"value": "t"},
                    }
                }
            },
            "not both",
        ),
        ({"actions": {"alertmanager": {"password": {"value": "p"}}}}, "needs actions.alertmanager.username"),
        ({"actions": {"alertmanager": {"url": "alertmanager:9093"}}}, "url"),
        ({"actions": {"lookSeconds": 0}}, "lookSeconds"),
        ({"actions": {"allowedUsers": ["alice"]}}, "allowedUsers"),
    ],
)
def test_refused(values: dict[str, Any], message: str) -> None:
    merged = {**values, "actions": {**values.get("actions", {})}}
    merged["actions"]["alertmanager"] = {"url": "http://am:9093", **merged["actions"].get("alertmanager", {})}
    with pytest.raises(helm.RenderError, match=message):
        helm.template(CHART, MINIMAL, values=merged)


def test_notes_say_where_the_silences_go() -> None:
    assert "make silences in http://kube-prometheus-stack-alertmanager" in helm.notes(CHART, ACTIONS)
    assert "Acting from the room" not in helm.notes(CHART, MINIMAL)
