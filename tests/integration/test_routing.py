"""The synapse chart's router, through `matrix-stack route explain`: the chart rendered by helm, its
Envoy configuration in the real Envoy, one stub per pool. The expected pools and hash keys in
tests/data/routing were written, request family by request family, from the servlet registration
of the Synapse the chart ships (matrix-synapse 1.163.2: `synapse/rest/__init__.py`, the servlet
patterns and `workers` conditions in `synapse/rest/client/*.py`, `synapse/app/generic_worker.py`),
which beats `docs/workers.md` where the two disagree; not taken from the router."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from matrix_stack.shared.route.explain import Explainer

DATA = Path(__file__).parent.parent / "data" / "routing"
# livekit-jwt registered as an application service (MSC4512), its Service where Synapse forwards to.
MATRIXRTC = ("matrixRTC.appservice.enabled=true", "matrixRTC.appservice.url=http://rtc-livekit-jwt:8080")


def rows(*names: str) -> list[tuple[str, str, str, str]]:
    table = []
    for name in names:
        for line in (DATA / f"{name}.tsv").read_text().splitlines():
            if line and not line.startswith("#"):
                method, path, pool, key = line.split("\t")
                table.append((method, path, pool, key))
    return table


def explain_batch(lines: list[tuple[str, str]], *sets: str) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "matrix_stack.cli", "route", "explain", "--batch"]
    for item in sets:
        args += ["--set", item]
    stdin = "".join(f"{method}\t{path}\n" for method, path in lines)
    return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("tables", "sets"),
    [
        (("common", "mas", "msc4306-off", "matrixrtc-off"), ()),
        (("common", "nomas", "msc4306-off", "matrixrtc-off"), ("mas.enabled=false",)),
        (("common", "mas", "msc4306"), ("experimental.msc4306=true",)),
        (("common", "mas", "msc4306-off", "matrixrtc"), MATRIXRTC),
        (("common", "nomas", "matrixrtc"), ("mas.enabled=false", *MATRIXRTC)),
    ],
    ids=["defaults-mas-on", "mas-off", "msc4306-on", "matrixrtc-on", "matrixrtc-on-mas-off"],
)
def test_every_request_family_reaches_the_right_pool(tables: tuple[str, ...], sets: tuple[str, ...]) -> None:
    expected = rows(*tables)
    result = explain_batch([(method, path) for method, path, _, _ in expected], *sets)
    assert result.returncode == 0, result.stderr
    got = [tuple(line.split("\t")) for line in result.stdout.splitlines()]
    assert len(got) == len(expected)  # one answer per line, in input order
    wrong = [(want, have) for want, have in zip(expected, got, strict=True) if want != have]
    assert not wrong, "\n".join(f"want {w}\n got {h}" for w, h in wrong)


def test_single_request_and_bad_input() -> None:
    single = subprocess.run(
        [sys.executable, "-m", "matrix_stack.cli", "route", "explain", "GET",
         "/_matrix/client/v3/rooms/%21r%3Aexample.org/messages"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr
    assert single.stdout == "pool: room\nhash key: !r:example.org\n"
    bad = explain_batch([("GET", "no-slash")])
    assert bad.returncode == 2
    assert "expected METHOD<TAB>PATH" in bad.stderr
    invalid = explain_batch([("GET", "/")], "pools.typing.replicas=2")
    assert invalid.returncode == 2
    assert "a typing pool runs exactly one instance" in invalid.stderr


@pytest.fixture(scope="module")
def router() -> Iterator[Explainer]:
    with Explainer(
        [], ["router.debugHeader=true", "router.trustedHops=2", "router.maxUploadBytes=8388608"]
    ) as running:
        yield running


def test_federation_send_hashes_by_origin_then_client_address(router: Explainer) -> None:
    send = "/_matrix/federation/v1/send/1700000000000"
    signed = {
        "Authorization": 'X-Matrix origin="remote.org",destination="example.org",key="ed25519:a",sig="x"'
    }
    assert router.explain("PUT", send, signed).hash_key == "remote.org"
    unquoted = {"Authorization": 'X-Matrix origin=other.org,key="ed25519:a",sig="x"'}
    assert router.explain("PUT", send, unquoted).hash_key == "other.org"
    # Two trusted hops (ingress controller + load balancer): the client is the third from the right.
    forwarded = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7, 10.0.0.3"}
    assert router.explain("PUT", send, forwarded).hash_key == "203.0.113.7"


def test_hash_keys_cannot_be_forged_and_tokens_never_leak(router: Explainer) -> None:
    forged = router.explain(
        "GET", "/_matrix/client/v3/rooms/!a:b/messages", {"X-Matrix-Stack-Hash": "forged"}
    )
    assert forged.hash_key == "!a:b"
    assert (
        router.explain("GET", "/_matrix/client/v3/createRoom", {"X-Matrix-Stack-Hash": "x"}).hash_key == "-"
    )
    # A token the homeserver does not know (whoami refused) still sticks, by a tag that is not the token.
    first = router.explain("GET", "/_matrix/client/v3/sync", {"Authorization": "Bearer mct_secret_one"})
    again = router.explain("GET", "/_matrix/client/v3/sync?access_token=mct_secret_one")
    other = router.explain("GET", "/_matrix/client/v3/sync", {"Authorization": "Bearer mct_secret_two"})
    assert first.hash_key == again.hash_key != other.hash_key
    assert "secret" not in first.hash_key


def test_body_limits_and_debug_header(router: Explainer) -> None:
    with httpx.Client(base_url=router.envoy.url, timeout=30) as http:
        upload = http.post("/_matrix/media/v3/upload", content=b"x" * (8 * 1024 * 1024))
        assert upload.status_code == 200  # media takes up to router.maxUploadBytes
        assert upload.headers["x-matrix-stack-pool"] == "media_repository"
        for path in ("/_matrix/media/v3/upload", "/_matrix/client/v1/media/upload"):
            big = http.post(path, content=b"x" * (8 * 1024 * 1024 + 1))
            assert big.status_code == 413, path
            assert big.json()["errcode"] == "M_TOO_LARGE"
        # Other requests go on to Synapse, which enforces its own request size limit.
        assert http.post("/_matrix/client/v3/createRoom", content=b"x" * (9 * 1024 * 1024)).status_code == 200
        preflight = http.options("/_matrix/client/v3/sync", headers={"Origin": "https://app.example"})
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert "Authorization" in preflight.headers["access-control-allow-headers"]
        metrics_listener = router.envoy.config["static_resources"]["listeners"][1]
        metrics_port = metrics_listener["address"]["socket_address"]["port_value"]
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics")
        assert metrics.status_code == 200
        assert (
            "envoy_cluster_upstream_rq" in metrics.text
        )  # Prometheus text from the admin, never the admin itself
        assert httpx.get(f"http://127.0.0.1:{metrics_port}/quitquitquit").status_code == 404
        unknown = http.get("/not-matrix")
        assert unknown.status_code == 404
        assert unknown.json()["errcode"] == "M_UNRECOGNIZED"
