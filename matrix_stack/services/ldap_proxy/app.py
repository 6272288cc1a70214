"""The control plane beside the kit's /healthz, /readyz and /metrics: GET /backends."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from matrix_stack.services.ldap_proxy.config import LdapProxySettings
from matrix_stack.services.ldap_proxy.proxy import LdapProxy


def routes(settings: LdapProxySettings, proxy: LdapProxy) -> list[BaseRoute]:
    async def backends(request: Request) -> Response:
        return JSONResponse(await proxy.describe())

    return [Route("/backends", backends, methods=["GET"])]
