{{/* What every Synapse pod shares: security, scheduling, when to roll. */}}
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

{{/*
What a pool's pods must restart for: the shared config, the pool's own, the log config, and where
their secrets come from (values and operator Secret names; a value changed in place changes it too),
and the MatrixRTC registration's settings.
*/}}
{{- define "synapse.podChecksum" -}}
{{- $root := .root -}}
{{- $inputs := list (include "synapse.homeserver" $root) (include "synapse.processConfig" (dict "root" $root "pool" .pool)) (include "synapse.logConfig" $root) (toJson $root.Values.secrets) (toJson $root.Values.postgres.password) (toJson $root.Values.redis.password) (toJson $root.Values.mas.secrets.synapseShared) (toJson $root.Values.matrixRTC) -}}
{{- join "\n---\n" $inputs | sha256sum -}}
{{- end -}}

