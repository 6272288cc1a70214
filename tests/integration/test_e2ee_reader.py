"""The E2EE reader on its own, against the real Synapse: Element's crypto (matrix-js-sdk, Rust
crypto) between readers, so that when a bot's message fails to decrypt in a reader, the bot is at
fault, not the reader. Also what the tests of the bots rely on about that crypto: a new device
asks nobody for old keys, unrequested forwarded keys are dropped, MSC4153's isolation mode."""

from __future__ import annotations

import asyncio
import time
import uuid

from tests.integration.conftest import MakeReader
from tests.integration.e2ee_reader import Reader, RoomView

TIMEOUT = 90.0


def _names(*people: str) -> list[str]:
    suffix = uuid.uuid4().hex[:6]
    return [f"e2ee-{person}-{suffix}" for person in people]


def _from(view: RoomView, sender: str) -> list[str]:
    return [e.body or "" for e in view.messages if e.sender == sender and e.type == "m.room.message"]


async def _wait_received(reader: Reader, event_type: str, timeout: float = TIMEOUT) -> dict[str, object]:
    """The first to-device event of `event_type` the reader's crypto handed on (polled: the reader
    has no event for it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [m for m in (await reader.traffic())["received"] if m["type"] == event_type]
        if found:
            return found[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no {event_type} reached {reader.device_id} within {timeout} s")


async def test_readers_decrypt_each_other_and_a_leaver_reads_no_more(e2ee_readers: MakeReader) -> None:
    alice_name, bob_name = _names("alice", "bob")
    alice, bob = await e2ee_readers(alice_name), await e2ee_readers(bob_name)
    room = await alice.create_room(encrypted=True, invite=[bob.user_id], name="e2ee reader")
    await bob.join(room)
    sent = [await alice.send(room, f"secret {n}") for n in range(3)]

    view = await bob.events(room, wait_for=3, timeout=TIMEOUT)
    mine = [e for e in view.messages if e.event_id in sent]
    assert [e.body for e in mine] == ["secret 0", "secret 1", "secret 2"], view.failures
    assert all(e.encrypted and e.decrypted and e.wire_type == "m.room.encrypted" for e in mine)
    assert all(e.failure is None and e.type == "m.room.message" for e in mine)
    assert {e.sender_device for e in mine} == {alice.device_id}
    encryption = [e for e in view.events if e.type == "m.room.encryption"]
    assert encryption
    assert encryption[0].content == {"algorithm": "m.megolm.v1.aes-sha2"}

    # Nobody cross-signs here: Bob knows Alice's device, its owner has not signed it.
    status = await bob.device_status(alice.user_id, alice.device_id, wait=TIMEOUT)
    assert status.known
    assert not status.signed_by_owner
    assert not status.cross_signing_verified
    assert mine[0].shield is not None
    assert mine[0].shield.reason == "UNSIGNED_DEVICE"

    # A second device of Bob reads what is sent once Alice knows it, not what was sent before.
    bob2 = await e2ee_readers(bob_name)
    assert (await alice.device_status(bob.user_id, bob2.device_id, wait=TIMEOUT)).known
    later = await alice.send(room, "for both of bob's devices")
    view2 = await bob2.events(room, wait_for=1, timeout=TIMEOUT)
    by_id = {e.event_id: e for e in view2.messages}
    assert by_id[later].decrypted
    assert by_id[later].body == "for both of bob's devices"
    before = [by_id[event_id] for event_id in sent]
    assert all(e.failure is not None and not e.decrypted for e in before), before

    await bob.leave(room)
    gone = await alice.send(room, "after bob left")
    assert "after bob left" in _from(await alice.events(room, wait_for=5, timeout=TIMEOUT), alice.user_id)
    assert (await bob.events(room, timeout=TIMEOUT)).membership == "leave"
    for device in (bob, bob2):  # the leave is the user's: Bob's other device is out too
        seen = await device.events(room, timeout=TIMEOUT)
        assert gone not in {e.event_id for e in seen.events}
        assert "after bob left" not in _from(seen, alice.user_id)

    # Bob's second device never asked anyone for the keys it missed (js-sdk turns the Rust crypto's
    # room key requests off), so a sender sees no request to answer.
    requested = [m for m in (await bob2.traffic())["sent"] if m["type"] == "m.room_key_request"]
    assert requested == []


async def test_unrequested_forwarded_keys_from_the_sender_are_dropped(e2ee_readers: MakeReader) -> None:
    """Alice's own device forwards her session to Bob's new device that missed it: the Rust crypto
    receives it and keeps failing, so a sender cannot heal a recipient's missing key that way."""
    alice_name, bob_name = _names("alice", "bob")
    alice, bob = await e2ee_readers(alice_name), await e2ee_readers(bob_name)
    room = await alice.create_room(encrypted=True, invite=[bob.user_id])
    await bob.join(room)
    early = await alice.send(room, "before bob's second device")
    bob2 = await e2ee_readers(bob_name)
    assert (await bob2.events(room, timeout=TIMEOUT)).messages  # bob2 has the room and the event

    sessions = await alice.forward_room_keys(room, bob.user_id, bob2.device_id)
    assert sessions
    to_bob2 = [m for m in (await alice.traffic())["sent"] if bob2.device_id in m["to"].get(bob.user_id, [])]
    assert [m["type"] for m in to_bob2] == ["m.room.encrypted"]  # Olm-wrapped, as a forward must be
    forwarded = await _wait_received(bob2, "m.forwarded_room_key")
    assert forwarded["sender"] == alice.user_id
    assert forwarded["session_id"] in sessions
    event = {e.event_id: e for e in (await bob2.events(room, timeout=TIMEOUT)).messages}[early]
    assert not event.decrypted
    assert event.failure is not None
    assert "Received a forwarded room key that we didn't request" in bob2.log.read_text()


async def test_only_signed_devices_mode_needs_the_sender_cross_signed(e2ee_readers: MakeReader) -> None:
    """MSC4153 in Element's crypto: with OnlySignedDevicesIsolationMode, messages from a device its
    owner has not cross-signed fail as UNSIGNED_SENDER_DEVICE; once signed, they decrypt."""
    alice_name, bob_name = _names("alice", "bob")
    alice, bob = await e2ee_readers(alice_name), await e2ee_readers(bob_name)
    await bob.isolation("signed")
    room = await alice.create_room(encrypted=True, invite=[bob.user_id])
    await bob.join(room)
    unsigned = await alice.send(room, "from an unsigned device")
    view = await bob.events(room, wait_for=1, settled=True, timeout=TIMEOUT)
    assert {e.event_id: e for e in view.messages}[unsigned].failure == "UNSIGNED_SENDER_DEVICE"

    signing = await alice.bootstrap_cross_signing()
    assert signing["ready"]
    assert signing["device"]["signedByOwner"]
    status = await bob.device_status(
        alice.user_id, alice.device_id, wait=TIMEOUT, expect={"signed_by_owner": True}
    )
    assert status.signed_by_owner
    assert not status.cross_signing_verified
    signed = await alice.send(room, "from a signed device")
    view = await bob.events(room, wait_for=2, timeout=TIMEOUT)  # the first may decrypt on a retry now
    event = {e.event_id: e for e in view.messages}[signed]
    assert event.decrypted
    assert event.body == "from a signed device"


async def test_a_late_device_lists_every_event_before_its_sync_window(e2ee_readers: MakeReader) -> None:
    """`events` pages back past the first sync's window (20 events), in the clear here."""
    (alice_name,) = _names("alice")
    alice = await e2ee_readers(alice_name)
    room = await alice.create_room(encrypted=False)
    sent = await asyncio.gather(*(alice.send(room, f"plain {n}") for n in range(30)))
    late = await e2ee_readers(alice_name)
    view = await late.events(room, wait_for=30, timeout=TIMEOUT)
    assert {e.event_id for e in view.messages} == set(sent)
    assert not any(e.encrypted for e in view.events)
    assert view.events[0].type == "m.room.create"


async def test_reading_a_room_again_never_pages_from_its_end(e2ee_readers: MakeReader) -> None:
    """Once a timeline is paged back to the room's start, its token is null, and js-sdk would page
    it again from the room's end (no `from`): an event the sync had not delivered yet landed at
    the front, listing the newest message first (CI, once). Every page starts from a token."""
    (alice_name,) = _names("alice")
    alice = await e2ee_readers(alice_name)
    room = await alice.create_room(encrypted=False)
    first = await alice.send(room, "first")
    assert [e.event_id for e in (await alice.events(room, wait_for=1)).messages] == [first]
    second = await alice.send(room, "second")
    view = await alice.events(room, wait_for=2)
    assert [e.event_id for e in view.messages] == [first, second]
    paged = (await alice.traffic())["paged"]
    assert paged
    assert all(page["from"] for page in paged), paged
