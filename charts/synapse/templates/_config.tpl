{{/* Synapse's configuration: what every process shares, each pool's own, logging. */}}
{{/* The ConfigMap's files (the config-check hook carries a copy): the shared config, each pool's, logging. */}}
{{- define "synapse.configFiles" -}}
{{- $t := include "synapse.topology" . | fromYaml -}}
homeserver.yaml: |
  {{- include "synapse.homeserver" . | nindent 2 }}
{{- range $name, $pool := $t.pools }}
{{ printf "process-%s.yaml" $name }}: |
  {{- include "synapse.processConfig" (dict "root" $ "pool" $pool) | nindent 2 }}
{{- end }}
log.yaml: |
  {{- include "synapse.logConfig" . | nindent 2 }}
{{- end -}}

{{/* homeserver.yaml: what every process shares (made once, synapse.once). */}}
{{- define "synapse.homeserver" -}}{{ include "synapse.once" (dict "root" . "define" "synapse.homeserver.build") }}{{- end -}}

{{- define "synapse.homeserver.build" -}}
{{- $t := include "synapse.topology" . | fromYaml -}}
{{- $config := dict
  "server_name" (required "serverName is required" .Values.serverName)
  "public_baseurl" (required "publicBaseurl is required" .Values.publicBaseurl)
  "report_stats" false
  "enable_metrics" true
  "media_store_path" "/media"
  "signing_key_path" (include "msl.credential.path" (dict "root" . "chartDir" "synapse" "credential" .Values.secrets.signingKey "key" "signing.key"))
  "macaroon_secret_key_path" (include "msl.credential.path" (dict "root" . "chartDir" "synapse" "credential" .Values.secrets.macaroon "key" "macaroon"))
  "form_secret_path" (include "msl.credential.path" (dict "root" . "chartDir" "synapse" "credential" .Values.secrets.form "key" "form"))
  "registration_shared_secret_path" (include "msl.credential.path" (dict "root" . "chartDir" "synapse" "credential" .Values.secrets.registrationSharedSecret "key" "registration-shared-secret"))
  "log_config" "/conf/log.yaml"
  "enable_media_repo" (not $t.media)
  "database" (dict "name" "psycopg2" "args" (dict "host" .Values.postgres.host "port" .Values.postgres.port "dbname" .Values.postgres.database "user" .Values.postgres.user "sslmode" .Values.postgres.sslmode "cp_min" 5 "cp_max" 10)) -}}
{{- if $t.workers -}}
{{- $_ := set $config "redis" (dict "enabled" true "host" .Values.redis.host "port" .Values.redis.port) -}}
{{- if include "msl.credential.set" .Values.redis.password -}}
{{- $_ := set $config.redis "password_path" (include "msl.credential.path" (dict "root" . "chartDir" "synapse" "credential" .Values.redis.password "key" "redis-password")) -}}
{{- end -}}
{{- $_ := set $config "instance_map" $t.instance_map -}}
{{- $_ := set $config "stream_writers" $t.stream_writers -}}
{{- /* pusher_instances, run_background_tasks_on, ...: the kinds' roles (files/kinds.yaml). */ -}}
{{- range $setting, $instances := $t.roles }}{{ $_ := set $config $setting $instances }}{{ end -}}
{{- end -}}
{{- if .Values.wellKnown.enabled -}}
{{- $_ := set $config "serve_client_wellknown" true -}}
{{- $client := deepCopy .Values.wellKnown.extraClientContent -}}
{{- with .Values.wellKnown.rtcFoci }}{{ $_ := set $client "org.matrix.msc4143.rtc_foci" . }}{{ end -}}
{{- with $client }}{{ $_ := set $config "extra_well_known_client_content" . }}{{ end -}}
{{- if .Values.wellKnown.server }}{{ $_ := set $config "serve_server_wellknown" true }}{{ end -}}
{{- end -}}
{{- $experimental := dict -}}
{{- if .Values.experimental.msc4306 }}{{ $_ := set $experimental "msc4306_enabled" true }}{{ end -}}
{{- $registration := "" -}}
{{- if .Values.matrixRTC.appservice.enabled -}}
{{- $registration = include "synapse.matrixrtc.registrationPath" . -}}
{{- $_ := set $experimental "msc4512_enabled" true -}}
{{- $_ := set $config "app_service_config_files" (list $registration) -}}
{{- end -}}
{{- with $experimental }}{{ $_ := set $config "experimental_features" . }}{{ end -}}
{{- if .Values.mas.enabled -}}
{{- $_ := set $config "matrix_authentication_service" (dict
  "enabled" true
  "endpoint" (include "synapse.mas.endpoint" .)
  "secret_path" (include "msl.credential.path" (dict "root" . "chartDir" "synapse" "credential" .Values.mas.secrets.synapseShared "key" "mas-shared-secret"))) -}}
{{- end -}}
{{- with .Values.media.storageProviders }}{{ $_ := set $config "media_storage_providers" . }}{{ end -}}
{{- $merged := mergeOverwrite $config (deepCopy .Values.extraConfig) -}}
{{- /* Registrations of the operator's own (bridges) in extraConfig come after, not instead. */ -}}
{{- if $registration -}}
{{- $_ := set $merged "app_service_config_files" (prepend (.Values.extraConfig.app_service_config_files | default list) $registration | uniq) -}}
{{- end -}}
{{- toYaml $merged -}}
{{- end -}}

{{/* The process-specific config of a pool; @HOSTNAME@ becomes the pod name at start. */}}
{{- define "synapse.processConfig" -}}
{{- $pool := .pool -}}
{{- $ports := include "synapse.ports" .root | fromYaml -}}
{{- $http := list (dict "type" "metrics" "port" $ports.metrics "bind_addresses" (list "0.0.0.0")) -}}
{{- if $pool.listeners -}}
{{- $http = append $http (dict "type" "http" "port" $ports.http "x_forwarded" true "bind_addresses" (list "0.0.0.0") "resources" (list (dict "names" $pool.listeners "compress" false))) -}}
{{- end -}}
{{- if $pool.named -}}
{{- $http = append $http (dict "type" "http" "port" $ports.replication "bind_addresses" (list "0.0.0.0") "resources" (list (dict "names" (list "replication")))) -}}
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
{{- if eq $pool.app "homeserver" -}}
{{- toYaml (merge (dict "listeners" $http) $override) -}}
{{- else -}}
{{- $config := dict "worker_app" (printf "synapse.app.%s" $pool.app) "worker_listeners" $http "worker_log_config" "/conf/log.yaml" -}}
{{- if $pool.named }}{{ $_ := set $config "worker_name" "@HOSTNAME@" }}{{ end -}}
{{- if $pool.media }}{{ $_ := set $config "enable_media_repo" true }}{{ end -}}
{{- toYaml (merge $config $override) -}}
{{- end -}}
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

