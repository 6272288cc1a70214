"""The synapse chart's config check: the pre-install/pre-upgrade hook Job, rendered, then run here as
the kubelet would lay out its pod (a bubblewrap sandbox: its ConfigMap, Secrets and emptyDirs at
their mount paths, the root read-only) with the installed Synapse standing in for the image's."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest

from devstack import sandbox
from tests.charts import helm

CI = helm.CHARTS / "synapse" / "ci"
CHECK = "t-synapse-config-check"
# Synapse would otherwise warn at every load (the chart leaves the key servers to the operator).
QUIET = {
    "extraConfig": {
        "trusted_key_servers": [{"server_name": "matrix.org"}],
        "suppress_key_server_warning": True,
    }
}

needs_bwrap = pytest.mark.skipif(
    sandbox.binary() is None, reason="needs bubblewrap (scripts/ensure-system-packages.sh)"
)


@pytest.fixture(scope="module", autouse=True)
def dependencies() -> None:
    helm.build_dependencies("synapse")


def hook(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The hook's objects by kind."""
    return {d["kind"]: d for d in documents if d["metadata"]["name"] == CHECK}


def run_check(
    tmp_path: Path,
    *files: Path,
    values: dict[str, Any] | None = None,
    extra: list[dict[str, Any]] | None = None,
) -> tuple[int, str]:
    """Render, then run the hook Job's container with the hook's objects and `extra` (the
    operator's Secrets) in the cluster; its exit code and output."""
    objects = hook(helm.template("synapse", *files, values=values))
    pod = objects["Job"]["spec"]["template"]["spec"]
    result = sandbox.run(pod, [objects["ConfigMap"], objects["Secret"], *(extra or [])], directory=tmp_path)
    return result.returncode, result.stdout + result.stderr


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {"kind": "Secret", "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}  # fmt: skip


KEY = "ed25519 a_test " + base64.b64encode(bytes(range(32))).decode().rstrip("=")


def operator_secrets(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The operator's Secrets a release names, as the operator would have made them: every key its
    config and command read (a signing key Synapse can parse, else a token)."""
    objects = hook(documents)
    text = "\n".join(
        [
            *objects["ConfigMap"]["data"].values(),
            *objects["Job"]["spec"]["template"]["spec"]["containers"][0]["command"],
        ]
    )
    keys: dict[str, set[str]] = {}
    for name, key in re.findall(r"/secrets/ext/([^/\s'\"]+)/([^\s'\"]+)", text):
        keys.setdefault(name, set()).add(key)
    return [
        secret(name, {key: KEY if "signing" in key else "x" * 48 for key in found})
        for name, found in keys.items()
    ]


def test_the_hook_runs_before_anything_with_copies_of_what_the_pods_mount() -> None:
    documents = helm.template("synapse", CI / "default-values.yaml")
    objects = hook(documents)
    assert set(objects) == {"ConfigMap", "Secret", "Job"}
    for kind, weight in (("ConfigMap", "-1"), ("Secret", "-1"), ("Job", "0")):
        annotations = objects[kind]["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert annotations["helm.sh/hook-weight"] == weight
    # The copies go however the hook ends; a failed Job stays for its log.
    assert "hook-failed" in objects["Secret"]["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    assert "hook-failed" not in objects["Job"]["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    job = objects["Job"]["spec"]
    assert job["backoffLimit"] == 0
    configmap = next(
        d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "t-synapse"
    )
    assert {k: v for k, v in objects["ConfigMap"]["data"].items() if k != "config-check.py"} == configmap[
        "data"
    ]
    own = next(d for d in documents if d["kind"] == "Secret" and d["metadata"]["name"] == "t-synapse-secrets")
    assert set(objects["Secret"]["data"]) == set(own["data"])
    # The release's Synapse image, as locked down as its processes.
    main = next(
        d for d in documents if d["kind"] == "StatefulSet" and d["metadata"]["name"] == "t-synapse-main"
    )
    process, check = main["spec"]["template"]["spec"], job["template"]["spec"]
    assert check["containers"][0]["image"] == process["containers"][0]["image"]
    assert check["securityContext"] == process["securityContext"]
    assert check["containers"][0]["securityContext"] == process["containers"][0]["securityContext"]
    assert check["automountServiceAccountToken"] is False


def test_with_network_policies_the_check_pod_has_no_network() -> None:
    objects = hook(helm.template("synapse", CI / "network-policy-values.yaml"))
    policy = objects["NetworkPolicy"]
    assert policy["metadata"]["annotations"]["helm.sh/hook-weight"] == "-1"  # in place before the Job
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in policy["spec"]
    assert "egress" not in policy["spec"]
    pod_labels = objects["Job"]["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()


def test_switched_off_there_is_no_hook() -> None:
    assert (
        hook(helm.template("synapse", CI / "default-values.yaml", values={"configCheck": {"enabled": False}}))
        == {}
    )


@needs_bwrap
@pytest.mark.parametrize("values_file", sorted(CI.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_ci_configuration_passes_for_every_process(values_file: Path, tmp_path: Path) -> None:
    documents = helm.template("synapse", values_file, values=QUIET)
    extra = operator_secrets(documents)
    code, output = run_check(tmp_path, values_file, values=QUIET, extra=extra)
    assert code == 0, output
    # Every Synapse process of the release, each loaded as its pod will load it.
    instances = sum(
        d["spec"]["replicas"] if d["kind"] == "StatefulSet" else 1
        for d in documents
        if d["kind"] in ("StatefulSet", "Deployment")
        and d["metadata"]["labels"]["app.kubernetes.io/component"] == "homeserver"
    )
    assert f"configuration OK for all {instances} processes: main" in output
    assert "WARNING" not in output


@needs_bwrap
def test_a_bad_setting_fails_with_synapses_own_error(tmp_path: Path) -> None:
    # Registration left on beside MAS, which owns it: Synapse's words, once; every process refuses it.
    values = {"extraConfig": {**QUIET["extraConfig"], "enable_registration": True}}
    code, output = run_check(tmp_path, CI / "default-values.yaml", values=values)
    assert code == 1
    message = "Error in configuration at 'enable_registration':\n  Registration cannot be enabled when OAuth delegation is enabled"
    assert output.count(message) == 1, output
    assert re.search(r"\(stops (\d+) of \1 processes: main, ", output), output


@needs_bwrap
def test_a_missing_operator_secret_is_named(tmp_path: Path) -> None:
    values = {**QUIET, "secrets": {"signingKey": {"secret": "synapse-keys", "secretKey": "signing.key"}}}
    code, output = run_check(tmp_path, CI / "monolith-values.yaml", values=values)
    assert code == 1
    assert (
        "Error in configuration at 'signing_key':\n  Error accessing file '/secrets/ext/synapse-keys/signing.key'"
        in output
    )
    # Given the Secret, with a key Synapse can read, the same release passes.
    code, output = run_check(tmp_path / "given", CI / "monolith-values.yaml", values=values,
                             extra=[secret("synapse-keys", {"signing.key": KEY})])  # fmt: skip
    assert code == 0, output
    # A key that is not one is Synapse's to refuse.
    code, output = run_check(tmp_path / "garbled", CI / "monolith-values.yaml", values=values,
                             extra=[secret("synapse-keys", {"signing.key": "not a key"})])  # fmt: skip
    assert code == 1
    assert "Error in configuration:\n  Error reading signing_key: Unsupported algorithm not" in output


# What the pods would meet only at start, mid-rollout: extraConfig and the refusal it brings.
REFUSED = {
    "a module the image lacks": (
        "monolith-values.yaml",
        {"modules": [{"module": "synapse_spam_checker_nowhere.Checker"}]},
        "ModuleNotFoundError: No module named 'synapse_spam_checker_nowhere'\n  (stops 1 of 1 processes: main)",
    ),
    "a bridge registration the pods do not have": (
        "monolith-values.yaml",
        {"app_service_config_files": ["/data/telegram-registration.yaml"]},
        "app_service_config_files: FileNotFoundError: [Errno 2] No such file or directory: "
        "'/data/telegram-registration.yaml'",
    ),
    # extraConfig goes into homeserver.yaml: the workers' own file overrides it, main's does not.
    "worker_app on main": (
        "default-values.yaml",
        {"worker_app": "synapse.app.generic_worker"},
        "worker_app is 'synapse.app.generic_worker': the main process refuses to start with it\n  (stops 1 of ",
    ),
}


@needs_bwrap
@pytest.mark.parametrize(("values_file", "extra_config", "message"), REFUSED.values(), ids=list(REFUSED))
def test_what_a_process_would_refuse_at_start_fails_the_release(
    values_file: str, extra_config: dict[str, Any], message: str, tmp_path: Path
) -> None:
    values = {"extraConfig": {**QUIET["extraConfig"], **extra_config}}
    code, output = run_check(tmp_path, CI / values_file, values=values)
    assert code == 1
    assert message in output


@needs_bwrap
def test_the_database_password_secret_must_exist(tmp_path: Path) -> None:
    values = {**QUIET, "postgres": {"password": {"secret": "synapse-db", "secretKey": "password"}}}
    code, output = run_check(tmp_path, CI / "monolith-values.yaml", values=values)
    assert code == 1
    assert (
        "postgres.password: no file /secrets/ext/synapse-db/password: its Secret or key is missing" in output
    )
    wrong_key = [secret("synapse-db", {"pass": "x"})]
    code, output = run_check(tmp_path / "wrong", CI / "monolith-values.yaml", values=values, extra=wrong_key)
    assert code == 1, output
    code, output = run_check(tmp_path / "given", CI / "monolith-values.yaml", values=values,
                             extra=[secret("synapse-db", {"password": "x"})])  # fmt: skip
    assert code == 0, output
