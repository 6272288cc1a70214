"""sentry-webhook's routing and filters from its settings, without a process (the service over HTTP
with Sentry's signing, read back from Synapse: tests/integration/test_sentry_webhook.py)."""

from __future__ import annotations

from matrix_stack.services.sentry_webhook.app import choose_room, filtered_out
from matrix_stack.services.sentry_webhook.config import SentryWebhookSettings
from matrix_stack.services.sentry_webhook.format import Notice


def test_routing_and_filters() -> None:
    settings = SentryWebhookSettings(
        homeserver="https://hs",
        user_id="@a:hs",
        access_token="t",
        client_secret="s",
        default_room="!d:hs",
        project_rooms={"web": "!w:hs", "7": "!seven:hs"},
        metric_alert_rooms={"Latency": "!m:hs"},
        environments=["production"],
        levels=["error", "fatal"],
    )
    assert choose_room(settings, Notice("", "", projects=["web", "7"])) == "!w:hs"
    assert choose_room(settings, Notice("", "", projects=["other", "7"])) == "!seven:hs"
    assert choose_room(settings, Notice("", "", projects=["web"], rule="Latency")) == "!m:hs"
    assert choose_room(settings, Notice("", "", projects=["nope"])) == "!d:hs"
    assert (
        filtered_out(settings, Notice("", "", environment="staging", level="error")) == "environment staging"
    )
    assert (
        filtered_out(settings, Notice("", "", environment="production", level="warning")) == "level warning"
    )
    assert filtered_out(settings, Notice("", "", environment=None, level="fatal")) is None
