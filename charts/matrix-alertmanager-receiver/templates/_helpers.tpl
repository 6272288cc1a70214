{{/* Every credential of this chart, for the library's Secret and mounts. */}}
{{- define "msl.credentials" -}}
access-token: {{ .Values.matrix.accessToken | toJson }}
password: {{ .Values.matrix.password | toJson }}
basic-password: {{ .Values.basicAuth.password | toJson }}
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
{{- toYaml $config -}}
{{- end -}}
