"""Properties every service chart must have, checked on the rendered output of real helm."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from matrix_stack.services import catalog
from tests.charts import helm

# Charts with a service Deployment (probes, a Service). compress-state runs a CronJob and a Job,
# nothing listening: its checks are in test_compress_state_chart.py.
SERVICE_CHARTS = catalog.charts("bridge", "component")
MONITORING = ("monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule")


def ci_values(chart: str) -> list[Path]:
    return sorted((helm.CHARTS / chart / "ci").glob("*.yaml"))


CASES = [(chart, path) for chart in SERVICE_CHARTS for path in ci_values(chart)]
IDS = [f"{chart}:{path.stem}" for chart, path in CASES]


def secret_strings(values_file: Path) -> set[str]:
    """Every credential value the values file holds (must only ever appear base64 in a Secret)."""
    found: set[str] = set()

    def walk(node: Any, key: str = "") -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("value", "id", "bearerToken") and isinstance(v, str) and len(v) >= 12:
                    found.add(v)
                walk(v, k)
        elif isinstance(node, list):
            for item in node:
                walk(item, key)

    walk(yaml.safe_load(values_file.read_text()))
    return found


def test_schemas_are_generated_and_current() -> None:
    result = subprocess.run(
        [sys.executable, str(helm.ROOT / "scripts" / "chart_values.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize(("chart", "values_file"), CASES, ids=IDS)
def test_lint_strict(chart: str, values_file: Path) -> None:
    result = helm.run("lint", "--strict", str(helm.CHARTS / chart), "-f", str(values_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


@pytest.mark.parametrize(("chart", "values_file"), CASES, ids=IDS)
def test_rendered_objects(chart: str, values_file: Path) -> None:
    documents = helm.template(chart, values_file, api_versions=MONITORING)
    assert documents
    secrets = secret_strings(values_file)
    for document in documents:
        helm.validate(document)
        labels = document["metadata"]["labels"]
        for key in ("name", "instance", "version", "managed-by", "part-of", "component"):
            assert f"app.kubernetes.io/{key}" in labels, (document["kind"], key)
        assert all(len(value) <= 63 for value in labels.values())
        assert len(document["metadata"]["name"]) <= 63
        if document["kind"] != "Secret":
            text = yaml.safe_dump(document)
            leaked = [s for s in secrets if s in text]
            assert not leaked, f"{document['kind']} holds a secret value"
        spec = helm.pod_spec(document)
        if spec is None:
            continue
        selector = document["spec"]["selector"]["matchLabels"]
        pod_labels = document["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert security["seccompProfile"]["type"] == "RuntimeDefault"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["resources"]["requests"]
            assert container["resources"]["limits"]["memory"]
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            for variable in container["env"]:
                if variable["name"].endswith("_FILE"):
                    assert any(variable["value"].startswith(m + "/") for m in mounts), variable
            assert {"/var/lib/matrix-stack", "/tmp"} <= mounts  # the only writable paths


def kinds(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in documents}


MINIMAL = helm.CHARTS / "webhook" / "ci" / "minimal-values.yaml"


def test_webhook_hooks_secret_loads_in_the_service() -> None:
    """The hooks document the chart writes is read by the real service settings model."""
    from matrix_stack.services.slack_webhook.config import SlackWebhookSettings

    full = helm.CHARTS / "webhook" / "ci" / "full-values.yaml"
    rendered = kinds(helm.template("webhook", full))
    document = base64.b64decode(rendered["Secret"]["data"]["hooks.yaml"]).decode()
    settings = SlackWebhookSettings(
        homeserver="https://hs", user_id="@a:hs", access_token="t", hooks=yaml.safe_load(document)
    )
    first = settings.hooks[0]
    assert first.display_name == "Grafana"
    assert first.bearer_token is not None
    assert first.bearer_token.get_secret_value() == "bearer-secret-0123456789"
    assert (first.rate_limit, first.burst, first.room_mentions) == (2, 20, True)
    assert first.users == {"U012AB3CD": "@alice:example.org"}
    assert settings.hooks[1].msgtype == "m.text"


def test_webhook_existing_secrets_keep_values_out_of_the_chart() -> None:
    existing = helm.CHARTS / "webhook" / "ci" / "existing-secrets-values.yaml"
    rendered = kinds(helm.template("webhook", existing, release="prod"))
    assert "Secret" not in rendered
    container = rendered["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["SLACK_WEBHOOK_ACCESS_TOKEN_FILE"] == "/secrets/ext/matrix-bot/access-token"
    assert env["SLACK_WEBHOOK_HOOKS_FILE"] == "/secrets/ext/prod-hooks/hooks.yaml"  # secret name is tpl'd
    volumes = rendered["Deployment"]["spec"]["template"]["spec"]["volumes"]
    assert {v["secret"]["secretName"] for v in volumes if "secret" in v} == {"matrix-bot", "prod-hooks"}


def test_an_operator_secret_named_like_the_chart_mount_does_not_shadow_it() -> None:
    """The chart's own Secret mounts at /secrets/chart; an operator Secret called `chart` (say,
    for the bot's token) still gets its own path, so neither file hides the other."""
    values = {"matrix": {"homeserver": "https://matrix.example.org", "userId": "@alerts:example.org",
                         "accessToken": {"secret": "chart", "secretKey": "access-token"}},
              "hooks": [{"id": "hook-id-0123456789abcdef", "room": "#a:example.org"}]}  # fmt: skip
    spec = kinds(helm.template("webhook", values=values))["Deployment"]["spec"]["template"]["spec"]
    mounts = [m["mountPath"] for m in spec["containers"][0]["volumeMounts"]]
    assert "/secrets/chart" in mounts  # the hooks, from the chart's Secret
    assert "/secrets/ext/chart" in mounts
    assert len(mounts) == len(set(mounts))
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env["SLACK_WEBHOOK_ACCESS_TOKEN_FILE"] == "/secrets/ext/chart/access-token"
    assert env["SLACK_WEBHOOK_HOOKS_FILE"] == "/secrets/chart/hooks.yaml"


def test_webhook_invalid_values_fail_with_a_clear_message() -> None:
    cases = [
        ({"replicaCount": 2}, "replicaCount: 2: the outbox is a SQLite file per pod"),
        ({"podDisruptionBudget": {"enabled": True, "minAvailable": 1}}, "would block every node drain"),
        ({"matrix": {"accessToken": {"value": "x", "secret": "s", "secretKey": "k"}}}, "accessToken"),
        ({"hooks": [{"id": "short", "room": "#a:b"}]}, "hooks/0/id"),
        ({"replicas": 3}, "replicas"),  # a typo: additionalProperties false
        ({"matrix": {"homeserver": "matrix.example.org"}}, "homeserver"),
    ]
    for values, message in cases:
        with pytest.raises(helm.RenderError, match=message.replace(".", r"\.")):
            helm.template("webhook", MINIMAL, values=values)
    with pytest.raises(helm.RenderError, match="no webhooks"):
        helm.template("webhook", MINIMAL, values={"hooks": []})


def test_webhook_options() -> None:
    plain = kinds(helm.template("webhook", MINIMAL))
    assert "ServiceMonitor" not in plain
    assert "Ingress" not in plain
    assert "HTTPRoute" not in plain
    assert "HorizontalPodAutoscaler" not in plain
    assert "PodDisruptionBudget" not in plain  # one pod (test_bridge_persistence.py)
    assert plain["Deployment"]["spec"]["replicas"] == 1
    full = helm.CHARTS / "webhook" / "ci" / "full-values.yaml"
    without_crd = kinds(helm.template("webhook", full))
    assert "ServiceMonitor" not in without_crd  # the CRD is not installed: nothing to apply
    rendered = kinds(helm.template("webhook", full, api_versions=MONITORING))
    assert rendered["ServiceMonitor"]["spec"]["endpoints"][0]["path"] == "/metrics"
    assert rendered["ServiceMonitor"]["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rendered["Deployment"]["spec"]["replicas"] == 1
    assert "HorizontalPodAutoscaler" not in rendered
    assert rendered["HTTPRoute"]["spec"]["parentRefs"] == [{"name": "public", "namespace": "gateways"}]
    assert [p["path"] for p in rendered["Ingress"]["spec"]["rules"][0]["http"]["paths"]] == [
        "/hooks",
        "/services",
    ]
    assert rendered["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    persistent = kinds(helm.template("webhook", helm.CHARTS / "webhook" / "ci" / "persistence-values.yaml"))
    assert persistent["PersistentVolumeClaim"]["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert persistent["Deployment"]["spec"]["strategy"]["type"] == "Recreate"


def test_webhook_pods_roll_when_config_changes() -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = kinds(helm.template("webhook", MINIMAL, values=values))["Deployment"]
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    base = checksum({})
    assert checksum({}) == base  # rendering is deterministic
    assert checksum({"hooks": [{"id": "AbCdEfGhIjKlMnOpQrStUvWxYz999999", "room": "#b:example.org"}]}) != base
    assert checksum({"matrix": {"accessToken": {"value": "another"}}}) != base
    assert checksum({"users": {"U1": "@u:example.org"}}) != base


SENTRY_CI = helm.CHARTS / "sentry-webhook" / "ci"


def test_sentry_chart_environment_loads_in_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Render, materialise the Secret's files where the env points, and build the real settings."""
    from matrix_stack.services.sentry_webhook.config import SentryWebhookSettings

    rendered = kinds(helm.template("sentry-webhook", SENTRY_CI / "full-values.yaml"))
    secret = {k: base64.b64decode(v).decode() for k, v in rendered["Secret"]["data"].items()}
    env = rendered["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]
    for variable in env:
        value = variable["value"]
        if variable["name"].endswith("_FILE"):
            path = tmp_path / Path(value).name
            path.write_text(secret[Path(value).name])
            value = str(path)
        monkeypatch.setenv(variable["name"], value)
    settings = SentryWebhookSettings()
    assert settings.client_secret is not None
    assert settings.client_secret.get_secret_value() == "0123456789abcdef0123456789abcdef"
    assert settings.project_rooms == {"front-end": "#frontend:example.org"}
    assert settings.metric_alert_rooms == {"Too many errors": "#oncall:example.org"}
    assert (settings.environments, settings.levels, settings.tags) == (
        ["production"],
        ["error", "fatal"],
        ["browser", "os", "url"],
    )
    assert (settings.msgtype, settings.threads, settings.post_errors) == ("m.text", True, False)
    assert settings.sentry_url == "https://sentry.example.org"


def test_sentry_chart_existing_secrets_and_errors() -> None:
    rendered = kinds(helm.template("sentry-webhook", SENTRY_CI / "existing-secrets-values.yaml"))
    assert "Secret" not in rendered
    spec = rendered["Deployment"]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env["SENTRY_WEBHOOK_CLIENT_SECRET_FILE"] == "/secrets/ext/sentry-integration/client-secret"
    assert env["SENTRY_WEBHOOK_LEGACY_SECRET_FILE"] == "/secrets/ext/sentry-integration/legacy-secret"
    assert sorted(v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v) == [
        "matrix-bot", "sentry-integration"]  # fmt: skip
    minimal = SENTRY_CI / "minimal-values.yaml"
    with pytest.raises(helm.RenderError, match=r"set sentry\.clientSecret"):
        helm.template("sentry-webhook", minimal, values={"sentry": {"clientSecret": None}})
    with pytest.raises(helm.RenderError, match="messages need a room"):
        helm.template("sentry-webhook", minimal, values={"routing": {"defaultRoom": ""}})
    with pytest.raises(helm.RenderError, match="levels"):
        helm.template("sentry-webhook", minimal, values={"filters": {"levels": ["loud"]}})


AM_CI = helm.CHARTS / "matrix-alertmanager-receiver" / "ci"


def test_alertmanager_chart_config_loads_in_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rendered ConfigMap, Secret files and environment make valid settings and templates."""
    from matrix_stack.services.alertmanager_receiver.app import routes
    from matrix_stack.services.alertmanager_receiver.config import load_file, settings_from_file

    rendered = kinds(helm.template("matrix-alertmanager-receiver", AM_CI / "full-values.yaml"))
    config = tmp_path / "config.yaml"
    config.write_text(rendered["ConfigMap"]["data"]["config.yaml"])
    assert "basic-auth-password-0123" not in config.read_text()  # credentials never in the ConfigMap
    container = rendered["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["--config-path", "/etc/matrix-alertmanager-receiver/config.yaml"]
    secret = {k: base64.b64decode(v).decode() for k, v in rendered["Secret"]["data"].items()}
    for variable in container["env"]:
        value = variable["value"]
        if variable["name"].endswith("_FILE"):
            path = tmp_path / Path(value).name
            path.write_text(secret.get(Path(value).name, "token-from-an-existing-secret"))
            value = str(path)
        monkeypatch.setenv(variable["name"], value)
    settings = settings_from_file(load_file(config), data_dir=tmp_path / "data")
    assert settings.access_token is not None
    assert settings.effective_basic_password is not None
    assert settings.effective_basic_password.get_secret_value() == "basic-auth-password-0123"
    assert settings.file.matrix.room_mapping == {"ops": "!ops:example.org", "pager": "#pager:example.org"}
    assert settings.file.receiver.message_mode == "alert"
    assert settings.file.receiver.on_resolve == "both"
    from matrix_stack.shared.bridge.service import Service

    assert len(routes(settings, Service.from_settings(settings))) == 2  # templates compiled


def test_alertmanager_chart_rolls_on_config_change() -> None:
    minimal = AM_CI / "minimal-values.yaml"

    def checksum(values: dict[str, Any]) -> str:
        deployment = kinds(helm.template("matrix-alertmanager-receiver", minimal, values=values))[
            "Deployment"
        ]
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum({}) != checksum({"config": {"roomMapping": {"ops": "!o:example.org"}}})
    assert checksum({}) != checksum({"config": {"firingTemplate": "{{ Alert.Status }}"}})
    with pytest.raises(helm.RenderError, match="onResolve"):
        helm.template("matrix-alertmanager-receiver", minimal, values={"config": {"onResolve": "delete"}})
