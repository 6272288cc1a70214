"""The HTTP surface: POST /get_token (MSC4195) and POST /sfu/get (legacy), answered as
lk-jwt-service answers them, with CORS on every response of theirs (preflight included)."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from matrix_stack.services.livekit_jwt import hashing, wire
from matrix_stack.services.livekit_jwt.config import LivekitJwtSettings
from matrix_stack.services.livekit_jwt.delegation import DelegationRefused
from matrix_stack.services.livekit_jwt.issuer import BadWebhook, Issuer, NoClientApi, NotAuthorised
from matrix_stack.services.livekit_jwt.requests import Delay, LegacyRequest, NativeRequest, TokenRequest
from matrix_stack.services.livekit_jwt.tokens import mint
from matrix_stack.shared.kit.auth import bearer_matches

log = logging.getLogger("matrix_stack.livekit_jwt")
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
Handler = Callable[[Request], Awaitable[Response]]
NATIVE = "/_matrix/client/{version:path}/rtc/livekit"
NOT_FULL = "Delegation of delayed events is only supported for full access users"


B = TypeVar("B", bound=Delay)


def _json_object(raw: bytes) -> dict[str, object]:
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


async def _read(request: Request, model: type[B]) -> B | Response:
    """The body as `model`, or the 400 lk-jwt-service gives for it."""
    try:
        body = model.model_validate(_json_object(await request.body()))
    except (ValueError, ValidationError):
        return wire.error(400, *wire.NOT_JSON)
    if problem := body.problem():
        return wire.bad_json(problem)
    return body


def routes(settings: LivekitJwtSettings, issuer: Issuer) -> list[BaseRoute]:
    settings = issuer.settings
    scheme = settings.hash_scheme
    metrics = issuer.metrics

    def token_endpoint(name: str, handle: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            if request.method == "OPTIONS":
                return wire.go_response(None)
            if request.method != "POST":
                return wire.go_response(None, 405)
            response = await handle(request)
            metrics.tokens.labels(name, str(response.status_code)).inc()
            return response

        return endpoint

    async def authorised(server_name: str, access_token: str, claimed: str | None) -> str | Response:
        """The validated user id, or the 401 (the reason is logged, not told)."""
        try:
            user_id = await issuer.user_id(server_name, access_token)
        except NotAuthorised as exc:
            log.warning("openid token refused", extra={"server_name": server_name, "reason": str(exc)})
            return wire.error(401, *wire.UNAUTHORIZED)
        if claimed is not None and claimed != user_id:
            log.warning("token for another user", extra={"server_name": server_name, "sub": user_id})
            return wire.error(401, *wire.UNAUTHORIZED)
        return user_id

    async def delegate(server_name: str, body: Delay, room: str, identity: str) -> Response | None:
        """Take the client's delayed leave over; a response when that cannot be done."""
        if issuer.delegations is None:  # turned off: the client keeps its own delayed events
            return wire.bad_json("Delegation of delayed events is not supported by this service")
        try:
            await issuer.delegate(server_name, body.delay_id, body.delay_timeout, room, identity)
        except NoClientApi as exc:
            log.warning("no client-server API for the delegation", extra={"reason": str(exc)})
            return wire.error(500, "M_UNKNOWN", "Unable to reach the homeserver")
        except DelegationRefused as exc:
            return wire.error(
                429 if exc.limit else 400, "M_LIMIT_EXCEEDED" if exc.limit else "M_BAD_JSON", str(exc)
            )
        return None

    async def issue(server_name: str, identity: str, room: str, body: Delay) -> Response:
        full = issuer.has_full_access(server_name)
        if body.delegates and not full:
            return wire.bad_json(NOT_FULL)
        credentials = issuer.credentials
        try:
            jwt = mint(credentials.key, credentials.secret, identity, room, ttl=settings.token_ttl_seconds,
                       can_update_own_metadata=settings.can_update_own_metadata)  # fmt: skip
        except ValueError:
            log.exception("minting a token failed")
            return wire.error(500, *wire.INTERNAL)
        if full:
            try:
                await issuer.create_room(room)
            except Exception as exc:
                log.error("CreateRoom on the SFU failed", extra={"room": room, "error": str(exc)})
                return wire.error(500, *wire.NO_ROOM)
        # last: a token that could not be minted or a room not created leaves no job behind
        if body.delegates and (refused := await delegate(server_name, body, room, identity)) is not None:
            return refused
        log.info("token issued", extra={"server_name": server_name, "room": room, "full_access": full})
        return wire.go_response({"url": settings.livekit_url, "jwt": jwt})

    async def get_token(request: Request) -> Response:
        body = await _read(request, TokenRequest)
        if isinstance(body, Response):
            return body
        token = body.openid_token
        user_id = await authorised(token.matrix_server_name, token.access_token, body.member.claimed_user_id)
        if isinstance(user_id, Response):
            return user_id
        room = hashing.room(scheme, body.room_id, body.slot_id)
        identity = hashing.identity(scheme, user_id, body.member.claimed_device_id, body.member.id)
        return await issue(token.matrix_server_name, identity, room, body)

    async def sfu_get(request: Request) -> Response:
        body = await _read(request, LegacyRequest)
        if isinstance(body, Response):
            return body
        token = body.openid_token
        user_id = await authorised(token.matrix_server_name, token.access_token, None)
        if isinstance(user_id, Response):
            return user_id
        room = hashing.legacy_room(scheme, body.room)
        identity = hashing.legacy_identity(user_id, body.device_id)
        return await issue(token.matrix_server_name, identity, room, body)

    async def hand_over(server_name: str, body: Delay, room: str, identity: str) -> Response:
        """/delegate_delayed_leave, once the user is known: full access only."""
        if not body.delegates:
            return wire.bad_json("The request body is missing `delay_id` or `delay_timeout`")
        if not issuer.has_full_access(server_name):
            return wire.error(403, "M_FORBIDDEN", NOT_FULL)
        if (refused := await delegate(server_name, body, room, identity)) is not None:
            return refused
        return wire.go_response({})

    async def delegate_delayed_leave(request: Request) -> Response:
        body = await _read(request, TokenRequest)
        if isinstance(body, Response):
            return body
        if not body.delegates:  # before the lookup: a body that cannot delegate costs no request out
            return wire.bad_json("The request body is missing `delay_id` or `delay_timeout`")
        token = body.openid_token
        user_id = await authorised(token.matrix_server_name, token.access_token, body.member.claimed_user_id)
        if isinstance(user_id, Response):
            return user_id
        room = hashing.room(scheme, body.room_id, body.slot_id)
        identity = hashing.identity(scheme, user_id, body.member.claimed_device_id, body.member.id)
        return await hand_over(token.matrix_server_name, body, room, identity)

    hs_token = settings.appservice_token.get_secret_value() if settings.appservice_token else None
    homeserver = settings.homeserver_name or ""

    async def native(request: Request, delegate_only: bool) -> Response:
        """A request Synapse forwarded (MSC4512): its hs_token, and the user it authenticated."""
        if hs_token is None or not bearer_matches(request, hs_token):
            return wire.error(401, *wire.UNAUTHORIZED)
        user_id = request.headers.get("x-matrix-user-identifier", "")
        if not user_id.startswith("@") or not user_id.endswith(":" + homeserver):
            log.warning("forwarded request for a user of another server", extra={"user": user_id})
            return wire.error(401, *wire.UNAUTHORIZED)
        body = await _read(request, NativeRequest)
        if isinstance(body, Response):
            return body
        if body.member.claimed_user_id and body.member.claimed_user_id != user_id:
            return wire.error(401, *wire.UNAUTHORIZED)
        room = hashing.room(scheme, body.room_id, body.slot_id)
        identity = hashing.identity(scheme, user_id, body.member.claimed_device_id, body.member.id)
        if delegate_only:
            return await hand_over(homeserver, body, room, identity)
        return await issue(homeserver, identity, room, body)

    async def native_get_token(request: Request) -> Response:
        return await native(request, delegate_only=False)

    async def native_delegate(request: Request) -> Response:
        return await native(request, delegate_only=True)

    async def sfu_webhook(request: Request) -> Response:
        try:
            await issuer.webhook(await request.body(), request.headers.get("authorization", ""))
        except BadWebhook as exc:
            log.warning("webhook refused", extra={"reason": str(exc)})
            return Response(status_code=401)
        return Response(status_code=200)

    routes: list[BaseRoute] = [
        Route("/get_token", token_endpoint("get_token", get_token), methods=ALL_METHODS),
        Route("/sfu/get", token_endpoint("sfu_get", sfu_get), methods=ALL_METHODS),
        Route(
            "/delegate_delayed_leave", token_endpoint("delegate", delegate_delayed_leave), methods=ALL_METHODS
        ),
        # from the SFU, inside the cluster only (the chart's Ingress and HTTPRoute leave it out)
        Route("/sfu_webhook", sfu_webhook, methods=["POST"]),
    ]
    if hs_token is not None:  # from Synapse (MSC4512): /_matrix/client/{v1|unstable/...}/rtc/livekit/
        native_token = token_endpoint("native_get_token", native_get_token)
        native_leave = token_endpoint("native_delegate", native_delegate)
        routes += [
            Route(f"{NATIVE}/get_token", native_token, methods=ALL_METHODS),
            Route(f"{NATIVE}/delegate_delayed_leave", native_leave, methods=ALL_METHODS),
        ]
    return routes
