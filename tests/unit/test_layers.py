"""The layering contracts in pyproject.toml hold, and they would catch an import that breaks them.

import-linter reads the import graph from source, so a copy of the package with one import added
shows that each contract really bites, without touching the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(cwd: Path, config: Path) -> subprocess.CompletedProcess[str]:
    # cwd first on the path: the packages analysed are the ones under cwd
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(config)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_contracts_kept(repo_root: Path) -> None:
    result = _lint_imports(repo_root, repo_root / "pyproject.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "added_import", "contract"),
    [
        # a lower layer importing an upper one
        (
            "matrix_stack/shared/kit/errors.py",
            "import matrix_stack.shared.bridge.settings",
            "matrix_stack: cli > services > bridge > outbox > matrix > kit BROKEN",
        ),
        # one service reaching into another
        (
            "matrix_stack/services/notify/config.py",
            "import matrix_stack.services.slack_webhook.mrkdwn",
            "the services do not import each other BROKEN",
        ),
        # route reaching past the kit
        (
            "matrix_stack/shared/route/helm.py",
            "import matrix_stack.shared.outbox.store",
            "route (route explain) imports only the kit BROKEN",
        ),
        # the kit reaching route, which only the cli may
        (
            "matrix_stack/shared/kit/errors.py",
            "import matrix_stack.shared.route.processes",
            "in the package, only the cli imports route BROKEN",
        ),
        # the runtime reaching the checkout's harness
        (
            "matrix_stack/shared/matrix/links.py",
            "import devstack.processes",
            "matrix_stack never imports devstack BROKEN",
        ),
    ],
)
def test_contract_bites(
    repo_root: Path, tmp_path: Path, module: str, added_import: str, contract: str
) -> None:
    ignore = shutil.ignore_patterns("__pycache__")
    for package in ("matrix_stack", "devstack"):
        shutil.copytree(repo_root / package, tmp_path / package, ignore=ignore)
    with (tmp_path / module).open("a") as source:
        source.write(f"\n{added_import}  # deliberate: the contract must catch this\n")

    result = _lint_imports(tmp_path, repo_root / "pyproject.toml")

    assert result.returncode != 0, result.stdout
    assert contract in result.stdout, result.stdout
    assert added_import.removeprefix("import ") in result.stdout, result.stdout
