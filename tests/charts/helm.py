"""Render charts with the real helm binary and check the output against Kubernetes' schemas."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from matrix_stack.shared.route.helm import RenderError as RenderError
from matrix_stack.shared.route.helm import helm_binary

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts"
KUBERNETES_VERSION = "1.33.0"
CORE_API_GROUPS = ("v1", "apps/v1", "policy/v1", "autoscaling/v2", "networking.k8s.io/v1", "batch/v1")
CRD_KINDS = {"monitoring.coreos.com/v1": {"ServiceMonitor", "PodMonitor", "PrometheusRule"},
             "gateway.networking.k8s.io/v1": {"HTTPRoute"},
             "keda.sh/v1alpha1": {"ScaledObject"}}  # fmt: skip


def helm() -> str:
    return helm_binary()


def build_dependencies(chart: str) -> None:
    subprocess.run([helm(), "dependency", "build", str(CHARTS / chart)], check=True, capture_output=True)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), *args], capture_output=True, text=True)


def template(
    chart: str,
    *values_files: Path,
    values: dict[str, Any] | None = None,
    api_versions: tuple[str, ...] = (),
    release: str = "t",
) -> list[dict[str, Any]]:
    """The rendered objects; raises RenderError with helm's message on failure."""
    args = ["template", release, str(CHARTS / chart), "--namespace", "ns"]
    for path in values_files:
        args += ["-f", str(path)]
    for version in api_versions:
        args += ["--api-versions", version]
    result = subprocess.run(
        [helm(), *args, "-f", "-"], input=yaml.safe_dump(values or {}), capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RenderError(result.stderr.strip())
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def notes(chart: str, *values_files: Path, values: dict[str, Any] | None = None, release: str = "t") -> str:
    """The chart's NOTES.txt as `helm install` prints it, from a client-side dry run (no cluster)."""
    args = ["install", release, str(CHARTS / chart), "--namespace", "ns", "--dry-run=client"]
    for path in values_files:
        args += ["-f", str(path)]
    result = subprocess.run(
        [helm(), *args, "-f", "-"],
        input=yaml.safe_dump(values or {}),
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": os.devnull},
    )
    if result.returncode != 0:
        raise RenderError(result.stderr.strip())
    _, found, text = result.stdout.partition("\nNOTES:\n")
    assert found, result.stdout
    return text


def validate(document: dict[str, Any]) -> None:
    """Core kinds against the Kubernetes JSON schemas (strict: unknown fields fail); CRD kinds by shape."""
    api = document["apiVersion"]
    if api in CRD_KINDS:
        assert document["kind"] in CRD_KINDS[api], document["kind"]
        assert isinstance(document.get("spec"), dict)
        return
    assert api in CORE_API_GROUPS, f"unexpected apiVersion {api}"
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def pod_spec(document: dict[str, Any]) -> dict[str, Any] | None:
    if document["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        spec: dict[str, Any] = document["spec"]["template"]["spec"]
        return spec
    return None
