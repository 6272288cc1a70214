"""A service's ASGI app: its routes plus `/healthz`, `/readyz` and `/metrics`, in the kit's
middleware stack, with storage failures answered 503 in one place."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from matrix_stack.core import responses
from matrix_stack.core.body_limit import BodyLimitMiddleware
from matrix_stack.core.component import Component
from matrix_stack.core.durability import NotDurable
from matrix_stack.core.observe import ObserveMiddleware
from matrix_stack.core.request_id import RequestIdMiddleware

log = logging.getLogger(__name__)
# A service's own answer for a message the outbox could not commit.
NotDurableResponse = Callable[[], Response]


def health_routes(component: Component) -> list[BaseRoute]:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if await component.ready():
            return JSONResponse({"status": "ready", **component.readiness()})
        return JSONResponse({"status": "not ready", **component.readiness()}, status_code=503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(component.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


def create_app(
    component: Component,
    routes: Sequence[BaseRoute],
    *,
    not_durable: NotDurableResponse = responses.not_durable,
) -> ASGIApp:
    """Outside in: request id, metrics and access log, Starlette's error handling, the body limit,
    the routes. `not_durable` is the service's own 503 for a message the outbox could not commit."""

    async def storage_failed(request: Request, exc: Exception) -> Response:
        log.error("could not store the message; answered 503", extra={"error": str(exc)})
        return not_durable()

    app = Starlette(
        routes=[*health_routes(component), *routes],
        middleware=[Middleware(BodyLimitMiddleware, max_body_bytes=component.settings.max_body_bytes)],
        exception_handlers={NotDurable: storage_failed},
    )
    return RequestIdMiddleware(ObserveMiddleware(app, metrics=component.metrics))
