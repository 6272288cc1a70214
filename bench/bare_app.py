"""The ceiling for this stack: a starlette endpoint that only answers 200, served the same way."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def receive(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"ok": True})


app = Starlette(
    routes=[Route("/sentry", receive, methods=["POST"]), Route("/alerts/{room}", receive, methods=["POST"])]
)
