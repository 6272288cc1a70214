{{/* The hooks as the service reads them (snake_case), from values. */}}
{{- define "webhook.hooksDocument" -}}
{{- $hooks := list -}}
{{- range $index, $hook := .Values.hooks -}}
{{- $entry := dict "id" (required (printf "hooks[%d].id is required" $index) $hook.id) "room" (required (printf "hooks[%d].room is required" $index) $hook.room) -}}
{{- range $from, $to := dict "name" "name" "msgtype" "msgtype" "displayName" "display_name" "bearerToken" "bearer_token" "rateLimit" "rate_limit" "burst" "burst" "roomMentions" "room_mentions" "users" "users" -}}
{{- if hasKey $hook $from -}}{{- $_ := set $entry $to (get $hook $from) -}}{{- end -}}
{{- end -}}
{{- $hooks = append $hooks $entry -}}
{{- end -}}
{{- toYaml $hooks -}}
{{- end -}}

{{/* Every credential of this chart, for the library's Secret and mounts. */}}
{{- define "msl.credentials" -}}
access-token: {{ .Values.matrix.accessToken | toJson }}
password: {{ .Values.matrix.password | toJson }}
{{- if .Values.hooksSecret.secret }}
hooks.yaml: {{ .Values.hooksSecret | toJson }}
{{- else }}
hooks.yaml: {{ dict "value" (include "webhook.hooksDocument" .) | toJson }}
{{- end }}
{{- end -}}

{{/* This chart's own egress rules for msl.networkPolicy.bridge: none beyond the bridges' shared ones. */}}
{{- define "msl.bridge.egress" -}}[]{{- end -}}
