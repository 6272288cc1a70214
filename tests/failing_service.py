"""A service on the kit with one handler that fails (`GET /fail`), for what a 500 carries."""

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from matrix_stack.services.notify.config import NotifySettings
from matrix_stack.shared.bridge.service import Service
from matrix_stack.shared.kit.server import main_for


def routes(settings: NotifySettings, service: Service) -> list[BaseRoute]:
    async def fail(request: Request) -> Response:
        raise RuntimeError("a bug in a handler")

    return [Route("/fail", fail, methods=["GET"])]


if __name__ == "__main__":
    main_for(NotifySettings, Service.from_settings, routes)
