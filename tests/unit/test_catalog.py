"""The catalog of the services against everything else that names them: the packages, the console
scripts in pyproject.toml, each service's settings (prefix and kind), the charts in charts/ and the
services in compose.yaml, both ways, so a service added or renamed in one place and not the catalog
fails here."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest
import yaml

from matrix_stack.services.catalog import SERVICES, ServiceEntry, charts, named
from matrix_stack.shared.bridge.settings import ServiceSettings
from matrix_stack.shared.kit.settings import KitSettings, ProcessSettings

ROOT = Path(__file__).resolve().parents[2]
NOT_SERVICES = {"synapse"}  # charts/synapse: the homeserver the services talk to


def settings_class(service: ServiceEntry) -> type[ProcessSettings]:
    config = importlib.import_module(f"{service.module}.config")
    [found] = [
        value
        for value in vars(config).values()
        if isinstance(value, type)
        and issubclass(value, ProcessSettings)
        and value.__module__ == config.__name__
    ]
    return found


def test_names_are_unique() -> None:
    for field in ("package", "script", "env_prefix"):
        values = [getattr(service, field) for service in SERVICES]
        assert len(values) == len(set(values)), field
    assert len(charts()) == len(set(charts()))


def test_every_package_is_in_the_catalog() -> None:
    packages = {path.parent.name for path in (ROOT / "matrix_stack" / "services").glob("*/__main__.py")}
    assert packages == {service.package for service in SERVICES}


def test_console_scripts() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    services = {name: target for name, target in scripts.items() if name != "matrix-stack"}
    assert services == {service.script: f"{service.module}.__main__:main" for service in SERVICES}


@pytest.mark.parametrize("service", SERVICES, ids=lambda service: service.script)
def test_settings_prefix_and_kind(service: ServiceEntry) -> None:
    settings = settings_class(service)
    assert settings.model_config.get("env_prefix") == service.env_prefix
    if issubclass(settings, ServiceSettings):
        kind = "bridge"
    elif issubclass(settings, KitSettings):
        kind = "component"
    else:
        kind = "job"
    assert service.kind == kind


def test_charts() -> None:
    folders = {}
    for chart_yaml in (ROOT / "charts").glob("*/Chart.yaml"):
        chart = yaml.safe_load(chart_yaml.read_text())
        if chart.get("type") != "library" and chart_yaml.parent.name not in NOT_SERVICES:
            folders[chart_yaml.parent.name] = chart["name"]
    assert set(folders) == set(charts())
    for folder, name in folders.items():
        assert name == folder, f"charts/{folder}/Chart.yaml names {name}"


def test_compose_services() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    built = {name: service for name, service in compose.items() if "build" in service}
    assert set(built) == {service.script for service in SERVICES}
    for name, service in built.items():
        assert service["command"][0] == name
        assert (service.get("restart") == "no") == (named(name).kind == "job"), name
