{{/* Every credential of this chart, for the library's Secret and mounts. */}}
{{- define "msl.credentials" -}}
access-token: {{ .Values.matrix.accessToken | toJson }}
password: {{ .Values.matrix.password | toJson }}
client-secret: {{ .Values.sentry.clientSecret | toJson }}
legacy-secret: {{ .Values.sentry.legacySecret | toJson }}
{{- if include "sentry-webhook.actions" . }}
sentry-token: {{ .Values.actions.sentry.token | toJson }}
{{- end }}
{{- end -}}

{{/*
"true" when the bot acts on Sentry issues from the room (actions.sentry.organization set); fails on
what the service would silently ignore (no token, no encryption: it then leaves actions off).
*/}}
{{- define "sentry-webhook.actions" -}}
{{- if .Values.actions.sentry.organization -}}
{{- if not (include "msl.encryption.enabled" .) -}}
{{- fail "actions need encryption.enabled: the bot follows its rooms (reactions, replies) through its encryption machinery" -}}
{{- end -}}
{{- if not (include "msl.credential.set" .Values.actions.sentry.token) -}}
{{- fail "actions.sentry.organization needs actions.sentry.token (an internal integration's token with Issue & Event: Read & Write)" -}}
{{- end -}}
true
{{- end -}}
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
{{- if include "sentry-webhook.actions" . -}}
{{- $a := $v.actions -}}
{{- $env = append $env (dict "name" "SENTRY_WEBHOOK_SENTRY_ORGANIZATION" "value" $a.sentry.organization) -}}
{{- $env = append $env (dict "name" "SENTRY_WEBHOOK_SENTRY_TOKEN_FILE" "value" (include "msl.credential.path" (dict "root" . "credential" $a.sentry.token "key" "sentry-token"))) -}}
{{- $env = append $env (dict "name" "SENTRY_WEBHOOK_ACTIONS_POWER_LEVEL" "value" (toString $a.powerLevel)) -}}
{{- $env = append $env (dict "name" "SENTRY_WEBHOOK_ACTIONS_ALLOWED_USERS" "value" (join "," $a.allowedUsers)) -}}
{{- $env = append $env (dict "name" "SENTRY_WEBHOOK_ACTIONS_RESOLVE_REACTIONS" "value" (join "," $a.resolveReactions)) -}}
{{- $env = append $env (dict "name" "SENTRY_WEBHOOK_ACTIONS_IGNORE_REACTIONS" "value" (join "," $a.ignoreReactions)) -}}
{{- $env = append $env (dict "name" "SENTRY_WEBHOOK_ACTIONS_USER_MAP" "value" (toJson $a.userMap)) -}}
{{- end -}}
{{- toYaml $env -}}
{{- end -}}

{{/* The egress rules of this chart's own (msl.networkPolicy.bridge): Sentry's API, with actions. */}}
{{- define "msl.bridge.egress" -}}
{{- $rules := list -}}
{{- if include "sentry-webhook.actions" . -}}
{{- $rules = append $rules (include "msl.networkPolicy.egress" (dict
  "comment" "Sentry's API, on sentry.url's port (sentryTo; empty: any address)"
  "ports" (include "msl.networkPolicy.tcp" (list (include "msl.urlPort" .Values.sentry.url)) | fromJsonArray)
  "to" .Values.networkPolicy.sentryTo) | fromJson) -}}
{{- end -}}
{{- toJson $rules -}}
{{- end -}}
