"""ruff and mypy are part of the suite, so a red lint is a red build."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def _run(*command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_ruff(repo_root: Path) -> None:
    check = _run(str(BIN / "ruff"), "check", ".", cwd=repo_root)
    assert check.returncode == 0, check.stdout + check.stderr
    formatted = _run(str(BIN / "ruff"), "format", "--check", ".", cwd=repo_root)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def test_mypy(repo_root: Path) -> None:
    result = _run(str(BIN / "mypy"), cwd=repo_root)
    assert result.returncode == 0, result.stdout + result.stderr
