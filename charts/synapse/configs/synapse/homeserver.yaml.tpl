{{- /*
homeserver.yaml, what every Synapse process shares (rendered with tpl by synapse.homeserver.build,
which then lays values.extraConfig over it). Every value is written with toJson: valid YAML whatever
the string.
*/ -}}
{{- $t := include "synapse.topology" . | fromYaml -}}
{{- $path := dict "root" . "chartDir" "synapse" -}}
server_name: {{ required "serverName is required" .Values.serverName | toJson }}
public_baseurl: {{ required "publicBaseurl is required" .Values.publicBaseurl | toJson }}
report_stats: false
enable_metrics: true
media_store_path: /media
signing_key_path: {{ include "msl.credential.path" (merge (dict "credential" .Values.secrets.signingKey "key" "signing.key") $path) | toJson }}
macaroon_secret_key_path: {{ include "msl.credential.path" (merge (dict "credential" .Values.secrets.macaroon "key" "macaroon") $path) | toJson }}
form_secret_path: {{ include "msl.credential.path" (merge (dict "credential" .Values.secrets.form "key" "form") $path) | toJson }}
registration_shared_secret_path: {{ include "msl.credential.path" (merge (dict "credential" .Values.secrets.registrationSharedSecret "key" "registration-shared-secret") $path) | toJson }}
log_config: /conf/log.yaml
enable_media_repo: {{ not $t.media }}
database:
  name: psycopg2
  args:
    host: {{ .Values.postgres.host | toJson }}
    port: {{ .Values.postgres.port | toJson }}
    dbname: {{ .Values.postgres.database | toJson }}
    user: {{ .Values.postgres.user | toJson }}
    sslmode: {{ .Values.postgres.sslmode | toJson }}
    cp_min: 5
    cp_max: 10
{{- if $t.workers }}
redis:
  enabled: true
  host: {{ .Values.redis.host | toJson }}
  port: {{ .Values.redis.port | toJson }}
  {{- if include "msl.credential.set" .Values.redis.password }}
  password_path: {{ include "msl.credential.path" (merge (dict "credential" .Values.redis.password "key" "redis-password") $path) | toJson }}
  {{- end }}
instance_map: {{ $t.instance_map | toJson }}
stream_writers: {{ $t.stream_writers | toJson }}
{{- /* pusher_instances, run_background_tasks_on, ...: the kinds' roles (files/kinds.yaml). */}}
{{- range $setting, $instances := $t.roles }}
{{ $setting }}: {{ $instances | toJson }}
{{- end }}
{{- end }}
{{- if .Values.wellKnown.enabled }}
serve_client_wellknown: true
{{- $client := deepCopy .Values.wellKnown.extraClientContent }}
{{- with .Values.wellKnown.rtcFoci }}{{ $_ := set $client "org.matrix.msc4143.rtc_foci" . }}{{ end }}
{{- with $client }}
extra_well_known_client_content: {{ . | toJson }}
{{- end }}
{{- if .Values.wellKnown.server }}
serve_server_wellknown: true
{{- end }}
{{- end }}
{{- if or .Values.experimental.msc4306 .Values.matrixRTC.appservice.enabled }}
experimental_features:
  {{- if .Values.experimental.msc4306 }}
  msc4306_enabled: true
  {{- end }}
  {{- if .Values.matrixRTC.appservice.enabled }}
  msc4512_enabled: true
  {{- end }}
{{- end }}
{{- if .Values.matrixRTC.appservice.enabled }}
app_service_config_files: [{{ include "synapse.matrixrtc.registrationPath" . | toJson }}]
{{- end }}
{{- if .Values.mas.enabled }}
matrix_authentication_service:
  enabled: true
  endpoint: {{ include "synapse.mas.endpoint" . | toJson }}
  secret_path: {{ include "msl.credential.path" (merge (dict "credential" .Values.mas.secrets.synapseShared "key" "mas-shared-secret") $path) | toJson }}
{{- end }}
{{- with .Values.media.storageProviders }}
media_storage_providers: {{ . | toJson }}
{{- end }}
