// An independent end-to-end encryption reader for the integration tests: one Matrix device run by
// matrix-js-sdk with its Rust crypto (the crypto Element Web uses), driven by JSON lines.
//
// Protocol: each stdin line is a request {"id": ..., "cmd": NAME, ...arguments}; each answer is one
// stdout line {"id": ..., "ok": true, "result": ...} or {"id": ..., "ok": false, "error": "..."}.
// Requests run concurrently; answers carry the request's id. Everything else (the SDK's and the
// Rust crypto's logs) goes to stderr. Closing stdin stops the client and exits.
//
// The crypto store is in memory (Node has no IndexedDB), so every run is a new device.

import { createInterface } from "node:readline";
import { format } from "node:util";

// Before the SDK loads: its logger and the crypto's tracing write through console.*, and stdout
// carries only the protocol.
for (const level of ["log", "info", "debug", "trace", "warn"]) {
    console[level] = (...args) => process.stderr.write(`${level}: ${format(...args)}\n`);
}

const sdk = await import("matrix-js-sdk");
const cryptoApi = await import("matrix-js-sdk/lib/crypto-api/index.js");

const DEFAULT_TIMEOUT_MS = 60_000;
// Fallback wake-up of waits that also listen for events: some changes (a device list, a key
// arriving for an event already marked as failed) emit nothing this reader listens to.
const TICK_MS = 250;
// How often a wait re-attempts decryption of events that failed for want of a key: the crypto
// retries by itself when a key arrives; this covers keys it filed without telling the event.
const RETRY_MS = 2_000;

let client = null;
let password = null;
const traffic = { sent: [], received: [], synced: [], paged: [] };

// -- protocol ------------------------------------------------------------------------------------

function answer(message) {
    process.stdout.write(`${JSON.stringify(message)}\n`);
}

function need(args, ...names) {
    for (const name of names) {
        if (args[name] === undefined || args[name] === null) throw new Error(`missing argument "${name}"`);
    }
}

function requireClient() {
    if (client === null) throw new Error("not logged in: send login first");
    return client;
}

// -- waiting -------------------------------------------------------------------------------------

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Resolves with check()'s first truthy value, re-checked on each of the client's emitted `events`
// and every TICK_MS; rejects with `what` once timeout_ms has passed.
async function waitUntil(check, { timeoutMs, what, events = [] }) {
    const deadline = Date.now() + timeoutMs;
    let wake = null;
    const poke = () => wake?.();
    for (const name of events) client.on(name, poke);
    try {
        for (;;) {
            const value = await check();
            if (value) return value;
            const left = deadline - Date.now();
            if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
            await new Promise((resolve) => {
                wake = resolve;
                setTimeout(resolve, Math.min(TICK_MS, left));
            });
            wake = null;
        }
    } finally {
        for (const name of events) client.off(name, poke);
    }
}

const ROOM_EVENTS = [sdk.ClientEvent.Room, sdk.RoomEvent.MyMembership, sdk.RoomEvent.Timeline, sdk.ClientEvent.Sync];

// The room as this client's sync knows it, once its own membership is `membership`; for a joined
// room, once its encryption state is known too (sending before that could go out in the clear).
async function roomWith(roomId, membership, timeoutMs) {
    return waitUntil(
        () => {
            const room = client.getRoom(roomId);
            if (!room || room.getMyMembership() !== membership) return null;
            if (membership === "join" && !room.currentState.getStateEvents("m.room.create", "")) return null;
            return room;
        },
        { timeoutMs, what: `room ${roomId} with membership ${membership}`, events: ROOM_EVENTS },
    );
}

// -- to-device traffic, for tests and for finding out what the crypto sends ----------------------

async function tracingFetch(input, init) {
    const url = new URL(input instanceof Request ? input.url : String(input));
    const response = await fetch(input, init);
    const path = url.pathname;
    if (path.includes("/sendToDevice/") && init?.body) {
        const type = decodeURIComponent(path.split("/sendToDevice/")[1].split("/")[0]);
        const { messages = {} } = JSON.parse(init.body);
        const to = Object.fromEntries(Object.entries(messages).map(([user, devices]) => [user, Object.keys(devices)]));
        const contents = Object.values(messages).flatMap((devices) => Object.values(devices));
        traffic.sent.push({ type, to, status: response.status, plain: type === "m.room.encrypted" ? null : contents });
    } else if (path.endsWith("/messages")) {
        traffic.paged.push({ dir: url.searchParams.get("dir"), from: url.searchParams.has("from") });
    } else if (path.endsWith("/sync") && response.ok) {
        const body = await response.clone().json();
        for (const event of body.to_device?.events ?? []) {
            traffic.synced.push({ type: event.type, sender: event.sender, sender_key: event.content?.sender_key ?? null });
        }
    }
    return response;
}

function onToDevice(event) {
    // Decrypted by the crypto (or plain); only the names of the content keys are kept (no key material).
    const content = event.getContent();
    traffic.received.push({
        type: event.getType(),
        sender: event.getSender(),
        wire_type: event.getWireType(),
        room_id: content.room_id ?? null,
        session_id: content.session_id ?? null,
        content_keys: Object.keys(content).sort(),
    });
}

// -- commands ------------------------------------------------------------------------------------

async function login(args) {
    need(args, "homeserver", "user", "password");
    if (client !== null) throw new Error("already logged in");
    const timeoutMs = args.timeout_ms ?? DEFAULT_TIMEOUT_MS;
    const anonymous = sdk.createClient({ baseUrl: args.homeserver, fetchFn: tracingFetch });
    const session = await anonymous.loginRequest({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: args.user },
        password: args.password,
        ...(args.device_id ? { device_id: args.device_id } : {}),
        initial_device_display_name: args.display_name ?? "e2ee reader",
    });
    password = args.password;
    client = sdk.createClient({
        baseUrl: args.homeserver,
        userId: session.user_id,
        deviceId: session.device_id,
        accessToken: session.access_token,
        store: new sdk.MemoryStore(),
        fetchFn: tracingFetch,
        timelineSupport: true,
    });
    await client.initRustCrypto({ useIndexedDB: false });
    if (args.room_key_requests) {
        // js-sdk turns the crypto's room key requests off (element-web#26524); on, to see what the
        // Rust crypto would ask, and whom.
        client.getCrypto().olmMachine.roomKeyRequestsEnabled = true;
    }
    client.on(sdk.ClientEvent.ToDeviceEvent, onToDevice);
    const prepared = new Promise((resolve, reject) => {
        const onSync = (state, _previous, data) => {
            if (state === sdk.SyncState.Prepared) {
                client.off(sdk.ClientEvent.Sync, onSync);
                resolve();
            } else if (state === sdk.SyncState.Error && !data?.error?.httpStatus) {
                logError("sync error", data?.error);
            }
        };
        client.on(sdk.ClientEvent.Sync, onSync);
    });
    await client.startClient({ initialSyncLimit: args.initial_sync_limit ?? 20 });
    await withTimeout(prepared, timeoutMs, "the first sync (PREPARED)");
    await ownKeysPublished(timeoutMs);
    const keys = await client.getCrypto().getOwnDeviceKeys();
    return { user_id: session.user_id, device_id: session.device_id, ed25519: keys.ed25519, curve25519: keys.curve25519 };
}

// Others can encrypt for this device only once the server holds its keys: wait for that, so a
// test that logs in and then has someone send does not race the key upload.
async function ownKeysPublished(timeoutMs) {
    const user = client.getUserId();
    const device = client.getDeviceId();
    await waitUntil(
        async () => {
            const reply = await client.http.authedRequest(sdk.Method.Post, "/keys/query", undefined, {
                device_keys: { [user]: [device] },
            });
            return Boolean(reply.device_keys?.[user]?.[device]);
        },
        { timeoutMs, what: "this device's keys on the server" },
    );
}

function withTimeout(promise, timeoutMs, what) {
    let timer;
    const expiry = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
    });
    return Promise.race([promise, expiry]).finally(() => clearTimeout(timer));
}

function isolation(args) {
    need(args, "mode");
    const modes = {
        all: () => new cryptoApi.AllDevicesIsolationMode(false),
        signed: () => new cryptoApi.OnlySignedDevicesIsolationMode(),
    };
    if (!modes[args.mode]) throw new Error(`mode must be one of ${Object.keys(modes).join(", ")}`);
    requireClient().getCrypto().setDeviceIsolationMode(modes[args.mode]());
    return { mode: args.mode };
}

async function createRoom(args) {
    const c = requireClient();
    const encrypted = args.encrypted ?? true;
    const { room_id: roomId } = await c.createRoom({
        ...(args.name ? { name: args.name } : {}),
        preset: args.preset ?? "private_chat",
        invite: args.invite ?? [],
        initial_state: encrypted
            ? [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }]
            : [],
    });
    await roomWith(roomId, "join", args.timeout_ms ?? DEFAULT_TIMEOUT_MS);
    return { room_id: roomId };
}

async function join(args) {
    need(args, "room");
    const room = await requireClient().joinRoom(args.room);
    await roomWith(room.roomId, "join", args.timeout_ms ?? DEFAULT_TIMEOUT_MS);
    return { room_id: room.roomId };
}

async function leave(args) {
    need(args, "room");
    await requireClient().leave(args.room);
    await roomWith(args.room, "leave", args.timeout_ms ?? DEFAULT_TIMEOUT_MS);
    return { room_id: args.room };
}

async function send(args) {
    need(args, "room", "body");
    const c = requireClient();
    const room = await roomWith(args.room, "join", args.timeout_ms ?? DEFAULT_TIMEOUT_MS);
    const encrypted = room.hasEncryptionStateEvent();
    const { event_id: eventId } = await c.sendMessage(args.room, { msgtype: args.msgtype ?? "m.text", body: args.body });
    return { event_id: eventId, encrypted };
}

// A reaction (m.annotation), encrypted in an encrypted room as Element sends it.
async function react(args) {
    need(args, "room", "event_id", "key");
    const c = requireClient();
    await roomWith(args.room, "join", args.timeout_ms ?? DEFAULT_TIMEOUT_MS);
    const relation = { rel_type: "m.annotation", event_id: args.event_id, key: args.key };
    const { event_id: eventId } = await c.sendEvent(args.room, "m.reaction", { "m.relates_to": relation });
    return { event_id: eventId };
}

// A reply to an event (rich reply), or with `thread` a message in the thread rooted at it.
async function reply(args) {
    need(args, "room", "event_id", "body");
    const c = requireClient();
    await roomWith(args.room, "join", args.timeout_ms ?? DEFAULT_TIMEOUT_MS);
    const relation = args.thread
        ? { rel_type: "m.thread", event_id: args.event_id, is_falling_back: true, "m.in_reply_to": { event_id: args.event_id } }
        : { "m.in_reply_to": { event_id: args.event_id } };
    const content = { msgtype: "m.text", body: args.body, "m.relates_to": relation };
    const { event_id: eventId } = await c.sendEvent(args.room, "m.room.message", content);
    return { event_id: eventId };
}

// Redacts an event (removing one's own reaction is a redaction).
async function redact(args) {
    need(args, "room", "event_id");
    const c = requireClient();
    const { event_id: eventId } = await c.redactEvent(args.room, args.event_id);
    return { event_id: eventId };
}

// -- reading a room ------------------------------------------------------------------------------

// The room's whole timeline, oldest first: back-paginated to the room's creation (or as far as
// the server lets this user see), so the answer covers every event, not just the sync window. A
// gappy (limited) sync starts a new live timeline; back-pagination links it to the older ones, so
// the events are collected along that chain. A timeline whose backward token is null is at the
// room's start: js-sdk would page it from the room's *end* (no `from`), putting events that the
// sync has not delivered yet at the front (seen once: the newest message listed first).
async function wholeTimeline(room) {
    const backwards = sdk.EventTimeline.BACKWARDS;
    const chain = [room.getLiveTimeline()];
    for (;;) {
        const oldest = chain[chain.length - 1];
        const older = oldest.getNeighbouringTimeline(backwards);
        if (older) chain.push(older);
        else if (oldest.getPaginationToken(backwards) === null) break;
        else if (!(await client.paginateEventTimeline(oldest, { backwards: true, limit: 100 }))) break;
    }
    return chain.reverse().flatMap((timeline) => timeline.getEvents());
}

function failureOf(event) {
    if (!event.isEncrypted()) return null;
    if (event.isBeingDecrypted()) return "DECRYPTION_PENDING";
    if (event.isDecryptionFailure()) return event.decryptionFailureReason ?? "UNKNOWN_ERROR";
    return event.getClearContent() ? null : "NOT_DECRYPTED";
}

async function describe(event) {
    const encrypted = event.isEncrypted();
    const failure = failureOf(event);
    const decrypted = encrypted && failure === null;
    let shield = null;
    if (decrypted) {
        const info = await client.getCrypto().getEncryptionInfoForEvent(event);
        if (info) {
            shield = {
                colour: cryptoApi.EventShieldColour[info.shieldColour],
                reason: info.shieldReason === null ? null : cryptoApi.EventShieldReason[info.shieldReason],
            };
        }
    }
    return {
        event_id: event.getId(),
        sender: event.getSender(),
        sender_device: encrypted ? (event.getWireContent().device_id ?? null) : null,
        wire_type: event.getWireType(),
        type: event.getType(),
        state_key: event.getStateKey() ?? null,
        content: encrypted && !decrypted ? null : event.getContent(),
        encrypted,
        decrypted,
        failure,
        relates_to: event.getRelation() ?? null,
        origin_server_ts: event.getTs(),
        shield,
    };
}

// A message-like event this device can read: sent in the clear, or decrypted.
const readable = (event) => !event.isState() && failureOf(event) === null;
// A message-like event whose decryption is over, either way (a failure may still heal if a key
// comes late: count these only to assert failures that no key will heal).
const settled = (event) => !event.isState() && failureOf(event) !== "DECRYPTION_PENDING";

async function retryFailed(events) {
    const backend = client.cryptoBackend;
    const failed = events.filter((e) => e.isDecryptionFailure() && !e.isBeingDecrypted());
    await Promise.all(failed.map((e) => e.attemptDecryption(backend, { isRetry: true })));
}

async function settle(events, timeoutMs) {
    await Promise.all(events.map((e) => client.decryptEventIfNeeded(e)));
    const pending = events.filter((e) => e.isBeingDecrypted()).map((e) => e.getDecryptionPromise());
    if (pending.length) await withTimeout(Promise.all(pending), timeoutMs, "pending decryptions").catch(logError);
}

async function events(args) {
    need(args, "room");
    const c = requireClient();
    const timeoutMs = args.timeout_ms ?? DEFAULT_TIMEOUT_MS;
    const deadline = Date.now() + timeoutMs;
    const wanted = args.wait_for ?? 0;
    const counted = args.settled ? settled : readable;
    const room = await waitUntil(() => c.getRoom(args.room), { timeoutMs, what: `room ${args.room}`, events: ROOM_EVENTS });
    let lastRetry = Date.now();
    const current = async () => {
        const timeline = await wholeTimeline(room);
        await settle(timeline, Math.max(1, deadline - Date.now()));
        return timeline;
    };
    let timeline = await current();
    if (wanted > 0) {
        const reached = await waitUntil(
            async () => {
                timeline = await current();
                if (timeline.filter(counted).length >= wanted) return true;
                if (Date.now() - lastRetry >= RETRY_MS) {
                    lastRetry = Date.now();
                    await retryFailed(timeline);
                }
                return false;
            },
            {
                timeoutMs: Math.max(1, deadline - Date.now()),
                what: `${wanted} ${args.settled ? "settled" : "readable"} events`,
                events: [sdk.RoomEvent.Timeline, sdk.MatrixEventEvent.Decrypted],
            },
        ).catch(() => false);
        if (!reached) {
            // One last honest attempt, then report what failed and why.
            await retryFailed(timeline);
            await settle(timeline, 5_000);
        }
    }
    return { room_id: room.roomId, membership: room.getMyMembership(), events: await Promise.all(timeline.map(describe)) };
}

// -- devices and trust ---------------------------------------------------------------------------

function statusOf(status) {
    if (status === null) return { known: false, signedByOwner: false, crossSigningVerified: false, localVerified: false, verified: false };
    return {
        known: true,
        signedByOwner: status.signedByOwner,
        crossSigningVerified: status.crossSigningVerified,
        localVerified: status.localVerified,
        verified: status.isVerified(),
    };
}

async function deviceStatus(args) {
    need(args, "user", "device");
    const crypto = requireClient().getCrypto();
    const timeoutMs = args.wait_ms ?? 0;
    const expect = Object.entries(args.expect ?? {});
    const check = async () => {
        await crypto.getUserDeviceInfo([args.user], true);
        return statusOf(await crypto.getDeviceVerificationStatus(args.user, args.device));
    };
    if (timeoutMs <= 0) return check();
    const deadline = Date.now() + timeoutMs;
    const events = [cryptoApi.CryptoEvent.DevicesUpdated, cryptoApi.CryptoEvent.KeysChanged, cryptoApi.CryptoEvent.UserTrustStatusChanged];
    const known = await waitUntil(async () => {
        const status = await check();
        return status.known ? status : null;
    }, { timeoutMs, what: `device ${args.user} ${args.device}`, events });
    if (!expect.length) return known;
    // The expected trust may never come: answer the status there is at the deadline.
    return waitUntil(async () => {
        const status = await check();
        return expect.every(([name, value]) => status[name] === value) || Date.now() >= deadline ? status : null;
    }, { timeoutMs: Math.max(1, deadline - Date.now()) + TICK_MS * 4, what: "the expected trust", events });
}

async function devices(args) {
    need(args, "user");
    const crypto = requireClient().getCrypto();
    const map = await crypto.getUserDeviceInfo([args.user], true);
    const found = [...(map.get(args.user)?.values() ?? [])];
    return Promise.all(
        found.map(async (device) => ({
            device_id: device.deviceId,
            display_name: device.displayName ?? null,
            ed25519: device.getFingerprint?.() ?? device.keys.get(`ed25519:${device.deviceId}`) ?? null,
            curve25519: device.getIdentityKey?.() ?? device.keys.get(`curve25519:${device.deviceId}`) ?? null,
            ...statusOf(await crypto.getDeviceVerificationStatus(args.user, device.deviceId)),
        })),
    );
}

// Cross-signing for this reader's user: new keys when this device has none (the first upload
// needs no UIA on Synapse; a replacement is authorised with the login password), then this
// device signed by them.
async function bootstrapCrossSigning() {
    const c = requireClient();
    const crypto = c.getCrypto();
    await crypto.bootstrapCrossSigning({
        authUploadDeviceSigningKeys: async (makeRequest) => {
            try {
                await makeRequest(null);
            } catch (error) {
                const uia = error?.httpStatus === 401 ? error.data : null;
                if (!uia?.session) throw error;
                await makeRequest({
                    type: "m.login.password",
                    identifier: { type: "m.id.user", user: c.getUserId() },
                    password,
                    session: uia.session,
                });
            }
        },
    });
    const status = await crypto.getCrossSigningStatus();
    return {
        ready: await crypto.isCrossSigningReady(),
        master_key: await crypto.getCrossSigningKeyId(),
        private_keys_cached: status.privateKeysCachedLocally,
        device: statusOf(await crypto.getDeviceVerificationStatus(c.getUserId(), c.getDeviceId())),
    };
}

// Another device of the same user takes over the cross-signing secrets (as a QR login does) and
// signs itself with them.
async function exportSecrets() {
    return { bundle: await requireClient().getCrypto().exportSecretsBundle() };
}

async function importSecrets(args) {
    need(args, "bundle");
    const c = requireClient();
    const crypto = c.getCrypto();
    await crypto.importSecretsBundle(args.bundle);
    await crypto.crossSignDevice(c.getDeviceId());
    return { device: statusOf(await crypto.getDeviceVerificationStatus(c.getUserId(), c.getDeviceId())) };
}

// Sends the room's Megolm sessions this device holds to one device as m.forwarded_room_key
// (Olm-encrypted), unrequested: to find out whether a receiving crypto accepts them.
async function forwardRoomKeys(args) {
    need(args, "room", "user", "device");
    const c = requireClient();
    const crypto = c.getCrypto();
    const sessions = (await crypto.exportRoomKeys()).filter((s) => s.room_id === args.room);
    let sent = 0;
    for (const session of sessions) {
        const content = {
            algorithm: session.algorithm,
            room_id: session.room_id,
            sender_key: session.sender_key,
            session_id: session.session_id,
            session_key: session.session_key,
            sender_claimed_ed25519_key: session.sender_claimed_keys?.ed25519,
            forwarding_curve25519_key_chain: session.forwarding_curve25519_key_chain ?? [],
        };
        const batch = await crypto.encryptToDeviceMessages("m.forwarded_room_key", [{ userId: args.user, deviceId: args.device }], content);
        // Sent now rather than queued: once this answers, the server holds the forward.
        const messages = new Map();
        for (const { userId, deviceId, payload } of batch.batch) {
            if (!messages.has(userId)) messages.set(userId, new Map());
            messages.get(userId).set(deviceId, payload);
        }
        await c.sendToDevice(batch.eventType, messages);
        sent += batch.batch.length;
    }
    return { session_ids: sessions.map((s) => s.session_id), sent };
}

function trafficLog() {
    return traffic;
}

async function stop() {
    client?.stopClient();
    setImmediate(() => process.exit(0));
    return { stopped: true };
}

const COMMANDS = {
    login,
    isolation,
    create_room: createRoom,
    join,
    leave,
    send,
    react,
    reply,
    redact,
    events,
    device_status: deviceStatus,
    devices,
    bootstrap_cross_signing: bootstrapCrossSigning,
    export_secrets: exportSecrets,
    import_secrets: importSecrets,
    forward_room_keys: forwardRoomKeys,
    traffic: trafficLog,
    stop,
};

function logError(...args) {
    process.stderr.write(`reader error: ${format(...args)}\n`);
}

async function handle(line) {
    let request;
    try {
        request = JSON.parse(line);
    } catch (error) {
        answer({ id: null, ok: false, error: `not JSON: ${error.message}` });
        return;
    }
    const { id = null, cmd, ...args } = request;
    const command = COMMANDS[cmd];
    if (!command) {
        answer({ id, ok: false, error: `unknown command ${JSON.stringify(cmd)}; known: ${Object.keys(COMMANDS).join(", ")}` });
        return;
    }
    try {
        answer({ id, ok: true, result: (await command(args)) ?? null });
    } catch (error) {
        logError(`${cmd} failed:`, error);
        const detail = error?.data?.errcode ? ` (${error.httpStatus} ${error.data.errcode})` : "";
        answer({ id, ok: false, error: `${cmd}: ${error?.message ?? error}${detail}` });
    }
}

process.on("unhandledRejection", (reason) => logError("unhandled rejection:", reason));

const input = createInterface({ input: process.stdin });
input.on("line", (line) => {
    if (line.trim()) handle(line);
});
input.on("close", () => {
    client?.stopClient();
    process.exit(0);
});
process.stderr.write("reader ready\n");
