{{- define "livekit-jwt.configDir" -}}/etc/livekit-jwt/config{{- end -}}
{{- define "livekit-jwt.configPath" -}}{{ include "livekit-jwt.configDir" . }}/config.yaml{{- end -}}
{{- define "livekit-jwt.caDir" -}}/etc/livekit-jwt/federation-ca{{- end -}}

{{/*
The token endpoints, the only paths the Ingress and the HTTPRoute publish (Exact, at the root of
each host). /healthz, /readyz, /metrics and /sfu_webhook (the SFU's, cluster-internal) are not.
*/}}
{{- define "livekit-jwt.publicPaths" -}}
{{- toJson (list
  (dict "path" "/get_token" "pathType" "Exact")
  (dict "path" "/sfu/get" "pathType" "Exact")
  (dict "path" "/delegate_delayed_leave" "pathType" "Exact")) -}}
{{- end -}}

{{/* federation.caBundle as a credential (a Secret's key or a value in the chart's Secret); "" else. */}}
{{- define "livekit-jwt.caCredential" -}}
{{- $ca := .Values.federation.caBundle | default dict -}}
{{- if or $ca.value $ca.secret -}}
{{- pick $ca "value" "secret" "secretKey" | toJson -}}
{{- end -}}
{{- end -}}

{{/* Every credential of this chart, for the library's Secret and mounts. */}}
{{- define "msl.credentials" -}}
livekit-key: {{ .Values.livekitKey | toJson }}
livekit-secret: {{ .Values.livekitSecret | toJson }}
livekit-keys.yaml: {{ .Values.livekitKeysFile | toJson }}
{{- with include "livekit-jwt.caCredential" . }}
federation-ca.pem: {{ . }}
{{- end }}
{{- if .Values.appservice.enabled }}
appservice-hs-token: {{ .Values.appservice.hsToken | default dict | toJson }}
{{- end }}
{{- if include "livekit-jwt.sharedStore" . }}
delegation-database-url: {{ .Values.delegation.database.url | toJson }}
{{- end }}
{{- end -}}

{{/* "true" when delegation jobs are in PostgreSQL (delegation.database.url), shared by every pod. */}}
{{- define "livekit-jwt.sharedStore" -}}
{{- if and .Values.delegation.enabled (include "msl.credential.set" (.Values.delegation.database.url | default dict)) -}}true{{- end -}}
{{- end -}}

{{/*
"true" when delegated leave is on: asked for, and safe. Each pod's own SQLite file is safe with one
replica only (the SFU's webhooks reach any pod); more need the shared store.
*/}}
{{- define "livekit-jwt.delegation" -}}
{{- $single := and (le (int .Values.replicaCount) 1) (not .Values.autoscaling.enabled) -}}
{{- if and .Values.delegation.enabled (or (include "livekit-jwt.sharedStore" .) $single) -}}true{{- end -}}
{{- end -}}

{{/* Where the service reads federation.caBundle; "" for the system CAs only. */}}
{{- define "livekit-jwt.caFile" -}}
{{- $ca := .Values.federation.caBundle | default dict -}}
{{- if and $ca.configMap (or $ca.value $ca.secret) -}}
{{- fail "federation.caBundle is a Secret, a ConfigMap or a value, only one" -}}
{{- end -}}
{{- if $ca.configMap -}}
{{- printf "%s/%s" (include "livekit-jwt.caDir" .) (required "federation.caBundle.configMapKey is required with configMap" $ca.configMapKey) -}}
{{- else if include "livekit-jwt.caCredential" . -}}
{{- include "msl.credential.path" (dict "root" . "credential" $ca "key" "federation-ca.pem") -}}
{{- end -}}
{{- end -}}

{{/*
The credentials as the service reads them: LIVEKIT_JWT_KEY_FILE and _SECRET_FILE, or
LIVEKIT_JWT_KEYS_FILE (a keys file); LIVEKIT_JWT_APPSERVICE_TOKEN_FILE (the registration's
hs_token) with appservice.enabled; LIVEKIT_JWT_DATABASE_URL_FILE (the delegation jobs' PostgreSQL,
whose URL holds a password) with delegation.database.url. A YAML list of env entries.
*/}}
{{- define "livekit-jwt.credentialEnv" -}}
{{- $key := include "msl.credential.set" .Values.livekitKey -}}
{{- $secret := include "msl.credential.set" .Values.livekitSecret -}}
{{- $keysFile := include "msl.credential.set" .Values.livekitKeysFile -}}
{{- $env := list -}}
{{- if and $keysFile (or $key $secret) -}}
{{- fail "set livekitKey and livekitSecret, or livekitKeysFile, not both" -}}
{{- else if $keysFile -}}
{{- $env = append $env (dict "name" "LIVEKIT_JWT_KEYS_FILE" "value" (include "msl.credential.path" (dict "root" . "credential" .Values.livekitKeysFile "key" "livekit-keys.yaml"))) -}}
{{- else if and $key $secret -}}
{{- $env = append $env (dict "name" "LIVEKIT_JWT_KEY_FILE" "value" (include "msl.credential.path" (dict "root" . "credential" .Values.livekitKey "key" "livekit-key"))) -}}
{{- $env = append $env (dict "name" "LIVEKIT_JWT_SECRET_FILE" "value" (include "msl.credential.path" (dict "root" . "credential" .Values.livekitSecret "key" "livekit-secret"))) -}}
{{- else -}}
{{- fail "set livekitKey and livekitSecret (each {value: ...} or {secret: NAME, secretKey: KEY}), or livekitKeysFile: the API key and secret the SFU knows" -}}
{{- end -}}
{{- with .Values.appservice -}}
{{- if .enabled -}}
{{- if not (include "msl.credential.set" .hsToken) -}}
{{- fail "appservice.hsToken is required with appservice.enabled: the hs_token of the homeserver's registration ({value: ...} or {secret: NAME, secretKey: KEY}, the same as the synapse chart's matrixRTC.appservice.hsToken)" -}}
{{- end -}}
{{- $env = append $env (dict "name" "LIVEKIT_JWT_APPSERVICE_TOKEN_FILE" "value" (include "msl.credential.path" (dict "root" $ "credential" .hsToken "key" "appservice-hs-token"))) -}}
{{- end -}}
{{- end -}}
{{- if include "livekit-jwt.sharedStore" . -}}
{{- $env = append $env (dict "name" "LIVEKIT_JWT_DATABASE_URL_FILE" "value" (include "msl.credential.path" (dict "root" . "credential" .Values.delegation.database.url "key" "delegation-database-url"))) -}}
{{- end -}}
{{- toYaml $env -}}
{{- end -}}

{{/*
The service's settings file (keys are LivekitJwtSettings' field names). Nothing secret: the
LiveKit key and secret, and the application service's hs_token, reach the service only as *_FILE
paths.
*/}}
{{- define "livekit-jwt.config" -}}
{{- $v := .Values -}}
{{- $config := dict
  "livekit_url" $v.livekitUrl
  "full_access_homeservers" $v.fullAccessHomeservers
  "hash_scheme" $v.hashScheme
  "can_update_own_metadata" $v.canUpdateOwnMetadata
  "room_empty_timeout" (int $v.roomEmptyTimeout)
  "room_departure_timeout" (int $v.roomDepartureTimeout)
  "token_ttl_seconds" (int $v.tokenTtlSeconds)
  "delegation" (include "livekit-jwt.delegation" . | eq "true")
  "data_dir" "/var/lib/matrix-stack"
  "sanity_check_interval_seconds" (int $v.delegation.sanityCheckIntervalSeconds)
  "delegation_lease_seconds" $v.delegation.database.leaseSeconds
  "federation_allow" ($v.federation.allow | default list)
  "federation_timeout" $v.federation.timeout
  "dns_servers" ($v.federation.dnsServers | default list)
  "federation_overrides" (include "livekit-jwt.overrides" . | fromJsonArray) -}}
{{- with $v.livekitApiUrl }}{{ $_ := set $config "livekit_api_url" . }}{{ end -}}
{{- if include "livekit-jwt.sharedStore" . }}{{ $_ := set $config "database_schema" $v.delegation.database.schema }}{{ end -}}
{{- with include "livekit-jwt.caFile" . }}{{ $_ := set $config "federation_ca_file" . }}{{ end -}}
{{- if $v.appservice.enabled -}}
{{- $_ := set $config "homeserver_name" (required "appservice.homeserverName is required with appservice.enabled: the homeserver's server name" $v.appservice.homeserverName) -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* The DNS ports: 53 and those of federation.dnsServers (host:port, [v6]:port). */}}
{{- define "livekit-jwt.dnsPorts" -}}
{{- $ports := list 53 -}}
{{- range .Values.federation.dnsServers -}}
{{- if or (regexMatch "^\\[[^]]+\\]:[0-9]+$" .) (regexMatch "^[^:\\[]+:[0-9]+$" .) -}}
{{- $ports = append $ports (regexFind "[0-9]+$" . | int) -}}
{{- end -}}
{{- end -}}
{{- $ports | uniq | toJson -}}
{{- end -}}

{{/* federation.overrides as the service reads them: `server_name=host:port`. */}}
{{- define "livekit-jwt.overrides" -}}
{{- $out := list -}}
{{- range .Values.federation.overrides -}}
{{- $out = append $out (printf "%s=%s" .serverName .target) -}}
{{- end -}}
{{- $out | toJson -}}
{{- end -}}
