"""HTTP surface of `alertmanager-receiver`: `POST /alerts/{room}` (room id, alias or a name from
room-mapping). 200 once every message of the notification is durable in the outbox; 503 when they
cannot be stored, so Alertmanager retries; never a silent loss."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from matrix_stack.services.alertmanager_receiver.actions import AlertActions, alert_field
from matrix_stack.services.alertmanager_receiver.builtin import Rendered
from matrix_stack.services.alertmanager_receiver.config import AlertmanagerReceiverSettings
from matrix_stack.services.alertmanager_receiver.payload import Alert, Notification
from matrix_stack.services.alertmanager_receiver.silences import AlertmanagerClient
from matrix_stack.services.alertmanager_receiver.templates import Templates
from matrix_stack.shared.bridge.service import Service
from matrix_stack.shared.kit.auth import basic_matches
from matrix_stack.shared.kit.responses import validation_detail
from matrix_stack.shared.matrix import content
from matrix_stack.shared.matrix.html import escape
from matrix_stack.shared.outbox.engine import Outgoing, Relation

log = logging.getLogger(__name__)
PREFIX = "matrix_alertmanager_receiver"


@dataclass
class MetioMetrics:
    """metio's counters, same names and labels, so its dashboards keep working."""

    requests: Counter
    unauthorized: Counter
    invalid_payload: Counter
    alerts: Counter
    templating_success: Counter
    templating_failure: Counter

    @classmethod
    def on(cls, registry: CollectorRegistry) -> MetioMetrics:
        def counter(name: str, help_text: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"{PREFIX}_{name}", help_text, labels, registry=registry)

        return cls(
            counter("http_requests", "The total number of HTTP requests"),
            counter("unauthorized_http_requests", "The total number of unauthorized HTTP requests"),
            counter("invalid_payload", "The total number of invalid payloads"),
            counter("alerts", "The total number of alerts processed", ("room",)),
            counter("templating_success", "The total number of successful template renderings"),
            counter("templating_failure", "The total number of failed template renderings"),
        )


def _alert_key(alert: Alert) -> str:
    fingerprint = (
        alert.fingerprint
        or hashlib.sha256(json.dumps(alert.labels, sort_keys=True).encode()).hexdigest()[:16]
    )
    return f"alert:{fingerprint}"


def not_durable() -> Response:
    """Alertmanager retries a notification that got a 5xx."""
    return Response("could not store the messages; retry\n", status_code=503, media_type="text/plain")


def routes(settings: AlertmanagerReceiverSettings, service: Service) -> list[BaseRoute]:
    config = settings.file
    templating, receiver = config.templating, config.receiver
    templates = Templates(templating)
    prefix = "/" + config.http.alerts_path_prefix.strip("/")
    count = MetioMetrics.on(service.metrics.registry)

    def render(name: str, make: Callable[[], Rendered], fallback: str) -> Rendered:
        try:
            rendered = make()
        except Exception as exc:  # a template error must not lose the alert
            count.templating_failure.inc()
            log.warning(
                "template failed; sending a plain fallback", extra={"template": name, "error": str(exc)}
            )
            return Rendered(f"<p>{escape(fallback)}</p>")
        count.templating_success.inc()
        return rendered

    actions = _actions(settings, service)

    def message(rendered: Rendered, ping: bool, key: str, labels: dict[str, str]) -> content.Content:
        body = content.message(rendered.text, rendered.html, msgtype=receiver.msgtype, mention_room=ping,
                               sanitized=rendered.sanitized)  # fmt: skip
        if actions is not None:  # what a reaction on it needs to silence it
            body.update(alert_field(key, labels))
        return body

    async def related(
        key: str, room: str, body: content.Content, resolved: bool
    ) -> tuple[list[Outgoing], bool]:
        """The messages for one keyed notification, and whether it starts a new root."""
        if receiver.on_resolve == "new":  # every notification a message of its own: no root to look up
            return [Outgoing(room, body)], False
        found = await service.outbox.root(key, room)
        # A root resolved earlier still takes a repeated resolve; a new firing starts a new root.
        root = found.delivery_id if found is not None and (resolved or not found.resolved) else None
        if root is None:
            return [Outgoing(room, body)], not resolved
        out = []
        if receiver.on_resolve in ("edit", "both"):
            out.append(Outgoing(room, body, relation=Relation("replace", delivery_id=root)))
        if receiver.on_resolve in ("thread", "both"):
            out.append(Outgoing(room, body, relation=Relation("thread", delivery_id=root)))
        return out, False

    async def receive(request: Request) -> Response:
        count.requests.inc()
        password = settings.effective_basic_password
        if password is not None and not basic_matches(
            request, config.http.basic_username, password.get_secret_value()
        ):
            count.unauthorized.inc()
            return Response(status_code=401)
        try:
            notification = Notification.model_validate_json(await request.body())
        except ValidationError as exc:
            count.invalid_payload.inc()
            return Response(
                f"invalid payload: {validation_detail(exc)}\n", status_code=400, media_type="text/plain"
            )
        name = request.path_params["room"]
        room = config.matrix.room_mapping.get(name, name)
        if not room.startswith(("!", "#")):
            return Response(f"unknown room {name!r}: not a room id, alias or room-mapping name\n",
                            status_code=404, media_type="text/plain")  # fmt: skip
        count.alerts.labels(room=name).inc(len(notification.alerts))
        ping_levels = set(receiver.ping_room_severities)
        outgoing: list[Outgoing] = []

        resolved_keys: list[str] = []

        async def add(
            key: str, rendered: Rendered, ping: bool, resolved: bool, labels: dict[str, str]
        ) -> None:
            messages, starts = await related(key, room, message(rendered, ping, key, labels), resolved)
            if resolved:
                resolved_keys.append(key)
            # The root and its resolution are recorded with the messages, in one transaction.
            first = replace(
                messages[0], root_key=key if starts else None, resolves_key=key if resolved else None
            )
            outgoing.extend([first, *messages[1:]])

        if receiver.message_mode == "group":
            firing = [a for a in notification.alerts if a.status == "firing"]
            alertnames = " ".join(notification.groupLabels.values())
            rendered = render("group-template", lambda: templates.group(notification),
                              f"{notification.status.upper()} {alertnames}")  # fmt: skip
            await add(
                f"group:{notification.groupKey or alertnames}",
                rendered,
                any(a.labels.get("severity") in ping_levels for a in firing),
                notification.status == "resolved",
                dict(notification.commonLabels),
            )
        else:
            for alert in notification.alerts:
                resolved = alert.status == "resolved"
                template = "resolved-template" if resolved else "firing-template"
                fallback = f"{alert.status.upper()} {alert.labels.get('alertname', '')}"
                rendered = render(template, partial(templates.alert, notification, alert), fallback)
                await add(
                    _alert_key(alert),
                    rendered,
                    not resolved and alert.labels.get("severity") in ping_levels,
                    resolved,
                    dict(alert.labels),
                )
        await service.outbox.enqueue_many(outgoing)
        if actions is not None and resolved_keys:  # silences "until resolved" end now (not on this request)
            _background(actions.resolved(resolved_keys))
        return Response(status_code=200)

    async def redirect(request: Request) -> Response:
        return RedirectResponse(prefix + "/", status_code=301)

    return [
        Route(prefix, redirect, methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
        Route(prefix + "/{room:path}", receive, methods=["POST"]),
    ]


_tasks: set[asyncio.Task[None]] = set()


def _background(work: Coroutine[Any, Any, None]) -> None:
    task = asyncio.create_task(work)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def _actions(settings: AlertmanagerReceiverSettings, service: Service) -> AlertActions | None:
    """Acting from the room, when an Alertmanager is configured and the bot follows its rooms."""
    config = settings.file.actions
    if not config.enabled or service.crypto is None or config.alertmanager_url is None:
        return None
    password = config.alertmanager_password or settings.alertmanager_password
    token = config.alertmanager_bearer_token or settings.alertmanager_bearer_token
    client = AlertmanagerClient(
        config.alertmanager_url,
        username=config.alertmanager_username,
        password=password.get_secret_value() if password else None,
        bearer_token=token.get_secret_value() if token else None,
    )
    actions = AlertActions(config, service, client)
    service.crypto.listener = actions
    return actions
