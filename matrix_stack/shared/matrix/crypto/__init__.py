"""End-to-end encryption for a bot that sends: Olm and Megolm on vodozemac, cross-signing by hand.

Built on vodozemac (the Rust implementation Element's crypto uses) rather than matrix-nio's crypto,
because the bot's crypto state must live in the outbox's store under a lease (one device shared by
every replica, one user of it at a time), which nio's in-memory machine with its own SQLite file
cannot do; and nio lacks cross-signing, the room's rotation settings and fallback keys.

- `secret.py`: the one secret everything at rest derives from (state encryption, cross-signing keys).
- `canonical.py`: canonical JSON and Ed25519 signatures over it.
- `devices.py`: members' devices from `/keys/query`, their signatures, who gets room keys.
- `state.py`: what is kept (account, Olm sessions, room keys for later readers, device lists).
- `keys.py`: the signed key objects the device publishes (device, one-time, fallback, cross-signing).
- `olm.py`: Olm sessions with devices: room keys sealed for one device, to-device messages opened.
- `megolm.py`: the room's sending session and its rotation, encrypted room events made and opened.
- `rooms.py`: what the bot knows of a room from its state (encryption, members, powers), the sync filter.
- `machine.py`: the device at work: keys uploaded, rooms tracked from `/sync`, messages encrypted.
"""
