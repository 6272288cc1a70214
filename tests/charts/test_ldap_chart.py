"""The ldap chart (ldap-proxy): what the generic service-chart checks do not cover. The rendered
config file and environment must make valid settings for the real service, and the README's
Synapse configuration must be what matrix-synapse-ldap3 reads."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts import helm

CI = helm.CHARTS / "ldap" / "ci"
MINIMAL, FULL, EXISTING = (CI / f"{name}-values.yaml" for name in ("minimal", "full", "existing-secrets"))
MONITORING = ("monitoring.coreos.com/v1/ServiceMonitor",)


def kinds(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in documents}


def container(rendered: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = rendered["Deployment"]["spec"]["template"]["spec"]
    [only] = spec["containers"]
    return only


def config(rendered: dict[str, dict[str, Any]]) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(rendered["ConfigMap"]["data"]["config.yaml"])
    return loaded


def test_defaults_two_replicas_a_pdb_and_spread_across_nodes() -> None:
    rendered = kinds(helm.template("ldap", MINIMAL))
    assert set(rendered) == {"ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"}
    deployment = rendered["Deployment"]["spec"]
    assert deployment["replicas"] == 2
    pdb = rendered["PodDisruptionBudget"]["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"] == deployment["selector"]
    [term] = deployment["template"]["spec"]["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"] == deployment["selector"]
    hard = kinds(helm.template("ldap", MINIMAL, values={"podAntiAffinity": "hard"}))
    anti = hard["Deployment"]["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in anti
    own = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}
    replaced = kinds(helm.template("ldap", MINIMAL, values={"affinity": own}))
    assert replaced["Deployment"]["spec"]["template"]["spec"]["affinity"] == own
    none = kinds(helm.template("ldap", MINIMAL, values={"podAntiAffinity": ""}))
    assert "affinity" not in none["Deployment"]["spec"]["template"]["spec"]


def test_service_maps_389_and_636_onto_the_proxy_listeners() -> None:
    plain = kinds(helm.template("ldap", MINIMAL))
    ports = {p["name"]: p for p in plain["Service"]["spec"]["ports"]}
    assert set(ports) == {"ldap", "http"}  # no LDAPS port without LDAPS
    assert (ports["ldap"]["port"], ports["ldap"]["targetPort"]) == (389, "ldap")
    assert (ports["http"]["port"], ports["http"]["targetPort"]) == (8080, "http")
    container_ports = {p["name"]: p["containerPort"] for p in container(plain)["ports"]}
    assert container_ports == {"http": 8080, "ldap": 3389}
    assert config(plain)["listen_port"] == 3389
    assert "ldaps_port" not in config(plain)

    full = kinds(helm.template("ldap", FULL))
    ports = {p["name"]: p for p in full["Service"]["spec"]["ports"]}
    assert (ports["ldaps"]["port"], ports["ldaps"]["targetPort"]) == (636, "ldaps")
    container_ports = {p["name"]: p["containerPort"] for p in container(full)["ports"]}
    assert container_ports == {"http": 8080, "ldap": 3389, "ldaps": 6636}
    assert config(full)["ldaps_port"] == 6636
    assert full["Service"]["spec"]["loadBalancerSourceRanges"] == ["10.0.0.0/8"]


@pytest.mark.parametrize("values_file", [MINIMAL, FULL, EXISTING], ids=lambda p: p.stem)
def test_no_capabilities_no_sysctls_nothing_privileged(values_file: Path) -> None:
    spec = kinds(helm.template("ldap", values_file))["Deployment"]["spec"]["template"]["spec"]
    assert "sysctls" not in spec["securityContext"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    for key in ("hostNetwork", "hostPID", "hostIPC", "initContainers"):
        assert key not in spec
    security = spec["containers"][0]["securityContext"]
    assert security["capabilities"] == {"drop": ["ALL"]}  # nothing added, not even NET_BIND_SERVICE
    assert security["privileged"] is False
    assert all(p["containerPort"] >= 1024 and "hostPort" not in p for p in spec["containers"][0]["ports"])


def _settings_from_chart(
    values_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    release: str = "t",
    values: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, dict[str, Any]]]:
    """The real LdapProxySettings, built from the environment the Deployment sets: the ConfigMap's
    file where LDAP_PROXY_CONFIG_FILE points, each *_FILE with the chart Secret's content (or a
    stand-in for an operator's Secret)."""
    from matrix_stack.services.ldap_proxy.config import LdapProxySettings

    rendered = kinds(helm.template("ldap", values_file, release=release, values=values))
    secret = {k: base64.b64decode(v).decode() for k, v in rendered.get("Secret", {}).get("data", {}).items()}
    box = container(rendered)
    mounts = [m["mountPath"] for m in box["volumeMounts"]]
    config_file = tmp_path / "config.yaml"
    config_file.write_text(rendered["ConfigMap"]["data"]["config.yaml"])
    # The settings ignore unknown keys: a key the service does not have would be lost silently.
    assert set(config(rendered)) <= set(LdapProxySettings.model_fields)
    for name in [n for n in os.environ if n.startswith("LDAP_PROXY_")]:
        monkeypatch.delenv(name)
    env = {e["name"]: e["value"] for e in box["env"]}
    assert env["LDAP_PROXY_CONFIG_FILE"].startswith(tuple(m + "/" for m in mounts))
    for name, value in env.items():
        if name == "LDAP_PROXY_CONFIG_FILE":
            value = str(config_file)
        elif name.endswith("_FILE"):
            path = tmp_path / Path(value).name
            from_chart = value.startswith("/secrets/chart/")
            path.write_text(secret[Path(value).name] if from_chart else "password-from-an-operator-secret\n")
            value = str(path)
        monkeypatch.setenv(name, value)
    return LdapProxySettings(), rendered


@pytest.mark.parametrize("values_file", [MINIMAL, FULL, EXISTING], ids=lambda p: p.stem)
def test_rendered_config_is_valid_for_the_service(
    values_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, rendered = _settings_from_chart(values_file, tmp_path, monkeypatch)
    box = container(rendered)
    mounts = tuple(m["mountPath"] + "/" for m in box["volumeMounts"])
    by_port = {p["name"]: p["containerPort"] for p in box["ports"]}
    assert settings.port == by_port["http"]
    assert settings.listen_port == by_port["ldap"]
    assert settings.ldaps_port == by_port.get("ldaps")
    for path in (settings.tls_cert_file, settings.tls_key_file, *(b.ca_file for b in settings.backends)):
        assert path is None or str(path).startswith(mounts), path  # every file the pod has
    values = yaml.safe_load(values_file.read_text())
    assert [b.name for b in settings.backends] == [b["name"] for b in values["backends"]]


def test_full_values_reach_the_service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, rendered = _settings_from_chart(FULL, tmp_path, monkeypatch)
    dc1, dc2, dr = settings.backends
    assert (dc1.tls, dc1.server_name, dc1.weight, dc1.max_connections) == (
        "starttls",
        "ldap.example.org",
        2,
        500,
    )
    assert str(dc1.ca_file) == "/secrets/chart/ca-dc1.pem"
    assert (dc2.address, dc2.tls, dc2.proxy_protocol) == (("ldap-2.example.org", 1636), "ldaps", True)
    assert str(dc2.ca_file) == str(dr.ca_file) == "/etc/ldap-proxy/ca/directory-ca/ca.crt"
    assert dr.backup is True
    assert dr.address == ("ldap.dr.example.org", 389)
    assert (settings.balance, settings.check_type, settings.starttls_mode) == (
        "round_robin",
        "bind",
        "terminate",
    )
    assert settings.check_password is not None
    assert settings.check_password.get_secret_value() == "check-password-0123"
    assert settings.check_bind_dn == "cn=healthcheck,ou=services,dc=example,dc=org"
    assert (settings.check_interval, settings.check_timeout, settings.check_rise) == (10, 3, 3)
    assert str(settings.tls_cert_file) == "/secrets/ext/ldap-proxy-tls/tls.crt"
    assert str(settings.tls_key_file) == "/secrets/ext/ldap-proxy-tls/tls.key"
    assert (settings.require_tls, settings.read_only, settings.audit_binds) == (True, True, False)
    assert settings.allowed_extended_ops[-1] == "1.3.6.1.4.1.4203.1.11.1"
    assert (settings.connect_timeout, settings.idle_timeout, settings.response_timeout) == (2.5, 600, 30)
    assert (settings.max_connections, settings.max_pdu_bytes) == (2000, 131072)
    assert (settings.bind_failure_limit, settings.bind_failure_window) == (5, 600)
    assert settings.log_level == "DEBUG"
    assert "check-password-0123" not in rendered["ConfigMap"]["data"]["config.yaml"]
    assert "check-password" in rendered["Secret"]["data"]


STARTTLS_BACKEND = [{"name": "dc1", "host": "ldap.example.org", "tls": "starttls"}]


@pytest.mark.parametrize(
    ("values", "mode"),
    [
        ({}, "off"),  # no certificate: StartTLS refused
        ({"backends": STARTTLS_BACKEND}, "off"),  # no certificate, a TLS backend: StartTLS refused
        ({"tls": {"existingSecret": "c"}, "backends": STARTTLS_BACKEND}, "terminate"),
        ({"tls": {"existingSecret": "c", "starttls": "passthrough"}, "readOnly": False}, "passthrough"),
        ({"tls": {"starttls": "off"}}, "off"),
    ],
    ids=["plain", "tls-backend", "certificate", "explicit-passthrough", "explicit-off"],
)
def test_starttls_mode_is_what_the_service_decides(
    values: dict[str, Any], mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, _ = _settings_from_chart(MINIMAL, tmp_path, monkeypatch, values=values)
    assert settings.starttls_mode == mode


@pytest.mark.parametrize(
    ("values", "workers"),
    [({}, 2), ({"workers": 3}, 3), ({"workers": 1}, 1), ({"bindFailureLimit": {"limit": 5}}, 1)],
    ids=["default", "three", "one", "bind-limit"],
)
def test_workers_are_what_the_service_decides(
    values: dict[str, Any], workers: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, _ = _settings_from_chart(MINIMAL, tmp_path, monkeypatch, values=values)
    assert settings.worker_count == workers


def test_existing_secrets_are_referenced_and_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, rendered = _settings_from_chart(EXISTING, tmp_path, monkeypatch, release="prod")
    assert "Secret" not in rendered
    spec = rendered["Deployment"]["spec"]["template"]["spec"]
    assert sorted(v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v) == [
        "directory-ca", "ldap-healthcheck", "prod-ldap-tls"]  # fmt: skip
    assert sorted(v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v) == [
        "prod-ldap", "prod-trust-bundle"]  # fmt: skip
    env = {e["name"]: e["value"] for e in container(rendered)["env"]}
    assert env["LDAP_PROXY_CHECK_PASSWORD_FILE"] == "/secrets/ext/ldap-healthcheck/password"
    assert settings.check_password is not None
    # the operator's file, its trailing newline stripped
    assert settings.check_password.get_secret_value() == "password-from-an-operator-secret"
    assert str(settings.tls_cert_file) == "/secrets/ext/prod-ldap-tls/tls.crt"  # the name is tpl'd
    assert str(settings.backends[0].ca_file) == "/secrets/ext/directory-ca/ca.crt"
    assert str(settings.backends[1].ca_file) == "/etc/ldap-proxy/ca/prod-trust-bundle/bundle.pem"


def test_two_releases_in_one_namespace_do_not_collide() -> None:
    first = helm.template("ldap", FULL, release="a", api_versions=MONITORING)
    second = helm.template("ldap", FULL, release="b", api_versions=MONITORING)
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


def test_network_policy() -> None:
    assert "NetworkPolicy" not in kinds(helm.template("ldap", MINIMAL))
    enabled = {"networkPolicy": {"enabled": True}}
    default = kinds(helm.template("ldap", MINIMAL, values=enabled))["NetworkPolicy"]
    helm.validate(default)
    ldap, metrics = default["spec"]["ingress"]
    assert ldap["from"] == metrics["from"] == [{"podSelector": {}}]  # the release's namespace
    assert ldap["ports"] == [{"port": 3389, "protocol": "TCP"}]
    assert metrics["ports"] == [{"port": 8080, "protocol": "TCP"}]
    dns, backends = default["spec"]["egress"]
    assert "to" not in dns
    assert "to" not in backends
    assert dns["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    assert backends["ports"] == [{"port": 389, "protocol": "TCP"}]

    full = kinds(helm.template("ldap", FULL))["NetworkPolicy"]["spec"]
    ldap, metrics = full["ingress"]
    assert [p["port"] for p in ldap["ports"]] == [3389, 6636]
    assert ldap["from"][0]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "synapse"}}
    monitoring = {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    assert metrics["from"] == [{"namespaceSelector": monitoring}]
    dns, backends = full["egress"]
    assert dns["to"][0]["podSelector"] == {"matchLabels": {"k8s-app": "kube-dns"}}
    assert sorted(p["port"] for p in backends["ports"]) == [389, 1636]  # starttls default, ldaps on 1636
    assert backends["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]
    extra = {"networkPolicy": {"enabled": True, "extraEgress": [{"ports": [{"port": 443}]}]}}
    assert kinds(helm.template("ldap", MINIMAL, values=extra))["NetworkPolicy"]["spec"]["egress"][2] == {
        "ports": [{"port": 443}]
    }


def test_invalid_values_fail_with_a_clear_message() -> None:
    starttls = {"backends": [{"name": "dc1", "host": "ldap.example.org", "tls": "starttls"}]}
    ca_none = {"name": "a", "host": "h", "ca": {"configMap": "c", "configMapKey": "k"}}
    ca_twice = {
        "name": "a",
        "host": "h",
        "tls": "ldaps",
        "ca": {"secret": "s", "secretKey": "k", "configMap": "c"},
    }
    cases: list[tuple[dict[str, Any], str]] = [
        ({"backends": []}, "set at least one directory server"),
        ({"backends": [{"name": "a", "host": "h1"}, {"name": "a", "host": "h2"}]}, "used twice"),
        ({"tls": {"ldaps": {"enabled": True}}}, "tls.ldaps.enabled needs the proxy's certificate"),
        ({"tls": {"starttls": "terminate"}}, "terminate needs the proxy's certificate"),
        (
            {**starttls, "tls": {"starttls": "passthrough"}, "readOnly": False},
            "backends dc1: tls.starttls passthrough relays",
        ),
        (
            {**starttls, "tls": {"existingSecret": "c", "starttls": "passthrough"}, "readOnly": False},
            "so backends use tls none",
        ),
        ({"tls": {"starttls": "passthrough"}}, "past readOnly, the bind audit and bindFailureLimit"),
        ({"healthCheck": {"type": "bind", "bindDN": "cn=check"}}, "needs healthCheck.bindDN and"),
        ({"healthCheck": {"interval": 2, "timeout": 2}}, "timeout must be shorter"),
        ({"workers": 2, "bindFailureLimit": {"limit": 5}}, "workers above 1 with bindFailureLimit"),
        ({"workers": 0}, "workers"),
        ({"backends": [ca_none]}, "ca is only used with tls starttls or ldaps, not none"),
        ({"backends": [{"name": "a", "host": "h", "tls": "weird"}]}, "backends/0/tls"),
        ({"backends": [ca_twice]}, "backends/0/ca"),
        ({"backends": [{"name": "bad name", "host": "h"}]}, "backends/0/name"),
        ({"healthCheck": {"password": {"value": "x", "secret": "s", "secretKey": "k"}}}, "password"),
        ({"podAntiAffinity": "sometimes"}, "podAntiAffinity"),
        ({"matrix": {"homeserver": "https://matrix.example.org"}}, "matrix"),  # not a bridge
        ({"persistence": {"enabled": True}}, "persistence"),
        ({"replicas": 3}, "replicas"),  # a typo: additionalProperties false
    ]
    for values, message in cases:
        with pytest.raises(helm.RenderError, match=re.escape(message)):
            helm.template("ldap", MINIMAL, values=values)


def test_pods_roll_when_the_config_or_a_chart_credential_changes() -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = kinds(helm.template("ldap", FULL, values=values))["Deployment"]
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    base = checksum({})
    assert checksum({}) == base
    assert checksum({"balance": "least_conn"}) != base
    assert checksum({"healthCheck": {"password": {"value": "another-password"}}}) != base
    assert checksum({"tls": {"existingSecret": "renamed-tls"}}) != base
    assert checksum({"logLevel": "INFO", "replicaCount": 4}) == base  # not the service's config


def _readme_yaml_blocks() -> list[Any]:
    text = (helm.CHARTS / "ldap" / "README.md").read_text()
    synapse = text[text.index("## Synapse") : text.index("## Values")]
    return [yaml.safe_load(block) for block in re.findall(r"```yaml\n(.*?)```", synapse, re.DOTALL)]


def test_the_readme_synapse_config_is_what_matrix_synapse_ldap3_reads(tmp_path: Path) -> None:
    """Both examples load in the real module (as Synapse loads it) and point at this chart's
    Service; the synapse chart example renders into homeserver.yaml with MAS off."""
    import ldap3
    from synapse.util.module_loader import load_module

    helm.build_dependencies("synapse")
    generic, chart_values = _readme_yaml_blocks()
    service = kinds(helm.template("ldap", MINIMAL, release="directory"))["Service"]
    expected_uri = f"ldap://{service['metadata']['name']}.matrix.svc:{service['spec']['ports'][0]['port']}"

    module = generic["modules"][0]
    files = {"ca_certs_file": tmp_path / "ca.crt", "bind_password_file": tmp_path / "bind-password"}
    files["ca_certs_file"].write_text("-----BEGIN CERTIFICATE-----\n")
    files["bind_password_file"].write_text("synapse-bind-password\n")
    module["config"]["tls_options"]["ca_certs_file"] = str(files["ca_certs_file"])
    module["config"]["bind_password_file"] = str(files["bind_password_file"])
    provider, parsed = load_module(module, ("modules", "<item 0>"))
    assert provider.__name__ == "LdapAuthProviderModule"
    assert (parsed.uri, parsed.start_tls, parsed.bind_password) == (
        expected_uri,
        True,
        "synapse-bind-password",
    )
    assert parsed.mode == ("search",)
    assert ldap3.Tls(**parsed.tls_options).validate == 2  # ssl.CERT_REQUIRED

    assert chart_values["mas"] == {"enabled": False}  # with MAS, Synapse's providers are not asked
    synapse_defaults = helm.CHARTS / "synapse" / "ci" / "default-values.yaml"
    documents = helm.template("synapse", synapse_defaults, values=chart_values)
    [configmap] = [d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "t-synapse"]
    homeserver = yaml.safe_load(configmap["data"]["homeserver.yaml"])
    assert "matrix_authentication_service" not in homeserver
    [module] = homeserver["modules"]
    provider, parsed = load_module(module, ("modules", "<item 0>"))
    assert (parsed.uri, parsed.start_tls, parsed.mode) == (expected_uri, True, ("simple",))
    assert "BEGIN CERTIFICATE" in ldap3.Tls(**parsed.tls_options).ca_certs_data
