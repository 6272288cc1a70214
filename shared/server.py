"""Running a service: settings (exit 2 on a bad one), logs, start (exit 1 with one line), serve HTTP
until SIGTERM/SIGINT, drain, stop. The one owner of a service's start and stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import uvicorn
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from matrix_stack.core import logs, responses
from matrix_stack.core.app import NotDurableResponse, create_app
from matrix_stack.core.component import Component, StartupError
from matrix_stack.core.settings import ServiceSettings, load_or_exit

if TYPE_CHECKING:  # the Matrix client (nio) is imported only by the bridges that run one
    from matrix_stack.core.service import Service

log = logging.getLogger(__name__)
S = TypeVar("S", bound=ServiceSettings)
RouteBuilder = Callable[[S, "Service"], Sequence[BaseRoute]]


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


async def serve(component: Component, app: ASGIApp, **uvicorn_options: Any) -> int:
    """Start the component (failing with one line), then serve HTTP until SIGTERM/SIGINT."""
    settings = component.settings
    try:
        await component.start()
    except StartupError as exc:
        log.error(str(exc))
        return 1
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="off",  # the service is started and stopped here, not by the app
        log_config=None,
        access_log=False,
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_drain_seconds) or None,
        **uvicorn_options,
    )
    try:
        await _Server(config).serve()
    finally:
        await component.stop()
    return 0


def run(
    settings: S, routes: RouteBuilder[S], *, not_durable: NotDurableResponse = responses.not_durable
) -> None:
    """Serve a service whose settings are loaded; exits with serve's status."""
    logs.configure(settings.log_level, json_lines=settings.log_json, secrets=settings.secrets())
    from matrix_stack.core.service import Service

    service = Service.from_settings(settings)
    try:
        app = create_app(service, routes(settings, service), not_durable=not_durable)
    except (ValueError, OSError, sqlite3.Error) as exc:  # a template that does not compile, a data dir
        print(f"config error: {exc}", file=sys.stderr)  # it cannot write
        sys.exit(2)
    sys.exit(asyncio.run(serve(service, app)))


def run_component(component: Component, routes: Sequence[BaseRoute] = ()) -> None:
    """Serve a component that is not a Matrix bridge (logs already configured)."""
    sys.exit(asyncio.run(serve(component, create_app(component, routes))))


def main_for(
    settings_cls: type[S],
    routes: RouteBuilder[S],
    *,
    not_durable: NotDurableResponse = responses.not_durable,
) -> None:
    """Entry point of a service configured from its environment."""
    run(load_or_exit(settings_cls), routes, not_durable=not_durable)
