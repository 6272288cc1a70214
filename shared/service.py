"""The service kit: one Matrix client and outbox per process, an app factory with health, readiness
and metrics, request ids, body limits, access logs, and a runner with graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from matrix_stack.core import logs
from matrix_stack.core.matrix import MatrixClient, StartupError
from matrix_stack.core.outbox import Outbox, OutboxMetrics
from matrix_stack.core.settings import ServiceSettings

log = logging.getLogger(__name__)
access_log = logging.getLogger("matrix_stack.access")


class Metrics:
    """One registry per service, so several services (or tests) can share a process."""

    def __init__(self, namespace: str = "matrix_stack") -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests",
            "HTTP requests by route and status",
            ["route", "method", "status"],
            namespace=namespace,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration",
            ["route"],
            namespace=namespace,
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
        )
        self.outbox = OutboxMetrics(
            deliveries=Counter(
                "outbox_deliveries",
                "Delivery attempts by outcome (sent, retry, dead)",
                ["outcome"],
                namespace=namespace,
                registry=self.registry,
            ),
            depth=Gauge(
                "outbox_queue_depth",
                "Deliveries waiting to be sent",
                namespace=namespace,
                registry=self.registry,
            ),
            latency=Histogram(
                "outbox_delivery_latency_seconds",
                "From enqueue to the homeserver's answer",
                namespace=namespace,
                registry=self.registry,
                buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            ),
        )


@dataclass
class Service:
    """The Matrix side of a service: client, outbox and background tasks, started once."""

    settings: ServiceSettings
    client: MatrixClient
    outbox: Outbox
    metrics: Metrics
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _started: bool = False
    _ready_cache: tuple[float, bool] = (0.0, False)

    @classmethod
    def from_settings(cls, settings: ServiceSettings, metrics: Metrics | None = None) -> Service:
        metrics = metrics or Metrics()
        client = MatrixClient(
            settings.homeserver,
            settings.user_id,
            access_token=settings.access_token.get_secret_value() if settings.access_token else None,
            password=settings.password.get_secret_value() if settings.password else None,
            session_file=settings.session_file,
            device_name=settings.device_name,
            invite_allowlist=settings.invite_allowlist,
        )
        outbox = Outbox(
            settings.outbox_file, client, metrics.outbox, max_backoff=settings.backoff_max_seconds
        )
        return cls(settings, client, outbox, metrics)

    async def start(self) -> None:
        """Check the credentials, open the outbox and start delivering. Raises StartupError."""
        if self._started:
            return
        try:
            await self.client.start()
        except StartupError:
            await self.client.close()
            raise
        try:
            await self.outbox.open()
        except Exception as exc:
            await self.client.close()
            raise StartupError(f"cannot open the outbox at {self.outbox.path}: {exc}") from exc
        self.outbox.start()
        if self.client.invite_allowlist:
            self._tasks.append(asyncio.create_task(self.client.run_invite_loop(), name="invites"))
        self._started = True

    async def stop(self) -> None:
        """Stop background work, let in-flight sends finish, close everything."""
        if not self._started:
            return
        self._started = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.outbox.stop(self.settings.shutdown_drain_seconds)
        await self.client.close()

    async def ready(self) -> bool:
        """Homeserver reachable and outbox writable; cached briefly so probes stay cheap."""
        checked_at, answer = self._ready_cache
        if time.monotonic() - checked_at < 2.0:
            return answer
        answer = self._started and await self.client.reachable() and await self.outbox.writable()
        self._ready_cache = (time.monotonic(), answer)
        return answer


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _readyz(request: Request) -> Response:
    service = get_service(request)
    if await service.ready():
        return JSONResponse({"status": "ready", "outbox_depth": service.outbox.depth})
    return JSONResponse({"status": "not ready"}, status_code=503)


async def _metrics(request: Request) -> Response:
    return Response(generate_latest(get_service(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


# A random prefix per process and a counter: unique ids without reading the kernel's RNG per request.
_REQUEST_ID_PREFIX = uuid.uuid4().hex[:16]
_request_counter = itertools.count(1)


def _new_request_id() -> str:
    return f"{_REQUEST_ID_PREFIX}{next(_request_counter):08x}"


class _BodyTooLarge(Exception):
    pass


class Observe:
    """Pure ASGI middleware: request id, body size limit, metrics and one JSON access-log line."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else _new_request_id()
        token = logs.request_id.set(rid)
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge
            return message

        try:
            declared = headers.get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
                raise _BodyTooLarge
            await self.app(scope, limited_receive, send_wrapper)
        except _BodyTooLarge:
            if not response_started:
                await _send_too_large(send_wrapper, self.max_body_bytes)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(label, scope["method"], str(status)).inc()
            self.metrics.request_seconds.labels(label).observe(elapsed)
            if label not in ("/healthz", "/readyz", "/metrics"):
                access_log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": label,
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                    },
                )
            logs.request_id.reset(token)


async def _send_too_large(send: Send, limit: int) -> None:
    body = json.dumps({"error": "payload_too_large", "detail": f"request body over {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(service: Service, routes: Sequence[BaseRoute]) -> Starlette:
    """A service's ASGI app: its routes plus /healthz, /readyz and /metrics."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = Starlette(
        routes=[
            Route("/healthz", _healthz, methods=["GET", "HEAD"]),
            Route("/readyz", _readyz, methods=["GET", "HEAD"]),
            Route("/metrics", _metrics, methods=["GET"]),
            *routes,
        ],
        lifespan=lifespan,
    )
    app.state.service = service
    app.add_middleware(Observe, max_body_bytes=service.settings.max_body_bytes, metrics=service.metrics)
    return app


def error(status: int, code: str, detail: str) -> JSONResponse:
    """A JSON error body every service uses unless its protocol says otherwise."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


def plain(status: int, text: str) -> PlainTextResponse:
    return PlainTextResponse(text, status_code=status)


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after a graceful shutdown, so the process ends "killed".
    A drained, orderly stop should exit 0: handle the signals on the loop instead."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.handle_exit, signum, None)
        try:
            yield
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)


async def serve(service: Service, app: Starlette, **uvicorn_options: Any) -> int:
    """Start the service (failing with one line), then serve HTTP until SIGTERM/SIGINT."""
    settings = service.settings
    try:
        await service.start()
    except StartupError as exc:
        log.error(str(exc))
        return 1
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_drain_seconds) or None,
        **uvicorn_options,
    )
    server = _Server(config)
    try:
        await server.serve()
    finally:
        await service.stop()
    return 0


def main_for(settings_cls: type[ServiceSettings], routes: Any) -> None:
    """Entry point of a service: settings (exit 2 on a bad one), logs, start, serve."""
    import sys

    from matrix_stack.core.settings import load_or_exit

    settings = load_or_exit(settings_cls)
    logs.configure(settings.log_level, json_lines=settings.log_json, secrets=settings.secrets())
    service = Service.from_settings(settings)
    app = create_app(service, routes(settings))
    sys.exit(asyncio.run(serve(service, app)))
