{{/* Where CA ConfigMaps are mounted (Secrets and values go where the library mounts credentials). */}}
{{- define "compress-state.caDir" -}}/etc/compress-state/ca{{- end -}}

{{/* The tool values a Job may override (job.overrides), with the flags they become. */}}
{{- define "compress-state.toolKeys" -}}
{{- list "levels" "chunkSize" "chunks" "room" "dryRun" "verify" "maxGroupsPerSecond" "lockTimeoutSeconds" "rustProgress" "logLevel" | toJson -}}
{{- end -}}

{{/* The database CA as a credential (a Secret's key, or a value kept in the chart's Secret); "" else. */}}
{{- define "compress-state.caCredential" -}}
{{- $ca := .Values.database.ca | default dict -}}
{{- if or $ca.value $ca.secret -}}
{{- pick $ca "value" "secret" "secretKey" | toJson -}}
{{- end -}}
{{- end -}}

{{/* Every credential of this chart, for the library's Secret and mounts. */}}
{{- define "msl.credentials" -}}
database-url: {{ .Values.database.url | toJson }}
database-password: {{ .Values.database.password | toJson }}
{{- with include "compress-state.caCredential" . }}
database-ca.crt: {{ . }}
{{- end }}
{{- end -}}

{{/* Where the tool reads the database CA (PGSSLROOTCERT); "" without one. */}}
{{- define "compress-state.caFile" -}}
{{- $ca := .Values.database.ca | default dict -}}
{{- if and $ca.configMap (or $ca.value $ca.secret) -}}
{{- fail "database.ca is a Secret, a ConfigMap or a value, only one" -}}
{{- end -}}
{{- if $ca.configMap -}}
{{- printf "%s/%s/%s" (include "compress-state.caDir" .) (tpl $ca.configMap .) (required "database.ca.configMapKey is required with database.ca.configMap" $ca.configMapKey) -}}
{{- else if include "compress-state.caCredential" . -}}
{{- include "msl.credential.path" (dict "root" . "credential" $ca "key" "database-ca.crt") -}}
{{- end -}}
{{- end -}}

{{/*
PGSSLMODE: database.sslMode, else verify-full with a CA and prefer without. A CA with a mode that
falls back to plain text on a failed check, or a verifying mode without a CA, fails here.
*/}}
{{- define "compress-state.sslMode" -}}
{{- $caFile := include "compress-state.caFile" . -}}
{{- $mode := .Values.database.sslMode | default (ternary "verify-full" "prefer" (ne $caFile "")) -}}
{{- if and $caFile (has $mode (list "disable" "allow" "prefer")) -}}
{{- fail (printf "database.ca is set but database.sslMode %s does not insist on TLS (a failed check would fall back to plain text): use verify-full (the default with a ca), verify-ca or require" $mode) -}}
{{- end -}}
{{- if and (not $caFile) (has $mode (list "verify-ca" "verify-full")) -}}
{{- fail (printf "database.sslMode %s needs database.ca, the CA that signed the server's certificate ({secret, secretKey}, {configMap, configMapKey} or {value: PEM})" $mode) -}}
{{- end -}}
{{- $mode -}}
{{- end -}}

{{/*
The container's environment: the connection (a URL file, or libpq's PG* variables) and its
password file, TLS, the connect timeout, the Pushgateway job. No secret is a value here: only paths.
*/}}
{{- define "compress-state.env" -}}
{{- $d := .Values.database -}}
{{- $url := include "msl.credential.set" $d.url -}}
{{- $env := list -}}
{{- if and $url $d.host -}}
{{- fail "set database.url or database.host, not both (the URL names its own host)" -}}
{{- else if $url -}}
{{- $env = append $env (dict "name" "COMPRESS_STATE_DATABASE_URL_FILE" "value" (include "msl.credential.path" (dict "root" . "credential" $d.url "key" "database-url"))) -}}
{{- else if $d.host -}}
{{- $env = append $env (dict "name" "PGHOST" "value" (tpl $d.host .)) -}}
{{- $env = append $env (dict "name" "PGPORT" "value" ($d.port | int | toString)) -}}
{{- with $d.user }}{{ $env = append $env (dict "name" "PGUSER" "value" .) }}{{ end -}}
{{- with $d.name }}{{ $env = append $env (dict "name" "PGDATABASE" "value" .) }}{{ end -}}
{{- else -}}
{{- fail "set database.url ({secret: NAME, secretKey: KEY} holding a libpq URL or key/value string) or database.host (with database.password)" -}}
{{- end -}}
{{- if include "msl.credential.set" $d.password -}}
{{- $env = append $env (dict "name" "COMPRESS_STATE_PASSWORD_FILE" "value" (include "msl.credential.path" (dict "root" . "credential" $d.password "key" "database-password"))) -}}
{{- end -}}
{{- $env = append $env (dict "name" "PGSSLMODE" "value" (include "compress-state.sslMode" .)) -}}
{{- with include "compress-state.caFile" . -}}
{{- $env = append $env (dict "name" "PGSSLROOTCERT" "value" .) -}}
{{- end -}}
{{- $env = append $env (dict "name" "PGCONNECT_TIMEOUT" "value" ($d.connectTimeoutSeconds | int | toString)) -}}
{{- with .Values.pushgateway.job -}}
{{- $env = append $env (dict "name" "COMPRESS_STATE_PUSHGATEWAY_JOB" "value" .) -}}
{{- end -}}
{{- toYaml $env -}}
{{- end -}}

{{/*
The tool's arguments (exec form, every value its own item): the values, with a Job's overrides
over them. Context: dict "root" $ "overrides" MAP "where" "job.overrides." (for messages).
*/}}
{{- define "compress-state.args" -}}
{{- $v := .root.Values -}}
{{- $t := dict -}}
{{- range $key := include "compress-state.toolKeys" . | fromJsonArray -}}
{{- $_ := set $t $key (get $v $key) -}}
{{- end -}}
{{- range $key, $value := .overrides | default dict -}}
{{- $_ := set $t $key $value -}}
{{- end -}}
{{- $where := .where | default "" -}}
{{- $levels := list -}}
{{- range $t.levels }}{{ $levels = append $levels (int64 . | toString) }}{{ end -}}
{{- if not $levels -}}
{{- fail (printf "%slevels: give one or more chain lengths, like [100, 50, 25]" $where) -}}
{{- end -}}
{{- $first := first $levels | int64 -}}
{{- if lt (int64 $t.chunkSize) $first -}}
{{- fail (printf "%schunkSize (%d) must be at least the first of levels (%d): smaller chunks split the chains of rooms already compressed again, adding rows" $where (int64 $t.chunkSize) $first) -}}
{{- end -}}
{{- $args := list "--levels" (join "," $levels) "--chunk-size" (int64 $t.chunkSize | toString) "--chunks" (int64 $t.chunks | toString) -}}
{{- with $t.room }}{{ $args = concat $args (list "--room" .) }}{{ end -}}
{{- if $t.dryRun }}{{ $args = append $args "--dry-run" }}{{ end -}}
{{- if not $t.verify }}{{ $args = append $args "--no-verify" }}{{ end -}}
{{- if not (kindIs "invalid" $t.maxGroupsPerSecond) -}}
{{- $args = concat $args (list "--max-groups-per-second" (toString $t.maxGroupsPerSecond)) -}}
{{- end -}}
{{- $args = concat $args (list "--lock-timeout-seconds" (toString $t.lockTimeoutSeconds) "--rust-progress" $t.rustProgress) -}}
{{- with $v.pushgateway.url }}{{ $args = concat $args (list "--pushgateway-url" .) }}{{ end -}}
{{- $args = concat $args (list "--log-level" $t.logLevel "--no-progress") -}}
{{- toJson $args -}}
{{- end -}}

{{/*
A run's failures: the tool's own exit codes (1 verification failure, 2 configuration or connection,
3 the lock held) fail the Job at once, whatever backoffLimit says: running it again would meet the
same; a pod lost to a disruption (a drained node, preemption) is replaced without counting.
*/}}
{{- define "compress-state.podFailurePolicy" -}}
rules:
  - action: FailJob
    onExitCodes: {operator: In, values: [1, 2, 3]}
  - action: Ignore
    onPodConditions: [{type: DisruptionTarget, status: "True"}]
{{- end -}}

{{/* The CA ConfigMap's volume and mount (the Secrets are the library's). */}}
{{- define "compress-state.volumes" -}}
{{- with (.Values.database.ca | default dict).configMap }}
- name: database-ca
  configMap:
    name: {{ tpl . $ }}
{{- end }}
{{- end -}}

{{- define "compress-state.volumeMounts" -}}
{{- with (.Values.database.ca | default dict).configMap }}
- name: database-ca
  mountPath: {{ printf "%s/%s" (include "compress-state.caDir" $) (tpl . $) }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* Everything msl.cronJob and msl.job take but the schedule, for `overrides` (dict). */}}
{{- define "compress-state.workload" -}}
{{- $root := .root -}}
{{- $args := include "compress-state.args" (dict "root" $root "overrides" .overrides "where" .where) | fromJsonArray -}}
{{- toJson (dict
  "command" (list "compress-state")
  "args" $args
  "env" (include "compress-state.env" $root)
  "podFailurePolicy" (include "compress-state.podFailurePolicy" $root | fromYaml)
  "volumes" (include "compress-state.volumes" $root)
  "volumeMounts" (include "compress-state.volumeMounts" $root)) -}}
{{- end -}}
