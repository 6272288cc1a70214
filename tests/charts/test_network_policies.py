"""NetworkPolicies of every chart, for every ci values file with the policies on: valid against the
Kubernetes schemas, and their selectors checked against the labels of the pods the chart renders
(each policy selects pods, every pod is selected, peers inside the release select the pods they
mean, the ports they open exist on those pods). The synapse chart's policies are checked against
the listener layout its ConfigMap gives each process."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import yaml

from matrix_stack.services import catalog
from tests.charts import helm
from tests.charts.selectors import Pod, matches, pods, same_namespace, selected

CHARTS = [*catalog.charts(), "synapse"]
BRIDGES = catalog.charts("bridge")
RELEASE = "t"
ON = {"networkPolicy": {"enabled": True}}
NAMESPACE = [{"podSelector": {}}]  # what an ingress rule with no peers named admits


def ci_files(chart: str) -> list[Path]:
    return sorted((helm.CHARTS / chart / "ci").glob("*.yaml"))


CASES = [(chart, path) for chart in CHARTS for path in ci_files(chart)]
IDS = [f"{chart}:{path.stem}" for chart, path in CASES]


@pytest.fixture(scope="module", autouse=True)
def dependencies() -> None:
    for chart in ("compress-state", "synapse"):  # the others: tests/charts/conftest.py
        helm.build_dependencies(chart)


@functools.cache
def _render(chart: str, path: Path, extra: str) -> list[dict[str, Any]]:
    values = yaml.safe_load(extra)
    return helm.template(chart, path, values=values, release=RELEASE)


def render(chart: str, path: Path, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    merged = {**(values or {}), "networkPolicy": {**(values or {}).get("networkPolicy", {}), "enabled": True}}
    return _render(chart, path, yaml.safe_dump(merged, sort_keys=True))


def policies(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == "NetworkPolicy"}


def ours(peer: dict[str, Any]) -> bool:
    """A peer the chart writes for its own pods: pods of this namespace carrying the release's label."""
    if not same_namespace(peer):
        return False
    labels = peer["podSelector"].get("matchLabels") or {}
    return labels.get("app.kubernetes.io/instance") == RELEASE


def ports_of(rule: dict[str, Any]) -> list[int | str]:
    return [port["port"] for port in rule.get("ports", [])]


# -- the selector matcher -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ({}, True),
        ({"matchLabels": {"app": "a"}}, True),
        ({"matchLabels": {"app": "b"}}, False),
        ({"matchExpressions": [{"key": "pool", "operator": "In", "values": ["x", "room"]}]}, True),
        ({"matchExpressions": [{"key": "pool", "operator": "In", "values": ["x"]}]}, False),
        ({"matchExpressions": [{"key": "nope", "operator": "In", "values": ["x"]}]}, False),
        ({"matchExpressions": [{"key": "pool", "operator": "NotIn", "values": ["room"]}]}, False),
        ({"matchExpressions": [{"key": "nope", "operator": "NotIn", "values": ["room"]}]}, True),
        ({"matchExpressions": [{"key": "pool", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "nope", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "nope", "operator": "DoesNotExist"}]}, True),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, False),
        (  # matchLabels and every expression must hold
            {
                "matchLabels": {"app": "a"},
                "matchExpressions": [{"key": "pool", "operator": "In", "values": ["x"]}],
            },
            False,
        ),
    ],
)
def test_selector_matcher(selector: dict[str, Any], expected: bool) -> None:
    assert matches(selector, {"app": "a", "pool": "room"}) is expected


@pytest.mark.parametrize(
    "expression",
    [
        {"key": "a", "operator": "In"},
        {"key": "a", "operator": "Exists", "values": ["x"]},
        {"key": "a", "operator": "Gt"},
    ],
)
def test_selector_matcher_refuses_what_kubernetes_refuses(expression: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"operator|values"):
        matches({"matchExpressions": [expression]}, {"a": "x"})


# -- every chart, every ci file -----------------------------------------------------------------


def test_off_by_default() -> None:
    for chart in CHARTS:
        for path in ci_files(chart):
            if "networkPolicy" in (yaml.safe_load(path.read_text()) or {}):
                continue
            documents = helm.template(chart, path, release=RELEASE)
            assert not policies(documents), f"{chart}:{path.stem}"


@pytest.mark.parametrize(("chart", "values_file"), CASES, ids=IDS)
def test_policies_select_the_pods_they_mean(chart: str, values_file: Path) -> None:
    documents = render(chart, values_file)
    found = policies(documents)
    assert found
    rendered = pods(documents)
    assert rendered
    for name, policy in found.items():
        helm.validate(policy)
        spec = policy["spec"]
        targets = selected(spec["podSelector"], rendered)
        assert targets, f"{name} selects no pod"
        for rule in spec.get("ingress", []):
            # No rule of the chart admits every source: a rule names its peers.
            assert rule.get("from"), f"{name}: an ingress rule without peers"
            for port in ports_of(rule):
                missing = [pod.workload for pod in targets if not pod.has_port(port)]
                assert not missing, f"{name} opens {port}, which {missing} do not listen on"
            for peer in rule["from"]:
                if ours(peer):
                    assert selected(peer["podSelector"], rendered), f"{name}: a peer that selects no pod"
        for rule in spec.get("egress", []):
            for peer in rule.get("to", []):
                if not ours(peer):
                    continue
                destinations = selected(peer["podSelector"], rendered)
                assert destinations, f"{name}: a destination that selects no pod"
                for port in ports_of(rule):
                    missing = [pod.workload for pod in destinations if not pod.has_port(port)]
                    assert not missing, f"{name} reaches {port} on {missing}, which do not listen on it"
    # Nothing left open by mistake: every pod is isolated both ways.
    for pod in rendered:
        for kind in ("Ingress", "Egress"):
            assert any(
                kind in p["spec"]["policyTypes"] and matches(p["spec"]["podSelector"], pod.labels)
                for p in found.values()
            ), f"{pod.workload}: no policy isolates its {kind.lower()}"


def metrics_rules(chart: str, found: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The rules admitting Prometheus: on the synapse chart's metrics ports; a service chart's
    second ingress rule (its /metrics is on the http port, after the API's rule)."""
    if chart == "synapse":
        return [
            r
            for p in found.values()
            for r in p["spec"].get("ingress", [])
            if set(ports_of(r)) <= {9000, 9102, 8081}
        ]
    [policy] = found.values()
    return [policy["spec"]["ingress"][1]]


@pytest.mark.parametrize("chart", [c for c in CHARTS if c != "compress-state"])
def test_dns_and_prometheus_by_default_and_as_named(chart: str) -> None:
    """With nothing named, Prometheus's rules admit the release's namespace and DNS goes anywhere
    on 53; named, the peers are exactly the values'."""
    base = (
        helm.CHARTS / chart / "ci" / ("default-values.yaml" if chart == "synapse" else "minimal-values.yaml")
    )
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    dns = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]  # fmt: skip
    for named in (False, True):
        values = {"networkPolicy": {"metricsFrom": monitoring, "dnsTo": dns}} if named else None
        found = policies(render(chart, base, values))
        rules = metrics_rules(chart, found)
        assert len(rules) == (3 if chart == "synapse" else 1)  # Synapse, the router, MAS
        for rule in rules:
            assert rule["from"] == (monitoring if named else NAMESPACE)
        for name, policy in found.items():
            if "Egress" not in policy["spec"]["policyTypes"] or name.endswith(
                ("-postgres", "-admin-ui", "-config-check")
            ):
                continue
            [rule] = [r for r in policy["spec"]["egress"] if 53 in ports_of(r)]
            assert [p for p in rule["ports"] if p["port"] == 53] == [
                {"port": 53, "protocol": "UDP"},
                {"port": 53, "protocol": "TCP"},
            ]
            assert rule.get("to") == (dns if named else None), name


# -- the service charts ---------------------------------------------------------------------------


def url_port(url: str) -> int:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.port or {"https": 443, "http": 80}[parts.scheme]


@pytest.mark.parametrize(
    "values_file", [p for c in BRIDGES for p in ci_files(c)], ids=lambda p: f"{p.parent.parent.name}:{p.stem}"
)
def test_bridge_policy(values_file: Path) -> None:
    chart = values_file.parent.parent.name
    values = yaml.safe_load(values_file.read_text())
    np = values.get("networkPolicy", {})
    [policy] = policies(render(chart, values_file)).values()
    spec = policy["spec"]
    http, metrics = spec["ingress"]
    assert ports_of(http) == ports_of(metrics) == [8080]
    assert http["from"] == (np.get("ingressFrom", []) + np.get("clientsFrom", []) or NAMESPACE)
    assert metrics["from"] == (np.get("metricsFrom") or NAMESPACE)
    postgres = values.get("outbox", {}).get("postgres", {}).get("enabled", False)
    extra = np.get("extraEgress", [])
    egress = spec["egress"][: len(spec["egress"]) - len(extra)]
    assert spec["egress"][len(egress) :] == extra
    dns, homeserver, *rest = egress
    assert ports_of(dns) == [53, 53]
    assert ports_of(homeserver) == [url_port(values["matrix"]["homeserver"])]
    assert homeserver.get("to") == (np.get("homeserverTo") or None)
    database, own = (rest[:1], rest[1:]) if postgres else ([], rest)
    if postgres:
        [database_rule] = database
        assert ports_of(database_rule) == [np.get("databasePort", 5432)]
        assert database_rule.get("to") == (np.get("databaseTo") or None)
    # the chart's own: the receiver's Alertmanager, sentry-webhook's Sentry API, when they act from
    # the room
    actions = values.get("actions", {})
    alertmanager = actions.get("alertmanager", {}).get("url")
    if alertmanager:
        [alertmanager_rule] = own
        assert ports_of(alertmanager_rule) == [url_port(alertmanager)]
        assert alertmanager_rule.get("to") == (np.get("alertmanagerTo") or None)
    elif actions.get("sentry", {}).get("organization"):
        [sentry_rule] = own
        assert ports_of(sentry_rule) == [url_port(values.get("sentry", {}).get("url", "https://sentry.io"))]
        assert sentry_rule.get("to") == (np.get("sentryTo") or None)
    else:
        assert not own


def test_livekit_jwt_names_the_same_peers() -> None:
    full = helm.CHARTS / "livekit-jwt" / "ci" / "full-values.yaml"
    [policy] = policies(render("livekit-jwt", full)).values()
    tokens, metrics = policy["spec"]["ingress"]
    assert tokens["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]
    assert metrics["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    minimal = helm.CHARTS / "livekit-jwt" / "ci" / "minimal-values.yaml"
    clients = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "matrix"}}}]
    [policy] = policies(render("livekit-jwt", minimal, {"networkPolicy": {"clientsFrom": clients,
                                                                          "federationPorts": []}})).values()  # fmt: skip
    assert policy["spec"]["ingress"][0]["from"] == clients
    assert policy["spec"]["ingress"][1]["from"] == NAMESPACE
    federation = policy["spec"]["egress"][1]
    assert federation == {}  # every port, any address


# -- the synapse chart ----------------------------------------------------------------------------

SYNAPSE_CI = ci_files("synapse")


@functools.cache
def layout(values_file: Path, pgbouncer: bool) -> dict[str, dict[str, Any]]:
    """Per pool (its label value): the ports its process listens on and whether it uses pgbouncer,
    read from the process configuration the ConfigMap gives it."""
    documents = render("synapse", values_file, {"pgbouncer": {"enabled": pgbouncer}})
    [configmap] = [d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "t-synapse"]
    found = {}
    for key, text in configmap["data"].items():
        if not (key.startswith("process-") and key.endswith(".yaml")):
            continue
        config = yaml.safe_load(text)
        listeners = config.get("listeners") or config.get("worker_listeners") or []
        host = config.get("database", {}).get("args", {}).get("host", "")
        pool = key.removeprefix("process-").removesuffix(".yaml").replace("_", "-")
        found[pool] = {
            "http": any(lst["port"] == 8008 for lst in listeners),
            "replication": any(
                "replication" in r["names"]
                for lst in listeners
                if lst["port"] == 9093
                for r in lst["resources"]
            ),
            "pgbouncer": host.endswith("-pgbouncer"),
        }
    return found


def synapse_pods(rendered: list[Pod]) -> list[Pod]:
    return [p for p in rendered if p.labels.get("app.kubernetes.io/component") == "homeserver"]


def pools_of(pods_: list[Pod]) -> set[str]:
    return {p.labels["matrix-stack.io/pool"] for p in pods_}


def component(rendered: list[Pod], name: str) -> list[Pod]:
    return [p for p in rendered if p.labels.get("app.kubernetes.io/component") == name]


@pytest.mark.parametrize("pgbouncer", [False, True], ids=["direct", "pgbouncer"])
@pytest.mark.parametrize("values_file", SYNAPSE_CI, ids=lambda p: p.stem)
def test_synapse_policies_follow_the_listener_layout(values_file: Path, pgbouncer: bool) -> None:
    values = yaml.safe_load(values_file.read_text())
    documents = render("synapse", values_file, {"pgbouncer": {"enabled": pgbouncer}})
    found = policies(documents)
    rendered = pods(documents)
    for policy in found.values():
        helm.validate(policy)
    processes = synapse_pods(rendered)
    pools = layout(values_file, pgbouncer)
    assert pools_of(processes) == set(pools)
    http = {pool for pool, p in pools.items() if p["http"]}
    replication = {pool for pool, p in pools.items() if p["replication"]}
    behind = {pool for pool, p in pools.items() if p["pgbouncer"]}
    router_on = values.get("router", {}).get("enabled", True)
    mas_on = values.get("mas", {}).get("enabled", True)
    workers = len(pools) > 1

    def only(selector: dict[str, Any]) -> set[str]:
        """The pools a selector picks, asserting it picks Synapse processes and nothing else."""
        chosen = selected(selector, rendered)
        assert chosen
        assert all(p in processes for p in chosen), [p.workload for p in chosen]
        return pools_of(chosen)

    # Synapse's HTTP listeners: exactly the pools that have one; from the router (and MAS), never
    # from a Synapse process.
    policy = found["t-synapse-http"]["spec"]
    assert only(policy["podSelector"]) == http
    assert ports_of(policy["ingress"][0]) == [8008]
    sources = [
        s
        for rule in policy["ingress"]
        for peer in rule["from"]
        for s in selected(peer["podSelector"], rendered)
    ]
    assert not [p for p in sources if p in processes]
    if router_on:
        [peer] = policy["ingress"][0]["from"]
        assert selected(peer["podSelector"], rendered) == component(rendered, "router")
    if mas_on:
        [peer] = policy["ingress"][1]["from"]
        assert selected(peer["podSelector"], rendered) == component(rendered, "matrix-authentication-service")

    # The replication listeners: exactly the pools that have one, from every Synapse process only.
    if workers:
        policy = found["t-synapse-replication"]["spec"]
        assert only(policy["podSelector"]) == replication
        [rule] = policy["ingress"]
        [peer] = rule["from"]
        assert selected(peer["podSelector"], rendered) == processes
        assert ports_of(rule) == [9093]
    else:
        assert "t-synapse-replication" not in found

    # Every process: metrics in, and out to the replication listeners, Redis, pgbouncer, MAS, the web.
    policy = found["t-synapse"]["spec"]
    assert selected(policy["podSelector"], rendered) == processes
    [metrics] = policy["ingress"][
        : len(policy["ingress"]) - len(values.get("networkPolicy", {}).get("extraIngress", []))
    ]
    assert ports_of(metrics) == [9000]
    to_pods = {
        ports_of(rule)[0]: rule for rule in policy["egress"] if any(ours(p) for p in rule.get("to", []))
    }
    if workers:
        assert only(to_pods.pop(9093)["to"][0]["podSelector"]) == replication
    if behind:
        assert selected(to_pods.pop(5432)["to"][0]["podSelector"], rendered) == component(
            rendered, "pgbouncer"
        )
    if mas_on:
        destinations = selected(to_pods.pop(8080)["to"][0]["podSelector"], rendered)
        assert destinations == component(rendered, "matrix-authentication-service")
    assert not to_pods
    np = values.get("networkPolicy", {})
    [web] = [r for r in policy["egress"] if 8448 in ports_of(r)]
    assert web.get("to") == np.get("federationTo")
    assert ports_of(web) == np.get("federationPorts", [443, 8448])

    # PostgreSQL: directly from the processes that do not go through pgbouncer; pgbouncer admits
    # exactly those that do.
    postgres = found["t-synapse-postgres"]["spec"]
    assert only(postgres["podSelector"]) == set(pools) - behind
    assert postgres["policyTypes"] == ["Egress"]
    [rule] = postgres["egress"]
    assert ports_of(rule) == [values["postgres"].get("port", 5432)]
    if pgbouncer:
        policy = found["t-synapse-pgbouncer"]["spec"]
        assert selected(policy["podSelector"], rendered) == component(rendered, "pgbouncer")
        if behind:
            [rule] = policy["ingress"]
            [peer] = rule["from"]
            assert only(peer["podSelector"]) == behind
        else:
            assert "ingress" not in policy  # every process bypasses it: nobody gets in
    else:
        assert "t-synapse-pgbouncer" not in found

    # The router: to exactly the HTTP listeners and MAS.
    if router_on:
        policy = found["t-synapse-router"]["spec"]
        assert selected(policy["podSelector"], rendered) == component(rendered, "router")
        rules = {ports_of(rule)[0]: rule for rule in policy["egress"] if "to" in rule}
        assert only(rules[8008]["to"][0]["podSelector"]) == http
        if mas_on:
            assert selected(rules[8080]["to"][0]["podSelector"], rendered) == component(
                rendered, "matrix-authentication-service"
            )
        assert [ports_of(rule) for rule in policy["ingress"]] == [[8008], [9102]]
    else:
        assert "t-synapse-router" not in found

    # MAS: reaches main only (its provisioning API), and its database; the migration Job only that.
    if mas_on:
        policy = found["t-synapse-mas"]["spec"]
        [main] = [r for r in policy["egress"] if any(ours(p) for p in r.get("to", []))]
        assert only(main["to"][0]["podSelector"]) == {"main"}
        sources = {
            pod.workload
            for peer in policy["ingress"][1]["from"]
            for pod in selected(peer["podSelector"], rendered)
        }
        assert sources == {pod.workload for pod in processes + component(rendered, "router")}
        migrate = found["t-synapse-mas-migrate"]["spec"]
        assert selected(migrate["podSelector"], rendered) == component(
            rendered, "matrix-authentication-service-migrate"
        )
        assert "ingress" not in migrate
        database_port = values.get("mas", {}).get("database", {}).get("port", 5432)
        assert [ports_of(rule) for rule in migrate["egress"]] == [[53, 53], [database_port]]
    else:
        assert not {"t-synapse-mas", "t-synapse-mas-migrate"} & set(found)


def test_synapse_without_the_router_admits_the_ingress_controller_to_main() -> None:
    monolith = helm.CHARTS / "synapse" / "ci" / "monolith-values.yaml"
    ingress = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}]
    values = {"router": {"enabled": False}, "networkPolicy": {"ingressFrom": ingress}}
    found = policies(render("synapse", monolith, values))
    assert "t-synapse-router" not in found
    [rule] = found["t-synapse-http"]["spec"]["ingress"]
    assert rule["from"] == ingress
    default = policies(render("synapse", monolith, {"router": {"enabled": False}}))
    assert default["t-synapse-http"]["spec"]["ingress"][0]["from"] == NAMESPACE


def test_synapse_names_what_lies_outside() -> None:
    """ci/network-policy-values.yaml: each values list where it belongs, with the right ports."""
    path = helm.CHARTS / "synapse" / "ci" / "network-policy-values.yaml"
    np = yaml.safe_load(path.read_text())["networkPolicy"]
    found = policies(render("synapse", path))

    def egress(name: str, port: int) -> dict[str, Any]:
        [rule] = [r for r in found[name]["spec"]["egress"] if port in ports_of(r)]
        return rule

    assert egress("t-synapse", 6380)["to"] == np["redisTo"]
    assert egress("t-synapse", 8448)["to"] == np["federationTo"]
    assert ports_of(egress("t-synapse", 8448)) == [80, 443, 8448]
    matrixrtc = [r for r in found["t-synapse"]["spec"]["egress"] if r.get("to") == np["matrixRTCTo"]]
    assert [ports_of(r) for r in matrixrtc] == [[8080]]  # matrixRTC.appservice.url's port
    assert found["t-synapse"]["spec"]["egress"][-1] == np["extraEgress"][0]
    assert egress("t-synapse-postgres", 5432)["to"] == np["databaseTo"]
    assert egress("t-synapse-pgbouncer", 5432)["to"] == np["databaseTo"]
    assert egress("t-synapse-mas", 5433)["to"] == np["databaseTo"]  # mas.database.port
    assert egress("t-synapse-mas", 443).get("to") is None  # masUpstreamTo empty: any address
    router = found["t-synapse-router"]["spec"]["ingress"]
    assert router[0]["from"] == np["ingressFrom"] + np["clientsFrom"]
    assert router[1]["from"] == np["metricsFrom"]
    assert found["t-synapse-mas"]["spec"]["ingress"][0]["from"] == np["ingressFrom"]
    assert found["t-synapse-mas"]["spec"]["ingress"][2]["from"] == np["metricsFrom"]
    assert found["t-synapse-admin-ui"]["spec"]["ingress"][0]["from"] == np["ingressFrom"]
    assert "egress" not in found["t-synapse-admin-ui"]["spec"]  # static files: it calls nothing
    for policy in found.values():
        for rule in policy["spec"].get("egress", []):
            if 53 in ports_of(rule):
                assert rule["to"] == np["dnsTo"]


@pytest.mark.parametrize("chart", [c for c in CHARTS if c != "compress-state"])
def test_the_readme_example_renders(chart: str) -> None:
    """The example in each README's NetworkPolicy section is valid values, and every peer it names
    ends up in a rule (the bridges' databaseTo with outbox.postgres, which it is for)."""
    readme = (helm.CHARTS / chart / "README.md").read_text()
    section = readme[readme.index("## NetworkPolicy (`networkPolicy.enabled`)") :]
    section = section[: section.index("\n## ", 1)]
    [block] = [b.split("```", 1)[0] for b in section.split("```yaml\n")[1:]]
    example = yaml.safe_load(block)
    base = (
        helm.CHARTS / chart / "ci" / ("default-values.yaml" if chart == "synapse" else "minimal-values.yaml")
    )
    values = dict(example)
    if chart in BRIDGES:
        values["outbox"] = {"postgres": {"enabled": True, "url": {"secret": "outbox-db", "secretKey": "uri"}}}
        values["replicaCount"] = 1
    found = policies(render(chart, base, values))
    peers = [
        peer
        for policy in found.values()
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", [])
        for peer in rule.get("from", []) + rule.get("to", [])
    ]
    for name, listed in example["networkPolicy"].items():
        for peer in listed if isinstance(listed, list) else []:
            assert peer in peers, f"{chart}: {name}"
