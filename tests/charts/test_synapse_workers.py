"""The synapse chart's workers, rendered: configuration derived from pools, invalid topologies
refused, the workloads, scaling and scheduling, and every ci values file linted and valid
(the same configuration booted as a real worker cluster: tests/integration/test_synapse_cluster.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts import helm
from tests.charts.synapse_chart import (
    CI,
    by_name,
    configmap,
    homeserver,
)


@pytest.mark.parametrize("values_file", sorted(CI.glob("*.yaml")), ids=lambda p: p.stem)
def test_lint_and_kubernetes_schemas(values_file: Path) -> None:
    result = helm.run("lint", "--strict", str(helm.CHARTS / "synapse"), "-f", str(values_file))
    assert result.returncode == 0, result.stdout + result.stderr
    for document in helm.template("synapse", values_file):
        helm.validate(document)


def test_monolith_has_no_worker_configuration() -> None:
    config = homeserver(CI / "monolith-values.yaml")
    for key in ("instance_map", "stream_writers", "redis", "pusher_instances", "run_background_tasks_on"):
        assert key not in config
    assert config["enable_media_repo"] is True
    assert sorted(configmap(CI / "monolith-values.yaml")) == [
        "homeserver.yaml",
        "log.yaml",
        "process-main.yaml",
    ]


def test_configuration_is_derived_from_pools() -> None:
    config = homeserver(CI / "default-values.yaml")
    writers = config["stream_writers"]
    prefix = "t-synapse-"
    assert writers["events"] == [f"{prefix}event-persister-0", f"{prefix}event-persister-1"]
    for stream in ("typing", "to_device", "account_data", "presence", "push_rules", "receipts", "device_lists",
                   "thread_subscriptions"):  # fmt: skip
        assert writers[stream] == [f"{prefix}{stream.replace('_', '-')}-0"], stream
    # The main process is "master" here, and it must write quarantine changes (its background update does).
    assert writers["quarantined_media_changes"] == ["master", f"{prefix}quarantined-media-0"]
    everyone = {name for names in writers.values() for name in names} - {"master"}
    assert everyone <= set(config["instance_map"])
    assert config["instance_map"]["main"]["port"] == 9093
    assert config["enable_media_repo"] is False
    assert config["media_instance_running_background_jobs"] == f"{prefix}media-background-0"
    assert config["run_background_tasks_on"] == f"{prefix}background-0"
    assert config["update_user_directory_from_worker"] == f"{prefix}user-dir-0"
    assert config["pusher_instances"] == [f"{prefix}pusher-0"]
    processes = configmap(CI / "default-values.yaml")
    quarantine = yaml.safe_load(processes["process-quarantined_media.yaml"])
    names = {
        n
        for listener in quarantine["worker_listeners"]
        for r in listener.get("resources", [])
        for n in r["names"]
    }
    assert {"media", "replication"} <= names  # media-capable and addressable: it can write quarantine changes
    assert quarantine["enable_media_repo"] is True
    # Disabled writer pools fall back to master.
    fewer = homeserver(CI / "default-values.yaml", values={"pools": {"typing": {"enabled": False}}})
    assert fewer["stream_writers"]["typing"] == ["master"]


def test_invalid_topologies_fail_with_what_to_change() -> None:
    cases = [
        ({"pools": {"typing": {"replicas": 2}}}, "a typing pool runs exactly one instance"),
        ({"redis": {"host": ""}}, "workers replicate through Redis"),
        ({"pools": {"media_background": {"enabled": False}}}, "need a media_background pool"),
        ({"pools": {"quarantined_media": {"enabled": False}}}, "need a quarantined_media pool"),
        ({"pools": {"main": {"enabled": False}}}, "exactly one enabled pool of kind main"),
        (
            {"pools": {"second_main": {"kind": "main"}}},
            "exactly one enabled pool of kind main is needed, found 2",
        ),
        ({"pools": {"x": {"kind": "media"}}}, "kind"),
        ({"pools": {"Bad-Name": {"kind": "room"}}}, "pool name"),
    ]
    for values, message in cases:
        with pytest.raises(helm.RenderError, match=message):
            configmap(CI / "default-values.yaml", values=values)


def test_large_topology() -> None:
    documents = helm.template(
        "synapse", CI / "large-values.yaml", api_versions=("monitoring.coreos.com/v1/PodMonitor",)
    )
    for document in documents:
        helm.validate(document)
    kinds: dict[str, list[dict[str, Any]]] = {}
    for document in documents:
        kinds.setdefault(document["kind"], []).append(document)
    config = yaml.safe_load(by_name(documents, "ConfigMap", "t-synapse")["data"]["homeserver.yaml"])
    assert len(config["stream_writers"]["events"]) == 4
    assert config["stream_writers"]["quarantined_media_changes"] == [
        "master", "t-synapse-quarantined-media-0", "t-synapse-quarantined-media-1"]  # fmt: skip
    assert config["experimental_features"] == {"msc4306_enabled": True}
    assert len(config["federation_sender_instances"]) == 3
    [hpa] = kinds["HorizontalPodAutoscaler"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (4, 12)
    sync = next(d for d in kinds["Deployment"] if d["metadata"]["name"] == "t-synapse-sync")
    assert "replicas" not in sync["spec"]  # the HPA owns it
    assert any(
        d["metadata"]["name"] == "t-synapse-sync-initial" for d in kinds["Deployment"]
    )  # an extra pool
    pdbs = {d["metadata"]["name"] for d in kinds["PodDisruptionBudget"]}
    assert "t-synapse-event-persister" in pdbs
    assert "t-synapse-typing" not in pdbs  # one replica: a PDB would block every drain
    monitors = {m["metadata"]["name"]: m["spec"] for m in kinds["PodMonitor"]}
    assert set(monitors) == {"t-synapse", "t-synapse-router", "t-synapse-mas"}  # each pod kind, its own path
    assert monitors["t-synapse"]["selector"]["matchExpressions"] == [
        {"key": "matrix-stack.io/pool", "operator": "Exists"}]  # fmt: skip
    assert monitors["t-synapse-router"]["podMetricsEndpoints"][0] == {
        "port": "metrics",
        "path": "/metrics",
        "interval": "30s",
    }
    assert monitors["t-synapse-mas"]["podMetricsEndpoints"][0]["port"] == "internal"
    secret_names = {
        v["secret"]["secretName"]
        for d in kinds["StatefulSet"]
        for v in d["spec"]["template"]["spec"]["volumes"]
        if "secret" in v
    }
    assert secret_names == {
        "t-synapse-secrets",
        "synapse-keys",
        "mas-synapse",
    }  # the operator's, MAS's shared one
    assert config["signing_key_path"] == "/secrets/ext/synapse-keys/signing.key"
    env = next(iter(kinds["StatefulSet"]))["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [
        {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "synapse-db", "key": "password"}}}
    ]
    with pytest.raises(helm.RenderError, match="cannot autoscale"):
        helm.template(
            "synapse",
            CI / "large-values.yaml",
            values={"pools": {"typing": {"autoscaling": {"enabled": True, "maxReplicas": 2}}}},
        )


def test_generated_signing_key_is_what_synapse_reads(tmp_path: Path) -> None:
    import base64

    from signedjson.key import read_signing_keys

    secret = by_name(helm.template("synapse", CI / "default-values.yaml"), "Secret", "t-synapse-secrets")
    key_text = base64.b64decode(secret["data"]["signing.key"]).decode()
    [key] = read_signing_keys(key_text.splitlines())
    assert key.alg == "ed25519"
    assert key.version.startswith("a_")
    assert len(bytes(key)) == 32


def test_workloads() -> None:
    documents = helm.template("synapse", CI / "default-values.yaml")
    workloads = {d["metadata"]["name"]: d for d in documents if d["kind"] in ("StatefulSet", "Deployment")}
    assert workloads["t-synapse-typing"]["kind"] == "StatefulSet"  # named in config: stable pod names
    assert workloads["t-synapse-sync"]["kind"] == "Deployment"  # stateless reader
    assert workloads["t-synapse-event-persister"]["spec"]["replicas"] == 2
    typing = workloads["t-synapse-typing"]["spec"]["template"]["spec"]
    [container] = typing["containers"]
    assert "synapse.app.generic_worker" in container["command"][2]
    assert "s/@HOSTNAME@/$HOSTNAME/" in container["command"][2]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert typing["securityContext"]["runAsNonRoot"] is True
    services = {d["metadata"]["name"] for d in documents if d["kind"] == "Service"}
    assert {name for name in workloads} == services  # one headless Service per pool
    main = workloads["t-synapse-main"]["spec"]["template"]["spec"]["containers"][0]
    assert "synapse.app.homeserver" in main["command"][2]
    mounts = {m["mountPath"] for m in main["volumeMounts"]}
    assert "/media" not in mounts  # media pools exist: main serves no media
    media = workloads["t-synapse-media-repository"]["spec"]["template"]["spec"]["containers"][0]
    assert "/media" in {m["mountPath"] for m in media["volumeMounts"]}
    # The default ReadWriteOnce media volume attaches to one node: the media processes go there together.
    for name in ("t-synapse-media-repository", "t-synapse-media-background", "t-synapse-quarantined-media"):
        affinity = workloads[name]["spec"]["template"]["spec"]["affinity"]["podAffinity"]
        [term] = affinity["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["labelSelector"]["matchLabels"]["matrix-stack.io/media"] == "true"
        assert workloads[name]["spec"]["template"]["metadata"]["labels"]["matrix-stack.io/media"] == "true"
    assert "affinity" not in workloads["t-synapse-room"]["spec"]["template"]["spec"]
    shared = helm.template("synapse", CI / "large-values.yaml")  # ReadWriteMany: no constraint
    assert (
        "affinity"
        not in by_name(shared, "Deployment", "t-synapse-media-repository")["spec"]["template"]["spec"]
    )


def test_pgbouncer_with_writers_bypassing_it() -> None:
    values = {"pgbouncer": {"enabled": True}}
    documents = helm.template("synapse", CI / "large-values.yaml", values=values)
    for document in documents:
        helm.validate(document)
    data = by_name(documents, "ConfigMap", "t-synapse")["data"]

    def database_host(pool: str) -> str:
        process = yaml.safe_load(data[f"process-{pool}.yaml"])
        host: str = process.get("database", yaml.safe_load(data["homeserver.yaml"])["database"])["args"][
            "host"
        ]
        return host

    assert database_host("sync") == "t-synapse-pgbouncer"
    assert database_host("client_reader") == "t-synapse-pgbouncer"
    for pool in ("main", "event_persister", "background"):  # the heavy writers connect directly
        assert database_host(pool) == "postgres.example.svc"
    pgbouncer = next(
        d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == "t-synapse-pgbouncer"
    )
    env = {e["name"]: e for e in pgbouncer["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "synapse-db", "key": "password"}
    assert env["DB_HOST"]["value"] == "postgres.example.svc"


def test_pool_scheduling_and_keda_cron() -> None:
    values = {
        "tolerations": [{"key": "matrix", "operator": "Exists"}],
        "pools": {
            "room": {"nodeSelector": {"pool": "room"}, "priorityClassName": "high", "tolerations": [],
                     "podAnnotations": {"team": "rooms"},
                     "keda": {"enabled": True, "maxReplicas": 8, "timezone": "Europe/Berlin",
                              "schedules": [{"start": "0 7 * * 1-5", "end": "0 19 * * 1-5", "desiredReplicas": 6}]}},
        },
    }  # fmt: skip
    documents = helm.template("synapse", CI / "default-values.yaml", values=values)
    room = by_name(documents, "Deployment", "t-synapse-room")
    pod = room["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "room"}
    assert pod["priorityClassName"] == "high"
    assert "tolerations" not in pod  # the pool's own (empty) list replaces the chart-wide one
    assert room["spec"]["template"]["metadata"]["annotations"]["team"] == "rooms"
    assert "replicas" not in room["spec"]  # KEDA owns it
    sync = by_name(documents, "Deployment", "t-synapse-sync")["spec"]["template"]["spec"]
    assert sync["tolerations"] == [{"key": "matrix", "operator": "Exists"}]
    assert "nodeSelector" not in sync
    scaled = by_name(documents, "ScaledObject", "t-synapse-room")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "t-synapse-room"
    assert scaled["spec"]["triggers"] == [{"type": "cron", "metadata": {
        "timezone": "Europe/Berlin", "start": "0 7 * * 1-5", "end": "0 19 * * 1-5", "desiredReplicas": "6"}}]  # fmt: skip
    for bad, message in (
        (
            {"pools": {"typing": {"keda": {"enabled": True, "maxReplicas": 2, "schedules": []}}}},
            "cannot autoscale",
        ),
        ({"pools": {"room": {"autoscaling": {"enabled": True, "maxReplicas": 4}}}}, "not both"),
    ):
        merged = {**values, "pools": {**values["pools"], **{k: {**values["pools"].get(k, {}), **v}
                                                           for k, v in bad["pools"].items()}}}  # fmt: skip
        with pytest.raises(helm.RenderError, match=message):
            helm.template("synapse", CI / "default-values.yaml", values=merged)


def test_long_release_names_keep_pools_apart() -> None:
    release = "my-very-long-release-name-for-testing"
    documents = helm.template("synapse", CI / "large-values.yaml", release=release)
    workloads = [d["metadata"]["name"] for d in documents if d["kind"] in ("StatefulSet", "Deployment")]
    assert len(workloads) == len(set(workloads))  # federation_reader/_sender, media_* stay distinct
    stateful = [d["metadata"]["name"] for d in documents if d["kind"] == "StatefulSet"]
    assert all(len(name) <= 52 for name in stateful)  # pod names and the revision label add to it
    names = [(d["kind"], d["metadata"]["name"]) for d in documents]
    assert len(names) == len(set(names))
    assert all(len(name) <= 63 for _, name in names)
    overridden = helm.template("synapse", CI / "large-values.yaml", values={"fullnameOverride": "x" * 62,
                                                                          "pgbouncer": {"enabled": True}})  # fmt: skip
    names = [(d["kind"], d["metadata"]["name"]) for d in overridden]
    assert len(names) == len(set(names))
    assert all(len(name) <= 63 for _, name in names)
    other = helm.template("synapse", CI / "large-values.yaml", release=release + "-two")
    assert not {d["metadata"]["name"] for d in other if d["kind"] == "StatefulSet"} & set(workloads)


def test_review_cases_existing_secrets_everywhere_and_scaling_edges() -> None:
    external = {
        "secrets": {key: {"secret": "synapse", "secretKey": key}  # an operator Secret named like the chart's mount
                    for key in ("macaroon", "form", "registrationSharedSecret", "signingKey")},
        "postgres": {"password": {"secret": "db", "secretKey": "password"}},
        "redis": {"password": {"secret": "redis", "secretKey": "password"}},
        "mas": {"secrets": {"encryption": {"secret": "mas", "secretKey": "enc"},
                            "signingKey": {"secret": "mas", "secretKey": "key"},
                            "synapseShared": {"secret": "{{ .Release.Name }}-shared", "secretKey": "s"}},
                "database": {"password": {"secret": "mas", "secretKey": "db"}}},
        "pools": {"room": {"keda": {"enabled": True, "minReplicas": 0, "maxReplicas": 4,
                                    "schedules": [{"start": "0 7 * * *", "end": "0 19 * * *", "desiredReplicas": 2}]}},
                  "sync": {"replicas": 1, "autoscaling": {"enabled": True, "maxReplicas": 6}}},
    }  # fmt: skip
    documents = helm.template("synapse", CI / "default-values.yaml", values=external)
    for document in documents:
        helm.validate(document)
    # Every Secret a pod mounts exists or is the operator's: the chart's own is always rendered.
    chart_secret = by_name(documents, "Secret", "t-synapse-secrets")
    assert chart_secret.get("data") in (None, {})
    main = by_name(documents, "StatefulSet", "t-synapse-main")["spec"]["template"]["spec"]
    mounts = [m["mountPath"] for m in main["containers"][0]["volumeMounts"]]
    assert len(mounts) == len(set(mounts))  # the operator's "synapse" Secret does not collide with ours
    assert "/secrets/ext/synapse" in mounts
    config = yaml.safe_load(by_name(documents, "ConfigMap", "t-synapse")["data"]["homeserver.yaml"])
    assert config["redis"]["password_path"] == "/secrets/ext/redis/password"
    assert config["signing_key_path"] == "/secrets/ext/synapse/signingKey"
    mas = by_name(documents, "Deployment", "t-synapse-mas")["spec"]["template"]["spec"]
    projected = {s["secret"]["name"] for s in mas["volumes"][1]["projected"]["sources"]}
    assert projected == {"mas", "t-shared"}  # templated Secret names work for MAS too
    assert by_name(documents, "ScaledObject", "t-synapse-room")["spec"]["minReplicaCount"] == 0
    pdbs = {d["metadata"]["name"] for d in documents if d["kind"] == "PodDisruptionBudget"}
    assert {"t-synapse-sync", "t-synapse-room"} <= pdbs  # autoscaled pools get one whatever `replicas` says
