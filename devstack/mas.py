"""A stand-in for the Matrix Authentication Service, speaking MAS's wire protocol to a real Synapse.

MAS is a Rust service published only as a container image and source; nothing here can install it,
so the tests use this stand-in. It speaks the same protocol on both sides that matter to the chart:
towards Synapse it is MAS exactly as Synapse sees it (OpenID discovery, RFC 7662 token
introspection authenticated by the shared secret, and Synapse's `/_synapse/mas/` provisioning API
called with that secret); towards clients it serves the compatibility endpoints MAS takes over
(`login`, `logout`, `logout/all`, `refresh`, `login/sso/redirect`), so routing can be tested.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from devstack.processes import STAND_IN_KEEP_ALIVE

API_SCOPE = "urn:matrix:client:api:*"
DEVICE_SCOPE = "urn:matrix:client:device:"
ADMIN_SCOPE = "urn:synapse:admin:*"
COMPAT = "/_matrix/client/{version:path}"  # api/v1, r0, v3, unstable


@dataclass
class Session:
    localpart: str
    device_id: str


@dataclass
class MasStandIn:
    port: int
    synapse: str  # Synapse's client API base, what MAS's `matrix.endpoint` names
    shared_secret: str
    passwords: dict[str, str] = field(default_factory=dict)  # localpart -> password
    admins: set[str] = field(default_factory=set)  # localparts whose tokens carry Synapse's admin scope
    sessions: dict[str, Session] = field(default_factory=dict)  # access token -> session
    requests: list[str] = field(default_factory=list)  # "METHOD PATH" of every request served
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def app(self) -> ASGIApp:
        compat = COMPAT
        routes = [
            Route("/.well-known/openid-configuration", self.discovery),
            Route("/oauth2/introspect", self.introspect, methods=["POST"]),
            Route(f"{compat}/login", self.login, methods=["GET", "POST"]),
            Route(f"{compat}/logout", self.logout, methods=["POST"]),
            Route(f"{compat}/logout/all", self.logout_all, methods=["POST"]),
            Route(f"{compat}/refresh", self.refresh, methods=["POST"]),
            Route(f"{compat}/login/sso/redirect", self.sso_redirect),
            Route(f"{compat}/login/sso/redirect/{{idp:str}}", self.sso_redirect),
        ]
        app = Starlette(routes=routes)

        async def recorded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                self.requests.append(f"{scope['method']} {scope['path']}")
            await app(scope, receive, send)

        return recorded

    # --- towards Synapse -------------------------------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.url,
                "account_management_uri": f"{self.url}account/",
                "introspection_endpoint": f"{self.url}oauth2/introspect",
            }
        )

    async def introspect(self, request: Request) -> Response:
        given = request.headers.get("authorization", "").removeprefix("Bearer ")
        if not secrets.compare_digest(given.encode(), self.shared_secret.encode()):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        token = (await request.form()).get("token")
        session = self.sessions.get(str(token))
        if session is None:
            return JSONResponse({"active": False})
        scope = f"{API_SCOPE} {DEVICE_SCOPE}{session.device_id}"
        if session.localpart in self.admins:
            scope += f" {ADMIN_SCOPE}"
        return JSONResponse(
            {
                "active": True,
                "scope": scope,
                "username": session.localpart,
                "sub": session.localpart,
                "device_id": session.device_id,
            }
        )

    async def _synapse_call(self, path: str, body: Mapping[str, object]) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            return await client.post(
                f"{self.synapse.rstrip('/')}/_synapse/mas/{path}",
                json=body,
                headers={"Authorization": f"Bearer {self.shared_secret}"},
            )

    # --- towards clients (MAS's compatibility layer) ---------------------------------------------

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse({"flows": [{"type": "m.login.password"}, {"type": "m.login.sso"}]})
        body = await request.json()
        localpart = str(body.get("identifier", {}).get("user", "")).removeprefix("@").split(":")[0]
        if self.passwords.get(localpart) != body.get("password"):
            return JSONResponse({"errcode": "M_FORBIDDEN", "error": "Invalid login"}, status_code=403)
        device_id = str(body.get("device_id") or secrets.token_hex(5).upper())
        for path, payload in (
            ("provision_user", {"localpart": localpart}),
            ("upsert_device", {"localpart": localpart, "device_id": device_id}),
        ):
            reply = await self._synapse_call(path, payload)
            if not reply.is_success:
                return JSONResponse({"errcode": "M_UNKNOWN", "error": reply.text}, status_code=502)
        token = f"mct_{secrets.token_urlsafe(24)}"
        self.sessions[token] = Session(localpart, device_id)
        server_name = (await self._whoami_server_name(token)) or ""
        return JSONResponse(
            {"access_token": token, "device_id": device_id, "user_id": f"@{localpart}:{server_name}"}
        )

    async def _whoami_server_name(self, token: str) -> str | None:
        async with httpx.AsyncClient(timeout=10) as client:
            reply = await client.get(
                f"{self.synapse.rstrip('/')}/_matrix/client/v3/account/whoami",
                headers={"Authorization": f"Bearer {token}"},
            )
        if reply.status_code != 200:
            return None
        return str(reply.json()["user_id"]).split(":", 1)[1]

    def _session(self, request: Request) -> tuple[str, Session] | None:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        session = self.sessions.get(token)
        return (token, session) if session else None

    async def logout(self, request: Request) -> Response:
        found = self._session(request)
        if found is None:
            return JSONResponse({"errcode": "M_UNKNOWN_TOKEN", "error": "Unknown token"}, status_code=401)
        token, session = found
        await self._synapse_call(
            "delete_device", {"localpart": session.localpart, "device_id": session.device_id}
        )
        del self.sessions[token]
        return JSONResponse({})

    async def logout_all(self, request: Request) -> Response:
        found = self._session(request)
        if found is None:
            return JSONResponse({"errcode": "M_UNKNOWN_TOKEN", "error": "Unknown token"}, status_code=401)
        _, session = found
        for token, other in list(self.sessions.items()):
            if other.localpart == session.localpart:
                await self._synapse_call(
                    "delete_device", {"localpart": other.localpart, "device_id": other.device_id}
                )
                del self.sessions[token]
        return JSONResponse({})

    async def refresh(self, request: Request) -> Response:
        return JSONResponse(
            {"errcode": "M_UNKNOWN_TOKEN", "error": "No refresh tokens here"}, status_code=401
        )

    async def sso_redirect(self, request: Request) -> Response:
        return Response(status_code=302, headers={"Location": f"{self.url}login"})

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self, timeout: float = 15.0) -> None:
        config = uvicorn.Config(
            self.app(),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_keep_alive=STAND_IN_KEEP_ALIVE,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=asyncio.run, args=(self._server.serve(),), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("MAS stand-in did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
