"""The one table of the services: each one's package, console script, settings prefix, chart and kind.

Whatever needs every service (the tests over all of them, the charts' schema generator, the local
stack) reads this table instead of typing its own list; tests/unit/test_catalog.py holds it against
pyproject.toml, charts/ and compose.yaml, both ways. It names the services, it imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# bridge: a Matrix bot with its outbox (`matrix_stack.shared.bridge`), posting what it receives;
# component: a long-running service that is not a bridge; job: runs to completion (a CronJob).
Kind = Literal["bridge", "component", "job"]


@dataclass(frozen=True)
class ServiceEntry:
    package: str  # matrix_stack.services.<package>
    script: str  # its console script, also its Compose service
    env_prefix: str  # its settings' environment prefix
    chart: str | None  # charts/<chart>, named as operators know it; None: no chart
    kind: Kind

    @property
    def module(self) -> str:
        return f"matrix_stack.services.{self.package}"


SERVICES: tuple[ServiceEntry, ...] = (
    ServiceEntry("notify", "notify", "NOTIFY_", None, "bridge"),
    ServiceEntry("slack_webhook", "slack-webhook", "SLACK_WEBHOOK_", "webhook", "bridge"),
    ServiceEntry("sentry_webhook", "sentry-webhook", "SENTRY_WEBHOOK_", "sentry-webhook", "bridge"),
    ServiceEntry(
        "alertmanager_receiver",
        "alertmanager-receiver",
        "ALERTMANAGER_RECEIVER_",
        "matrix-alertmanager-receiver",
        "bridge",
    ),
    ServiceEntry("ldap_proxy", "ldap-proxy", "LDAP_PROXY_", "ldap", "component"),
    ServiceEntry("livekit_jwt", "livekit-jwt", "LIVEKIT_JWT_", "livekit-jwt", "component"),
    ServiceEntry("compress_state", "compress-state", "COMPRESS_STATE_", "compress-state", "job"),
)


def named(script: str) -> ServiceEntry:
    """The service whose console script this is."""
    for service in SERVICES:
        if service.script == script:
            return service
    raise KeyError(script)


def charts(*kinds: Kind) -> list[str]:
    """The charts of the services of these kinds (of every kind if none is given), in table order."""
    return [s.chart for s in SERVICES if s.chart is not None and (not kinds or s.kind in kinds)]
