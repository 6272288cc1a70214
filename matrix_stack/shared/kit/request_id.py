"""Request ids: the caller's `X-Request-Id` (or a new one) on every response and in every log line.

Outermost in the stack, outside Starlette's error middleware, so a 500 carries the id too.
"""

from __future__ import annotations

import itertools
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from matrix_stack.shared.kit import logs

MAX_LENGTH = 128
# A random prefix per process and a counter: unique ids without reading the kernel's RNG per request.
_PREFIX = uuid.uuid4().hex[:16]
_counter = itertools.count(1)


def new_request_id() -> str:
    return f"{_PREFIX}{next(_counter):08x}"


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if 0 < len(incoming) <= MAX_LENGTH and incoming.isprintable() else new_request_id()
        token = logs.request_id.set(rid)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logs.request_id.reset(token)
