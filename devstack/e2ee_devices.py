"""Member devices for the e2ee benchmark: real logins with real keys (vodozemac), uploaded as a
client uploads them, so the bot's key sharing (claims, Olm sessions, to-device) costs what it costs.
A device can wait for the bot's room keys and open them, and decrypt a room event with them."""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import vodozemac

from devstack.synapse import Account, LocalSynapse, MatrixApiError
from matrix_stack.shared.matrix.crypto.canonical import add_signature, signable
from matrix_stack.shared.matrix.crypto.devices import MEGOLM, OLM

# Only to-device messages: the rooms' timelines would make every sync large.
TO_DEVICE_ONLY = json.dumps(
    {"presence": {"not_types": ["*"]}, "account_data": {"not_types": ["*"]}, "room": {"rooms": []}}
)


@dataclass
class RoomKey:
    room_id: str
    session_id: str
    session_key: str
    arrived: float  # perf_counter of the sync answer that brought it


@dataclass
class MemberDevice:
    account: Account  # authenticated as this device
    device_id: str
    olm: vodozemac.Account = field(default_factory=vodozemac.Account)
    sessions: dict[str, list[vodozemac.Session]] = field(default_factory=dict)  # by sender key
    keys: dict[str, RoomKey] = field(default_factory=dict)  # by session id
    since: str | None = None

    @property
    def user_id(self) -> str:
        return self.account.user_id

    def _signed(self, obj: dict[str, Any]) -> dict[str, Any]:
        signature = self.olm.sign(signable(obj)).to_base64()
        return add_signature(obj, self.user_id, f"ed25519:{self.device_id}", signature)

    async def upload_keys(self, one_time: int = 10) -> None:
        """Identity keys and `one_time` signed one-time keys, as `/keys/upload` takes them (one-time
        keys 0: the identity keys alone, as clients do that publish one-time keys afterwards)."""
        device_keys = self._signed({
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": [OLM, MEGOLM],
            "keys": {
                f"curve25519:{self.device_id}": self.olm.curve25519_key.to_base64(),
                f"ed25519:{self.device_id}": self.olm.ed25519_key.to_base64(),
            },
        })  # fmt: skip
        body = {"device_keys": device_keys, **self._one_time(one_time)}
        await self.account.api("POST", "/keys/upload", body)
        self.olm.mark_keys_as_published()

    async def upload_one_time_keys(self, count: int = 10) -> None:
        await self.account.api("POST", "/keys/upload", self._one_time(count))
        self.olm.mark_keys_as_published()

    def _one_time(self, count: int) -> dict[str, Any]:
        if not count:
            return {}
        self.olm.generate_one_time_keys(count)
        return {
            "one_time_keys": {
                f"signed_curve25519:{key_id}": self._signed({"key": key.to_base64()})
                for key_id, key in self.olm.one_time_keys.items()
            }
        }

    async def sync_keys(self, timeout_ms: int) -> list[RoomKey]:
        """One `/sync` as this device; the room keys its to-device messages brought."""
        params: dict[str, Any] = {"timeout": timeout_ms, "filter": TO_DEVICE_ONLY}
        if self.since:
            params["since"] = self.since
        answer = await self.account.api("GET", "/sync", **params)
        arrived = time.perf_counter()
        self.since = answer["next_batch"]
        found = []
        for event in answer.get("to_device", {}).get("events", []):
            if event.get("type") != "m.room.encrypted":
                continue
            opened = self._open(event["content"])
            if opened and opened.get("type") == "m.room_key":
                content = opened["content"]
                key = RoomKey(content["room_id"], content["session_id"], content["session_key"], arrived)
                self.keys.setdefault(key.session_id, key)
                found.append(key)
        return found

    def _open(self, content: dict[str, Any]) -> dict[str, Any] | None:
        """An Olm message to this device: an existing session first, else a new inbound one."""
        mine = content.get("ciphertext", {}).get(self.olm.curve25519_key.to_base64())
        if not isinstance(mine, dict):
            return None
        sender_key = content["sender_key"]
        raw = mine["body"]
        message = vodozemac.AnyOlmMessage.from_parts(
            int(mine["type"]), base64.b64decode(raw + "=" * (-len(raw) % 4))
        )
        sessions = self.sessions.setdefault(sender_key, [])
        for session in sessions:
            try:
                return dict(json.loads(session.decrypt(message)))
            except vodozemac.OlmDecryptionException:
                continue
        pre_key = message.to_pre_key()
        if pre_key is None:
            return None
        session, plaintext = self.olm.create_inbound_session(
            vodozemac.Curve25519PublicKey.from_base64(sender_key), pre_key
        )
        sessions.append(session)
        return dict(json.loads(plaintext))

    def decrypt(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """A room's `m.room.encrypted` event opened with the keys this device was sent (None: no key)."""
        key = self.keys.get(event["content"].get("session_id", ""))
        if key is None:
            return None
        session = vodozemac.InboundGroupSession(vodozemac.SessionKey(key.session_key))
        message = vodozemac.MegolmMessage.from_base64(event["content"]["ciphertext"])
        return dict(json.loads(session.decrypt(message).plaintext))


async def login_device(
    synapse: LocalSynapse,
    http: httpx.AsyncClient,
    username: str,
    password: str,
    device_id: str,
    *,
    one_time: int = 10,
) -> MemberDevice:
    """A password login as a named device, then its keys uploaded."""
    response = await http.post(
        f"{synapse.url}/_matrix/client/v3/login",
        json={"type": "m.login.password", "identifier": {"type": "m.id.user", "user": username},
              "password": password, "device_id": device_id},
    )  # fmt: skip
    if response.status_code != 200:
        raise MatrixApiError(response.status_code, response.text)
    data = response.json()
    device = MemberDevice(
        Account(synapse.url, data["user_id"], data["access_token"], http), data["device_id"]
    )
    await device.upload_keys(one_time)
    return device
