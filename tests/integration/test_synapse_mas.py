"""The synapse chart's Synapse side of MAS in the booted worker cluster: tokens introspected with
the shared secret on main and workers, login belonging to MAS, the MAS API refusing anyone else."""

from __future__ import annotations

import httpx

from devstack.mas import MasStandIn
from devstack.synapse_cluster import Cluster
from tests.integration.conftest import _login


def test_authentication_is_delegated_to_mas(cluster: Cluster, mas: MasStandIn) -> None:
    """The chart's Synapse side of MAS: tokens introspected with the shared secret from the chart's
    Secret file, on main and on workers; login belongs to MAS; the MAS API refuses anyone else."""
    main = f"http://127.0.0.1:{cluster.by_pool('main').port(8008)}"
    sync = f"http://127.0.0.1:{cluster.by_pool('sync').port(8008)}"
    with httpx.Client(timeout=30) as http:
        carol, auth = _login(http, mas, "carol")
        for base in (main, sync):
            whoami = http.get(f"{base}/_matrix/client/v3/account/whoami", headers=auth)
            assert whoami.status_code == 200, (base, whoami.text)
            assert whoami.json()["user_id"] == carol
        # Synapse registers no login or logout servlets under MAS: those requests must reach MAS.
        assert http.get(f"{main}/_matrix/client/v3/login").status_code == 404
        assert http.post(f"{main}/_matrix/client/v3/logout/all", headers=auth).status_code == 404
        # Synapse's API for MAS accepts only the shared secret.
        wrong = http.post(f"{main}/_synapse/mas/provision_user", json={"localpart": "mallory"},
                          headers={"Authorization": "Bearer not-the-secret"})  # fmt: skip
        assert wrong.status_code == 403
        # Logging out at MAS deletes the device in Synapse: the token stops working there.
        assert http.post(f"{mas.url}_matrix/client/v3/logout", headers=auth).status_code == 200
        assert http.get(f"{main}/_matrix/client/v3/account/whoami", headers=auth).status_code == 401
