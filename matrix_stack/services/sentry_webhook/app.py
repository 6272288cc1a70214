"""HTTP surface of `sentry-webhook`: `POST /sentry` (Integration Platform, signed) and
`POST /legacy/{secret}` (the legacy WebHooks plugin). Sentry waits about a second: verify, store in
the outbox, answer; delivery happens in the background."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from matrix_stack.services.sentry_webhook import format as fmt
from matrix_stack.services.sentry_webhook.actions import actions_for, issue_field
from matrix_stack.services.sentry_webhook.config import SentryWebhookSettings
from matrix_stack.shared.bridge.service import Service
from matrix_stack.shared.kit.responses import error, invalid_payload
from matrix_stack.shared.matrix import content

log = logging.getLogger(__name__)
ARCHIVE_COLLAPSE_SECONDS = 120.0  # one Sentry version sends issue.ignored and issue.archived for one change


class Envelope(BaseModel):
    """The Integration Platform envelope; `data` is read leniently by the formatters."""

    model_config = ConfigDict(extra="allow")

    action: str
    data: dict[str, Any] = {}
    actor: dict[str, Any] = {}


def signature_valid(secret: str, raw: bytes, presented: str) -> bool:
    """Lowercase hex HMAC-SHA256 of the raw body, compared in constant time."""
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), presented.strip().lower().encode())


def not_durable() -> JSONResponse:
    return error(503, "not_durable", "the message could not be stored; Sentry will retry")


def ok(**detail: Any) -> JSONResponse:
    return JSONResponse({"ok": True, **detail})


def accepted(reason: str) -> JSONResponse:
    """Known to be of no interest (or unknown): acknowledged so Sentry keeps the integration green."""
    return JSONResponse({"ok": True, "ignored": reason}, status_code=202)


def choose_room(settings: SentryWebhookSettings, notice: fmt.Notice) -> str | None:
    if notice.rule and notice.rule in settings.metric_alert_rooms:
        return settings.metric_alert_rooms[notice.rule]
    for project in notice.projects:
        if project in settings.project_rooms:
            return settings.project_rooms[project]
    return settings.default_room


def filtered_out(settings: SentryWebhookSettings, notice: fmt.Notice) -> str | None:
    if settings.environments and notice.environment and notice.environment not in settings.environments:
        return f"environment {notice.environment}"
    if settings.levels and notice.level and notice.level not in settings.levels:
        return f"level {notice.level}"
    return None


def notice_for(settings: SentryWebhookSettings, resource: str, envelope: Envelope) -> fmt.Notice:
    data, actor, action = envelope.data, envelope.actor, envelope.action
    if resource == "event_alert" and action == "triggered":
        return fmt.event_notice(
            fmt.mapping(data.get("event")), "Alert", settings.tags, fmt.text(data.get("triggered_rule"))
        )
    if resource == "error" and action == "created":
        if not settings.post_errors:
            raise fmt.Ignored("error.created (SENTRY_WEBHOOK_POST_ERRORS is off)")
        return fmt.event_notice(fmt.mapping(data.get("error")), "Error", settings.tags)
    if resource == "issue":
        return fmt.issue_notice(action, data, actor, settings.sentry_url)
    if resource == "metric_alert":
        return fmt.metric_alert_notice(action, data)
    if resource == "comment":
        return fmt.comment_notice(action, data, actor, settings.sentry_url)
    raise fmt.Ignored(f"{resource or '(no resource)'}.{action}")


def routes(settings: SentryWebhookSettings, service: Service) -> list[BaseRoute]:
    recent_archives: dict[str, float] = {}
    actions = actions_for(settings, service)

    async def deliver(request: Request, notice: fmt.Notice, delivery_id: str | None) -> Response:
        reason = filtered_out(settings, notice)
        if reason:
            return ok(filtered=reason)
        room = choose_room(settings, notice)
        if room is None:
            log.info("no room for this project", extra={"projects": notice.projects})
            return accepted(f"no room for project {', '.join(notice.projects) or '(unknown)'}")
        message = content.message(notice.body, notice.html, msgtype=settings.msgtype)
        if actions is not None and notice.starts_thread and notice.issue_id:  # what acting on it needs
            message.update(issue_field(notice))
        key = notice.issue_id if settings.threads and notice.issue_id else None
        # The first message of an issue becomes its thread's root and later ones go into that thread,
        # decided in the transaction that stores them (whichever replica takes them).
        stored = await service.outbox.enqueue(
            room, message, delivery_id=delivery_id, root_key=key,
            relate_to_root=None if notice.starts_thread else "thread",
            resolves_key=key if notice.resolves else None,
        )  # fmt: skip
        return ok(delivery_id=stored)

    async def sentry(request: Request) -> Response:
        if settings.client_secret is None:
            return error(404, "not_configured", "set SENTRY_WEBHOOK_CLIENT_SECRET to receive Sentry webhooks")
        raw = await request.body()
        presented = request.headers.get("sentry-hook-signature") or request.headers.get(
            "sentry-app-signature"
        )
        if not presented or not signature_valid(settings.client_secret.get_secret_value(), raw, presented):
            return error(401, "invalid_signature", "Sentry-Hook-Signature does not match the body")
        if not raw.strip():
            return ok(detail="empty body")
        try:
            envelope = Envelope.model_validate(orjson.loads(raw))  # its errors are json.JSONDecodeErrors
        except json.JSONDecodeError as exc:
            return error(400, "invalid_json", f"line {exc.lineno} column {exc.colno}: {exc.msg}")
        except ValidationError as exc:
            return invalid_payload(exc)
        resource = request.headers.get("sentry-hook-resource", "")
        request_id = request.headers.get("request-id", "")[:128]
        try:
            notice = notice_for(settings, resource, envelope)
        except fmt.Ignored as exc:
            log.info(
                "acknowledged without a message", extra={"resource": resource, "action": envelope.action}
            )
            return accepted(str(exc))
        if resource == "issue" and envelope.action in ("archived", "ignored") and notice.issue_id:
            now = time.monotonic()
            for key in [k for k, seen in recent_archives.items() if now - seen > ARCHIVE_COLLAPSE_SECONDS]:
                del recent_archives[key]
            if notice.issue_id in recent_archives:
                return ok(duplicate="archived and ignored for the same change")
            recent_archives[notice.issue_id] = now
        return await deliver(request, notice, f"sentry:{request_id}" if request_id else None)

    async def legacy(request: Request) -> Response:
        secret = settings.legacy_secret
        presented = request.path_params.get("secret") or request.query_params.get("secret", "")
        if secret is None or not hmac.compare_digest(secret.get_secret_value().encode(), presented.encode()):
            return error(401, "invalid_secret", "wrong or missing secret")
        try:
            payload = orjson.loads(await request.body())
        except json.JSONDecodeError as exc:
            return error(400, "invalid_json", f"line {exc.lineno} column {exc.colno}: {exc.msg}")
        if not isinstance(payload, dict):
            return error(400, "invalid_payload", "the body must be a JSON object")
        return await deliver(request, fmt.legacy_notice(payload, settings.tags), None)

    return [
        Route("/sentry", sentry, methods=["POST"]),
        Route("/legacy", legacy, methods=["POST"]),
        Route("/legacy/{secret}", legacy, methods=["POST"]),
    ]
