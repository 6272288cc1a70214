"""compose.yaml checked without a container engine and without running anything: the Compose
Specification's schema and the settings of the services whose environment needs no secret files
(the secrets script and hadolint: tests/integration/test_packaging.py)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_file_is_valid_against_the_specification() -> None:
    schema = json.loads((ROOT / "tests" / "data" / "compose" / "compose-spec.json").read_text())
    validator = jsonschema.Draft7Validator(schema)
    validator.validate(COMPOSE)
    broken = json.loads(json.dumps(COMPOSE))
    broken["services"]["notify"]["restart_policy"] = "always"  # not a Compose key: the schema says so
    assert not validator.is_valid(broken)


def test_compose_runs_every_service_the_package_has() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    services = {name for name in scripts if name != "matrix-stack"}
    assert set(COMPOSE["services"]) == services | {"synapse", "directory", "sfu"}
    for name in services:
        service = COMPOSE["services"][name]
        assert service["command"][0] == name
        assert service["read_only"] is True
        assert "build" in service


def test_compose_compress_state_is_a_one_off_job(monkeypatch: pytest.MonkeyPatch) -> None:
    from matrix_stack.services.compress_state.config import load

    service = COMPOSE["services"]["compress-state"]
    assert service["restart"] == "no"
    assert service["healthcheck"] == {"disable": True}
    for key, value in service["environment"].items():
        monkeypatch.setenv(key, str(value).replace("${SYNAPSE_DATABASE_URL:-}", "postgresql://db/synapse"))
    settings = load(service["command"][1:])
    assert settings.chunks == 100
    assert settings.database_url is not None


def test_compose_ldap_proxy_environment_is_a_valid_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    from matrix_stack.services.ldap_proxy.config import LdapProxySettings

    service = COMPOSE["services"]["ldap-proxy"]
    for key, value in service["environment"].items():
        monkeypatch.setenv(key, str(value))
    settings = LdapProxySettings()
    assert [backend.address for backend in settings.backends] == [("directory", 389)]
    assert settings.listen_port == 3389
    assert "127.0.0.1:3389:3389" in service["ports"]
