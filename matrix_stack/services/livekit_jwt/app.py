"""The HTTP surface: POST /get_token (MSC4195) and POST /sfu/get (legacy), answered as
lk-jwt-service answers them, with CORS on every response of theirs (preflight included).

Each step of a request raises `WireError` with lk-jwt-service's answer when it cannot go on, so the
endpoints read straight through; the kit's app answers with that response."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from matrix_stack.services.livekit_jwt import hashing, wire
from matrix_stack.services.livekit_jwt.config import LivekitJwtSettings
from matrix_stack.services.livekit_jwt.delegation import DelegationRefused
from matrix_stack.services.livekit_jwt.issuer import BadWebhook, Issuer, NoClientApi, NotAuthorised
from matrix_stack.services.livekit_jwt.requests import (
    Delay,
    LegacyRequest,
    NativeRequest,
    OpenIdToken,
    TokenRequest,
)
from matrix_stack.services.livekit_jwt.tokens import mint
from matrix_stack.shared.kit.auth import bearer_matches
from matrix_stack.shared.kit.errors import WireError

log = logging.getLogger("matrix_stack.livekit_jwt")
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
NATIVE = "/_matrix/client/{version:path}/rtc/livekit"
NOT_FULL = "Delegation of delayed events is only supported for full access users"
NO_DELAY = "The request body is missing `delay_id` or `delay_timeout`"
Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Issuer, Request], Awaitable[Response]]
B = TypeVar("B", bound=Delay)


@dataclass(frozen=True)
class Participant:
    """Who a token or a delegation is for: the user's homeserver, the SFU room, the identity in it."""

    server_name: str
    room: str
    identity: str


def unauthorised() -> WireError:
    """Every refused credential gets the same 401: the reason is logged, never told."""
    return WireError(wire.error(401, *wire.UNAUTHORIZED))


def bad_json(message: str) -> WireError:
    return WireError(wire.bad_json(message))


# -- reading a request --------------------------------------------------------------------------


def _json_object(raw: bytes) -> dict[str, object]:
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


async def read(request: Request, model: type[B]) -> B:
    """The body as `model`; raises WireError with the 400 lk-jwt-service gives for it."""
    try:
        body = model.model_validate(_json_object(await request.body()))
    except (ValueError, ValidationError):
        raise WireError(wire.error(400, *wire.NOT_JSON)) from None
    if problem := body.problem():
        raise bad_json(problem)
    return body


async def authorised(issuer: Issuer, token: OpenIdToken, claimed: str | None) -> str:
    """The user the OpenID token belongs to, asked of their homeserver (and the one claimed, if
    any); raises WireError(401)."""
    server_name = token.matrix_server_name
    try:
        user_id = await issuer.user_id(server_name, token.access_token)
    except NotAuthorised as exc:
        log.warning("openid token refused", extra={"server_name": server_name, "reason": str(exc)})
        raise unauthorised() from None
    if claimed is not None and claimed != user_id:
        log.warning("token for another user", extra={"server_name": server_name, "sub": user_id})
        raise unauthorised()
    return user_id


def forwarded_user(request: Request, settings: LivekitJwtSettings) -> str:
    """The user Synapse authenticated for a request it forwarded (MSC4512), once it presented its
    hs_token; raises WireError(401)."""
    hs_token = settings.appservice_token
    if hs_token is None or not bearer_matches(request, hs_token.get_secret_value()):
        raise unauthorised()
    user_id = request.headers.get("x-matrix-user-identifier", "")
    if not user_id.startswith("@") or not user_id.endswith(":" + (settings.homeserver_name or "")):
        log.warning("forwarded request for a user of another server", extra={"user": user_id})
        raise unauthorised()
    return user_id


def participant(
    issuer: Issuer, server_name: str, user_id: str, body: TokenRequest | NativeRequest
) -> Participant:
    """The member of a MatrixRTC slot, named in the SFU as the hash scheme says."""
    scheme = issuer.settings.hash_scheme
    return Participant(
        server_name,
        hashing.room(scheme, body.room_id, body.slot_id),
        hashing.identity(scheme, user_id, body.member.claimed_device_id, body.member.id),
    )


# -- answering ----------------------------------------------------------------------------------


def mint_for(issuer: Issuer, who: Participant) -> str:
    settings, credentials = issuer.settings, issuer.credentials
    try:
        return mint(
            credentials.key, credentials.secret, who.identity, who.room,
            ttl=settings.token_ttl_seconds, can_update_own_metadata=settings.can_update_own_metadata,
        )  # fmt: skip
    except ValueError:
        log.exception("minting a token failed")
        raise WireError(wire.error(500, *wire.INTERNAL)) from None


async def create_room(issuer: Issuer, room: str) -> None:
    try:
        await issuer.create_room(room)
    except Exception as exc:
        log.error("CreateRoom on the SFU failed", extra={"room": room, "error": str(exc)})
        raise WireError(wire.error(500, *wire.NO_ROOM)) from None


async def delegate(issuer: Issuer, who: Participant, body: Delay) -> None:
    """Take the client's delayed leave over; raises WireError when that cannot be done."""
    if issuer.delegations is None:  # turned off: the client keeps its own delayed events
        raise bad_json("Delegation of delayed events is not supported by this service")
    try:
        await issuer.delegate(who.server_name, body.delay_id, body.delay_timeout, who.room, who.identity)
    except NoClientApi as exc:
        log.warning("no client-server API for the delegation", extra={"reason": str(exc)})
        raise WireError(wire.error(500, "M_UNKNOWN", "Unable to reach the homeserver")) from None
    except DelegationRefused as exc:
        errcode = "M_LIMIT_EXCEEDED" if exc.limit else "M_BAD_JSON"
        raise WireError(wire.error(429 if exc.limit else 400, errcode, str(exc))) from None


async def issue(issuer: Issuer, who: Participant, body: Delay) -> Response:
    """A token; with full access the room is created on the SFU first."""
    full = issuer.has_full_access(who.server_name)
    if body.delegates and not full:
        raise bad_json(NOT_FULL)
    jwt = mint_for(issuer, who)
    if full:
        await create_room(issuer, who.room)
    if body.delegates:  # last: a token that could not be minted or a room not created leaves no job
        await delegate(issuer, who, body)
    log.info("token issued", extra={"server_name": who.server_name, "room": who.room, "full_access": full})
    return wire.go_response({"url": issuer.settings.livekit_url, "jwt": jwt})


async def hand_over(issuer: Issuer, who: Participant, body: Delay) -> Response:
    """/delegate_delayed_leave, once the user is known: full access only."""
    if not body.delegates:
        raise bad_json(NO_DELAY)
    if not issuer.has_full_access(who.server_name):
        raise WireError(wire.error(403, "M_FORBIDDEN", NOT_FULL))
    await delegate(issuer, who, body)
    return wire.go_response({})


# -- the endpoints ------------------------------------------------------------------------------


async def get_token(issuer: Issuer, request: Request) -> Response:
    body = await read(request, TokenRequest)
    token = body.openid_token
    user_id = await authorised(issuer, token, body.member.claimed_user_id)
    return await issue(issuer, participant(issuer, token.matrix_server_name, user_id, body), body)


async def sfu_get(issuer: Issuer, request: Request) -> Response:
    body = await read(request, LegacyRequest)
    token = body.openid_token
    user_id = await authorised(issuer, token, None)
    room = hashing.legacy_room(issuer.settings.hash_scheme, body.room)
    who = Participant(token.matrix_server_name, room, hashing.legacy_identity(user_id, body.device_id))
    return await issue(issuer, who, body)


async def delegate_delayed_leave(issuer: Issuer, request: Request) -> Response:
    body = await read(request, TokenRequest)
    if not body.delegates:  # before the lookup: a body that cannot delegate costs no request out
        raise bad_json(NO_DELAY)
    token = body.openid_token
    user_id = await authorised(issuer, token, body.member.claimed_user_id)
    return await hand_over(issuer, participant(issuer, token.matrix_server_name, user_id, body), body)


async def native(issuer: Issuer, request: Request) -> tuple[Participant, NativeRequest]:
    """A request Synapse forwarded (MSC4512): its hs_token, and the user it authenticated."""
    user_id = forwarded_user(request, issuer.settings)
    body = await read(request, NativeRequest)
    if body.member.claimed_user_id and body.member.claimed_user_id != user_id:
        raise unauthorised()
    return participant(issuer, issuer.settings.homeserver_name or "", user_id, body), body


async def native_get_token(issuer: Issuer, request: Request) -> Response:
    who, body = await native(issuer, request)
    return await issue(issuer, who, body)


async def native_delegate(issuer: Issuer, request: Request) -> Response:
    who, body = await native(issuer, request)
    return await hand_over(issuer, who, body)


async def sfu_webhook(issuer: Issuer, request: Request) -> Response:
    try:
        await issuer.webhook(await request.body(), request.headers.get("authorization", ""))
    except BadWebhook as exc:
        log.warning("webhook refused", extra={"reason": str(exc)})
        return Response(status_code=401)
    return Response(status_code=200)


def token_endpoint(issuer: Issuer, name: str, handle: Handler) -> Endpoint:
    """lk-jwt-service's preflight and 405 on any method but POST, and every answer counted by
    endpoint and status, refusals included."""
    outcomes = issuer.metrics.tokens

    async def endpoint(request: Request) -> Response:
        if request.method == "OPTIONS":
            return wire.go_response(None)
        if request.method != "POST":
            return wire.go_response(None, 405)
        try:
            response = await handle(issuer, request)
        except WireError as refused:
            outcomes.labels(name, str(refused.response.status_code)).inc()
            raise
        outcomes.labels(name, str(response.status_code)).inc()
        return response

    return endpoint


def routes(settings: LivekitJwtSettings, issuer: Issuer) -> list[BaseRoute]:
    def token(path: str, name: str, handle: Handler) -> Route:
        return Route(path, token_endpoint(issuer, name, handle), methods=ALL_METHODS)

    found: list[BaseRoute] = [
        token("/get_token", "get_token", get_token),
        token("/sfu/get", "sfu_get", sfu_get),
        token("/delegate_delayed_leave", "delegate", delegate_delayed_leave),
        # from the SFU, inside the cluster only (the chart's Ingress and HTTPRoute leave it out)
        Route("/sfu_webhook", functools.partial(sfu_webhook, issuer), methods=["POST"]),
    ]
    if settings.appservice_token is not None:  # from Synapse (MSC4512): .../{v1|unstable/...}/rtc/livekit/
        found += [
            token(f"{NATIVE}/get_token", "native_get_token", native_get_token),
            token(f"{NATIVE}/delegate_delayed_leave", "native_delegate", native_delegate),
        ]
    return found
