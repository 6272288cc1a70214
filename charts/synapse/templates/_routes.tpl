{{/*
The routing table, in the order Envoy tries it (first match wins; every regex must match the whole
path, query string excluded). Each entry: target (a pool kind, "main" or "mas"), regex list,
optional methods, hash (room | user | origin: the key the target's ring hash uses), timeout, and
when (mas | nomas | msc4306 | matrixrtc: matrixRTC.appservice.enabled). A kind with no enabled
pool falls back to main, which then holds its role. Order rules, each for a reason:
  - the hottest routes (sync, timelines, event sending, receipts, typing) come first, for speed:
    their patterns are anchored tightly enough that no later route matches any of their paths
    (the routing tables in tests/data/routing check every overlap named below);
  - main-only endpoints that broader worker patterns would otherwise catch come first;
  - MAS's compatibility endpoints (with sub-paths: logout/all, login/sso/redirect/{idp}) before any
    client pattern, anchored on the version so nothing else ending in /login matches;
  - strict stream writers (500 on any other process) before every broad pattern; push rules before
    account data (a rule id may contain "tags" or "account_data");
  - quarantine writes before the generic media routes (they need a media-capable writer);
  - the remaining writers, then hashed readers, then the round-robin reader set; main last.
Version prefixes are those the servlets register (api/v1 | r0 | v3 | unstable).
*/}}
{{- define "synapse.routes" -}}
- name: sync
  target: sync
  hash: user
  timeout: 0s  # long polls: the client's timeout decides
  regex:
    - /_matrix/client/(r0|v3|unstable)/sync
    - /_matrix/client/unstable/org\.matrix\.simplified_msc3575/sync
    - /_matrix/client/(api/v1|r0|v3|unstable)/events
    - /_matrix/client/(api/v1|r0|v3|unstable)/initialSync
    - /_matrix/client/(api/v1|r0|v3|unstable)/rooms/[^/]+/initialSync
- name: messages
  target: room
  hash: room  # pagination of one room must stay on one instance
  regex:
    - /_matrix/client/(api/v1|r0|v3|unstable)/rooms/[^/]+/messages
- name: events
  target: room
  hash: room
  regex:
    - /_matrix/client/(api/v1|r0|v3|unstable)/rooms/[^/]+/(redact|send)/.+
    - /_matrix/client/(api/v1|r0|v3|unstable)/rooms/[^/]+/state/.+
    - /_matrix/client/(api/v1|r0|v3|unstable)/rooms/[^/]+/(join|invite|leave|ban|unban|kick)(/[^/]+)?
    - /_matrix/client/(api/v1|r0|v3|unstable)/(join|knock)/[^/]+(/[^/]+)?
- name: receipts
  target: receipts
  regex:
    - /_matrix/client/(r0|v3|unstable)/rooms/[^/]+/receipt/[^/]+/[^/]+
    - /_matrix/client/(r0|v3|unstable)/rooms/[^/]+/read_markers
- name: typing
  target: typing
  regex:
    - /_matrix/client/(api/v1|r0|v3|unstable)/rooms/[^/]+/typing/[^/]+
- name: main-only
  target: main
  regex:
    - /_matrix/client/(r0|v3|unstable)/account/3pid/.+
    - /_matrix/client/(api/v1|r0|v3|unstable)/directory/list/.*
    - /_matrix/client/(api/v1|r0|v3|unstable)/rooms/[^/]+/(forget|upgrade|report)(/.*)?
    - /_matrix/client/(r0|v3|unstable)/users/[^/]+/report
    - /_matrix/client/(v1|unstable/org\.matrix\.msc4108)/rendezvous(/.*)?
    - /_matrix/client/(r0|v3|unstable)/pushers(/.*)?
- name: main-only-writes
  target: main
  methods: [POST, PUT, DELETE]
  regex:
    - /_matrix/client/unstable/org\.matrix\.msc4140/delayed_events/[^/]+(/cancel|/send)?
- name: mas-compat
  when: mas
  target: mas
  regex:
    - /_matrix/client/(api/v1|r0|v3|unstable)/(login|logout|refresh)(/.*)?
- name: sso
  when: nomas
  target: main  # the username-picker session lives in one process's memory
  regex:
    - /_matrix/client/(api/v1|r0|v3|unstable)/login/(sso/redirect|cas/ticket)(/.*)?
    - /_synapse/client/(pick_idp|pick_username(/.*)?|new_user_consent|sso_register|oidc/callback|saml2/authn_response)
- name: to-device
  target: to_device
  regex:
    - /_matrix/client/(r0|v3|unstable)/sendToDevice/[^/]+/[^/]+
- name: push-rules
  target: push_rules
  regex:
    - /_matrix/client/(api/v1|r0|v3|unstable)/pushrules/.*
- name: thread-subscriptions
  when: msc4306
  target: thread_subscriptions
  regex:
    - /_matrix/client/unstable/io\.element\.msc4306/rooms/[^/]+/thread/[^/]+/subscription
    - /_matrix/client/unstable/io\.element\.msc4308/thread_subscriptions
- name: quarantine
  target: quarantined_media
  slow: true  # a whole room's or user's media can take a while
  regex:
    - /_synapse/admin/v1/quarantine_media/[^/]+
    - /_synapse/admin/v1/media/(un)?quarantine/[^/]+/[^/]+
    - /_synapse/admin/v1/(room|user)/[^/]+/media/quarantine
- name: media
  target: media_repository
  media: true
  regex:
    - /_matrix/media/.*
    - /_matrix/client/v1/media/.*
    - /_matrix/federation/v1/media/.*
    - /_synapse/admin/v1/purge_media_cache
    - /_synapse/admin/v1/(room|user)/[^/]+/media(/.*)?
    - /_synapse/admin/v1/users/[^/]+/media
    - /_synapse/admin/v1/media/.*
- name: account-data
  target: account_data
  regex:
    - /_matrix/client/(r0|v3|unstable)/user/[^/]+/(rooms/[^/]+/)?(tags|account_data)(/.*)?
    - /_matrix/client/unstable/org\.matrix\.msc3391/user/[^/]+/(rooms/[^/]+/)?account_data/.*
- name: presence
  target: presence
  regex:
    - /_matrix/client/(api/v1|r0|v3|unstable)/presence/.*
- name: device-lists
  target: device_lists
  regex:
    - /_matrix/client/(r0|v3|unstable)/delete_devices
    - /_matrix/client/(r0|v3|unstable)/devices(/.*)?
    - /_matrix/client/(r0|v3|unstable)/keys/upload(/.*)?
    - /_matrix/client/(r0|v3|unstable)/keys/(device_signing|signatures)/upload
- name: profile
  target: room  # profile changes send a membership event into every joined room
  regex:
    - /_matrix/client/(api/v1|r0|v3|unstable)/profile/.+
- name: federation-send
  target: federation_reader
  hash: origin  # one origin's transactions stay in order on one instance
  regex:
    - /_matrix/federation/v1/send/[^/]+/?  # Synapse's own client retries with the slash
- name: federation
  target: federation_reader
  regex:
    - /_matrix/federation/v1/(version|publicRooms)
    - /_matrix/federation/v1/(event|state|state_ids|backfill|get_missing_events|query|make_join|make_leave|make_knock|send_knock|event_auth|timestamp_to_event|exchange_third_party_invite|user/devices|hierarchy)/.*
    - /_matrix/federation/(v1|v2)/(send_join|send_leave|invite)/.*
    - /_matrix/key/v2/(query|server)(/.*)?
- name: user-directory
  target: user_dir
  regex:
    - /_matrix/client/(r0|v3|unstable)/user_directory/search
- name: client-reader-get
  target: client_reader
  methods: [GET]
  regex:
    - /_synapse/admin/v2/users/[^/]+
- name: client-reader
  target: client_reader
  regex:
    - /_matrix/client/(api/v1|r0|v3|unstable)/(createRoom(/[^/]+)?|publicRooms|joined_rooms|search|capabilities|notifications|versions|voip/turnServer)
    - /_matrix/client/versions
    - /_matrix/client/(api/v1|r0|v3|unstable)/rooms/[^/]+/(joined_members|members|state|aliases)
    - /_matrix/client/unstable/[^/]+/rooms/[^/]+/aliases
    - /_matrix/client/(api/v1|r0|v3|unstable)/events/[^/]+
    - /_matrix/client/(v1|unstable/org\.matrix\.msc2965)/auth_metadata
    - /_matrix/client/(api/v1|r0|v3|unstable)/rooms/[^/]+/(context|event)/.+
    - /_matrix/client/v1/rooms/[^/]+/(hierarchy|threads|timestamp_to_event)
    - /_matrix/client/(v1|unstable)/rooms/[^/]+/relations/.+
    - /_matrix/client/unstable/im\.nheko\.summary/summary/.+
    - /_matrix/client/unstable/im\.nheko\.summary/rooms/[^/]+/summary
    - /_matrix/client/v1/room_summary/.+
    - /_matrix/client/(r0|v3|unstable)/account/(3pid|whoami|deactivate)
    - /_matrix/client/(api/v1|r0|v3|unstable)/directory/room/.+
    - /_matrix/client/(api/v1|r0|v3|unstable)/user/[^/]+/filter(/.*)?
    - /_matrix/client/(r0|v3|unstable)/keys/(query|changes|claim)
    - /_matrix/client/(r0|v3|unstable)/room_keys/.*
    - /_matrix/client/(r0|v3|unstable)/(register|password_policy)
    - /_matrix/client/unstable/org\.matrix\.msc4140/delayed_events(/[^/]+(/restart)?)?
    - /_matrix/client/unstable/org\.matrix\.msc4143/rtc/transports
    - /_synapse/admin/v1/rooms/[^/]+
- name: client-reader-mas
  when: mas
  target: client_reader
  regex:
    - /_synapse/mas/.+
- name: client-reader-auth
  when: nomas
  target: client_reader
  regex:
    - /_matrix/client/(api/v1|r0|v3|unstable)/login
    - /_matrix/client/(r0|v3|unstable)/register/available
    - /_matrix/client/v1/register/m\.login\.registration_token/validity
- name: matrixrtc
  when: matrixrtc
  # MSC4512's proxy servlet is a client servlet of main and every generic worker (a kind with a
  # client listener in files/kinds.yaml): the round-robin reader set, with no state to stick to.
  target: client_reader
  regex:
    - /_matrix/client/(unstable/[^/]+|v[^/]+)/rtc/livekit(/.*)?
- name: main
  target: main
  regex:
    - /_matrix/.*
    - /_synapse/.*
    - /\.well-known/matrix/.*
{{- end -}}
