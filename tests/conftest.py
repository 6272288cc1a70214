"""What every tier needs: helm on PATH, the checkout's root, and each test's tier marker.

A test's tier is its folder: `tests/unit` (pure functions and in-process apps), `tests/charts`
(render-only helm tests) and `tests/integration` (real processes: Synapse, PostgreSQL, slapd,
Envoy...). `make test` runs all three, `make test-fast` the first two."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
TIERS = ("unit", "charts", "integration")

# The helm that `make test` fetches, also when pytest is run by hand.
os.environ["PATH"] = f"{TESTS.parent / '.tools' / 'bin'}{os.pathsep}{os.environ['PATH']}"


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by the markers
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not item.path.is_relative_to(TESTS):
            continue
        tier = item.path.relative_to(TESTS).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(
                f"{item.nodeid}: a test belongs in a tier's folder: tests/{', tests/'.join(TIERS)}"
            )
        item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return TESTS.parent
