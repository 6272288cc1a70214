"""Worker loss and rolling restarts through the real router, in the session's worker cluster
(devstack/router_faults.py): under a steady load of the realistic request mix, one instance of a
hashed pool (room), of a least-request pool (client_reader) and of sync is killed (-9), then each is
stopped as a rolling restart stops a pod. Counts only: the times are `make bench BENCH=router-faults`.
The cluster is whole and healthy again at the end, for the tests after."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack import router_faults
from devstack.mas import MasStandIn
from devstack.synapse_cluster import Cluster
from matrix_stack.shared.route import envoy as local_envoy
from tests.charts import helm
from tests.charts.synapse_chart import CI, ONE_EACH

RATE = 15.0  # requests/s of the mix (fewer when the cluster is slower), besides one long poll per user


@pytest.fixture(scope="module")
def fault_router(
    cluster: Cluster,
    mas: MasStandIn,
    router: local_envoy.LocalEnvoy,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[local_envoy.LocalEnvoy]:
    """The chart's router (the cluster's values), its own, so the faults leave the session's router
    alone; afterwards every process runs again and both routers have them all, healthy."""
    documents = helm.template("synapse", CI / "default-values.yaml", values=ONE_EACH)
    fault_router = router_faults.start_router(
        documents, cluster, mas, tmp_path_factory.mktemp("fault-router")
    )
    yield fault_router
    for process in cluster.processes:
        if process.process is None or process.process.poll() is not None:
            process.launch(cluster.directory)
    router_faults.wait_whole(fault_router, cluster)
    router_faults.wait_whole(router, cluster)
    fault_router.stop()


@pytest.fixture(scope="module")
def world(fault_router: local_envoy.LocalEnvoy, mas: MasStandIn) -> router_faults.World:
    return router_faults.prepare(fault_router.url, mas)


@pytest.mark.timeout(600)  # the first also waits for the session cluster to boot
@pytest.mark.parametrize("how", ["kill", "stop"])
@pytest.mark.parametrize("pool", ["room", "client_reader", "sync"])
async def test_an_instance_lost_loses_nothing_safe(
    cluster: Cluster, fault_router: local_envoy.LocalEnvoy, world: router_faults.World, pool: str, how: str
) -> None:
    """Killed: only requests in flight on it that are unsafe to repeat may fail. Stopped as a rolling
    restart stops a pod: nothing fails. Either way every hashed key is back home once it is."""
    router_faults.wait_whole(fault_router, cluster)
    outcome = await router_faults.fault(
        fault_router, cluster, world, cluster.by_pool(pool), how=how, rate=RATE
    )
    print(outcome.line())
    assert outcome.sent >= 50, outcome.line()  # the load ran through the fault
    assert outcome.unexpected == 0, outcome.line()
    if how == "stop":
        assert outcome.failures == {}, outcome.line()
    assert outcome.moved == 0, outcome.line()
    if pool in ("room", "sync"):
        assert outcome.keys > 0, outcome.line()
