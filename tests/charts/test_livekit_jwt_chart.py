"""The livekit-jwt chart: what the generic service-chart checks do not cover. The rendered config
file and environment must make valid settings for the real service, only the token endpoints may
be published, and the README's synapse values must announce this chart's host."""

from __future__ import annotations

import base64
import os
import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts import helm

CHART = "livekit-jwt"
CI = helm.CHARTS / CHART / "ci"
MINIMAL, FULL, EXISTING = (CI / f"{name}-values.yaml" for name in ("minimal", "full", "existing-secrets"))
MONITORING = ("monitoring.coreos.com/v1/ServiceMonitor",)
TOKEN_PATHS = ["/get_token", "/sfu/get", "/delegate_delayed_leave"]
INTERNAL_PATHS = ["/sfu_webhook", "/metrics", "/readyz", "/healthz"]
PUBLISHED = {"ingress": {"enabled": True, "hosts": [{"host": "rtc.example.org"}, {"host": "sfu.example.org"}]},
             "httpRoute": {"enabled": True, "parentRefs": [{"name": "public"}],
                           "hostnames": ["rtc.example.org"]}}  # fmt: skip
OPERATOR_FILE = "from-an-operator-object-0123\n"


def kinds(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in documents}


def container(rendered: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = rendered["Deployment"]["spec"]["template"]["spec"]
    [only] = spec["containers"]
    return only


def config(rendered: dict[str, dict[str, Any]]) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(rendered["ConfigMap"]["data"]["config.yaml"])
    return loaded


def _settings_from_chart(
    values_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    release: str = "t",
    values: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The real LivekitJwtSettings, built from the environment the Deployment sets: the ConfigMap's
    file where LIVEKIT_JWT_CONFIG_FILE points, each *_FILE with the chart Secret's content (or a
    stand-in for an operator's Secret) written to a temporary path."""
    from matrix_stack.services.livekit_jwt.config import LivekitJwtSettings

    rendered = kinds(helm.template(CHART, values_file, release=release, values=values))
    secret = {k: base64.b64decode(v).decode() for k, v in rendered.get("Secret", {}).get("data", {}).items()}
    box = container(rendered)
    mounts = tuple(m["mountPath"] + "/" for m in box["volumeMounts"])
    config_file = tmp_path / "config.yaml"
    config_file.write_text(rendered["ConfigMap"]["data"]["config.yaml"])
    # The settings ignore unknown keys: a key the service does not have would be lost silently.
    assert set(config(rendered)) <= set(LivekitJwtSettings.model_fields)
    for name in [n for n in os.environ if n.startswith("LIVEKIT_JWT_")]:
        monkeypatch.delenv(name)
    env = {e["name"]: e["value"] for e in box["env"]}
    assert all(isinstance(value, str) for value in env.values())  # no valueFrom: everything is a file
    for name, value in env.items():
        if name.endswith("_FILE"):
            assert value.startswith(mounts), (name, value)  # a file the pod has
        if name == "LIVEKIT_JWT_CONFIG_FILE":
            value = str(config_file)
        elif name.endswith("_FILE"):
            path = tmp_path / Path(value).name
            from_chart = value.startswith("/secrets/chart/")
            path.write_text(secret[Path(value).name] if from_chart else OPERATOR_FILE)
            value = str(path)
        monkeypatch.setenv(name, value)
    return LivekitJwtSettings(), rendered


@pytest.mark.parametrize("values_file", [MINIMAL, FULL, EXISTING], ids=lambda p: p.stem)
def test_rendered_env_and_config_build_valid_settings(
    values_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from matrix_stack.services.livekit_jwt.issuer import Issuer

    settings, rendered = _settings_from_chart(values_file, tmp_path, monkeypatch)
    box = container(rendered)
    assert box["command"] == ["livekit-jwt"]
    assert settings.port == {p["name"]: p["containerPort"] for p in box["ports"]}["http"] == 8080
    assert rendered["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    mounts = tuple(m["mountPath"] + "/" for m in box["volumeMounts"])
    for path in (settings.federation_ca_file, settings.keys_file):
        assert path is None or str(path).startswith(mounts), path
    values = yaml.safe_load(values_file.read_text())
    assert settings.livekit_url == values["livekitUrl"]
    assert settings.full_access_homeservers == values["fullAccessHomeservers"]
    assert settings.key is not None
    assert settings.secret is not None
    issuer = Issuer(settings)  # what the service sets up before it serves: credentials, the allow-list
    assert issuer.credentials.secret == settings.secret.get_secret_value()
    text = rendered["ConfigMap"]["data"]["config.yaml"]
    assert settings.secret.get_secret_value() not in text  # credentials never in the ConfigMap


def test_minimal_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, rendered = _settings_from_chart(MINIMAL, tmp_path, monkeypatch)
    assert set(rendered) == {"ConfigMap", "Deployment", "PodDisruptionBudget", "Secret", "Service",
                             "ServiceAccount"}  # fmt: skip
    deployment = rendered["Deployment"]["spec"]
    assert deployment["replicas"] == 2
    assert rendered["PodDisruptionBudget"]["spec"]["maxUnavailable"] == 1
    anti = deployment["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert "preferredDuringSchedulingIgnoredDuringExecution" in anti
    assert (settings.hash_scheme, settings.can_update_own_metadata) == ("v0.4.3", False)
    assert (settings.room_empty_timeout, settings.room_departure_timeout, settings.token_ttl_seconds) == (
        300,
        20,
        3600,
    )
    assert (settings.federation_allow, settings.federation_ca_file, settings.dns_servers) == ([], None, [])
    assert settings.federation_timeout == 10
    assert settings.livekit_api_url is None
    assert settings.key is not None
    assert settings.secret is not None
    assert settings.key.get_secret_value() == "APIexamplekey01"
    assert settings.secret.get_secret_value() == "livekit-api-secret-0123456789abcdef"
    env = {e["name"]: e["value"] for e in container(rendered)["env"]}
    assert env["LIVEKIT_JWT_KEY_FILE"] == "/secrets/chart/livekit-key"
    assert env["LIVEKIT_JWT_SECRET_FILE"] == "/secrets/chart/livekit-secret"
    assert "LIVEKIT_JWT_KEYS_FILE" not in env
    # Not an application service unless asked.
    assert "LIVEKIT_JWT_APPSERVICE_TOKEN_FILE" not in env
    assert (settings.appservice_token, settings.homeserver_name) == (None, None)


def test_full_values_reach_the_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, rendered = _settings_from_chart(FULL, tmp_path, monkeypatch)
    assert settings.livekit_api_url == "http://livekit.livekit.svc:7880"
    assert settings.full_access_homeservers == ["example.org", "matrix.example.com"]
    assert (settings.hash_scheme, settings.can_update_own_metadata) == ("v0.4.1", True)
    assert (settings.room_empty_timeout, settings.room_departure_timeout, settings.token_ttl_seconds) == (
        120,
        30,
        7200,
    )
    assert settings.federation_allow == ["10.0.0.0/8", "matrix.internal.example.org"]
    assert str(settings.federation_ca_file) == "/secrets/chart/federation-ca.pem"
    assert "BEGIN CERTIFICATE" in base64.b64decode(rendered["Secret"]["data"]["federation-ca.pem"]).decode()
    assert settings.federation_timeout == 5
    assert settings.dns_servers == ["10.96.0.10", "192.0.2.53:5353"]
    assert settings.log_level == "DEBUG"
    assert "replicas" not in rendered["Deployment"]["spec"]  # the HPA owns it
    assert rendered["HorizontalPodAutoscaler"]["spec"]["minReplicas"] == 3
    env = {e["name"]: e["value"] for e in container(rendered)["env"]}
    assert env["LIVEKIT_JWT_APPSERVICE_TOKEN_FILE"] == "/secrets/chart/appservice-hs-token"
    assert settings.appservice_token is not None
    assert settings.appservice_token.get_secret_value() == "hs-token-of-the-registration-0123456789"
    assert settings.homeserver_name == "example.org"
    assert config(rendered)["homeserver_name"] == "example.org"


def test_existing_secrets_are_referenced_and_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, rendered = _settings_from_chart(EXISTING, tmp_path, monkeypatch, release="prod")
    assert "Secret" not in rendered
    spec = rendered["Deployment"]["spec"]["template"]["spec"]
    # the second name is tpl'd
    assert sorted(v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v) == [
        "livekit-api", "prod-livekit-api", "prod-matrixrtc-appservice"]  # fmt: skip
    assert sorted(v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v) == [
        "prod-livekit-jwt", "prod-trust-bundle"]  # fmt: skip
    env = {e["name"]: e["value"] for e in container(rendered)["env"]}
    assert env["LIVEKIT_JWT_KEY_FILE"] == "/secrets/ext/livekit-api/key"
    assert env["LIVEKIT_JWT_SECRET_FILE"] == "/secrets/ext/prod-livekit-api/secret"
    assert settings.secret is not None
    assert settings.secret.get_secret_value() == OPERATOR_FILE.strip()  # the trailing newline stripped
    assert str(settings.federation_ca_file) == "/etc/livekit-jwt/federation-ca/bundle.pem"
    assert settings.full_access_homeservers == ["*"]  # written explicitly
    # The application service's hs_token: the Secret the synapse chart reads it from too.
    assert env["LIVEKIT_JWT_APPSERVICE_TOKEN_FILE"] == "/secrets/ext/prod-matrixrtc-appservice/hs-token"
    assert settings.appservice_token is not None
    assert settings.appservice_token.get_secret_value() == OPERATOR_FILE.strip()
    assert settings.homeserver_name == "example.org"


def test_a_keys_file_instead_of_the_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from matrix_stack.services.livekit_jwt.issuer import credentials

    values: dict[str, Any] = {"livekitKey": None, "livekitSecret": None,
                              "livekitKeysFile": {"value": "APIkeysfilekey: keys-file-secret-0123456789"}}  # fmt: skip
    settings, rendered = _settings_from_chart(FULL, tmp_path, monkeypatch, values=values)
    env = {e["name"]: e["value"] for e in container(rendered)["env"]}
    assert env["LIVEKIT_JWT_KEYS_FILE"] == "/secrets/chart/livekit-keys.yaml"
    assert {"LIVEKIT_JWT_KEY_FILE", "LIVEKIT_JWT_SECRET_FILE"}.isdisjoint(env)
    assert set(rendered["Secret"]["data"]) == {
        "livekit-keys.yaml",
        "federation-ca.pem",
        "appservice-hs-token",
        "delegation-database-url",  # FULL's delegation.database.url
    }
    assert (settings.key, settings.secret) == (None, None)
    assert credentials(settings).secret == "keys-file-secret-0123456789"  # the service reads the file itself


@pytest.mark.parametrize(
    ("livekit", "port"),
    [
        ({}, 443),  # wss://sfu.example.org
        ({"livekitUrl": "ws://sfu.example.org"}, 80),
        ({"livekitUrl": "wss://sfu.example.org:7881"}, 7881),
        ({"livekitApiUrl": "http://livekit.livekit.svc:7880"}, 7880),
        ({"livekitApiUrl": "https://sfu-api.example.org"}, 443),
    ],
)
def test_the_network_policy_opens_the_port_of_the_sfu_api_the_service_uses(
    livekit: dict[str, Any], port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.parse import urlsplit

    from matrix_stack.services.livekit_jwt.issuer import Issuer, api_url

    values = {**livekit, "networkPolicy": {"enabled": True}}
    settings, rendered = _settings_from_chart(MINIMAL, tmp_path, monkeypatch, values=values)
    assert Issuer(settings).credentials.secret == "livekit-api-secret-0123456789abcdef"
    url = urlsplit(api_url(settings))
    assert (url.port or {"http": 80, "https": 443}[url.scheme]) == port
    sfu = rendered["NetworkPolicy"]["spec"]["egress"][2]
    assert sfu["ports"] == [{"port": port, "protocol": "TCP"}]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"fullAccessHomeservers": None}, "missing property 'fullAccessHomeservers'"),
        ({"fullAccessHomeservers": []}, "/fullAccessHomeservers': minItems"),
        ({"fullAccessHomeservers": ["*", "example.org"]}, "/fullAccessHomeservers': maxItems"),
        ({"fullAccessHomeservers": ["https://example.org"]}, "/fullAccessHomeservers/0"),
        ({"fullAccessHomeservers": ["example.org", "example.org"]}, "/fullAccessHomeservers"),
    ],
    ids=["missing", "empty", "star-with-others", "a-url", "twice"],
)
def test_schema_requires_full_access_homeservers(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.RenderError, match=re.escape(message)):
        helm.template(CHART, MINIMAL, values=values)


def test_the_default_values_have_no_full_access_homeserver() -> None:
    """Nothing defaults to every homeserver: the chart's own values.yaml fails the schema."""
    defaults = yaml.safe_load((helm.CHARTS / CHART / "values.yaml").read_text())
    assert defaults["fullAccessHomeservers"] == []
    given = {
        "livekitUrl": "wss://sfu.example.org",
        "livekitKey": {"value": "k"},
        "livekitSecret": {"value": "s"},
    }
    with pytest.raises(helm.RenderError, match="fullAccessHomeservers"):
        helm.template(CHART, values=given)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"livekitUrl": None}, "missing property 'livekitUrl'"),
        ({"livekitUrl": "https://sfu.example.org"}, "/livekitUrl"),
        ({"livekitApiUrl": "wss://sfu.example.org"}, "/livekitApiUrl"),
        ({"hashScheme": "v0.3.0"}, "/hashScheme"),
        ({"tokenTtlSeconds": 30}, "/tokenTtlSeconds"),
        ({"federation": {"timeout": 0}}, "/federation/timeout"),
        ({"federation": {"caBundle": {"configMap": "ca"}}}, "/federation/caBundle"),
        ({"federation": {"dnsServers": ["dns.example.org"]}}, "/federation/dnsServers/0"),  # an IP address
        ({"federation": {"allow": ["https://hs.example.org"]}}, "/federation/allow/0"),
        ({"livekitSecret": None}, "set livekitKey and livekitSecret"),
        ({"livekitKeysFile": {"secret": "k", "secretKey": "keys"}}, "or livekitKeysFile, not both"),
        ({"livekitKey": {"value": "x", "secret": "s", "secretKey": "k"}}, "/livekitKey"),
        ({"ingress": {"hosts": [{"host": "a", "paths": [{"path": "/metrics"}]}]}}, "/ingress/hosts/0"),
        ({"httpRoute": {"paths": ["/metrics"]}}, "/httpRoute"),
        ({"matrix": {"homeserver": "https://matrix.example.org"}}, "matrix"),  # not a bridge
        ({"persistence": {"enabled": True}}, "persistence"),
        ({"podAntiAffinity": "sometimes"}, "podAntiAffinity"),
        (
            {"appservice": {"enabled": True, "hsToken": {"value": "t"}}},
            "/appservice/homeserverName': minLength",
        ),
        (
            {"appservice": {"enabled": True, "homeserverName": "example.org"}},
            "/appservice/hsToken': minProperties",
        ),
        ({"appservice": {"homeserverName": "https://example.org"}}, "/appservice/homeserverName"),
        ({"appservice": {"hsToken": {"secret": "s"}}}, "/appservice/hsToken"),
    ],
)
def test_invalid_values_fail_with_a_clear_message(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.RenderError, match=re.escape(message)):
        helm.template(CHART, MINIMAL, values=values)


def test_hash_schemes_are_the_services() -> None:
    from matrix_stack.services.livekit_jwt.config import HashScheme, LivekitJwtSettings

    schema = yaml.safe_load((helm.CHARTS / CHART / "values.schema.json").read_text())
    assert schema["properties"]["hashScheme"]["enum"] == list(typing.get_args(HashScheme))
    values = yaml.safe_load((helm.CHARTS / CHART / "values.yaml").read_text())
    assert values["hashScheme"] == LivekitJwtSettings.model_fields["hash_scheme"].default
    readme = (helm.CHARTS / CHART / "README.md").read_text()
    table = readme[readme.index("## Hash scheme") : readme.index("## Credentials")]
    assert re.findall(r"^\| `(v[0-9.]+)`", table, re.MULTILINE) == list(typing.get_args(HashScheme))


def test_routes_publish_only_the_token_endpoints() -> None:
    rendered = kinds(helm.template(CHART, MINIMAL, values=PUBLISHED))
    rules = rendered["Ingress"]["spec"]["rules"]
    assert [rule["host"] for rule in rules] == ["rtc.example.org", "sfu.example.org"]
    service = rendered["Service"]["metadata"]["name"]
    for rule in rules:
        paths = rule["http"]["paths"]
        assert [(p["path"], p["pathType"]) for p in paths] == [(path, "Exact") for path in TOKEN_PATHS]
        assert {p["backend"]["service"]["name"] for p in paths} == {service}
    [route_rule] = rendered["HTTPRoute"]["spec"]["rules"]
    assert [m["path"] for m in route_rule["matches"]] == [{"type": "Exact", "value": p} for p in TOKEN_PATHS]
    assert route_rule["backendRefs"] == [{"name": service, "port": 8080}]
    assert rendered["HTTPRoute"]["spec"]["hostnames"] == ["rtc.example.org"]
    published = yaml.safe_dump([rendered["Ingress"], rendered["HTTPRoute"]])
    for path in INTERNAL_PATHS:
        assert path not in published
    full = kinds(helm.template(CHART, FULL))
    assert [p["path"] for p in full["Ingress"]["spec"]["rules"][0]["http"]["paths"]] == TOKEN_PATHS
    plain = kinds(helm.template(CHART, MINIMAL))
    assert "Ingress" not in plain
    assert "HTTPRoute" not in plain


def test_two_releases_in_one_namespace_do_not_collide() -> None:
    first = helm.template(CHART, FULL, release="a", api_versions=MONITORING)
    second = helm.template(CHART, FULL, release="b", api_versions=MONITORING)
    names = [{(d["kind"], d["metadata"]["name"]) for d in documents} for documents in (first, second)]
    assert not names[0] & names[1]
    assert all(name.startswith(("a-", "b-")) for _, name in names[0] | names[1])
    selectors = [kinds(d)["Deployment"]["spec"]["selector"]["matchLabels"] for d in (first, second)]
    assert selectors[0] != selectors[1]
    for documents, selector in zip((first, second), selectors, strict=True):
        rendered = kinds(documents)
        assert rendered["Service"]["spec"]["selector"] == selector
        assert rendered["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == selector
        assert rendered["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"] == selector
        assert rendered["ServiceMonitor"]["spec"]["selector"]["matchLabels"] == selector
        spec = rendered["Deployment"]["spec"]["template"]["spec"]
        own = {rendered["ConfigMap"]["metadata"]["name"], rendered["Secret"]["metadata"]["name"]}
        used = {
            v.get("configMap", {}).get("name") or v.get("secret", {}).get("secretName")
            for v in spec["volumes"]
        }
        assert own <= used  # each release mounts its own ConfigMap and Secret
        backend = rendered["Ingress"]["spec"]["rules"][0]["http"]["paths"][0]["backend"]
        assert backend["service"]["name"] == rendered["Service"]["metadata"]["name"]


def test_network_policy() -> None:
    assert "NetworkPolicy" not in kinds(helm.template(CHART, MINIMAL))
    default = kinds(helm.template(CHART, MINIMAL, values={"networkPolicy": {"enabled": True}}))[
        "NetworkPolicy"
    ]
    helm.validate(default)
    public, metrics = default["spec"]["ingress"]
    namespace = [{"podSelector": {}}]  # nothing named: the release's namespace (charts/library)
    assert public == metrics == {"from": namespace, "ports": [{"port": 8080, "protocol": "TCP"}]}
    dns, federation, sfu = default["spec"]["egress"]
    assert dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    assert federation == {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 8448, "protocol": "TCP"}]}
    assert sfu == {"ports": [{"port": 443, "protocol": "TCP"}]}  # wss://sfu.example.org

    full = kinds(helm.template(CHART, FULL))["NetworkPolicy"]["spec"]
    public, metrics = full["ingress"]
    assert public["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]
    assert metrics["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    dns, federation, sfu, database = full["egress"]
    assert database == {"ports": [{"port": 5432, "protocol": "TCP"}],
                        "to": [{"podSelector": {"matchLabels": {"cnpg.io/cluster": "rtc-db"}}}]}  # fmt: skip
    assert sorted({p["port"] for p in dns["ports"]}) == [53, 5353]  # and federation.dnsServers' port
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert "to" not in federation  # homeservers are anywhere
    assert sfu["ports"] == [{"port": 7880, "protocol": "TCP"}]  # livekitApiUrl's port
    assert sfu["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "livekit"}}}]
    for url, port in [("ws://sfu.example.org", 80), ("wss://sfu.example.org:7881", 7881)]:
        values = {"livekitUrl": url, "networkPolicy": {"enabled": True}}
        egress = kinds(helm.template(CHART, MINIMAL, values=values))["NetworkPolicy"]["spec"]["egress"]
        assert egress[2]["ports"] == [{"port": port, "protocol": "TCP"}]


def test_pods_roll_when_the_config_or_a_chart_credential_changes() -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = kinds(helm.template(CHART, FULL, values=values))["Deployment"]
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    base = checksum({})
    assert checksum({}) == base
    assert checksum({"hashScheme": "v0.4.3"}) != base
    assert checksum({"fullAccessHomeservers": ["example.org"]}) != base
    assert checksum({"livekitSecret": {"value": "another-livekit-secret"}}) != base
    assert checksum({"appservice": {"hsToken": {"value": "another-hs-token"}}}) != base
    assert checksum({"appservice": {"homeserverName": "example.com"}}) != base
    assert checksum({"logLevel": "INFO", "replicaCount": 4}) == base  # not the service's config


def _readme_yaml_blocks(start: str, end: str) -> list[Any]:
    text = (helm.CHARTS / CHART / "README.md").read_text()
    section = text[text.index(start) : text.index(end)]
    return [yaml.safe_load(block) for block in re.findall(r"```(?:yaml|json)\n(.*?)```", section, re.DOTALL)]


def test_the_readme_example_installs() -> None:
    [example] = _readme_yaml_blocks("helm install", "## What runs")
    rendered = kinds(helm.template(CHART, values=example, release="rtc"))
    assert "Secret" not in rendered  # the example's credentials are an existing Secret
    assert [p["path"] for p in rendered["Ingress"]["spec"]["rules"][0]["http"]["paths"]] == TOKEN_PATHS


def test_the_readme_synapse_values_announce_this_chart(tmp_path: Path) -> None:
    """The synapse chart serves /.well-known/matrix/client with the rtc_foci of the README's values,
    pointing at the host this chart's README example publishes."""
    helm.build_dependencies("synapse")
    [example] = _readme_yaml_blocks("helm install", "## What runs")
    well_known, synapse_values = _readme_yaml_blocks("## Announcing it", "## Hash scheme")
    published = f"https://{example['ingress']['hosts'][0]['host']}"
    expected = [{"type": "livekit", "livekit_service_url": published}]
    assert well_known == {"org.matrix.msc4143.rtc_foci": expected}
    synapse_defaults = helm.CHARTS / "synapse" / "ci" / "default-values.yaml"
    documents = helm.template("synapse", synapse_defaults, values=synapse_values)
    [configmap] = [d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "t-synapse"]
    homeserver = yaml.safe_load(configmap["data"]["homeserver.yaml"])
    assert homeserver["serve_client_wellknown"] is True
    assert homeserver["extra_well_known_client_content"]["org.matrix.msc4143.rtc_foci"] == expected


def test_an_hs_token_is_kept_only_when_the_mode_is_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    off = {"appservice": {"enabled": False, "hsToken": {"value": "left-over-hs-token-0123"}}}
    settings, rendered = _settings_from_chart(MINIMAL, tmp_path, monkeypatch, values=off)
    assert "appservice-hs-token" not in rendered["Secret"]["data"]
    assert "homeserver_name" not in config(rendered)
    assert settings.appservice_token is None


def test_the_readme_pairs_this_chart_with_the_synapse_chart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's homeserver-native values, rendered with both charts: Synapse forwards to this
    chart's Service with the hs_token of the Secret this chart reads it from, for users of the
    server name this chart is told."""
    helm.build_dependencies("synapse")
    synapse_values, own_values = _readme_yaml_blocks("## Homeserver-native mode", "## Federation")
    settings, rendered = _settings_from_chart(
        MINIMAL, tmp_path, monkeypatch, release="rtc", values=own_values
    )
    synapse_defaults = helm.CHARTS / "synapse" / "ci" / "default-values.yaml"
    documents = helm.template("synapse", synapse_defaults, values=synapse_values, release="matrix")
    by_kind_name = {(d["kind"], d["metadata"]["name"]): d for d in documents}
    homeserver = yaml.safe_load(by_kind_name["ConfigMap", "matrix-synapse"]["data"]["homeserver.yaml"])
    assert settings.homeserver_name == homeserver["server_name"]
    secret = by_kind_name["Secret", "matrix-synapse-secrets"]["data"]
    registration = yaml.safe_load(base64.b64decode(secret["matrixrtc-registration.yaml"]))
    service = rendered["Service"]
    assert registration["io.element.msc4512.proxy_url"] == (
        f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}")  # fmt: skip
    assert registration["io.element.msc4512.proxy_prefix"] == "rtc/livekit"
    # One Secret, one key: what Synapse completes its registration with is the file this chart reads.
    env = {e["name"]: e["value"] for e in container(rendered)["env"]}
    main = by_kind_name["StatefulSet", "matrix-synapse-main"]["spec"]["template"]["spec"]["containers"][0]
    assert f"'hs_token' '{env['LIVEKIT_JWT_APPSERVICE_TOKEN_FILE']}'" in main["command"][2]
    assert env["LIVEKIT_JWT_APPSERVICE_TOKEN_FILE"] == "/secrets/ext/matrixrtc-appservice/hs-token"
    assert "appservice-hs-token" not in rendered["Secret"]["data"]  # neither chart stores the token
    assert "matrixrtc-hs-token" not in secret


def test_delegation_is_on_where_it_is_safe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On by default; each pod's own SQLite file is safe with one replica only (the SFU's webhooks
    reach any pod), so two or more, or autoscaling, need the shared PostgreSQL."""
    settings, rendered = _settings_from_chart(MINIMAL, tmp_path, monkeypatch)  # two replicas
    assert (settings.delegation, settings.database_url) == (False, None)
    assert "delegated leave (delegation.enabled) is off" in helm.notes(CHART, MINIMAL)
    single = {"replicaCount": 1}
    settings, rendered = _settings_from_chart(MINIMAL, tmp_path, monkeypatch, values=single)
    assert (settings.delegation, str(settings.data_dir)) == (True, "/var/lib/matrix-stack")
    assert settings.sanity_check_interval_seconds == 30
    assert "LIVEKIT_JWT_DATABASE_URL_FILE" not in {e["name"] for e in container(rendered)["env"]}
    assert "is off" not in helm.notes(CHART, MINIMAL, values=single)
    scaled = {"replicaCount": 1, "autoscaling": {"enabled": True}}
    assert config(kinds(helm.template(CHART, MINIMAL, values=scaled)))["delegation"] is False
    assert config(kinds(helm.template(CHART, MINIMAL, values={"delegation": {"enabled": False},
                                                               "replicaCount": 1})))["delegation"] is False  # fmt: skip


def test_the_shared_store_from_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, rendered = _settings_from_chart(FULL, tmp_path, monkeypatch)
    assert settings.delegation is True  # three replicas, on PostgreSQL
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value().startswith(
        "postgresql://livekit_jwt:a-database-password@"
    )
    assert (settings.database_schema, settings.delegation_lease_seconds) == ("rtc_jobs", 4)
    assert settings.sanity_check_interval_seconds == 15
    assert "a-database-password" not in rendered["ConfigMap"]["data"]["config.yaml"]
    values = {"delegation": {"database": {"url": {"secret": "rtc-db-app", "secretKey": "uri"}}}}
    rendered = kinds(helm.template(CHART, MINIMAL, values=values))
    env = {e["name"]: e["value"] for e in container(rendered)["env"]}
    assert env["LIVEKIT_JWT_DATABASE_URL_FILE"].endswith("/uri")
    assert not env["LIVEKIT_JWT_DATABASE_URL_FILE"].startswith("/secrets/chart/")
    assert "delegation-database-url" not in rendered["Secret"]["data"]
    assert config(rendered)["delegation"] is True
    egress = kinds(helm.template(CHART, MINIMAL, values={**values, "networkPolicy": {"enabled": True}}))
    assert egress["NetworkPolicy"]["spec"]["egress"][3] == {"ports": [{"port": 5432, "protocol": "TCP"}]}
