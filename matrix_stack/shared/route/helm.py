"""helm for `matrix-stack route explain` and the tests: the binary on PATH, and the charts that travel
with the package (`matrix_stack/charts`, package data in the wheel; the repository's `charts/` in a
checkout)."""

from __future__ import annotations

import contextlib
import importlib.resources
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

LIBRARY = "library"


class RenderError(Exception):
    pass


# In a checkout: its top, where `make test` fetched helm and the charts are; an installation has neither.
CHECKOUT = Path(__file__).resolve().parents[3]
CHECKOUT_HELM = CHECKOUT / ".tools" / "bin" / "helm"


def helm_binary() -> str:
    found = shutil.which("helm") or (str(CHECKOUT_HELM) if CHECKOUT_HELM.is_file() else None)
    if not found:
        raise RuntimeError("helm not found on PATH: install Helm 3.8 or newer")
    return found


@contextlib.contextmanager
def chart(name: str) -> Iterator[Path]:
    """A private copy of a packaged chart with its library dependency built, so rendering never
    writes into the installation (site-packages may be read-only)."""
    helm = helm_binary()
    packaged = importlib.resources.files("matrix_stack") / "charts"
    source = packaged if packaged.is_dir() else CHECKOUT / "charts"
    with importlib.resources.as_file(source) as charts, tempfile.TemporaryDirectory() as scratch:
        if not (charts / name / "Chart.yaml").is_file():
            raise RenderError(f"no chart named {name} in {charts}")
        for part in {name, LIBRARY}:
            shutil.copytree(charts / part, Path(scratch) / part, ignore=shutil.ignore_patterns("charts"))
        copy = Path(scratch) / name
        built = subprocess.run([helm, "dependency", "build", str(copy)], capture_output=True, text=True)
        if built.returncode != 0:
            raise RenderError(built.stderr.strip())
        yield copy


def helm_template(
    values_files: list[Path], sets: list[str], chart_name: str = "synapse", base: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The chart's rendered objects; `base` values come first, the operator's files and --set after."""
    with chart(chart_name) as path:
        args = [helm_binary(), "template", "explain", str(path), "--namespace", "matrix", "-f", "-"]
        for values in values_files:
            args += ["-f", str(values)]
        for item in sets:
            args += ["--set", item]
        result = subprocess.run(args, input=yaml.safe_dump(base or {}), capture_output=True, text=True)
    if result.returncode != 0:
        raise RenderError(result.stderr.strip())
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
