{{/*
A credential is {value: "..."} (stored in the chart's Secret) or {secret: NAME, secretKey: KEY}
(an existing Secret). Every credential reaches the container as a file: the chart's Secret under
/secrets/<chartDir> ("chart" unless the chart names its own), an operator's Secret NAME under
/secrets/ext/NAME, so no Secret name can shadow the chart's own mount.
*/}}
{{- define "msl.credential.set" -}}
{{- if and . (or .value .secret) -}}true{{- end -}}
{{- end -}}

{{- define "msl.credential.path" -}}
{{- $c := .credential -}}
{{- if and $c.value $c.secret -}}
{{- fail (printf "credential %s: set value or secret, not both" .key) -}}
{{- end -}}
{{- if $c.secret -}}
{{- printf "%s/%s" (include "msl.secretMountPath" (tpl $c.secret .root)) (required (printf "credential %s: secretKey is required with secret" .key) $c.secretKey) -}}
{{- else -}}
{{- printf "/secrets/%s/%s" (.chartDir | default "chart") .key -}}
{{- end -}}
{{- end -}}

{{/* Where an operator's Secret is mounted (by its name). */}}
{{- define "msl.secretMountPath" -}}
{{- printf "/secrets/ext/%s" . -}}
{{- end -}}

{{/*
Every credential of a chart, as JSON (key -> credential): the chart's "msl.credentials" and the
library's own: the outbox's PostgreSQL URL (outbox-url) when outbox.postgres is enabled, the
bridge's encryption key (encryption-key; msl.encryption.key) when it has one.
*/}}
{{- define "msl.credentials.all" -}}
{{- $all := include "msl.credentials" . | fromYaml -}}
{{- if include "msl.outboxPostgres" . -}}
{{- $_ := set $all "outbox-url" .Values.outbox.postgres.url -}}
{{- end -}}
{{- with include "msl.encryption.key" . -}}
{{- $_ := set $all "encryption-key" (fromJson .) -}}
{{- end -}}
{{- toJson $all -}}
{{- end -}}

{{/* The chart-managed credentials of a chart: a dict key -> credential, from "msl.credentials.all". */}}
{{- define "msl.chartSecret.data" -}}
{{- $data := dict -}}
{{- range $key, $credential := (include "msl.credentials.all" . | fromJson) -}}
{{- if and $credential (kindIs "map" $credential) $credential.value -}}
{{- $_ := set $data $key ($credential.value | b64enc) -}}
{{- end -}}
{{- end -}}
{{- toYaml $data -}}
{{- end -}}

{{- define "msl.chartSecret.needed" -}}
{{- if ne (include "msl.chartSecret.data" . | trim) "{}" -}}true{{- end -}}
{{- end -}}

{{- define "msl.existingSecrets" -}}
{{- $names := list -}}
{{- range $key, $credential := (include "msl.credentials.all" . | fromJson) -}}
{{- if and $credential (kindIs "map" $credential) $credential.secret -}}
{{- $names = append $names (tpl $credential.secret $) -}}
{{- end -}}
{{- end -}}
{{- $names | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/* The Secret holding credentials given as values; its hash rolls the pods when it changes. */}}
{{- define "msl.chartSecret" -}}
{{- if include "msl.chartSecret.needed" . }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ include "msl.fullname" . }}
  labels:
    {{- include "msl.labels" . | nindent 4 }}
type: Opaque
data:
  {{- include "msl.chartSecret.data" . | nindent 2 }}
{{- end }}
{{- end -}}
