"""The dashboards the synapse and alertmanager-receiver charts ship, rendered: Grafana JSON whose
queries parse as PromQL (their metrics checked against a real Prometheus scraping the booted
cluster: tests/integration/test_synapse_monitoring.py)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import yaml

from tests.charts.synapse_chart import (
    dashboard_queries,
)


def test_dashboards_are_grafana_json_with_real_queries() -> None:
    """The dashboards render as ConfigMaps for Grafana's sidecar; each panel's queries parse as
    PromQL for promtool (their metrics are checked against a real Prometheus below)."""
    queries = dashboard_queries()
    assert len(queries) >= 20
    rules = {"groups": [{"name": "dashboards", "rules": [
        {"record": f"dashboard:query{n}", "expr": query} for n, query in enumerate(queries)]}]}  # fmt: skip
    with tempfile.TemporaryDirectory() as name:
        path = Path(name) / "queries.yaml"
        path.write_text(yaml.safe_dump(rules))
        result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
