from __future__ import annotations

import pytest

from tests.charts import helm


@pytest.fixture(scope="session", autouse=True)
def chart_dependencies() -> None:
    for chart in (
        "synapse",
        "webhook",
        "sentry-webhook",
        "matrix-alertmanager-receiver",
        "ldap",
        "livekit-jwt",
    ):
        helm.build_dependencies(chart)
