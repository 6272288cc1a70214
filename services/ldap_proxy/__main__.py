"""`ldap-proxy` console script."""

from __future__ import annotations

import asyncio
import sys

from matrix_stack.core import logs
from matrix_stack.core.server import run_component
from matrix_stack.core.settings import load_or_exit
from matrix_stack.services.ldap_proxy.app import routes
from matrix_stack.services.ldap_proxy.config import LdapProxySettings
from matrix_stack.services.ldap_proxy.proxy import LdapProxy


def main() -> None:
    settings = load_or_exit(LdapProxySettings)
    logs.configure(settings.log_level, json_lines=settings.log_json, secrets=settings.secrets())
    try:
        proxy = LdapProxy(settings)
    except ValueError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        sys.exit(2)
    try:  # uvloop (with uvicorn[standard]) roughly halves the relay's cost per connection
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    run_component(proxy, routes(proxy))


if __name__ == "__main__":
    main()
