"""A service's ASGI app: its routes plus `/healthz`, `/readyz` and `/metrics`, in the kit's
middleware stack; its lifespan starts and stops the component; a handler's `WireError` is answered
with its response and storage failures 503, each in one place."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from matrix_stack.shared.kit import responses
from matrix_stack.shared.kit.body_limit import BodyLimitMiddleware
from matrix_stack.shared.kit.component import Component
from matrix_stack.shared.kit.errors import NotDurable, WireError
from matrix_stack.shared.kit.observe import ObserveMiddleware
from matrix_stack.shared.kit.request_id import RequestIdMiddleware

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
        await component.metrics.refresh()
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

    async def wire_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, WireError)
        return exc.response

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await component.start()  # StartupError: the kit's server exits 1 with its line
        try:
            yield
        finally:
            await component.stop()

    app = Starlette(
        routes=[*health_routes(component), *routes],
        middleware=[Middleware(BodyLimitMiddleware, max_body_bytes=component.settings.max_body_bytes)],
        exception_handlers={NotDurable: storage_failed, WireError: wire_error},
        lifespan=lifespan,
    )
    return RequestIdMiddleware(ObserveMiddleware(app, metrics=component.metrics))
