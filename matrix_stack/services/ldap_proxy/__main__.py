"""`ldap-proxy` console script."""

from __future__ import annotations

import asyncio

from matrix_stack.services.ldap_proxy.app import routes
from matrix_stack.services.ldap_proxy.config import LdapProxySettings
from matrix_stack.services.ldap_proxy.proxy import LdapProxy
from matrix_stack.shared.kit.server import main_for


def main() -> None:
    try:  # uvloop (with uvicorn[standard]) roughly halves the relay's cost per connection
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    main_for(LdapProxySettings, LdapProxy, routes)


if __name__ == "__main__":
    main()
