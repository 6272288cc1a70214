{{/* Every credential of this chart, for the library's Secret and mounts. */}}
{{- define "msl.credentials" -}}
access-token: {{ .Values.matrix.accessToken | toJson }}
password: {{ .Values.matrix.password | toJson }}
client-secret: {{ .Values.sentry.clientSecret | toJson }}
legacy-secret: {{ .Values.sentry.legacySecret | toJson }}
{{- end -}}

{{/* The service's own settings, as environment entries (nothing secret here). */}}
{{- define "sentry-webhook.env" -}}
{{- $v := .Values -}}
{{- $env := list -}}
{{- range $key, $file := dict "clientSecret" "client-secret" "legacySecret" "legacy-secret" -}}
{{- $credential := get $v.sentry $key -}}
{{- if include "msl.credential.set" $credential -}}
{{- $name := ternary "SENTRY_WEBHOOK_CLIENT_SECRET_FILE" "SENTRY_WEBHOOK_LEGACY_SECRET_FILE" (eq $key "clientSecret") -}}
{{- $env = append $env (dict "name" $name "value" (include "msl.credential.path" (dict "root" $ "credential" $credential "key" $file))) -}}
{{- end -}}
{{- end -}}
{{- if not (or (include "msl.credential.set" $v.sentry.clientSecret) (include "msl.credential.set" $v.sentry.legacySecret)) -}}
{{- fail "set sentry.clientSecret (Integration Platform) or sentry.legacySecret (legacy plugin), or both" -}}
{{- end -}}
{{- if not (or $v.routing.defaultRoom $v.routing.projectRooms $v.routing.metricAlertRooms) -}}
{{- fail "set routing.defaultRoom or routing.projectRooms: messages need a room" -}}
{{- end -}}
{{- with $v.routing.defaultRoom }}{{ $env = append $env (dict "name" "SENTRY_WEBHOOK_DEFAULT_ROOM" "value" .) }}{{ end -}}
{{- with $v.routing.projectRooms }}{{ $env = append $env (dict "name" "SENTRY_WEBHOOK_PROJECT_ROOMS" "value" (toJson .)) }}{{ end -}}
{{- with $v.routing.metricAlertRooms }}{{ $env = append $env (dict "name" "SENTRY_WEBHOOK_METRIC_ALERT_ROOMS" "value" (toJson .)) }}{{ end -}}
{{- with $v.filters.environments }}{{ $env = append $env (dict "name" "SENTRY_WEBHOOK_ENVIRONMENTS" "value" (join "," .)) }}{{ end -}}
{{- with $v.filters.levels }}{{ $env = append $env (dict "name" "SENTRY_WEBHOOK_LEVELS" "value" (join "," .)) }}{{ end -}}
{{- with $v.tags }}{{ $env = append $env (dict "name" "SENTRY_WEBHOOK_TAGS" "value" (join "," .)) }}{{ end -}}
{{- $env = append $env (dict "name" "SENTRY_WEBHOOK_SENTRY_URL" "value" $v.sentry.url) -}}
{{- $env = append $env (dict "name" "SENTRY_WEBHOOK_MSGTYPE" "value" $v.msgtype) -}}
{{- $env = append $env (dict "name" "SENTRY_WEBHOOK_THREADS" "value" (toString $v.threads)) -}}
{{- $env = append $env (dict "name" "SENTRY_WEBHOOK_POST_ERRORS" "value" (toString $v.postErrors)) -}}
{{- toYaml $env -}}
{{- end -}}

{{/* This chart's own egress rules for msl.networkPolicy.bridge: none beyond the bridges' shared ones. */}}
{{- define "msl.bridge.egress" -}}[]{{- end -}}
