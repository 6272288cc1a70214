"""The LiveKit access token, as lk-jwt-service mints it: HS256 with the API secret, `iss` the key,
`sub` the identity, valid for an hour from now, one video grant to join the room."""

from __future__ import annotations

from datetime import timedelta

from livekit import api


def mint(key: str, secret: str, identity: str, room: str, *, ttl: int, can_update_own_metadata: bool) -> str:
    grants = api.VideoGrants(
        room_join=True,
        room=room,
        can_publish=True,
        can_subscribe=True,
        # unset (None drops a claim) as lk-jwt-service leaves it: the SFU defaults it to canPublish
        can_publish_data=None,  # type: ignore[arg-type]
        can_update_own_metadata=can_update_own_metadata or None,
    )
    token = api.AccessToken(key, secret).with_identity(identity).with_grants(grants)
    return token.with_ttl(timedelta(seconds=ttl)).to_jwt()
