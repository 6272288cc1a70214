{{/*
The container's ports are this chart's constants; the Service maps its own (389, 636, 8080) onto
them by name. The http port (8080, the control plane) is the library's.
*/}}
{{- define "ldap.listenPort" -}}3389{{- end -}}
{{- define "ldap.ldapsPort" -}}6636{{- end -}}
{{- define "ldap.configDir" -}}/etc/ldap-proxy/config{{- end -}}
{{- define "ldap.configPath" -}}{{ include "ldap.configDir" . }}/config.yaml{{- end -}}
{{- define "ldap.caDir" -}}/etc/ldap-proxy/ca{{- end -}}

{{/* A backend's CA as a credential (a Secret's key, or a value kept in the chart's Secret); "" else. */}}
{{- define "ldap.caCredential" -}}
{{- $ca := .ca | default dict -}}
{{- if or $ca.value $ca.secret -}}
{{- pick $ca "value" "secret" "secretKey" | toJson -}}
{{- end -}}
{{- end -}}

{{/* Every credential of this chart, for the library's Secret and mounts. */}}
{{- define "msl.credentials" -}}
check-password: {{ .Values.healthCheck.password | toJson }}
{{- with .Values.tls.existingSecret }}
tls.crt: {{ dict "secret" . "secretKey" "tls.crt" | toJson }}
tls.key: {{ dict "secret" . "secretKey" "tls.key" | toJson }}
{{- end }}
{{- range $backend := .Values.backends }}
{{- with include "ldap.caCredential" $backend }}
{{ printf "ca-%s.pem" $backend.name }}: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The ConfigMaps holding backend CAs (by name, sorted), mounted under ldap.caDir. */}}
{{- define "ldap.caConfigMaps" -}}
{{- $names := list -}}
{{- range .Values.backends -}}
{{- with (.ca | default dict).configMap -}}
{{- $names = append $names (tpl . $) -}}
{{- end -}}
{{- end -}}
{{- $names | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/* Where the service reads a backend's CA file; "" for the system CAs. Context: dict root, backend. */}}
{{- define "ldap.caFile" -}}
{{- $b := .backend -}}
{{- $ca := $b.ca | default dict -}}
{{- if and $ca.configMap (or $ca.value $ca.secret) -}}
{{- fail (printf "backends %s: ca is a Secret, a ConfigMap or a value, only one" $b.name) -}}
{{- end -}}
{{- if $ca.configMap -}}
{{- printf "%s/%s/%s" (include "ldap.caDir" .root) (tpl $ca.configMap .root) (required (printf "backends %s: ca.configMapKey is required with ca.configMap" $b.name) $ca.configMapKey) -}}
{{- else if include "ldap.caCredential" $b -}}
{{- include "msl.credential.path" (dict "root" .root "credential" $ca "key" (printf "ca-%s.pem" $b.name)) -}}
{{- end -}}
{{- end -}}

{{/* "true" when the proxy has its own certificate. */}}
{{- define "ldap.hasCertificate" -}}
{{- if .Values.tls.existingSecret -}}true{{- end -}}
{{- end -}}

{{/*
How the proxy answers a client's StartTLS, decided as the service decides it: tls.starttls, else
terminate with a certificate, else off (refused). Passthrough only when asked.
*/}}
{{- define "ldap.starttlsMode" -}}
{{- if .Values.tls.starttls -}}
{{- .Values.tls.starttls -}}
{{- else if include "ldap.hasCertificate" . -}}
terminate
{{- else -}}
off
{{- end -}}
{{- end -}}

{{/* The backends as the service reads them (snake_case), checked for what the schema cannot see. */}}
{{- define "ldap.backends" -}}
{{- $root := . -}}
{{- $backends := list -}}
{{- $names := list -}}
{{- if not .Values.backends -}}
{{- fail "backends: set at least one directory server ({name, host})" -}}
{{- end -}}
{{- range $index, $b := .Values.backends -}}
{{- $name := required (printf "backends[%d].name is required" $index) $b.name -}}
{{- if has $name $names -}}
{{- fail (printf "backends: the name %s is used twice; names must be unique" $name) -}}
{{- end -}}
{{- $names = append $names $name -}}
{{- $tls := $b.tls | default "none" -}}
{{- $entry := dict "name" $name "host" (required (printf "backends[%d].host is required" $index) $b.host) "tls" $tls -}}
{{- with $b.port }}{{ $_ := set $entry "port" (int .) }}{{ end -}}
{{- $caFile := include "ldap.caFile" (dict "root" $root "backend" $b) -}}
{{- if $caFile -}}
{{- if eq $tls "none" -}}
{{- fail (printf "backends %s: ca is only used with tls starttls or ldaps, not none" $name) -}}
{{- end -}}
{{- $_ := set $entry "ca_file" $caFile -}}
{{- end -}}
{{- with $b.serverName }}{{ $_ := set $entry "server_name" . }}{{ end -}}
{{- if hasKey $b "verify" }}{{ $_ := set $entry "verify" $b.verify }}{{ end -}}
{{- if hasKey $b "weight" }}{{ $_ := set $entry "weight" (int $b.weight) }}{{ end -}}
{{- if hasKey $b "backup" }}{{ $_ := set $entry "backup" $b.backup }}{{ end -}}
{{- if hasKey $b "maxConnections" }}{{ $_ := set $entry "max_connections" (int $b.maxConnections) }}{{ end -}}
{{- if hasKey $b "proxyProtocol" }}{{ $_ := set $entry "proxy_protocol" $b.proxyProtocol }}{{ end -}}
{{- $backends = append $backends $entry -}}
{{- end -}}
{{- toJson $backends -}}
{{- end -}}

{{/*
The service's settings file (keys are LdapProxySettings' field names). Nothing secret: the check
password reaches the service as LDAP_PROXY_CHECK_PASSWORD_FILE, the key only as a file path.
*/}}
{{- define "ldap.config" -}}
{{- $v := .Values -}}
{{- $cert := eq (include "ldap.hasCertificate" .) "true" -}}
{{- $mode := include "ldap.starttlsMode" . -}}
{{- $backends := include "ldap.backends" . | fromJsonArray -}}
{{- $check := $v.healthCheck -}}
{{- if and $v.tls.ldaps.enabled (not $cert) -}}
{{- fail "tls.ldaps.enabled needs the proxy's certificate: set tls.existingSecret (a kubernetes.io/tls Secret)" -}}
{{- end -}}
{{- if and (eq $mode "terminate") (not $cert) -}}
{{- fail "tls.starttls terminate needs the proxy's certificate: set tls.existingSecret (a kubernetes.io/tls Secret)" -}}
{{- end -}}
{{- if and (eq $mode "passthrough") $v.readOnly -}}
{{- fail "tls.starttls passthrough hands the connection to the directory after StartTLS, past readOnly, the bind audit and bindFailureLimit: terminate it (tls.existingSecret) or set readOnly: false to accept that" -}}
{{- end -}}
{{- if eq $mode "passthrough" -}}
{{- range $backends -}}
{{- if ne .tls "none" -}}
{{- fail (printf "backends %s: tls.starttls passthrough relays the client's StartTLS end to end, so backends use tls none, not %s (terminate with tls.existingSecret instead)" .name .tls) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (eq $check.type "bind") (not (and $check.bindDN (include "msl.credential.set" $check.password))) -}}
{{- fail "healthCheck.type bind needs healthCheck.bindDN and healthCheck.password" -}}
{{- end -}}
{{- if and (not (kindIs "invalid" $v.workers)) (gt (int $v.workers) 1) (gt (int $v.bindFailureLimit.limit) 0) -}}
{{- fail "workers above 1 with bindFailureLimit: the limit counts a DN's failures in one process, and each worker would allow as many; leave workers null (1 with the limit) or set it to 1" -}}
{{- end -}}
{{- if ge (float64 $check.timeout) (float64 $check.interval) -}}
{{- fail "healthCheck.timeout must be shorter than healthCheck.interval" -}}
{{- end -}}
{{- $config := dict
  "listen_port" (int (include "ldap.listenPort" .))
  "backends" $backends
  "balance" $v.balance
  "require_tls" $v.requireTLS
  "read_only" $v.readOnly
  "check_type" $check.type
  "check_interval" $check.interval
  "check_timeout" $check.timeout
  "check_rise" (int $check.rise)
  "check_fall" (int $check.fall)
  "connect_timeout" $v.timeouts.connect
  "idle_timeout" $v.timeouts.idle
  "response_timeout" $v.timeouts.response
  "max_connections" (int $v.maxConnections)
  "max_pdu_bytes" (int $v.maxPduBytes)
  "upstream_pool_size" (int $v.upstreamPool.size)
  "upstream_pool_idle_seconds" $v.upstreamPool.idleSeconds
  "bind_failure_limit" (int $v.bindFailureLimit.limit)
  "bind_failure_window" $v.bindFailureLimit.window
  "audit_binds" $v.auditBinds -}}
{{- with $v.tls.starttls }}{{ $_ := set $config "starttls" . }}{{ end -}}
{{- if $cert -}}
{{- $_ := set $config "tls_cert_file" (include "msl.credential.path" (dict "root" . "credential" (dict "secret" $v.tls.existingSecret "secretKey" "tls.crt") "key" "tls.crt")) -}}
{{- $_ := set $config "tls_key_file" (include "msl.credential.path" (dict "root" . "credential" (dict "secret" $v.tls.existingSecret "secretKey" "tls.key") "key" "tls.key")) -}}
{{- end -}}
{{- if $v.tls.ldaps.enabled }}{{ $_ := set $config "ldaps_port" (int (include "ldap.ldapsPort" .)) }}{{ end -}}
{{- with $check.bindDN }}{{ $_ := set $config "check_bind_dn" . }}{{ end -}}
{{- if not (kindIs "invalid" $v.workers) }}{{ $_ := set $config "workers" (int $v.workers) }}{{ end -}}
{{- if not (kindIs "invalid" $v.allowedExtendedOps) }}{{ $_ := set $config "allowed_extended_ops" $v.allowedExtendedOps }}{{ end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* The backends' ports (default 636 for ldaps, else 389), for the NetworkPolicy's egress. */}}
{{- define "ldap.backendPorts" -}}
{{- $ports := list -}}
{{- range include "ldap.backends" . | fromJsonArray -}}
{{- $ports = append $ports (int (.port | default (ternary 636 389 (eq .tls "ldaps")))) -}}
{{- end -}}
{{- $ports | uniq | toJson -}}
{{- end -}}
