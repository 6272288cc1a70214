"""What every request leaves behind: its count and duration by route and status, and one JSON
access-log line (health, readiness and metrics probes are counted, not logged)."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from matrix_stack.shared.kit.metrics import HttpMetrics

access_log = logging.getLogger("matrix_stack.access")
error_log = logging.getLogger("matrix_stack.errors")
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app fails before answering
        answered = False

        async def send_watched(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            await send(message)

        try:
            await self.app(scope, receive, send_watched)
        except Exception:
            # Logged here, inside the request's id; once Starlette has answered 500 the connection
            # stays usable (re-raised, the server would log it without the id and close it).
            route = getattr(scope.get("route"), "path", "unmatched")  # never the path: it may hold a secret
            error_log.exception("unhandled error", extra={"method": scope["method"], "route": route})
            if not answered:
                raise
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(route, scope["method"], str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(elapsed)
            if route not in QUIET_ROUTES:
                access_log.info(
                    "request",
                    extra={"method": scope["method"], "route": route, "status": status,
                           "ms": round(elapsed * 1000, 2)},
                )  # fmt: skip
