from __future__ import annotations

import pytest

from matrix_stack.services import catalog
from tests.charts import helm


@pytest.fixture(scope="session", autouse=True)
def chart_dependencies() -> None:
    for chart in ("synapse", *catalog.charts("bridge", "component")):
        helm.build_dependencies(chart)
