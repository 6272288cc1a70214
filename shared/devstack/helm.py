"""helm for the project's tools and tests: `.tools/bin/helm` (what `make test` fetches), else PATH."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "synapse"


class RenderError(Exception):
    pass


def helm_binary() -> str:
    local = ROOT / ".tools" / "bin" / "helm"
    found = str(local) if local.exists() else shutil.which("helm")
    if not found:
        raise RuntimeError("helm not found on PATH (make test fetches one into .tools/bin)")
    return found


def helm_template(
    values_files: list[Path], sets: list[str], chart: Path = CHART, base: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The chart's rendered objects; `base` values come first, the operator's files and --set after."""
    helm = helm_binary()
    if not (chart / "charts").is_dir():
        subprocess.run([helm, "dependency", "build", str(chart)], check=True, capture_output=True)
    args = [helm, "template", "explain", str(chart), "--namespace", "matrix"]
    args += ["-f", "-"]
    for path in values_files:
        args += ["-f", str(path)]
    for item in sets:
        args += ["--set", item]
    result = subprocess.run(args, input=yaml.safe_dump(base or {}), capture_output=True, text=True)
    if result.returncode != 0:
        raise RenderError(result.stderr.strip())
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
