"""The MatrixRTC part of `make run`: the LiveKit stand-in (the SFU itself does not run here) and
livekit-jwt validating the demo user's OpenID tokens at the local Synapse's federation listener."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from devstack.livekit import LocalLivekit
from devstack.livekit_jwt import LocalLivekitJwt
from devstack.synapse import LocalSynapse

KEY = "devkey"


@dataclass
class RtcDemo:
    data_dir: Path
    secret: str  # the SFU's API secret, from the stack's kept credentials
    sfu_port: int
    port: int
    sfu: LocalLivekit | None = None
    service: LocalLivekitJwt | None = field(default=None)

    def start(self, synapse: LocalSynapse) -> None:
        assert synapse.federation_port is not None
        self.sfu = LocalLivekit(KEY, self.secret, port=self.sfu_port)
        self.sfu.start()
        self.service = LocalLivekitJwt(
            {
                "LIVEKIT_URL": self.sfu.url, "KEY": KEY, "SECRET": self.secret,
                "FULL_ACCESS_HOMESERVERS": synapse.server_name,
                # the local homeserver: on loopback, so allowed by name, at its federation listener
                "FEDERATION_ALLOW": synapse.server_name,
                "FEDERATION_OVERRIDES": f"{synapse.server_name}=127.0.0.1:{synapse.federation_port}",
                "FEDERATION_CA_FILE": str(synapse.federation_tls.ca),
            },
            directory=self.data_dir, port=self.port,
        )  # fmt: skip
        self.service.start()

    def summary(self, synapse: LocalSynapse, user_id: str, access_token: str) -> str:
        assert self.service is not None
        assert self.sfu is not None
        request_token = f"{synapse.url}/_matrix/client/v3/user/{quote(user_id, safe='')}/openid/request_token"
        body = (
            '{"room_id":"!demo-call:localhost","slot_id":"m.call#ROOM","member":{"id":"demo-member",'
            f'"claimed_user_id":"{user_id}","claimed_device_id":"DEMO"}},"openid_token":'
        )
        return f"""livekit-jwt  {self.service.url}   (SFU stand-in {self.sfu.url}; logs: {self.service.log})
  the demo user's OpenID token, turned into a LiveKit token:
  curl -sS -X POST '{request_token}' -H 'Authorization: Bearer {access_token}' -d '{{}}' \\
       | sed 's/^/{body}/; s/$/}}/' \\
       | curl -sS -X POST {self.service.url}/get_token -H 'Content-Type: application/json' --data-binary @-"""

    def running(self) -> bool:
        return self.service is None or self.service.process is None or self.service.process.poll() is None

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
        if self.sfu is not None:
            self.sfu.stop()
