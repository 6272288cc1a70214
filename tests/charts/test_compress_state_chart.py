"""The compress-state chart: a CronJob (and an optional one-off Job) running the `compress-state`
console script. The generic service-chart checks (tests/charts/test_service_charts.py) expect a
Deployment with probes and a Service, so this chart has its own: the rendered arguments must parse
with the tool's real argument parser and, with the rendered environment, build the tool's real
settings, so chart and tool cannot drift apart."""

from __future__ import annotations

import argparse
import base64
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from matrix_stack.shared.route.helm import RenderError
from tests.charts import helm

CHART = "compress-state"
CI = helm.CHARTS / CHART / "ci"
MINIMAL, HOST, FULL = (CI / f"{name}-values.yaml" for name in ("minimal", "host-password", "full"))
CI_FILES = [MINIMAL, HOST, FULL]
WORKLOADS = ("CronJob", "Job")
FIRST_LEVEL_MESSAGE = r"chunkSize \(50\) must be at least the first of levels \(100\)"


@pytest.fixture(scope="module", autouse=True)
def chart_dependency() -> None:
    # tests/charts/conftest.py builds the service charts' dependencies; this chart's is built here.
    helm.build_dependencies(CHART)


def kinds(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for document in documents:
        assert document["kind"] not in found, f"two {document['kind']} objects"
        found[document["kind"]] = document
    return found


def render(*values_files: Path, values: dict[str, Any] | None = None, release: str = "t") -> dict[str, Any]:
    return kinds(helm.template(CHART, *values_files, values=values, release=release))


def job_spec(document: dict[str, Any]) -> dict[str, Any]:
    """The Job spec of a CronJob (its jobTemplate) or of a Job."""
    spec: dict[str, Any] = document["spec"]
    if document["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec


def pod_spec(document: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job_spec(document)["template"]["spec"]
    return spec


def container(document: dict[str, Any]) -> dict[str, Any]:
    [only] = pod_spec(document)["containers"]
    assert isinstance(only, dict)
    return only


def env_of(document: dict[str, Any]) -> dict[str, str]:
    entries = container(document)["env"]
    assert all("valueFrom" not in e for e in entries)  # secrets are files, never env values
    return {e["name"]: e["value"] for e in entries}


def workloads(rendered: dict[str, Any]) -> list[dict[str, Any]]:
    return [rendered[kind] for kind in WORKLOADS if kind in rendered]


def values_of(values_file: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(values_file.read_text())
    return loaded


def tool_values(values_file: Path, kind: str) -> dict[str, Any]:
    """The values a workload runs with: the chart's defaults, the file's, and for the Job its
    overrides (top-level keys replace the defaults whole, as the tool's values are flat)."""
    values = {**values_of(helm.CHARTS / CHART / "values.yaml"), **values_of(values_file)}
    return {**values, **(values["job"].get("overrides", {}) if kind == "Job" else {})}


def credential_values(values_file: Path) -> set[str]:
    """Every inline credential of a values file (only ever base64 in the chart's Secret)."""
    database = values_of(values_file).get("database", {})
    return {database[key]["value"] for key in ("url", "password") if "value" in database.get(key, {})}


# -- what every rendering has ------------------------------------------------------------------


@pytest.mark.parametrize("values_file", CI_FILES, ids=lambda p: p.stem)
def test_lint_strict(values_file: Path) -> None:
    result = helm.run("lint", "--strict", str(helm.CHARTS / CHART), "-f", str(values_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout
    assert "[ERROR]" not in result.stdout


@pytest.mark.parametrize("values_file", CI_FILES, ids=lambda p: p.stem)
def test_rendered_objects_are_valid_labelled_and_locked_down(values_file: Path) -> None:
    documents = helm.template(CHART, values_file)
    secrets = credential_values(values_file)
    assert {d["kind"] for d in documents} <= {"CronJob", "Job", "Secret", "ServiceAccount", "NetworkPolicy"}
    for document in documents:
        helm.validate(document)  # the Kubernetes schemas, strict
        labels = document["metadata"]["labels"]
        for key in ("name", "instance", "version", "managed-by", "part-of", "component"):
            assert f"app.kubernetes.io/{key}" in labels, (document["kind"], key)
        assert labels["app.kubernetes.io/component"] == "compress-state"
        assert all(len(value) <= 63 for value in labels.values())
        assert len(document["metadata"]["name"]) <= (52 if document["kind"] == "CronJob" else 63)
        if document["kind"] != "Secret":
            text = yaml.safe_dump(document)
            assert not [s for s in secrets if s in text], f"{document['kind']} holds a credential"
    for workload in workloads(kinds(documents)):
        spec = job_spec(workload)
        pod = spec["template"]
        assert pod["metadata"]["labels"].items() >= workload["metadata"]["labels"].items()
        assert pod["spec"]["restartPolicy"] == "Never"
        assert pod["spec"]["automountServiceAccountToken"] is False
        security = pod["spec"]["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        for key in ("hostNetwork", "hostPID", "hostIPC", "initContainers"):
            assert key not in pod["spec"]
        box = container(workload)
        assert box["securityContext"]["readOnlyRootFilesystem"] is True
        assert box["securityContext"]["allowPrivilegeEscalation"] is False
        assert box["securityContext"]["privileged"] is False
        assert box["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert box["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert box["resources"]["requests"]["cpu"]
        assert box["resources"]["requests"]["memory"]
        assert box["resources"]["limits"]["memory"]
        # Nothing listens: no ports, no probes (a run ends; its exit code is its health).
        for key in ("ports", "livenessProbe", "readinessProbe", "startupProbe"):
            assert key not in box
        mounts = {m["mountPath"] for m in box["volumeMounts"]}
        for name, value in env_of(workload).items():
            if name.endswith("_FILE") or name == "PGSSLROOTCERT":
                assert any(value.startswith(m + "/") for m in mounts), (name, value)


# -- the CronJob and the Job -------------------------------------------------------------------


def test_cronjob_defaults() -> None:
    rendered = render(MINIMAL)
    assert set(rendered) == {"CronJob", "ServiceAccount"}  # no Job, no Secret of the chart's own
    cron = rendered["CronJob"]["spec"]
    assert cron["schedule"] == "17 3 * * *"
    assert cron["concurrencyPolicy"] == "Forbid"
    assert "timeZone" not in cron
    assert cron["suspend"] is False
    assert cron["startingDeadlineSeconds"] == 3600
    assert (cron["successfulJobsHistoryLimit"], cron["failedJobsHistoryLimit"]) == (3, 3)
    job = job_spec(rendered["CronJob"])
    assert job["backoffLimit"] == 0  # a failed run waits for the next night, not retried blindly
    assert job["activeDeadlineSeconds"] == 4 * 3600
    assert "ttlSecondsAfterFinished" not in job  # the history limits keep the last runs
    assert job["podFailurePolicy"]["rules"] == [
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1, 2, 3]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]
    resources = container(rendered["CronJob"])["resources"]
    assert resources == {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}
    assert rendered["ServiceAccount"]["automountServiceAccountToken"] is False


def test_full_values_reach_the_cronjob_and_the_job() -> None:
    rendered = render(FULL)
    cron = rendered["CronJob"]["spec"]
    assert (cron["schedule"], cron["timeZone"], cron["suspend"]) == ("30 2 * * 1-5", "Europe/Berlin", True)
    assert cron["concurrencyPolicy"] == "Forbid"
    assert cron["startingDeadlineSeconds"] == 600
    assert (cron["successfulJobsHistoryLimit"], cron["failedJobsHistoryLimit"]) == (5, 10)
    run = job_spec(rendered["CronJob"])
    limits = ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished")
    assert [run[key] for key in limits] == [1, 7200, 604800]
    once = job_spec(rendered["Job"])
    assert [once[key] for key in limits] == [0, 172800, 1209600]
    assert once["podFailurePolicy"] == run["podFailurePolicy"]
    for workload in workloads(rendered):
        pod = pod_spec(workload)
        assert pod["serviceAccountName"] == "compress-state"
        assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
        assert pod["priorityClassName"] == "low-priority"
        assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
        assert pod["tolerations"][0]["key"] == "dedicated"
        assert "nodeAffinity" in pod["affinity"]
        assert pod["topologySpreadConstraints"][0]["maxSkew"] == 1
        assert pod["terminationGracePeriodSeconds"] == 120
        template = job_spec(workload)["template"]["metadata"]
        assert template["labels"]["cost-centre"] == "matrix"
        assert template["labels"]["team"] == "matrix"  # commonLabels
        assert template["annotations"] == {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
        box = container(workload)
        assert box["image"] == (
            "registry.example.org/mirror/matrix-stack@sha256:"
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
        )
        assert box["imagePullPolicy"] == "Always"
        assert box["resources"]["limits"] == {"memory": "2Gi"}
        assert {"name": "client-cert", "mountPath": "/etc/compress-state/client", "readOnly": True} in box[
            "volumeMounts"
        ]
        env = env_of(workload)
        assert env["COMPRESS_STATE_LOG_JSON"] == "true"  # extraEnv, after the chart's own
        assert list(env)[-3:] == ["COMPRESS_STATE_LOG_JSON", "PGSSLCERT", "PGSSLKEY"]


def test_the_job_is_optional_and_its_overrides_are_its_own() -> None:
    assert "Job" not in render(MINIMAL)
    rendered = render(
        MINIMAL, values={"job": {"enabled": True, "overrides": {"chunks": 5000, "dryRun": True}}}
    )
    cron_args, job_args = (container(rendered[kind])["args"] for kind in WORKLOADS)
    assert cron_args[cron_args.index("--chunks") + 1] == "100"
    assert "--dry-run" not in cron_args
    assert job_args[job_args.index("--chunks") + 1] == "5000"
    assert "--dry-run" in job_args
    assert job_spec(rendered["Job"])["activeDeadlineSeconds"] == 86400
    # A false override is an override too (not merged away as "empty").
    dry = render(MINIMAL, values={"dryRun": True, "job": {"enabled": True, "overrides": {"dryRun": False}}})
    assert "--dry-run" in container(dry["CronJob"])["args"]
    assert "--dry-run" not in container(dry["Job"])["args"]
    only_job = render(MINIMAL, values={"cronJob": {"enabled": False}, "job": {"enabled": True}})
    assert "CronJob" not in only_job
    assert "Job" in only_job
    with pytest.raises(RenderError, match="nothing to run"):
        render(MINIMAL, values={"cronJob": {"enabled": False}})


def test_the_job_is_named_after_what_it_runs() -> None:
    """A Job's pod template is immutable: a changed Job is a new one (a new name), an unchanged one
    keeps its name, so an upgrade neither fails on it nor runs it again."""

    def name(job: dict[str, Any], **values: Any) -> str:
        rendered = render(MINIMAL, values={"job": {"enabled": True, **job}, **values})["Job"]
        return str(rendered["metadata"]["name"])

    first = name({})
    assert re.fullmatch(r"t-compress-state-once-[0-9a-f]{8}", first)
    assert name({}) == first
    assert name({"overrides": {"chunks": 7}}) != first
    assert name({"activeDeadlineSeconds": 3600}) != first
    assert name({}, commonLabels={"team": "matrix"}) != first  # labels are part of the pod template
    longest = name({}, fullnameOverride="x" * 63)
    assert re.fullmatch(r"x{49}-once-[0-9a-f]{8}", longest)  # 63 characters, the suffix kept


@pytest.mark.parametrize(
    ("release", "values"),
    [("r" * 53, {}), ("t", {"fullnameOverride": "f" * 63})],
    ids=["release", "fullname"],
)
def test_long_names_fit_the_cronjob_limit(release: str, values: dict[str, Any]) -> None:
    rendered = render(MINIMAL, release=release, values={"job": {"enabled": True}, **values})
    assert len(rendered["CronJob"]["metadata"]["name"]) <= 52  # the controller appends 11 characters
    assert len(rendered["Job"]["metadata"]["name"]) <= 63
    for document in rendered.values():
        helm.validate(document)


def test_cronjob_schedule_checks() -> None:
    # Five fields or a macro; a time zone goes in cronJob.timeZone, not TZ= in the schedule.
    for schedule in ("TZ=Europe/Berlin 17 3 * * *", "every night", "17 3 * *"):
        with pytest.raises(RenderError, match="/cronJob/schedule"):
            render(MINIMAL, values={"cronJob": {"schedule": schedule}})
    with pytest.raises(RenderError, match="concurrencyPolicy"):  # Forbid is not a choice
        render(MINIMAL, values={"cronJob": {"concurrencyPolicy": "Allow"}})
    assert (
        render(MINIMAL, values={"cronJob": {"schedule": "@daily"}})["CronJob"]["spec"]["schedule"] == "@daily"
    )


# -- the tool's arguments and settings ---------------------------------------------------------


@pytest.mark.parametrize("values_file", CI_FILES, ids=lambda p: p.stem)
def test_args_parse_with_the_tools_parser(values_file: Path) -> None:
    from matrix_stack.services.compress_state.config import parser

    for workload in workloads(render(values_file)):
        box = container(workload)
        assert box["command"] == ["compress-state"]  # exec form: no shell anywhere
        args = box["args"]
        assert all(isinstance(arg, str) for arg in args)
        assert not {"sh", "/bin/sh", "bash", "-c"} & {*box["command"], *args}
        parsed: argparse.Namespace = parser().parse_args(args)
        tool = tool_values(values_file, workload["kind"])
        assert parsed.levels == ",".join(str(level) for level in tool["levels"])
        assert int(parsed.chunk_size) == tool["chunkSize"]
        assert int(parsed.chunks) == tool["chunks"]
        assert parsed.room == (tool["room"] or None)
        assert parsed.dry_run == (True if tool["dryRun"] else None)
        assert parsed.verify == (None if tool["verify"] else False)
        expected_rate = tool["maxGroupsPerSecond"]
        assert (None if parsed.max_groups_per_second is None else float(parsed.max_groups_per_second)) == (
            expected_rate
        )
        assert float(parsed.lock_timeout_seconds) == tool["lockTimeoutSeconds"]
        assert parsed.rust_progress == tool["rustProgress"]
        assert parsed.pushgateway_url == (tool["pushgateway"]["url"] or None)
        assert parsed.log_level == tool["logLevel"]
        assert parsed.progress_bar is False
        # The connection is never an argument: no URL, no password, no password file flag.
        assert parsed.database_url is None
        assert parsed.password_file is None


def test_boolean_and_optional_values_become_flags_or_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from matrix_stack.services.compress_state.config import load

    for name in [n for n in os.environ if n.startswith("COMPRESS_STATE_")]:
        monkeypatch.delenv(name)
    plain = container(render(MINIMAL)["CronJob"])["args"]
    for flag in ("--room", "--dry-run", "--no-verify", "--max-groups-per-second", "--pushgateway-url"):
        assert flag not in plain
    values = {"verify": False, "dryRun": True, "room": "!r:example.org", "maxGroupsPerSecond": 3}
    args = container(render(MINIMAL, values=values)["CronJob"])["args"]
    assert args[args.index("--room") + 1] == "!r:example.org"
    settings = load(args)
    assert (settings.verify, settings.dry_run, settings.room) == (False, True, "!r:example.org")
    assert settings.max_groups_per_second == 3


def settings_from_chart(
    workload: dict[str, Any], secret: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """The tool's real settings, from the workload's args and environment: plain values as they are,
    each *_FILE pointing at a file holding the chart Secret's content (or, for an operator's
    Secret, a stand-in). libpq's PG* variables are set too; the settings leave them to libpq."""
    from matrix_stack.services.compress_state.config import load

    for name in [n for n in os.environ if n.startswith(("COMPRESS_STATE_", "PG"))]:
        monkeypatch.delenv(name)
    stand_ins = {"COMPRESS_STATE_DATABASE_URL_FILE": "postgresql://synapse@db.example.org:5432/synapse\n",
                 "COMPRESS_STATE_PASSWORD_FILE": "password-from-an-operator-secret\n"}  # fmt: skip
    for name, value in env_of(workload).items():
        if name.endswith("_FILE"):
            from_chart = value.startswith("/secrets/chart/")
            path = tmp_path / f"{workload['kind']}-{Path(value).name}"
            path.write_text(secret[Path(value).name] if from_chart else stand_ins[name])
            value = str(path)
        monkeypatch.setenv(name, value)
    return load(container(workload)["args"])


@pytest.mark.parametrize("values_file", CI_FILES, ids=lambda p: p.stem)
def test_rendered_args_and_env_build_the_tools_settings(
    values_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matrix_stack.services.compress_state.config import CompressStateSettings

    rendered = render(values_file)
    secret = {k: base64.b64decode(v).decode() for k, v in rendered.get("Secret", {}).get("data", {}).items()}
    for workload in workloads(rendered):
        settings = settings_from_chart(workload, secret, tmp_path, monkeypatch)
        assert isinstance(settings, CompressStateSettings)
        tool = tool_values(values_file, workload["kind"])
        assert settings.levels == tool["levels"]
        assert (settings.chunk_size, settings.chunks) == (tool["chunkSize"], tool["chunks"])
        assert settings.room == (tool["room"] or None)
        assert (settings.dry_run, settings.verify) == (tool["dryRun"], tool["verify"])
        assert settings.max_groups_per_second == tool["maxGroupsPerSecond"]
        assert settings.lock_timeout_seconds == tool["lockTimeoutSeconds"]
        assert settings.rust_progress.value == tool["rustProgress"]
        assert settings.pushgateway_url == (tool["pushgateway"]["url"] or None)
        assert settings.pushgateway_job == (tool["pushgateway"]["job"] or "compress-state")
        assert settings.log_level == tool["logLevel"]
        assert settings.progress_bar is False
        database = tool["database"]
        if database.get("url"):
            assert settings.database_url is not None
            assert settings.database_url.get_secret_value().startswith("postgresql://")
        else:
            assert settings.database_url is None  # libpq's PG* variables
        if database.get("password", {}).get("value"):
            assert settings.password is not None
            assert settings.password.get_secret_value() == database["password"]["value"]
        elif database.get("password"):
            assert settings.password is not None
            assert settings.password.get_secret_value() == "password-from-an-operator-secret"
        else:
            assert settings.password is None


def test_chunk_size_below_the_first_level_fails_in_the_chart_as_in_the_tool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from matrix_stack.services.compress_state.config import load

    with pytest.raises(RenderError, match=FIRST_LEVEL_MESSAGE):
        render(MINIMAL, values={"chunkSize": 50})
    with pytest.raises(RenderError, match=r"chunkSize \(99\) must be at least the first of levels \(100\)"):
        render(MINIMAL, values={"levels": [100, 10], "chunkSize": 99})
    with pytest.raises(RenderError, match=r"job\.overrides: " + FIRST_LEVEL_MESSAGE):
        render(MINIMAL, values={"job": {"enabled": True, "overrides": {"chunkSize": 50}}})
    with pytest.raises(
        RenderError,
        match=r"job\.overrides: chunkSize \(500\) must be at least the first of levels \(600\)",
    ):
        render(MINIMAL, values={"job": {"enabled": True, "overrides": {"levels": [600, 60]}}})
    # What the schema can say itself: sizes are whole numbers of at least 1, at least one level.
    schema_cases: list[tuple[dict[str, Any], str]] = [
        ({"chunkSize": 0}, "/chunkSize"),
        ({"levels": []}, "/levels"),
        ({"levels": [0]}, "/levels/0"),
        ({"levels": "100,50,25"}, "/levels"),  # a list, not the flag's string
        ({"chunks": 0}, "/chunks"),
    ]
    for bad, where in schema_cases:
        with pytest.raises(RenderError, match=re.escape(where)):
            render(MINIMAL, values=bad)
    # The boundary passes, in the chart and in the tool.
    equal = render(MINIMAL, values={"levels": [500, 100], "chunkSize": 500})
    for name in [n for n in os.environ if n.startswith("COMPRESS_STATE_")]:
        monkeypatch.delenv(name)
    settings = load(container(equal["CronJob"])["args"])
    assert (settings.levels, settings.chunk_size) == ([500, 100], 500)
    # And the tool refuses what the chart refuses (exit 2, bad configuration).
    with pytest.raises(SystemExit) as exited:
        load(["--levels", "100,50,25", "--chunk-size", "50"])
    assert exited.value.code == 2


def test_tool_values_the_schema_refuses() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"room": "#alias:example.org"}, "/room"),  # a room id, not an alias
        ({"rustProgress": "skip"}, "/rustProgress"),
        ({"maxGroupsPerSecond": 0}, "/maxGroupsPerSecond"),
        ({"lockTimeoutSeconds": 0}, "/lockTimeoutSeconds"),
        ({"logLevel": "TRACE"}, "/logLevel"),
        ({"pushgateway": {"url": "pushgateway:9091"}}, "/pushgateway/url"),
        ({"minStateGroups": 100}, "minStateGroups"),  # the upstream chart's name for chunks
        ({"job": {"overrides": {"chunkSize": "500"}}}, "/job/overrides/chunkSize"),
        ({"job": {"overrides": {"schedule": "@daily"}}}, "schedule"),
    ]
    for values, message in cases:
        with pytest.raises(RenderError, match=re.escape(message)):
            render(MINIMAL, values=values)


# -- the connection ----------------------------------------------------------------------------


def test_url_from_an_existing_secret_is_a_mounted_file() -> None:
    rendered = render(MINIMAL)
    cron = rendered["CronJob"]
    env = env_of(cron)
    assert env["COMPRESS_STATE_DATABASE_URL_FILE"] == "/secrets/ext/synapse-db-app/uri"
    assert "COMPRESS_STATE_DATABASE_URL" not in env
    for name in ("PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "COMPRESS_STATE_PASSWORD_FILE", "PGSSLROOTCERT"):
        assert name not in env  # the URL names them
    assert (env["PGSSLMODE"], env["PGCONNECT_TIMEOUT"]) == ("prefer", "10")
    volumes = pod_spec(cron)["volumes"]
    assert [v["secret"]["secretName"] for v in volumes if "secret" in v] == ["synapse-db-app"]
    mounts = {m["mountPath"]: m for m in container(cron)["volumeMounts"]}
    assert mounts["/secrets/ext/synapse-db-app"]["readOnly"] is True
    assert {"/var/lib/matrix-stack", "/tmp"} <= set(mounts)  # the library's emptyDirs, nothing else writable
    assert "Secret" not in rendered


def test_inline_url_goes_into_the_charts_secret() -> None:
    url = "postgresql://synapse:inline-password-0123@db:5432/synapse"
    rendered = render(values={"database": {"url": {"value": url}}})
    assert base64.b64decode(rendered["Secret"]["data"]["database-url"]).decode() == url
    cron = rendered["CronJob"]
    assert env_of(cron)["COMPRESS_STATE_DATABASE_URL_FILE"] == "/secrets/chart/database-url"
    assert url not in yaml.safe_dump(cron)
    assert "inline-password-0123" not in yaml.safe_dump(cron)


def test_host_with_a_password_secret_and_a_ca_bundle_verifies_the_server() -> None:
    rendered = render(HOST, release="synapse")
    cron = rendered["CronJob"]
    env = env_of(cron)
    assert env["PGHOST"] == "synapse-postgresql.matrix.svc"  # templates allowed
    assert (env["PGPORT"], env["PGUSER"], env["PGDATABASE"]) == ("5432", "synapse_user", "synapse")
    assert env["COMPRESS_STATE_PASSWORD_FILE"] == "/secrets/ext/synapse-db/password"
    assert env["PGSSLMODE"] == "verify-full"  # the default with a ca
    assert env["PGSSLROOTCERT"] == "/etc/compress-state/ca/cluster-trust-bundle/ca.crt"
    assert "COMPRESS_STATE_DATABASE_URL_FILE" not in env
    volumes = {v["name"]: v for v in pod_spec(cron)["volumes"]}
    assert volumes["database-ca"]["configMap"] == {"name": "cluster-trust-bundle"}
    mounts = {m["mountPath"] for m in container(cron)["volumeMounts"]}
    assert {"/etc/compress-state/ca/cluster-trust-bundle", "/secrets/ext/synapse-db"} <= mounts
    assert "Secret" not in rendered  # only the operator's Secret


def test_full_values_keep_the_password_in_the_charts_secret() -> None:
    rendered = render(FULL)
    secret = {k: base64.b64decode(v).decode() for k, v in rendered["Secret"]["data"].items()}
    assert secret["database-password"] == "database-password-0123"
    assert secret["database-ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
    for workload in workloads(rendered):
        env = env_of(workload)
        assert env["COMPRESS_STATE_PASSWORD_FILE"] == "/secrets/chart/database-password"
        assert (env["PGSSLMODE"], env["PGSSLROOTCERT"]) == ("verify-ca", "/secrets/chart/database-ca.crt")
        assert (env["PGPORT"], env["PGCONNECT_TIMEOUT"]) == ("6432", "20")
        assert env["COMPRESS_STATE_PUSHGATEWAY_JOB"] == "synapse-compress-state"
        assert "database-password-0123" not in yaml.safe_dump(workload)
        volumes = pod_spec(workload)["volumes"]
        assert {"name": "chart-secret", "secret": {"secretName": "synapse-compress-state"}} in volumes


def test_connection_mistakes_fail_with_a_clear_message() -> None:
    url = {"secret": "db", "secretKey": "uri"}
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, r"set database\.url .* or database\.host"),
        ({"url": url, "host": "db"}, r"set database\.url or database\.host, not both"),
        ({"host": "db", "sslMode": "verify-full"}, r"database\.sslMode verify-full needs database\.ca"),
        ({"host": "db", "sslMode": "verify-ca"}, r"database\.sslMode verify-ca needs database\.ca"),
        (
            {"host": "db", "sslMode": "prefer", "ca": {"secret": "ca", "secretKey": "ca.crt"}},
            r"database\.sslMode prefer does not insist on TLS",
        ),
        ({"host": "db", "sslMode": "verify-everything"}, "/database/sslMode"),
        ({"host": "db", "ca": {"configMap": "ca"}}, "/database/ca"),
        ({"host": "db", "password": {"secret": "db"}}, "/database/password"),
        ({"url": "postgresql://db/synapse"}, "/database/url"),  # a credential, never a plain value
        ({"host": "db", "port": 0}, "/database/port"),
    ]
    for database, message in cases:
        with pytest.raises(RenderError, match=message):
            render(values={"database": database})


def test_require_with_a_ca_and_plain_modes_without_one_render() -> None:
    ca = {"secret": "db-ca", "secretKey": "ca.crt"}
    required = env_of(render(values={"database": {"host": "db", "sslMode": "require", "ca": ca}})["CronJob"])
    assert (required["PGSSLMODE"], required["PGSSLROOTCERT"]) == ("require", "/secrets/ext/db-ca/ca.crt")
    plain = env_of(render(values={"database": {"host": "db", "sslMode": "disable"}})["CronJob"])
    assert plain["PGSSLMODE"] == "disable"
    assert "PGSSLROOTCERT" not in plain
    assert "COMPRESS_STATE_PASSWORD_FILE" not in plain  # no password: trust or a client certificate
    with_url = env_of(render(MINIMAL, values={"database": {"ca": ca}})["CronJob"])
    assert (with_url["PGSSLMODE"], with_url["PGSSLROOTCERT"]) == ("verify-full", "/secrets/ext/db-ca/ca.crt")


def test_the_url_and_passwords_never_reach_args() -> None:
    url = "postgresql://synapse:url-password-0123@db.example.org/synapse"
    database = {"url": {"value": url}, "password": {"value": "other-password-0123"}}
    rendered = render(values={"database": database, "job": {"enabled": True}})
    for workload in workloads(rendered):
        args = " ".join(container(workload)["args"])
        assert "postgresql://" not in args
        assert "password" not in args
        assert env_of(workload)["COMPRESS_STATE_PASSWORD_FILE"] == "/secrets/chart/database-password"
        assert "url-password-0123" not in yaml.safe_dump(workload)


# -- the NetworkPolicy -------------------------------------------------------------------------


def test_network_policy_allows_dns_postgres_and_the_pushgateway_only() -> None:
    assert "NetworkPolicy" not in render(MINIMAL)
    policy = render(FULL)["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy  # nothing listens
    selector = {"app.kubernetes.io/name": "compress-state", "app.kubernetes.io/instance": "t"}
    assert policy["podSelector"]["matchLabels"] == selector
    dns, database, pushgateway, extra = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert database["ports"] == [{"port": 6432, "protocol": "TCP"}]
    assert database["to"][0]["podSelector"] == {"matchLabels": {"app": "postgres"}}
    assert pushgateway["ports"] == [{"port": 9091, "protocol": "TCP"}]
    assert extra["to"] == [{"ipBlock": {"cidr": "10.30.0.0/16"}}]
    # Every pod of the release (the CronJob's and the Job's) is selected.
    for workload in workloads(render(FULL)):
        pod_labels = job_spec(workload)["template"]["metadata"]["labels"]
        assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()

    def egress_ports(values: dict[str, Any]) -> list[list[int]]:
        spec = render(MINIMAL, values={"networkPolicy": {"enabled": True}, **values})["NetworkPolicy"]["spec"]
        assert all("to" not in rule for rule in spec["egress"])  # unset peers: any address
        return [[p["port"] for p in rule["ports"]] for rule in spec["egress"]]

    assert egress_ports({}) == [[53, 53], [5432]]  # no Pushgateway rule without a URL
    assert egress_ports({"pushgateway": {"url": "https://push.example.org"}}) == [[53, 53], [5432], [443]]
    assert egress_ports({"pushgateway": {"url": "http://push.example.org/"}}) == [[53, 53], [5432], [80]]
    assert egress_ports({"pushgateway": {"url": "http://[fd00::1]:9091"}}) == [[53, 53], [5432], [9091]]
