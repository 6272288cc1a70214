"""The bridge charts' data directory: the outbox, the bot's session and the relation roots are SQLite
files one pod owns. By default one replica, the data on a claim the chart makes, Recreate; several
replicas, an HPA, a PDB that blocks drains, or an emptyDir without the explicit opt-in fail, and say
that outbox.postgres is the way to several replicas (test_bridge_postgres_outbox.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from matrix_stack.services import catalog
from tests.charts import helm

BRIDGES = catalog.charts("bridge")
DATA_DIR = "/var/lib/matrix-stack"
PREFIX = {s.chart: s.env_prefix for s in catalog.SERVICES if s.chart in BRIDGES}
# What each chart's NOTES say an emptyDir loses besides the undelivered messages (its relation roots).
ROOTS = {
    "webhook": None,
    "sentry-webhook": "later events about an issue post new messages instead of\n    replying in its thread",
    "matrix-alertmanager-receiver": "a resolve then posts a new message\n    instead of editing or threading onto its firing one",
}


def ci(chart: str, name: str) -> Path:
    return helm.CHARTS / chart / "ci" / f"{name}-values.yaml"


# The key in rendered() of the Secret the chart generates and keeps for the encryption key (without a
# claim): a second Secret beside the chart's own (test_bridge_encryption.py).
ENCRYPTION_SECRET = "Secret encryption-key"


def kinds(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for document in documents:
        kind = document["kind"]
        if kind == "Secret" and document["metadata"]["name"].endswith("-encryption-key"):
            kind = ENCRYPTION_SECRET
        assert kind not in found, kind
        found[kind] = document
    return found


def render(
    chart: str, name: str = "minimal", values: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    documents = helm.template(chart, ci(chart, name), values=values)
    for document in documents:
        helm.validate(document)  # the claim too, against the Kubernetes schemas
    return kinds(documents)


def data_volume(rendered: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec = rendered["Deployment"]["spec"]["template"]["spec"]
    [volume] = [v for v in spec["volumes"] if v["name"] == "data"]
    [container] = spec["containers"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "data"]
    assert mount == {"name": "data", "mountPath": DATA_DIR}  # writable: no readOnly
    found: dict[str, Any] = volume
    return found


def message_line(error: helm.RenderError, start: str) -> str:
    """The line of helm's error holding the template's message (it must be one line)."""
    [line] = [line for line in str(error).splitlines() if start in line]
    return line


@pytest.mark.parametrize("chart", BRIDGES)
def test_default_is_one_pod_with_its_data_on_the_charts_claim(chart: str) -> None:
    rendered = render(chart)
    deployment = rendered["Deployment"]["spec"]
    assert deployment["replicas"] == 1
    assert deployment["strategy"] == {"type": "Recreate"}  # the old pod lets go of the volume first
    assert "HorizontalPodAutoscaler" not in rendered
    assert "PodDisruptionBudget" not in rendered  # with one pod it could only block drains
    claim = rendered["PersistentVolumeClaim"]
    name = f"t-{chart}-data"
    assert claim["metadata"]["name"] == name
    assert claim["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
    assert data_volume(rendered) == {"name": "data", "persistentVolumeClaim": {"claimName": name}}
    pod = deployment["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env[f"{PREFIX[chart]}DATA_DIR"] == DATA_DIR
    # The claim is made writable for the non-root user through the pod's fsGroup.
    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] != 0
    assert security["fsGroup"] == security["runAsGroup"]
    assert security["fsGroupChangePolicy"] == "OnRootMismatch"
    assert "WARNING" not in helm.notes(chart, ci(chart, "minimal"))


@pytest.mark.parametrize("chart", BRIDGES)
def test_several_replicas_fail_whatever_the_volume(chart: str) -> None:
    for values in (
        {"replicaCount": 2},
        {"replicaCount": 3, "persistence": {"enabled": False, "acceptDataLoss": True}},
        {"replicaCount": 2, "persistence": {"existingClaim": "mine", "accessModes": ["ReadWriteMany"]}},
    ):
        with pytest.raises(helm.RenderError) as failed:
            helm.template(chart, ci(chart, "minimal"), values=values)
        line = message_line(failed.value, "replicaCount:")
        assert f"replicaCount: {values['replicaCount']}: the outbox is a SQLite file per pod" in line
        assert "several replicas need the outbox on PostgreSQL: set outbox.postgres" in line
    stopped = render(chart, values={"replicaCount": 0})
    assert stopped["Deployment"]["spec"]["replicas"] == 0


@pytest.mark.parametrize("chart", BRIDGES)
def test_autoscaling_fails(chart: str) -> None:
    for autoscaling in (
        {"enabled": True},
        {"enabled": True, "minReplicas": 2, "maxReplicas": 6},
        {"enabled": True, "minReplicas": 1, "maxReplicas": 1},
    ):
        with pytest.raises(helm.RenderError) as failed:
            helm.template(chart, ci(chart, "minimal"), values={"autoscaling": autoscaling})
        line = message_line(failed.value, "autoscaling.enabled:")
        assert "SQLite file per pod" in line
        assert "autoscaling needs the outbox on PostgreSQL: set outbox.postgres" in line


@pytest.mark.parametrize("chart", BRIDGES)
def test_persistence_off_without_the_opt_in_fails(chart: str) -> None:
    for values in (
        {"persistence": {"enabled": False}},
        {"persistence": {"enabled": False, "acceptDataLoss": False}},
    ):
        with pytest.raises(helm.RenderError) as failed:
            helm.template(chart, ci(chart, "minimal"), values=values)
        line = message_line(failed.value, "persistence.enabled: false")
        assert "loses the messages it accepted and had not delivered" in line
        assert "persistence.acceptDataLoss: true" in line
        assert "outbox.postgres" in line


@pytest.mark.parametrize("chart", BRIDGES)
def test_emptydir_opt_in_and_what_notes_say_is_lost(chart: str) -> None:
    rendered = render(chart, "emptydir")
    assert "PersistentVolumeClaim" not in rendered
    assert data_volume(rendered) == {"name": "data", "emptyDir": {}}
    deployment = rendered["Deployment"]["spec"]
    assert deployment["replicas"] == 1
    assert deployment["strategy"]["type"] == "RollingUpdate"  # no volume to hand over
    notes = helm.notes(chart, ci(chart, "emptydir"))
    assert "WARNING: the data directory (/var/lib/matrix-stack) is an emptyDir" in notes
    assert "deleted with the pod" in notes
    assert "every message the pod accepted and had not delivered yet" in notes
    roots = ROOTS[chart]
    if roots is None:
        assert "thread" not in notes
    else:
        assert roots in notes
    # The bot's session is on the volume only when it logs in with a password.
    assert ("login session" in notes) == ("password" in ci(chart, "emptydir").read_text())


@pytest.mark.parametrize("chart", BRIDGES)
def test_an_existing_claim_is_mounted_and_none_is_made(chart: str) -> None:
    rendered = render(chart, "existing-claim")
    assert "PersistentVolumeClaim" not in rendered
    # existingClaim is a template: "{{ .Release.Name }}-outbox"
    assert data_volume(rendered) == {"name": "data", "persistentVolumeClaim": {"claimName": "t-outbox"}}
    assert rendered["Deployment"]["spec"]["strategy"] == {"type": "Recreate"}
    assert rendered["Deployment"]["spec"]["replicas"] == 1


def test_claim_settings() -> None:
    webhook = render("webhook", "persistence")["PersistentVolumeClaim"]
    assert webhook["spec"] == {
        "accessModes": ["ReadWriteOncePod"],
        "storageClassName": "fast",
        "resources": {"requests": {"storage": "2Gi"}},
    }
    assert webhook["metadata"]["annotations"] == {
        "backup.example.org/schedule": "daily",
        "helm.sh/resource-policy": "keep",
    }
    sentry = render("sentry-webhook", "persistence")["PersistentVolumeClaim"]
    assert sentry["spec"]["storageClassName"] == "standard"
    assert sentry["spec"]["resources"]["requests"]["storage"] == "512Mi"
    # The operator's own resource-policy wins: "" lets uninstall delete the claim.
    receiver = render("matrix-alertmanager-receiver", "persistence")
    assert receiver["PersistentVolumeClaim"]["metadata"]["annotations"] == {"helm.sh/resource-policy": ""}
    assert receiver["PersistentVolumeClaim"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert receiver["Deployment"]["spec"]["strategy"] == {"type": "Recreate"}  # one writer on any volume
    for values, message in (
        ({"persistence": {"accessModes": ["ReadOnlyMany"]}}, "accessModes"),
        ({"persistence": {"accessModes": []}}, "accessModes"),
        ({"persistence": {"type": "emptyDir"}}, "type"),
        ({"persistence": {"size": "lots"}}, "size"),
    ):
        with pytest.raises(helm.RenderError, match=message):
            helm.template("webhook", ci("webhook", "minimal"), values=values)


@pytest.mark.parametrize("chart", BRIDGES)
def test_a_pdb_never_blocks_a_drain(chart: str) -> None:
    for pdb in ({"enabled": True}, {"enabled": True, "maxUnavailable": 1}):
        rendered = render(chart, values={"podDisruptionBudget": pdb})
        spec = rendered["PodDisruptionBudget"]["spec"]
        assert spec == {"maxUnavailable": 1, "selector": rendered["Deployment"]["spec"]["selector"]}
    for pdb in (
        {"enabled": True, "minAvailable": 1},
        {"enabled": True, "minAvailable": "100%"},
        {"enabled": True, "maxUnavailable": 0},
        {"enabled": True, "maxUnavailable": "50%"},
    ):
        with pytest.raises(helm.RenderError) as failed:
            helm.template(chart, ci(chart, "minimal"), values={"podDisruptionBudget": pdb})
        line = message_line(failed.value, "podDisruptionBudget:")
        assert "would block every node drain" in line
        assert "outbox.postgres" in line
    # Disabled, its other fields are not looked at.
    render(chart, values={"podDisruptionBudget": {"enabled": False, "minAvailable": 1}})


def test_charts_without_a_data_directory_keep_their_replicas_pdb_and_hpa() -> None:
    """The single-writer rules come with `persistence` values: ldap (a proxy, no outbox) scales."""
    minimal = helm.CHARTS / "ldap" / "ci" / "minimal-values.yaml"
    rendered = kinds(helm.template("ldap", minimal, values={"replicaCount": 3}))
    assert rendered["Deployment"]["spec"]["replicas"] == 3
    assert rendered["Deployment"]["spec"]["strategy"]["type"] == "RollingUpdate"
    assert "PersistentVolumeClaim" not in rendered
    assert rendered["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    scaled = kinds(helm.template("ldap", minimal, values={"autoscaling": {"enabled": True}}))
    assert "HorizontalPodAutoscaler" in scaled
    with pytest.raises(helm.RenderError, match="not both"):
        helm.template(
            "ldap", minimal, values={"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": 1}}
        )
