{{/*
Pool kinds: what each kind of process is. "writes" are the streams its instances write;
"listeners" its HTTP listener resources (besides replication and metrics); "singleton" kinds allow
one replica; "named" kinds need a stable worker_name (StatefulSet) because config names them.
*/}}
{{- define "synapse.kinds" -}}
main: {app: main, writes: [], listeners: [client, federation], singleton: true, named: true}
typing: {app: generic_worker, writes: [typing], listeners: [client], singleton: true, named: true}
to_device: {app: generic_worker, writes: [to_device], listeners: [client], singleton: true, named: true}
account_data: {app: generic_worker, writes: [account_data], listeners: [client], singleton: true, named: true}
presence: {app: generic_worker, writes: [presence], listeners: [client], singleton: true, named: true}
push_rules: {app: generic_worker, writes: [push_rules], listeners: [client], singleton: true, named: true}
receipts: {app: generic_worker, writes: [receipts], listeners: [client], singleton: false, named: true}
device_lists: {app: generic_worker, writes: [device_lists], listeners: [client], singleton: false, named: true}
thread_subscriptions: {app: generic_worker, writes: [thread_subscriptions], listeners: [client], singleton: false, named: true}
quarantined_media: {app: generic_worker, writes: [quarantined_media_changes], listeners: [client, media], singleton: false, named: true, media: true}
event_persister: {app: generic_worker, writes: [events], listeners: [], singleton: false, named: true}
media_repository: {app: generic_worker, writes: [], listeners: [media], singleton: false, named: false, media: true}
media_background: {app: generic_worker, writes: [], listeners: [media], singleton: true, named: true, media: true}
room: {app: generic_worker, writes: [], listeners: [client], singleton: false, named: false}
sync: {app: generic_worker, writes: [], listeners: [client], singleton: false, named: false}
federation_reader: {app: generic_worker, writes: [], listeners: [federation], singleton: false, named: false}
client_reader: {app: generic_worker, writes: [], listeners: [client], singleton: false, named: false}
user_dir: {app: generic_worker, writes: [], listeners: [client], singleton: true, named: true}
background: {app: generic_worker, writes: [], listeners: [], singleton: true, named: true}
pusher: {app: generic_worker, writes: [], listeners: [], singleton: false, named: true}
federation_sender: {app: generic_worker, writes: [], listeners: [], singleton: false, named: true}
{{- end -}}

{{/* Enabled pools, sorted by name, each with its kind's properties; fails on invalid topologies. */}}
{{- define "synapse.pools" -}}
{{- $kinds := include "synapse.kinds" . | fromYaml -}}
{{- $pools := dict -}}
{{- $mains := list -}}
{{- range $name, $pool := .Values.pools -}}
{{- if or (not (hasKey $pool "enabled")) $pool.enabled -}}
{{- if not (hasKey $kinds $pool.kind) -}}
{{- fail (printf "pools.%s.kind %q is not a pool kind (one of: %s)" $name $pool.kind (keys $kinds | sortAlpha | join ", ")) -}}
{{- end -}}
{{- if not (regexMatch "^[a-z][a-z0-9_]{0,30}$" $name) -}}
{{- fail (printf "pool name %q: use lower-case letters, digits and _ (at most 31 characters)" $name) -}}
{{- end -}}
{{- $kind := get $kinds $pool.kind -}}
{{- $replicas := int (default 1 $pool.replicas) -}}
{{- if and $kind.singleton (gt $replicas 1) -}}
{{- fail (printf "pools.%s: a %s pool runs exactly one instance (Synapse allows one %s); set replicas: 1" $name $pool.kind (ternary "writer of its stream" "process of this kind" (gt (len $kind.writes) 0))) -}}
{{- end -}}
{{- if eq $pool.kind "main" }}{{ $mains = append $mains $name }}{{ end -}}
{{- $_ := set $pools $name (merge (dict "name" $name "kind" $pool.kind "replicas" $replicas) $kind) -}}
{{- end -}}
{{- end -}}
{{- if ne (len $mains) 1 -}}
{{- fail (printf "exactly one enabled pool of kind main is needed, found %d" (len $mains)) -}}
{{- end -}}
{{- toYaml $pools -}}
{{- end -}}

{{- define "synapse.fullname" -}}{{ include "msl.fullname" . }}{{- end -}}

{{/* The Kubernetes name of a pool's workload (pool names use _, Kubernetes names -). */}}
{{- define "synapse.poolName" -}}
{{- /* At most 52 characters: a StatefulSet's pods and revision label add to it. */ -}}
{{- include "synapse.name" (dict "root" .root "suffix" (.pool | replace "_" "-") "max" 52) -}}
{{- end -}}

{{/*
`<fullname>-<suffix>` in at most `max` characters: the release part is shortened (with a hash of
the full name, so two long release names stay apart), never the suffix, so components stay distinct.
*/}}
{{- define "synapse.name" -}}
{{- $release := include "msl.fullname" .root -}}
{{- $room := int (sub (sub (int .max) 1) (len .suffix)) -}}
{{- if gt (len $release) $room -}}
{{- $release = printf "%s-%s" ($release | trunc (int (sub $room 5)) | trimSuffix "-") ($release | sha256sum | trunc 4) -}}
{{- end -}}
{{- printf "%s-%s" $release .suffix -}}
{{- end -}}

{{/*
Everything Synapse's configuration derives from the pools: instance names (a named instance's
worker_name is its pod name), stream writers, instance_map, and the instances of each role.
*/}}
{{- define "synapse.topology" -}}
{{- $root := . -}}
{{- $pools := include "synapse.pools" . | fromYaml -}}
{{- $ns := .Release.Namespace -}}
{{- $instances := list -}}
{{- $writers := dict -}}
{{- $instanceMap := dict -}}
{{- $roles := dict -}}
{{- $mainPool := "" -}}
{{- range $name, $pool := $pools -}}
{{- if eq $pool.kind "main" -}}
{{- $mainPool = $name -}}
{{- $workload := include "synapse.poolName" (dict "root" $root "pool" $name) -}}
{{- $_ := set $instanceMap "main" (dict "host" (printf "%s-0.%s.%s.svc.cluster.local" $workload $workload $ns) "port" 9093) -}}
{{- else if $pool.named -}}
{{- $workload := include "synapse.poolName" (dict "root" $root "pool" $name) -}}
{{- range $i := until (int $pool.replicas) -}}
{{- $instance := printf "%s-%d" $workload $i -}}
{{- $instances = append $instances (dict "name" $instance "pool" $name "kind" $pool.kind) -}}
{{- range $stream := $pool.writes -}}
{{- $_ := set $writers $stream (append (get $writers $stream | default list) $instance) -}}
{{- $_ := set $instanceMap $instance (dict "host" (printf "%s.%s.%s.svc.cluster.local" $instance $workload $ns) "port" 9093) -}}
{{- end -}}
{{- $_ := set $roles $pool.kind (append (get $roles $pool.kind | default list) $instance) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $workers := gt (len $pools) 1 -}}
{{- if and $workers (not .Values.redis.host) -}}
{{- fail "workers replicate through Redis: set redis.host (or disable every pool but main)" -}}
{{- end -}}
{{- $media := list -}}
{{- range $name, $pool := $pools }}{{ if $pool.media }}{{ $media = append $media $name }}{{ end }}{{ end -}}
{{- $streamWriters := dict -}}
{{- range $stream := list "events" "typing" "to_device" "account_data" "presence" "push_rules" "receipts" "device_lists" "thread_subscriptions" -}}
{{- $_ := set $streamWriters $stream (get $writers $stream | default (list "master")) -}}
{{- end -}}
{{- /* Quarantine writes: main (its background update writes the stream) and the media-capable writers. */ -}}
{{- $_ := set $streamWriters "quarantined_media_changes" (concat (list "master") (get $writers "quarantined_media_changes" | default list)) -}}
{{- $backgroundMedia := "" -}}
{{- with get $roles "media_background" }}{{ $backgroundMedia = first . }}{{ end -}}
{{- if and $media (not $backgroundMedia) -}}
{{- fail (printf "media pools (%s) need a media_background pool: the one media instance that runs background jobs" (join ", " $media)) -}}
{{- end -}}
{{- if and $media (not (get $writers "quarantined_media_changes")) -}}
{{- fail (printf "media pools (%s) need a quarantined_media pool: with media off on main, quarantine writes need a media-capable stream writer" (join ", " $media)) -}}
{{- end -}}
{{- $topology := dict
  "pools" $pools "mainPool" $mainPool "instances" $instances "workers" $workers
  "stream_writers" $streamWriters "instance_map" $instanceMap "media" (gt (len $media) 0)
  "media_background" $backgroundMedia
  "pusher_instances" (get $roles "pusher" | default list)
  "federation_sender_instances" (get $roles "federation_sender" | default list)
  "background" (get $roles "background" | default list)
  "user_dir" (get $roles "user_dir" | default list) -}}
{{- toYaml $topology -}}
{{- end -}}

{{/* homeserver.yaml: what every process shares. */}}
{{- define "synapse.homeserver" -}}
{{- $t := include "synapse.topology" . | fromYaml -}}
{{- $config := dict
  "server_name" (required "serverName is required" .Values.serverName)
  "public_baseurl" (required "publicBaseurl is required" .Values.publicBaseurl)
  "report_stats" false
  "enable_metrics" true
  "media_store_path" "/media"
  "signing_key_path" (include "synapse.secretFile" (dict "root" . "credential" .Values.secrets.signingKey "key" "signing.key"))
  "macaroon_secret_key_path" (include "synapse.secretFile" (dict "root" . "credential" .Values.secrets.macaroon "key" "macaroon"))
  "form_secret_path" (include "synapse.secretFile" (dict "root" . "credential" .Values.secrets.form "key" "form"))
  "registration_shared_secret_path" (include "synapse.secretFile" (dict "root" . "credential" .Values.secrets.registrationSharedSecret "key" "registration-shared-secret"))
  "log_config" "/conf/log.yaml"
  "enable_media_repo" (not $t.media)
  "database" (dict "name" "psycopg2" "args" (dict "host" .Values.postgres.host "port" .Values.postgres.port "dbname" .Values.postgres.database "user" .Values.postgres.user "sslmode" .Values.postgres.sslmode "cp_min" 5 "cp_max" 10)) -}}
{{- if $t.workers -}}
{{- $_ := set $config "redis" (dict "enabled" true "host" .Values.redis.host "port" .Values.redis.port) -}}
{{- if include "msl.credential.set" .Values.redis.password -}}
{{- $_ := set $config.redis "password_path" (include "synapse.secretFile" (dict "root" . "credential" .Values.redis.password "key" "redis-password")) -}}
{{- end -}}
{{- $_ := set $config "instance_map" $t.instance_map -}}
{{- $_ := set $config "stream_writers" $t.stream_writers -}}
{{- with $t.pusher_instances }}{{ $_ := set $config "pusher_instances" . }}{{ end -}}
{{- with $t.federation_sender_instances }}{{ $_ := set $config "federation_sender_instances" . }}{{ end -}}
{{- with $t.background }}{{ $_ := set $config "run_background_tasks_on" (first .) }}{{ end -}}
{{- with $t.user_dir }}{{ $_ := set $config "update_user_directory_from_worker" (first .) }}{{ end -}}
{{- with $t.media_background }}{{ $_ := set $config "media_instance_running_background_jobs" . }}{{ end -}}
{{- end -}}
{{- if .Values.wellKnown.enabled -}}
{{- $_ := set $config "serve_client_wellknown" true -}}
{{- $client := deepCopy .Values.wellKnown.extraClientContent -}}
{{- with .Values.wellKnown.rtcFoci }}{{ $_ := set $client "org.matrix.msc4143.rtc_foci" . }}{{ end -}}
{{- with $client }}{{ $_ := set $config "extra_well_known_client_content" . }}{{ end -}}
{{- if .Values.wellKnown.server }}{{ $_ := set $config "serve_server_wellknown" true }}{{ end -}}
{{- end -}}
{{- if .Values.experimental.msc4306 -}}
{{- $_ := set $config "experimental_features" (dict "msc4306_enabled" true) -}}
{{- end -}}
{{- if .Values.mas.enabled -}}
{{- $_ := set $config "matrix_authentication_service" (dict
  "enabled" true
  "endpoint" (include "synapse.mas.endpoint" .)
  "secret_path" (include "synapse.secretFile" (dict "root" . "credential" .Values.mas.secrets.synapseShared "key" "mas-shared-secret"))) -}}
{{- end -}}
{{- with .Values.media.storageProviders }}{{ $_ := set $config "media_storage_providers" . }}{{ end -}}
{{- toYaml (mergeOverwrite $config (deepCopy .Values.extraConfig)) -}}
{{- end -}}

{{/* The process-specific config of a pool; @HOSTNAME@ becomes the pod name at start. */}}
{{- define "synapse.processConfig" -}}
{{- $pool := .pool -}}
{{- $http := list (dict "type" "metrics" "port" 9000 "bind_addresses" (list "0.0.0.0")) -}}
{{- if $pool.listeners -}}
{{- $http = append $http (dict "type" "http" "port" 8008 "x_forwarded" true "bind_addresses" (list "0.0.0.0") "resources" (list (dict "names" $pool.listeners "compress" false))) -}}
{{- end -}}
{{- if $pool.named -}}
{{- $http = append $http (dict "type" "http" "port" 9093 "bind_addresses" (list "0.0.0.0") "resources" (list (dict "names" (list "replication")))) -}}
{{- end -}}
{{- $root := .root -}}
{{- $override := dict -}}
{{- if and $root.Values.pgbouncer.enabled (not (has $pool.kind $root.Values.pgbouncer.bypassKinds)) -}}
{{- $database := include "synapse.homeserver" $root | fromYaml | dig "database" dict -}}
{{- $_ := set $database.args "host" (include "synapse.name" (dict "root" $root "suffix" "pgbouncer" "max" 63)) -}}
{{- /* pgbouncer takes plain connections in the cluster; its own hop to PostgreSQL uses postgres.sslmode */ -}}
{{- $_ := set $database.args "sslmode" "prefer" -}}
{{- $_ := set $database.args "port" 5432 -}}
{{- $_ := set $override "database" $database -}}
{{- end -}}
{{- if eq $pool.kind "main" -}}
{{- toYaml (merge (dict "listeners" $http) $override) -}}
{{- else -}}
{{- $config := dict "worker_app" "synapse.app.generic_worker" "worker_listeners" $http "worker_log_config" "/conf/log.yaml" -}}
{{- if $pool.named }}{{ $_ := set $config "worker_name" "@HOSTNAME@" }}{{ end -}}
{{- if $pool.media }}{{ $_ := set $config "enable_media_repo" true }}{{ end -}}
{{- toYaml (merge $config $override) -}}
{{- end -}}
{{- end -}}

{{/* A pod's securityContext: the chart-wide one, running as `uid` (the image's own user). */}}
{{- define "synapse.podSecurity" -}}
{{- toYaml (merge (dict "runAsUser" .uid "runAsGroup" .uid "fsGroup" .uid) (.extra | default dict) (omit .root.Values.podSecurityContext "runAsUser" "runAsGroup" "fsGroup")) -}}
{{- end -}}

{{/* Pod scheduling fields: each from `own` when it sets it (even empty), else from `defaults`. */}}
{{- define "synapse.scheduling" -}}
{{- $own := .own | default dict -}}
{{- $defaults := .defaults | default dict -}}
{{- range $field := list "priorityClassName" "nodeSelector" "tolerations" "affinity" "topologySpreadConstraints" }}
{{- with (hasKey $own $field | ternary (get $own $field) (get $defaults $field)) }}
{{ $field }}:
{{- if kindIs "string" . }} {{ . }}{{ else }}
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "synapse.logConfig" -}}
version: 1
formatters:
  structured: {format: '%(asctime)s %(name)s %(levelname)s %(request)s %(message)s'}
filters:
  context: {(): synapse.logging.context.LoggingContextFilter, request: ""}
handlers:
  console: {class: logging.StreamHandler, formatter: structured, filters: [context]}
root: {level: INFO, handlers: [console]}
disable_existing_loggers: false
{{- end -}}

{{/*
What a pool's pods must restart for: the shared config, the pool's own, the log config, and where
their secrets come from (values and operator Secret names; a value changed in place changes it too).
*/}}
{{- define "synapse.podChecksum" -}}
{{- $root := .root -}}
{{- $inputs := list (include "synapse.homeserver" $root) (include "synapse.processConfig" (dict "root" $root "pool" .pool)) (include "synapse.logConfig" $root) (toJson $root.Values.secrets) (toJson $root.Values.postgres.password) (toJson $root.Values.redis.password) (toJson $root.Values.mas.secrets.synapseShared) -}}
{{- join "\n---\n" $inputs | sha256sum -}}
{{- end -}}

{{/* Where a Synapse secret is mounted: the chart's Secret, or the operator's. */}}
{{- define "synapse.secretFile" -}}
{{- $credential := .credential -}}
{{- if $credential.secret -}}
{{- printf "/secrets/ext/%s/%s" (tpl $credential.secret .root) $credential.secretKey -}}
{{- else -}}
{{- printf "/secrets/synapse/%s" .key -}}
{{- end -}}
{{- end -}}

{{- define "synapse.secretVolumes" -}}
{{- $names := list (include "synapse.name" (dict "root" . "suffix" "secrets" "max" 63)) -}}
{{- range $credential := list .Values.secrets.macaroon .Values.secrets.form .Values.secrets.registrationSharedSecret .Values.secrets.signingKey (ternary .Values.mas.secrets.synapseShared dict .Values.mas.enabled) .Values.redis.password -}}
{{- if $credential.secret }}{{ $names = append $names (tpl $credential.secret $) }}{{ end -}}
{{- end -}}
{{- toJson ($names | uniq) -}}
{{- end -}}
