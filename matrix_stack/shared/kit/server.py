"""The one way a service starts: settings (exit 2 on a bad one), logs, the component and its app
(exit 2 on a bad config), the app's lifespan starts the component (exit 1 with one line), serve HTTP
until SIGTERM/SIGINT, drain, stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sqlite3
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import uvicorn
from asgi_lifespan import LifespanManager
from starlette.routing import BaseRoute
from starlette.types import ASGIApp

from matrix_stack.shared.kit import logs, responses
from matrix_stack.shared.kit.app import NotDurableResponse, create_app
from matrix_stack.shared.kit.component import Component
from matrix_stack.shared.kit.errors import StartupError
from matrix_stack.shared.kit.loop import use_uvloop
from matrix_stack.shared.kit.settings import KitSettings, load_or_exit

log = logging.getLogger(__name__)
S = TypeVar("S", bound=KitSettings)
C = TypeVar("C", bound=Component)


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


def build_app(
    settings: S,
    build: Callable[[S], C],
    routes: Callable[[S, C], Sequence[BaseRoute]],
    *,
    not_durable: NotDurableResponse = responses.not_durable,
) -> tuple[C, ASGIApp]:
    """The component and its app, not started (its lifespan starts it). Raises ValueError, OSError or
    sqlite3.Error for a configuration that cannot work (a template that does not compile, a data dir
    it cannot write)."""
    component = build(settings)
    return component, create_app(component, routes(settings, component), not_durable=not_durable)


async def serve(app: ASGIApp, settings: KitSettings, **uvicorn_options: Any) -> int:
    """Run the app's lifespan around uvicorn: a StartupError is one line and exit 1."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        lifespan="off",  # entered here, so that a start failure reaches us as its exception
        log_config=None,
        access_log=False,
        proxy_headers=True,
        server_header=False,
        timeout_graceful_shutdown=int(settings.shutdown_drain_seconds) or None,
        timeout_keep_alive=settings.keep_alive_seconds,  # uvicorn's 5 s ties with httpx's 5 s
        **uvicorn_options,
    )
    try:
        # the component's own stop bounds itself (drains, timeouts): no extra limit here
        async with LifespanManager(app, startup_timeout=None, shutdown_timeout=None):
            await _Server(config).serve()
    except StartupError as exc:
        log.error(str(exc))
        return 1
    return 0


def main_for(
    settings_cls: type[S],
    build: Callable[[S], C],
    routes: Callable[[S, C], Sequence[BaseRoute]],
    *,
    not_durable: NotDurableResponse = responses.not_durable,
    load: Callable[[], S] | None = None,
) -> None:
    """A service's entry point: its settings class (or `load`, which exits 2 itself), how to build
    its component, and its routes."""
    settings = load() if load else load_or_exit(settings_cls)
    logs.configure(settings.log_level, json_lines=settings.log_json, secrets=settings.secrets())
    try:
        component, app = build_app(settings, build, routes, not_durable=not_durable)
    except (ValueError, OSError, sqlite3.Error) as exc:
        print(f"config error: {exc}", file=sys.stderr)
        sys.exit(2)
    # the component may hold secrets the settings never saw (a keys file): redact those too
    logs.configure(settings.log_level, json_lines=settings.log_json, secrets=component.secrets())
    use_uvloop()
    sys.exit(asyncio.run(serve(app, settings)))
