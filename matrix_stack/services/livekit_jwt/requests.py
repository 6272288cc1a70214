"""The two request bodies, read as lk-jwt-service reads them (JSON types strict, null as empty, a
missing field empty), except that unknown fields are tolerated so newer clients do not break; then
checked in its order, with its messages."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_DELAY_MS = 24 * 3600 * 1000


def _null_is_empty(value: Any) -> Any:
    if isinstance(value, str) and _LONE_SURROGATE.search(value):
        return _LONE_SURROGATE.sub("\ufffd", value)  # what Go's decoder makes of an unpaired \ud800
    return "" if value is None else value


def _null_is_zero(value: Any) -> Any:
    return 0 if value is None else value


Text = Annotated[StrictStr, BeforeValidator(_null_is_empty)]
Count = Annotated[StrictInt, BeforeValidator(_null_is_zero)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class OpenIdToken(_Body):
    access_token: Text = ""
    token_type: Text = ""
    matrix_server_name: Text = ""
    expires_in: Count = 0


def _null_object(value: Any) -> Any:
    return {} if value is None else value


class Member(_Body):
    id: Text = ""
    claimed_user_id: Text = ""
    claimed_device_id: Text = ""


class Delay(_Body):
    """MSC4140 delegation: both fields or neither."""

    delay_id: Text = ""
    delay_timeout: Count = 0

    def delay_error(self) -> str | None:
        if bool(self.delay_id) != bool(self.delay_timeout):
            return "The request body is missing `delay_id` or `delay_timeout`"
        if self.delay_id and not 1000 <= self.delay_timeout <= MAX_DELAY_MS:
            return f"`delay_timeout` must be between 1000 and {MAX_DELAY_MS} milliseconds"
        if len(self.delay_id) > 255:
            return "`delay_id` is too long"
        return None

    @property
    def delegates(self) -> bool:
        return bool(self.delay_id)

    def problem(self) -> str | None:
        """What is wrong with the body, in lk-jwt-service's words; None when nothing is."""
        return self.delay_error()


class TokenRequest(Delay):
    """POST /get_token (MSC4195)."""

    room_id: Text = ""
    slot_id: Text = ""
    openid_token: Annotated[OpenIdToken, BeforeValidator(_null_object)] = Field(default_factory=OpenIdToken)
    member: Annotated[Member, BeforeValidator(_null_object)] = Field(default_factory=Member)

    def problem(self) -> str | None:
        if not self.room_id or not self.slot_id:
            return "The request body is missing `room_id` or `slot_id`"
        member = self.member
        if not (member.id and member.claimed_user_id and member.claimed_device_id):
            return "The request body `member` is missing a `id`, `claimed_user_id` or `claimed_device_id`"
        if not (self.openid_token.access_token and self.openid_token.matrix_server_name):
            return "The request body `openid_token` is missing a `access_token` or `matrix_server_name`"
        return self.delay_error()


class LegacyRequest(Delay):
    """POST /sfu/get: the body Element X and older Element Call send."""

    room: Text = ""
    openid_token: Annotated[OpenIdToken, BeforeValidator(_null_object)] = Field(default_factory=OpenIdToken)
    device_id: Text = ""

    def problem(self) -> str | None:
        if not self.room:
            return "Missing room parameter"
        if not (self.openid_token.access_token and self.openid_token.matrix_server_name):
            return "Missing OpenID token parameters"
        return self.delay_error()


class NativeRequest(Delay):
    """The homeserver-hosted endpoints (MSC4195 through MSC4512): Synapse has authenticated the user,
    so there is no OpenID token; `member.claimed_user_id`, if given, must be that user."""

    room_id: Text = ""
    slot_id: Text = ""
    member: Annotated[Member, BeforeValidator(_null_object)] = Field(default_factory=Member)

    def problem(self) -> str | None:
        if not self.room_id or not self.slot_id:
            return "The request body is missing `room_id` or `slot_id`"
        if not (self.member.id and self.member.claimed_device_id):
            return "The request body `member` is missing a `id` or `claimed_device_id`"
        return self.delay_error()
