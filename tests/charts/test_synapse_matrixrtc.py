"""MatrixRTC as an application service (MSC4512), rendered: livekit-jwt's registration in the
synapse chart, its tokens generated or an operator's, checked values, and its route (the
registration loaded by the booted cluster: tests/integration/test_synapse_matrixrtc.py)."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts import helm
from tests.charts.synapse_chart import (
    CI,
    REGISTRATION_KEY,
    _mounted_files,
    _provided,
    by_name,
    homeserver,
    registration_of,
)

MATRIXRTC = {
    "matrixRTC": {"appservice": {"enabled": True, "url": "http://{{ .Release.Name }}-livekit-jwt:8080/"}}
}


KINDS = yaml.safe_load((helm.CHARTS / "synapse" / "files" / "kinds.yaml").read_text())


def _synapse_pods(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in documents
            if d["kind"] in ("StatefulSet", "Deployment") and "matrix-stack.io/pool" in d["metadata"]["labels"]}  # fmt: skip


def _load_appservices(path: Path) -> list[Any]:
    """What every Synapse process does with app_service_config_files (its datastore loads them)."""
    from synapse.config.appservice import load_appservices

    return load_appservices("example.org", [str(path)])


def _route_clusters(documents: list[dict[str, Any]]) -> dict[str, str]:
    config = yaml.safe_load(by_name(documents, "ConfigMap", "t-synapse-router")["data"]["envoy.yaml"])
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return {r["name"]: r.get("route", {}).get("cluster", "-") for r in manager["route_config"]["virtual_hosts"][0]["routes"]}  # fmt: skip


def test_matrixrtc_off_by_default() -> None:
    documents = helm.template("synapse", CI / "default-values.yaml")
    config = yaml.safe_load(by_name(documents, "ConfigMap", "t-synapse")["data"]["homeserver.yaml"])
    assert "app_service_config_files" not in config
    assert "experimental_features" not in config
    assert not {
        k for k in by_name(documents, "Secret", "t-synapse-secrets")["data"] if k.startswith("matrixrtc")
    }
    assert "matrixrtc" not in _route_clusters(documents)


def test_matrixrtc_registration_with_generated_tokens(tmp_path: Path) -> None:
    documents = helm.template("synapse", CI / "default-values.yaml", values=MATRIXRTC)
    for document in documents:
        helm.validate(document)
    secret = {
        k: base64.b64decode(v).decode()
        for k, v in by_name(documents, "Secret", "t-synapse-secrets")["data"].items()
    }
    registration = yaml.safe_load(secret[REGISTRATION_KEY])
    assert registration == {
        "id": "livekit-jwt", "url": None, "sender_localpart": "livekit-jwt",
        "as_token": secret["matrixrtc-as-token"], "hs_token": secret["matrixrtc-hs-token"],
        "namespaces": {"users": [], "aliases": [], "rooms": []},
        "io.element.msc4512.proxy_prefix": "rtc/livekit",
        "io.element.msc4512.proxy_url": "http://t-livekit-jwt:8080",  # templated; no trailing slash
    }  # fmt: skip
    assert len(registration["as_token"]) == len(registration["hs_token"]) == 48
    assert registration["as_token"] != registration["hs_token"]
    # Synapse's own loader takes it, with the MSC4512 keys.
    path = tmp_path / REGISTRATION_KEY
    path.write_text(secret[REGISTRATION_KEY])
    [appservice] = _load_appservices(path)
    assert (appservice.id, appservice.url, appservice.proxy_prefix, appservice.proxy_url) == (
        "livekit-jwt", None, "rtc/livekit", "http://t-livekit-jwt:8080")  # fmt: skip
    assert appservice.hs_token == secret["matrixrtc-hs-token"]
    config = yaml.safe_load(by_name(documents, "ConfigMap", "t-synapse")["data"]["homeserver.yaml"])
    assert config["experimental_features"] == {"msc4512_enabled": True}
    assert config["app_service_config_files"] == [f"/secrets/synapse/{REGISTRATION_KEY}"]
    # Every Synapse process loads it: every pod has the file, and no step completes it at start.
    pods = _synapse_pods(documents)
    assert len(pods) == 21
    for name, pod in pods.items():
        [container] = pod["containers"]
        assert _provided(config["app_service_config_files"][0], _mounted_files(pod, container)), name
        assert "python -c" not in container["command"][2], name
    # With MSC4306 too, both experimental features; the operator's own registrations come after ours.
    both = homeserver(CI / "default-values.yaml", values={
        **MATRIXRTC, "experimental": {"msc4306": True},
        "extraConfig": {"app_service_config_files": ["/bridges/irc.yaml"]}})  # fmt: skip
    assert both["experimental_features"] == {"msc4306_enabled": True, "msc4512_enabled": True}
    assert both["app_service_config_files"] == [f"/secrets/synapse/{REGISTRATION_KEY}", "/bridges/irc.yaml"]
    # A given value is the token (kept tokens do not override it).
    given = helm.template("synapse", CI / "default-values.yaml", values={"matrixRTC": {"appservice": {
        **MATRIXRTC["matrixRTC"]["appservice"], "hsToken": {"value": "given-hs-token"}}}})  # fmt: skip
    assert registration_of(given)["hs_token"] == "given-hs-token"


def test_matrixrtc_tokens_from_an_operator_secret(tmp_path: Path) -> None:
    """ci/matrixrtc-values.yaml: the hs_token from the Secret livekit-jwt uses too, the as_token
    generated. The operator's Secret is mounted, never created, its token never in the chart's;
    each container completes the registration at start, and Synapse's loader takes the result."""
    documents = helm.template("synapse", CI / "matrixrtc-values.yaml", release="prod")
    assert not [
        d for d in documents if d["kind"] == "Secret" and d["metadata"]["name"] == "matrixrtc-appservice"
    ]
    secret = {
        k: base64.b64decode(v).decode()
        for k, v in by_name(documents, "Secret", "prod-synapse-secrets")["data"].items()
    }
    assert "matrixrtc-hs-token" not in secret
    stored = yaml.safe_load(secret[REGISTRATION_KEY])
    assert "hs_token" not in stored
    assert stored["as_token"] == secret["matrixrtc-as-token"]
    assert stored["io.element.msc4512.proxy_url"] == "http://prod-livekit-jwt:8080"
    config = yaml.safe_load(by_name(documents, "ConfigMap", "prod-synapse")["data"]["homeserver.yaml"])
    assert config["app_service_config_files"] == [f"/tmp/{REGISTRATION_KEY}"]
    hs_file = "/secrets/ext/matrixrtc-appservice/hs-token"
    pods = {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in documents
            if d["kind"] in ("StatefulSet", "Deployment") and "matrix-stack.io/pool" in d["metadata"]["labels"]}  # fmt: skip
    commands = set()
    for name, pod in pods.items():
        [container] = pod["containers"]
        assert _provided(hs_file, _mounted_files(pod, container)), name
        assert _provided(f"/secrets/synapse/{REGISTRATION_KEY}", _mounted_files(pod, container)), name
        commands.add(container["command"][2].split(" && ")[1])
    [complete] = commands  # the same step in every container, before Synapse starts
    # Run it as the container would, with its paths in a local folder: the operator's file ends in a newline.
    for path, content in ((f"/secrets/synapse/{REGISTRATION_KEY}", secret[REGISTRATION_KEY]),
                          (hs_file, "operator-hs-token-0123\n")):  # fmt: skip
        local = tmp_path / path.lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(content)
    (tmp_path / "tmp").mkdir()
    script = re.sub(r"'/(secrets|tmp)/", lambda m: f"'{tmp_path}/{m.group(1)}/", complete)
    script = script.replace("python -c", f"{sys.executable} -c", 1)
    subprocess.run(["sh", "-c", script], check=True)
    completed = tmp_path / "tmp" / REGISTRATION_KEY
    assert completed.stat().st_mode & 0o077 == 0  # tokens: the container's user only
    [appservice] = _load_appservices(completed)
    assert appservice.hs_token == "operator-hs-token-0123"
    assert appservice.token == secret["matrixrtc-as-token"]
    assert appservice.proxy_url == "http://prod-livekit-jwt:8080"
    # Both tokens the operator's: the chart's Secret holds neither.
    both = helm.template("synapse", CI / "matrixrtc-values.yaml", values={"matrixRTC": {"appservice": {
        "asToken": {"secret": "{{ .Release.Name }}-as", "secretKey": "token"}}}})  # fmt: skip
    data = by_name(both, "Secret", "t-synapse-secrets")["data"]
    assert not {"matrixrtc-as-token", "matrixrtc-hs-token"} & set(data)
    assert not {"as_token", "hs_token"} & set(registration_of(both))
    main = by_name(both, "StatefulSet", "t-synapse-main")["spec"]["template"]["spec"]
    assert {"t-as", "matrixrtc-appservice"} <= {
        v["secret"]["secretName"] for v in main["volumes"] if "secret" in v
    }
    assert "'as_token' '/secrets/ext/t-as/token' 'hs_token' '/secrets/ext/matrixrtc-appservice/hs-token'" in (
        main["containers"][0]["command"][2])  # fmt: skip


def test_matrixrtc_values_are_checked() -> None:
    enabled = {"matrixRTC": {"appservice": {"enabled": True}}}
    with pytest.raises(helm.RenderError, match=r"/matrixRTC/appservice/url': minLength"):
        helm.template("synapse", CI / "default-values.yaml", values=enabled)
    for bad, where in (({"url": "livekit-jwt:8080"}, "url"), ({"senderLocalpart": "Live KIT"}, "senderLocalpart"),
                       ({"hsToken": {"secret": "s"}}, "hsToken"), ({"extra": 1}, "appservice")):  # fmt: skip
        values = {"matrixRTC": {"appservice": {**MATRIXRTC["matrixRTC"]["appservice"], **bad}}}
        with pytest.raises(helm.RenderError, match=f"/matrixRTC/appservice.*{where}|{where}.*additional"):
            helm.template("synapse", CI / "default-values.yaml", values=values)


def test_pods_roll_when_the_registration_changes() -> None:
    def checksums(values: dict[str, Any]) -> set[str]:
        documents = helm.template("synapse", CI / "matrixrtc-values.yaml", values=values)
        return {d["spec"]["template"]["metadata"]["annotations"]["checksum/config"] for d in documents
                if d["kind"] in ("StatefulSet", "Deployment") and "matrix-stack.io/pool" in d["metadata"]["labels"]}  # fmt: skip

    base = checksums({})
    assert checksums({}) == base
    assert not checksums({"matrixRTC": {"appservice": {"url": "http://other-livekit-jwt:8080"}}}) & base
    assert (
        not checksums({"matrixRTC": {"appservice": {"hsToken": {"secret": "another", "secretKey": "k"}}}})
        & base
    )


def test_matrixrtc_route_goes_to_a_generic_client_pool() -> None:
    """The route's pool: a kind that serves client servlets (files/kinds.yaml: a generic worker with
    a client listener), writes nothing, and scales; main when no such pool is enabled."""
    documents = helm.template("synapse", CI / "default-values.yaml", values=MATRIXRTC)
    clusters = _route_clusters(documents)
    kind = KINDS[clusters["matrixrtc"]]
    assert (kind["app"], "client" in kind["listeners"], kind["writes"], kind["singleton"]) == (
        "generic_worker", True, [], False)  # fmt: skip
    assert clusters["matrixrtc"] == "client_reader"
    names = list(clusters)
    assert names.index("matrixrtc") == names.index("main") - 1  # the reader set, before the catch-all
    fallback = helm.template("synapse", CI / "default-values.yaml",
                             values={**MATRIXRTC, "pools": {"client_reader": {"enabled": False}}})  # fmt: skip
    assert _route_clusters(fallback)["matrixrtc"] == "main"
    # A monolith: no router, main serves it; the registration is there all the same.
    monolith = homeserver(CI / "monolith-values.yaml", values=MATRIXRTC)
    assert monolith["app_service_config_files"] == [f"/secrets/synapse/{REGISTRATION_KEY}"]


def test_the_readme_matrixrtc_example_renders() -> None:
    readme = (helm.CHARTS / "synapse" / "README.md").read_text()
    section = readme[readme.index("## MatrixRTC as an application service") : readme.index("## The router")]
    [block] = re.findall(r"```yaml\n(.*?)```", section, re.DOTALL)
    documents = helm.template("synapse", CI / "default-values.yaml", values=yaml.safe_load(block))
    assert registration_of(documents)["io.element.msc4512.proxy_url"] == "http://t-livekit-jwt:8080"
    assert _route_clusters(documents)["matrixrtc"] == "client_reader"
