"""HTTP surface of `notify`: POST /notify[/{room}], GET /deliveries/{id}."""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from matrix_stack.services.notify.config import NotifySettings
from matrix_stack.shared.bridge.service import Service
from matrix_stack.shared.kit.auth import bearer_matches
from matrix_stack.shared.kit.responses import error, invalid_payload
from matrix_stack.shared.matrix import content


class Notification(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, max_length=60_000)
    html: str | None = Field(default=None, max_length=60_000)
    msgtype: Literal["m.notice", "m.text"] | None = None

    @model_validator(mode="after")
    def _something(self) -> Notification:
        if not (self.text or self.html):
            raise ValueError("give `text` or `html`")
        return self


def _parse(raw: bytes, content_type: str) -> Notification:
    media = content_type.split(";")[0].strip().lower()
    text = raw.decode("utf-8")
    if media in ("", "text/plain"):
        return Notification(text=text)
    if media == "application/json":
        return Notification.model_validate(json.loads(text))
    raise ValueError(f"unsupported content type {media!r}: send text/plain or application/json")


def routes(settings: NotifySettings, service: Service) -> list[BaseRoute]:
    token = settings.token.get_secret_value()

    async def notify(request: Request) -> Response:
        if not bearer_matches(request, token):
            return error(401, "unauthorized", "missing or wrong bearer token")
        room = request.path_params.get("room") or settings.default_room
        if room is None:
            return error(404, "no_room", "no room in the path and no default room configured")
        if settings.rooms and room not in settings.rooms and room != settings.default_room:
            return error(403, "room_not_allowed", f"{room} is not in NOTIFY_ROOMS")
        try:
            parsed = _parse(await request.body(), request.headers.get("content-type", ""))
        except UnicodeDecodeError:
            return error(400, "invalid_encoding", "the body must be UTF-8")
        except json.JSONDecodeError as exc:
            return error(400, "invalid_json", f"line {exc.lineno} column {exc.colno}: {exc.msg}")
        except ValidationError as exc:
            return invalid_payload(exc)
        except ValueError as exc:
            return error(415, "unsupported_media_type", str(exc))
        message = content.message(parsed.text, parsed.html, msgtype=parsed.msgtype or settings.msgtype)
        delivery_id = await service.outbox.enqueue(room, message)
        return JSONResponse({"delivery_id": delivery_id}, status_code=202)

    async def delivery(request: Request) -> Response:
        if not bearer_matches(request, token):
            return error(401, "unauthorized", "missing or wrong bearer token")
        status = await service.outbox.status(request.path_params["delivery_id"])
        if status is None:
            return error(404, "unknown_delivery", "no such delivery")
        return JSONResponse(
            {
                "id": status.id,
                "room": status.room,
                "state": status.state,
                "attempts": status.attempts,
                "event_id": status.event_id,
                "error": status.error,
            }
        )

    return [
        Route("/notify", notify, methods=["POST"]),
        Route("/notify/{room}", notify, methods=["POST"]),
        Route("/deliveries/{delivery_id}", delivery, methods=["GET"]),
    ]
