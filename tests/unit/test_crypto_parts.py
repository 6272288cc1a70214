"""The encryption's pure parts: signatures over canonical JSON, devices from /keys/query, the kept
state, rotation and the settings that go with it."""

from __future__ import annotations

import time
from typing import Any

import pytest
import vodozemac

from matrix_stack.services.notify.config import NotifySettings
from matrix_stack.shared.matrix.crypto.canonical import add_signature, canonical, signable
from matrix_stack.shared.matrix.crypto.devices import Device, devices_of, receives_keys
from matrix_stack.shared.matrix.crypto.megolm import Outbound
from matrix_stack.shared.matrix.crypto.secret import derive
from matrix_stack.shared.matrix.crypto.state import CryptoState, RoomKey, StateUnreadable

USER = "@alice:example.org"


def test_canonical_json_is_the_specs_signing_form() -> None:
    assert canonical({"b": 1, "a": {"d": "é", "c": [1, 2]}}) == '{"a":{"c":[1,2],"d":"é"},"b":1}'.encode()
    assert signable({"a": 1, "signatures": {}, "unsigned": {"x": 1}}) == b'{"a":1}'


def _device(account: vodozemac.Account, device_id: str, user: str = USER) -> dict[str, Any]:
    keys: dict[str, Any] = {
        "user_id": user,
        "device_id": device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            f"curve25519:{device_id}": account.curve25519_key.to_base64(),
            f"ed25519:{device_id}": account.ed25519_key.to_base64(),
        },
    }
    return add_signature(keys, user, f"ed25519:{device_id}", account.sign(signable(keys)).to_base64())


def _cross_signing(secret: bytes, device: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """An answer's cross-signing part for USER, and `device` signed by its self-signing key."""
    keys = derive(secret, USER)
    master = {"user_id": USER, "usage": ["master"], "keys": {keys.master.key_id: keys.master.public}}
    ssk: dict[str, Any] = {
        "user_id": USER, "usage": ["self_signing"], "keys": {keys.self_signing.key_id: keys.self_signing.public}
    }  # fmt: skip
    ssk = add_signature(ssk, USER, keys.master.key_id, keys.master.sign(signable(ssk)))
    signed = add_signature(device, USER, keys.self_signing.key_id, keys.self_signing.sign(signable(device)))
    return {"master_keys": {USER: master}, "self_signing_keys": {USER: ssk}}, signed


def test_devices_are_checked_and_their_owners_signature_found() -> None:
    phone, laptop, forged = vodozemac.Account(), vodozemac.Account(), vodozemac.Account()
    phone_keys, laptop_keys = _device(phone, "PHONE"), _device(laptop, "LAPTOP")
    bad = _device(forged, "FORGED")
    bad["keys"]["ed25519:FORGED"] = phone.ed25519_key.to_base64()  # its signature no longer matches
    cross, phone_signed = _cross_signing(b"s" * 32, phone_keys)
    answer = {"device_keys": {USER: {"PHONE": phone_signed, "LAPTOP": laptop_keys, "FORGED": bad}}, **cross}

    found = devices_of(answer, USER)

    assert sorted(found) == ["LAPTOP", "PHONE"]
    assert found["PHONE"].signed_by_owner
    assert not found["LAPTOP"].signed_by_owner
    assert found["PHONE"].curve25519 == phone.curve25519_key.to_base64()
    # A self-signing key not signed by the master key makes no device "signed by its owner".
    other_cross, _ = _cross_signing(b"t" * 32, phone_keys)
    answer["master_keys"] = other_cross["master_keys"]
    assert not devices_of(answer, USER)["PHONE"].signed_by_owner


def test_who_receives_room_keys() -> None:
    signed = Device(USER, "A", "c", "e", True)
    unsigned = Device("@bob:other.org", "B", "c", "e", False)
    assert receives_keys(signed, "members", [])
    assert receives_keys(unsigned, "members", [])
    assert receives_keys(signed, "cross-signed", [])
    assert not receives_keys(unsigned, "cross-signed", [])
    assert receives_keys(unsigned, "allowlist", ["other.org"])
    assert not receives_keys(signed, "allowlist", ["other.org"])
    assert receives_keys(signed, "allowlist", [USER])


def test_derived_keys_are_stable_per_secret_and_user_and_never_printed() -> None:
    one, again, other_user = derive(b"k" * 32, USER), derive(b"k" * 32, USER), derive(b"k" * 32, "@b:x")
    assert one.master.public == again.master.public
    assert one.pickle_key == again.pickle_key
    assert one.master.public != other_user.master.public
    assert len({one.master.public, one.self_signing.public, one.user_signing.public}) == 3
    assert "private" not in repr(one)
    assert one.pickle_key.hex() not in repr(one)


def test_the_kept_state_round_trips_and_a_wrong_key_is_a_clear_error() -> None:
    key = derive(b"k" * 32, USER).pickle_key
    state = CryptoState.load({}, key)
    peer = vodozemac.Account()
    peer.generate_one_time_keys(1)
    session = state.account.create_outbound_session(
        peer.curve25519_key, next(iter(peer.one_time_keys.values()))
    )
    state.olm["peer"] = [session]
    state.changed_olm("peer")
    state.room_keys["sid"] = RoomKey("!r:x", "key", time.time(), {USER})
    state.changed_room_key("sid")
    state.devices[USER] = {"A": Device(USER, "A", "c", "e", True)}
    state.changed_devices(USER)
    rows = dict(state._puts)  # what a store would write

    loaded = CryptoState.load(rows, key)

    assert loaded.account.curve25519_key.to_base64() == state.account.curve25519_key.to_base64()
    assert loaded.olm["peer"][0].session_id == session.session_id
    assert loaded.room_keys["sid"].users == {USER}
    assert loaded.devices[USER]["A"].signed_by_owner
    with pytest.raises(StateUnreadable, match="different encryption key"):
        CryptoState.load(rows, derive(b"x" * 32, USER).pickle_key)


def test_a_room_key_rotates_as_the_room_says() -> None:
    out = Outbound(vodozemac.GroupSession())
    out.count = 99
    assert not out.expired({"algorithm": "m.megolm.v1.aes-sha2"})  # the spec's 100 messages
    out.count = 100
    assert out.expired({"algorithm": "m.megolm.v1.aes-sha2"})
    out.count = 3
    assert out.expired({"rotation_period_msgs": 3})
    assert not out.expired({"rotation_period_msgs": 4})
    out.created -= 2
    assert out.expired({"rotation_period_ms": 1000})
    assert not out.expired({"rotation_period_ms": 60_000})


def test_a_shared_outbox_needs_the_encryption_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"homeserver": "http://hs", "user_id": "@bot:hs", "access_token": "t", "token": "t" * 24}
    with pytest.raises(ValueError, match="NOTIFY_ENCRYPTION_KEY"):
        NotifySettings(**base, outbox_url="postgresql://db/x")
    NotifySettings(**base, outbox_url="postgresql://db/x", encryption=False)
    NotifySettings(**base, outbox_url="postgresql://db/x", encryption_key="k" * 16)
    with pytest.raises(ValueError, match="at least 16 bytes"):
        NotifySettings(**base, encryption_key="short")
    with pytest.raises(ValueError, match="KEY_SHARING_ALLOWLIST"):
        NotifySettings(**base, key_sharing="allowlist")
