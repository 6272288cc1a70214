"""`ldap-proxy` console script."""

from __future__ import annotations

from matrix_stack.services.ldap_proxy.app import routes
from matrix_stack.services.ldap_proxy.config import LdapProxySettings
from matrix_stack.services.ldap_proxy.proxy import LdapProxy
from matrix_stack.shared.kit.server import main_for


def main() -> None:
    main_for(LdapProxySettings, LdapProxy, routes)


if __name__ == "__main__":
    main()
