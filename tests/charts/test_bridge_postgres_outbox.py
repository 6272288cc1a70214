"""The bridge charts with `outbox.postgres`: the outbox, relation roots and the bot's session in
PostgreSQL, shared by the replicas. Then several replicas, an HPA and any PDB render, the Deployment
rolls, no claim is made and the data directory is an emptyDir; the URL (it holds a password)
reaches the container only as a file from a Secret. Without it nothing changes
(test_bridge_persistence.py)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from matrix_stack.services import catalog
from tests.charts import helm
from tests.charts.test_bridge_persistence import (
    BRIDGES,
    DATA_DIR,
    PREFIX,
    ci,
    data_volume,
    kinds,
    message_line,
    render,
)

POSTGRES = "postgres-outbox"
# The schema each ci file sets, and the service's own default (its name) when none is set.
SCHEMA = {
    "webhook": "slack_alerts",
    "sentry-webhook": "sentry_prod",
    "matrix-alertmanager-receiver": "alerts_prod",
}
DEFAULT_SCHEMA = {s.chart: s.package for s in catalog.SERVICES if s.chart in BRIDGES}
PASSWORD = "outbox-pw-0123456789"
URL = f"postgresql://bridges:{PASSWORD}@pgbouncer.db.svc:5432/bridges?sslmode=require"


def on_postgres(**postgres: Any) -> dict[str, Any]:
    """Values putting the outbox on PostgreSQL, the URL from an operator's Secret unless given."""
    return {
        "outbox": {"postgres": {"enabled": True, "url": {"secret": "pg", "secretKey": "url"}, **postgres}}
    }


def pod(rendered: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = rendered["Deployment"]["spec"]["template"]["spec"]
    return spec


def env(rendered: dict[str, dict[str, Any]]) -> dict[str, str]:
    [container] = pod(rendered)["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


def secret_file(spec: dict[str, Any], path: str) -> tuple[str, str]:
    """The Secret and key that the file `path` in the container comes from: through the volumeMount
    of its directory (read-only, the whole directory) and that mount's Secret volume."""
    [container] = spec["containers"]
    directory, _, name = path.rpartition("/")
    [mount] = [m for m in container["volumeMounts"] if m["mountPath"] == directory]
    assert mount.get("readOnly") is True
    assert "subPath" not in mount
    [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    secret = volume["secret"]
    items = secret.get("items")
    if items is None:  # every key of the Secret is a file of that name
        return secret["secretName"], name
    [item] = [i for i in items if i["path"] == name]
    return secret["secretName"], item["key"]


@pytest.mark.parametrize("chart", BRIDGES)
def test_replicas_share_the_outbox_from_an_existing_secret(chart: str) -> None:
    rendered = render(chart, POSTGRES, values={"autoscaling": {"enabled": False}})
    deployment = rendered["Deployment"]["spec"]
    assert deployment["replicas"] == 3
    assert deployment["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert "PersistentVolumeClaim" not in rendered  # ReadWriteOnce cannot be shared; nothing durable on it
    assert data_volume(rendered) == {"name": "data", "emptyDir": {}}
    variables = env(rendered)
    prefix = PREFIX[chart]
    path = variables[f"{prefix}OUTBOX_URL_FILE"]
    assert secret_file(pod(rendered), path) == ("outbox-db", "uri")
    assert f"{prefix}OUTBOX_URL" not in variables  # the URL itself never
    assert variables[f"{prefix}OUTBOX_SCHEMA"] == SCHEMA[chart]
    assert variables[f"{prefix}OUTBOX_LEASE_SECONDS"] == "10"
    assert variables[f"{prefix}OUTBOX_POOL_SIZE"] == "4"
    assert variables[f"{prefix}DATA_DIR"] == DATA_DIR
    assert rendered["PodDisruptionBudget"]["spec"] == {"minAvailable": 2, "selector": deployment["selector"]}


@pytest.mark.parametrize("chart", BRIDGES)
def test_the_ci_file_autoscales_with_a_pdb(chart: str) -> None:
    rendered = render(chart, POSTGRES)
    assert "replicas" not in rendered["Deployment"]["spec"]  # the HPA owns the count
    hpa = rendered["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"t-{chart}"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 6)
    assert hpa["metrics"][0]["resource"]["name"] == "cpu"
    assert rendered["PodDisruptionBudget"]["spec"]["minAvailable"] == 2
    assert "PersistentVolumeClaim" not in rendered
    # With the chart's default autoscaling bounds too.
    default = render(chart, values={**on_postgres(), "autoscaling": {"enabled": True}})
    assert (
        default["HorizontalPodAutoscaler"]["spec"]["minReplicas"],
        default["HorizontalPodAutoscaler"]["spec"]["maxReplicas"],
    ) == (2, 6)


@pytest.mark.parametrize("chart", BRIDGES)
def test_a_chart_managed_url_is_only_in_the_charts_secret(chart: str) -> None:
    values = on_postgres(url={"value": URL}, leaseSeconds=2.5, poolSize=8)
    documents = helm.template(chart, ci(chart, "minimal"), values=values)
    rendered = kinds(documents)
    secret = rendered["Secret"]
    assert base64.b64decode(secret["data"]["outbox-url"]).decode() == URL
    prefix = PREFIX[chart]
    variables = env(rendered)
    path = variables[f"{prefix}OUTBOX_URL_FILE"]
    assert path == "/secrets/chart/outbox-url"
    assert secret_file(pod(rendered), path) == (secret["metadata"]["name"], "outbox-url")
    assert f"{prefix}OUTBOX_SCHEMA" not in variables  # empty: the service's default
    assert (variables[f"{prefix}OUTBOX_LEASE_SECONDS"], variables[f"{prefix}OUTBOX_POOL_SIZE"]) == (
        "2.5",
        "8",
    )
    for document in documents:
        if document["kind"] != "Secret":
            text = yaml.safe_dump(document)
            assert PASSWORD not in text, document["kind"]
            assert "pgbouncer.db.svc" not in text, document["kind"]
    [container] = pod(rendered)["containers"]
    assert not any(PASSWORD in arg for arg in container.get("args", []))
    # The pods roll when the URL changes (checksum/config covers the chart's Secret).
    again = kinds(helm.template(chart, ci(chart, "minimal"), values=on_postgres(url={"value": URL + "x"})))
    annotation = "checksum/config"
    assert (
        again["Deployment"]["spec"]["template"]["metadata"]["annotations"][annotation]
        != rendered["Deployment"]["spec"]["template"]["metadata"]["annotations"][annotation]
    )


@pytest.mark.parametrize("chart", BRIDGES)
def test_enabled_without_a_url_fails_naming_it(chart: str) -> None:
    for values in ({"outbox": {"postgres": {"enabled": True}}}, on_postgres(url={})):
        with pytest.raises(helm.RenderError) as failed:
            helm.template(chart, ci(chart, "minimal"), values=values)
        line = message_line(failed.value, "outbox.postgres.url")
        assert "outbox.postgres.url is required with outbox.postgres.enabled" in line


@pytest.mark.parametrize("chart", BRIDGES)
def test_postgres_lifts_the_single_writer_refusals(chart: str) -> None:
    for values, replicas in (
        ({"replicaCount": 5}, 5),
        ({"persistence": {"enabled": False}}, 1),  # no acceptDataLoss needed: nothing to lose there
        ({"persistence": {"existingClaim": "old-claim"}}, 1),  # not used: nothing durable on it
    ):
        rendered = render(chart, values={**on_postgres(), **values})
        assert rendered["Deployment"]["spec"]["replicas"] == replicas
        assert rendered["Deployment"]["spec"]["strategy"]["type"] == "RollingUpdate"
        assert "PersistentVolumeClaim" not in rendered
        assert data_volume(rendered) == {"name": "data", "emptyDir": {}}
    for pdb, spec in (
        ({"enabled": True, "minAvailable": 1}, {"minAvailable": 1}),
        ({"enabled": True, "minAvailable": "50%"}, {"minAvailable": "50%"}),
        ({"enabled": True, "maxUnavailable": 0}, {"maxUnavailable": 0}),
        ({"enabled": True}, {"maxUnavailable": 1}),
    ):
        rendered = render(chart, values={**on_postgres(), "replicaCount": 3, "podDisruptionBudget": pdb})
        found = rendered["PodDisruptionBudget"]["spec"]
        assert {key: found[key] for key in ("minAvailable", "maxUnavailable") if key in found} == spec
    with pytest.raises(helm.RenderError, match="not both"):
        helm.template(
            chart,
            ci(chart, "minimal"),
            values={
                **on_postgres(),
                "podDisruptionBudget": {"enabled": True, "minAvailable": 1, "maxUnavailable": 1},
            },
        )


@pytest.mark.parametrize("chart", BRIDGES)
def test_without_postgres_nothing_changes_and_the_refusals_point_at_it(chart: str) -> None:
    # A URL alone does nothing: the outbox stays SQLite on the claim, the URL goes nowhere.
    values = {"outbox": {"postgres": {"enabled": False, "url": {"value": URL}, "schema": "x"}}}
    documents = helm.template(chart, ci(chart, "minimal"), values=values)
    assert documents == helm.template(chart, ci(chart, "minimal"))
    rendered = render(chart)
    assert rendered["Deployment"]["spec"]["strategy"] == {"type": "Recreate"}
    assert "PersistentVolumeClaim" in rendered
    assert not [name for name in env(rendered) if "OUTBOX" in name]
    assert "outbox-url" not in rendered["Secret"]["data"]
    refused: list[tuple[dict[str, Any], str]] = [
        ({"replicaCount": 2}, "replicaCount:"),
        ({"autoscaling": {"enabled": True}}, "autoscaling.enabled:"),
        ({"persistence": {"enabled": False}}, "persistence.enabled: false"),
        ({"podDisruptionBudget": {"enabled": True, "minAvailable": 1}}, "podDisruptionBudget:"),
        ({"replicaCount": 2, "outbox": {"postgres": {"url": {"value": URL}}}}, "replicaCount:"),
    ]
    for refusal, start in refused:
        with pytest.raises(helm.RenderError) as failed:
            helm.template(chart, ci(chart, "minimal"), values=refusal)
        line = message_line(failed.value, start)
        assert "outbox.postgres" in line
        assert "not available yet" not in line


@pytest.mark.parametrize("chart", BRIDGES)
def test_notes_say_where_the_outbox_is(chart: str) -> None:
    notes = helm.notes(chart, ci(chart, POSTGRES))
    assert (
        f"The outbox is on PostgreSQL (outbox.postgres, schema {SCHEMA[chart]}), shared by every replica\n(the HPA runs 3 to 6):"
        in notes
    )
    assert "one sender at a time (a lease of 10 s)" in notes
    assert "taken over within about 13 s" in notes
    assert "emptyDir and holds nothing durable" in notes
    assert ("relation roots" in notes) == (chart != "webhook")
    assert "WARNING" not in notes
    assert "NOTE: podSecurityContext" not in notes  # no claim to make writable
    # Fixed replicas, the service's default schema, no warning even with persistence off.
    fixed = helm.notes(
        chart,
        ci(chart, POSTGRES),
        values={
            "autoscaling": {"enabled": False},
            "outbox": {"postgres": {"schema": ""}},
            "persistence": {"enabled": False},
        },
    )
    assert (
        f"(outbox.postgres, schema {DEFAULT_SCHEMA[chart]}), shared by every replica\n(replicaCount: 3):"
        in fixed
    )
    assert "WARNING" not in fixed


@pytest.mark.parametrize("chart", BRIDGES)
def test_the_schema_checks_the_outbox_values(chart: str) -> None:
    for postgres, message in (
        ({"schema": "Sentry-Prod"}, "schema"),
        ({"schema": "9lives"}, "schema"),
        ({"schema": "a" * 64}, "schema"),
        ({"leaseSeconds": 1}, "leaseSeconds"),
        ({"leaseSeconds": 301}, "leaseSeconds"),
        ({"poolSize": 1}, "poolSize"),
        ({"poolSize": 101}, "poolSize"),
        ({"url": {"value": URL, "secret": "pg", "secretKey": "url"}}, "url"),
        ({"url": {"secret": "pg"}}, "url"),
        ({"dsn": URL}, "dsn"),  # unknown keys fail
    ):
        with pytest.raises(helm.RenderError, match=message):
            helm.template(chart, ci(chart, "minimal"), values=on_postgres(**postgres))
    with pytest.raises(helm.RenderError, match="pgbouncer"):
        helm.template(chart, ci(chart, "minimal"), values={"outbox": {"pgbouncer": True}})
    render(chart, values=on_postgres(schema="a" * 63, leaseSeconds=300, poolSize=100))


def service_settings(
    chart: str, rendered: dict[str, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The real service's settings from the rendered environment, the rendered Secrets' files where
    the `_FILE` variables point (through the pod's mounts)."""
    secrets = {
        document["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in document["data"].items()}
        for document in rendered.values()
        if document["kind"] == "Secret"
    }
    for name, value in env(rendered).items():
        if name.endswith("_FILE"):
            secret, key = secret_file(pod(rendered), value)
            path = tmp_path / f"{secret}-{key}"
            path.write_text(secrets[secret][key])
            value = str(path)
        monkeypatch.setenv(name, value)
    if chart == "webhook":
        from matrix_stack.services.slack_webhook.config import SlackWebhookSettings

        return SlackWebhookSettings()
    if chart == "sentry-webhook":
        from matrix_stack.services.sentry_webhook.config import SentryWebhookSettings

        return SentryWebhookSettings()
    from matrix_stack.services.alertmanager_receiver.config import load_file, settings_from_file

    config = tmp_path / "config.yaml"
    config.write_text(rendered["ConfigMap"]["data"]["config.yaml"])
    return settings_from_file(load_file(config))


@pytest.mark.parametrize("chart", BRIDGES)
@pytest.mark.parametrize("schema", ["", "bridges_prod"])
def test_the_service_reads_the_outbox_settings(
    chart: str, schema: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = on_postgres(url={"value": URL}, schema=schema, leaseSeconds=30, poolSize=8)
    rendered = kinds(helm.template(chart, ci(chart, "minimal"), values=values))
    settings = service_settings(chart, rendered, tmp_path, monkeypatch)
    assert settings.outbox_url is not None
    assert settings.outbox_url.get_secret_value() == URL
    assert settings.outbox_schema_name == (schema or DEFAULT_SCHEMA[chart])  # the NOTES' default too
    assert (settings.outbox_lease_seconds, settings.outbox_pool_size) == (30, 8)
