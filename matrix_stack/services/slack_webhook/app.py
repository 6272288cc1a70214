"""HTTP surface of `slack-webhook`: `POST /hooks/{hook_id}` and `POST /services/{a}/{b}/{hook_id}`,
answering exactly as Slack does (`200 ok` as text/html, or an error code as the body)."""

from __future__ import annotations

import hmac
import json
import logging
import math
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from matrix_stack.services.slack_webhook.config import Hook, SlackWebhookSettings
from matrix_stack.services.slack_webhook.mrkdwn import Options
from matrix_stack.services.slack_webhook.render import NoText, render
from matrix_stack.shared.bridge.service import Service
from matrix_stack.shared.kit.auth import bearer_matches
from matrix_stack.shared.matrix import content

log = logging.getLogger(__name__)
MAX_ATTACHMENTS = 100


class SlackPayload(BaseModel):
    """The top level of an incoming-webhook body; everything below it is rendered leniently."""

    model_config = ConfigDict(extra="allow")

    text: str | None = None
    blocks: list[Any] | None = None
    attachments: list[Any] | None = Field(default=None, max_length=MAX_ATTACHMENTS)
    mrkdwn: bool | None = None
    username: str | None = None
    icon_emoji: str | None = None
    unfurl_links: bool | None = None
    unfurl_media: bool | None = None


def slack(status: int, code: str, headers: dict[str, str] | None = None) -> Response:
    """Slack answers with a bare code as text/html (Grafana and Alertmanager key on this)."""
    return Response(code, status_code=status, media_type="text/html", headers=headers)


def not_durable() -> Response:
    """Slack's own answer when it cannot take a message: senders retry it."""
    return slack(503, "rollup_error")


@dataclass
class Bucket:
    """Token bucket for one hook's rate limit."""

    rate: float
    burst: int
    tokens: float
    updated: float

    def take(self) -> float:
        """0 when allowed, else the seconds until a token is available."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


def find_hook(hooks: list[Hook], presented: str) -> Hook | None:
    """Compare against every hook in constant time per hook, without stopping at a match."""
    found = None
    candidate = presented.encode()
    for hook in hooks:
        if hmac.compare_digest(hook.id.get_secret_value().encode(), candidate):
            found = hook
    return found


class BadPayload(ValueError):
    pass


def parse_body(raw: bytes, content_type: str) -> dict[str, Any]:
    """JSON, a form with `payload=<json>`, or JSON sent as text/plain or without a type."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadPayload("body is not UTF-8") from exc
    media = content_type.split(";")[0].strip().lower()
    if media == "application/x-www-form-urlencoded":
        fields = parse_qs(text, keep_blank_values=True)
        if "payload" not in fields:
            raise BadPayload("form body without a payload field")
        text = fields["payload"][0]
    try:
        parsed = orjson.loads(text)  # its errors are json.JSONDecodeErrors
    except json.JSONDecodeError as exc:
        raise BadPayload(f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(parsed, dict):
        raise BadPayload("the payload must be a JSON object")
    return parsed


def routes(settings: SlackWebhookSettings, service: Service) -> list[BaseRoute]:
    buckets = {
        hook.id.get_secret_value(): Bucket(hook.rate_limit, hook.burst, hook.burst, time.monotonic())
        for hook in settings.hooks
        if hook.rate_limit
    }
    options = {  # per hook, made once: the settings do not change while serving
        hook.id.get_secret_value(): Options(
            users={**settings.users, **hook.users}, room_mentions=hook.room_mentions
        )
        for hook in settings.hooks
    }

    async def receive(request: Request) -> Response:
        hook = find_hook(settings.hooks, request.path_params["hook_id"])
        if hook is None:
            return slack(404, "no_service")
        if hook.bearer_token is not None and not bearer_matches(
            request, hook.bearer_token.get_secret_value()
        ):
            return slack(403, "invalid_token")
        bucket = buckets.get(hook.id.get_secret_value())
        if bucket is not None and (wait := bucket.take()):
            return slack(429, "rate_limited", {"Retry-After": str(max(1, math.ceil(wait)))})
        try:
            parsed = parse_body(await request.body(), request.headers.get("content-type", ""))
            payload = SlackPayload.model_validate(parsed)
        except (BadPayload, ValidationError) as exc:
            log.info("invalid payload", extra={"hook": hook.label, "reason": str(exc).splitlines()[0]})
            if isinstance(exc, ValidationError) and any(e["type"] == "too_long" for e in exc.errors()):
                return slack(400, "too_many_attachments")
            return slack(400, "invalid_payload")
        try:
            message = render(
                payload.model_dump(exclude_none=True),
                options[hook.id.get_secret_value()],
                prefix=hook.display_name,
            )
        except NoText:
            return slack(400, "no_text")
        event = content.message(
            message.body,
            message.html,
            msgtype=hook.msgtype,
            mention_users=message.mentions,
            mention_room=message.room_mention,
        )
        if not message.link_previews:
            event["com.beeper.linkpreviews"] = []
        await service.outbox.enqueue(hook.room, event)
        return slack(200, "ok")

    return [
        Route("/hooks/{hook_id}", receive, methods=["POST"]),
        Route("/services/{team}/{bot}/{hook_id}", receive, methods=["POST"]),
    ]
