"""Run every benchmark, or the ones named: `python -m bench [outbox] [slack] [sentry] [alertmanager] [synapse-cluster] [router] [ldap] [livekit] [compress-state] [router-faults] [e2ee]`."""

from __future__ import annotations

import asyncio
import sys

from bench import (
    alertmanager_bench,
    cluster_bench,
    compress_state_bench,
    e2ee_bench,
    ldap_bench,
    livekit_bench,
    outbox_bench,
    router_bench,
    router_faults_bench,
    sentry_bench,
    slack_bench,
)

BENCHMARKS = {
    "outbox": outbox_bench.main,
    "slack": slack_bench.main,
    "sentry": sentry_bench.main,
    "alertmanager": alertmanager_bench.main,
    "synapse-cluster": cluster_bench.main,
    "router": router_bench.main,
    "ldap": ldap_bench.main,
    "livekit": livekit_bench.main,
    "compress-state": compress_state_bench.main,
    "router-faults": router_faults_bench.main,
    "e2ee": e2ee_bench.main,
}


def main() -> None:
    names = sys.argv[1:] or list(BENCHMARKS)
    for name in names:
        if name not in BENCHMARKS:
            raise SystemExit(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
        asyncio.run(BENCHMARKS[name]())


if __name__ == "__main__":
    main()
