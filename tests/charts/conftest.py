from __future__ import annotations

import pytest

from tests.charts import helm


@pytest.fixture(scope="session", autouse=True)
def chart_dependencies() -> None:
    for chart in ("webhook", "sentry-webhook"):
        helm.build_dependencies(chart)
