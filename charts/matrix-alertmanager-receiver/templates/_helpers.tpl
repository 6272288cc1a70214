{{/* Every credential of this chart, for the library's Secret and mounts. */}}
{{- define "msl.credentials" -}}
access-token: {{ .Values.matrix.accessToken | toJson }}
password: {{ .Values.matrix.password | toJson }}
basic-password: {{ .Values.basicAuth.password | toJson }}
{{- if include "mar.actions" . }}
alertmanager-password: {{ .Values.actions.alertmanager.password | toJson }}
alertmanager-bearer-token: {{ .Values.actions.alertmanager.bearerToken | toJson }}
{{- end }}
{{- end -}}

{{/*
"true" when the receiver acts on alerts from the room (actions.alertmanager.url set); fails on
what the service would refuse or silently ignore.
*/}}
{{- define "mar.actions" -}}
{{- $am := .Values.actions.alertmanager -}}
{{- if $am.url -}}
{{- if not (include "msl.encryption.enabled" .) -}}
{{- fail "actions need encryption.enabled: the bot follows its rooms (reactions, replies) through its encryption machinery" -}}
{{- end -}}
{{- if and (include "msl.credential.set" $am.bearerToken) (or $am.username (include "msl.credential.set" $am.password)) -}}
{{- fail "actions.alertmanager: basic auth (username, password) or bearerToken, not both" -}}
{{- end -}}
{{- if and (include "msl.credential.set" $am.password) (not $am.username) -}}
{{- fail "actions.alertmanager.password needs actions.alertmanager.username" -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{/* The egress rules of this chart's own (msl.networkPolicy.bridge): Alertmanager, with actions. */}}
{{- define "msl.bridge.egress" -}}
{{- $rules := list -}}
{{- if include "mar.actions" . -}}
{{- $rules = append $rules (include "msl.networkPolicy.egress" (dict
  "comment" "Alertmanager, on actions.alertmanager.url's port (alertmanagerTo; empty: any address)"
  "ports" (include "msl.networkPolicy.tcp" (list (include "msl.urlPort" .Values.actions.alertmanager.url)) | fromJsonArray)
  "to" .Values.networkPolicy.alertmanagerTo) | fromJson) -}}
{{- end -}}
{{- toJson $rules -}}
{{- end -}}

{{/* The config file, in metio's format. Credentials are not in it: they come as *_FILE. */}}
{{- define "mar.config" -}}
{{- $c := .Values.config -}}
{{- $templating := dict "external-url-mapping" $c.externalUrlMapping "generator-url-mapping" $c.generatorUrlMapping "computed-values" $c.computedValues -}}
{{- with $c.firingTemplate }}{{ $_ := set $templating "firing-template" . }}{{ end -}}
{{- with $c.resolvedTemplate }}{{ $_ := set $templating "resolved-template" . }}{{ end -}}
{{- with $c.groupTemplate }}{{ $_ := set $templating "group-template" . }}{{ end -}}
{{- $config := dict
  "http" (dict "port" 8080 "alerts-path-prefix" $c.alertsPathPrefix "metrics-enabled" true "basic-username" $c.basicUsername)
  "matrix" (dict "homeserver-url" .Values.matrix.homeserver "user-id" .Values.matrix.userId "room-mapping" $c.roomMapping)
  "templating" $templating
  "receiver" (dict "message-mode" $c.messageMode "on-resolve" $c.onResolve "ping-room-severities" $c.pingRoomSeverities "msgtype" $c.msgtype) -}}
{{- if include "mar.actions" . -}}
{{- $a := .Values.actions -}}
{{- $actions := dict "alertmanager-url" $a.alertmanager.url "reactions" $a.reactions "power-level" $a.powerLevel "allowed-users" $a.allowedUsers "until-resolved-max" $a.untilResolvedMax "look-seconds" $a.lookSeconds -}}
{{- with $a.alertmanager.username }}{{ $_ := set $actions "alertmanager-username" . }}{{ end -}}
{{- $_ := set $config "actions" $actions -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}
