{{/*
MatrixRTC, homeserver-native (MSC4512): livekit-jwt registered as an application service. Synapse
(main and every generic worker, with io.element.msc4512 on) forwards
/_matrix/client/{v*,unstable/*}/<proxy_prefix>/* to the registration's proxy_url with its hs_token.
Every process reads the registration (the application services are loaded by each process's
datastore), so it is listed in homeserver.yaml and every Synapse pod has it.
*/}}

{{/* The registration's tokens: field -> {key in the chart's Secret, credential}. */}}
{{- define "synapse.matrixrtc.tokens" -}}
{{- $a := .Values.matrixRTC.appservice -}}
as_token: {key: matrixrtc-as-token, credential: {{ $a.asToken | default dict | toJson }}}
hs_token: {key: matrixrtc-hs-token, credential: {{ $a.hsToken | default dict | toJson }}}
{{- end -}}

{{/*
The registration as the chart's Secret holds it (`tokens`: field -> value, the tokens the chart
holds). A token from an operator's Secret is not in it: the container adds it when it starts.
*/}}
{{- define "synapse.matrixrtc.registration" -}}
{{- $a := .root.Values.matrixRTC.appservice -}}
{{- $url := tpl (required "matrixRTC.appservice.url is required with matrixRTC.appservice.enabled: livekit-jwt's Service, e.g. http://<release>-livekit-jwt:8080" $a.url) .root | trimSuffix "/" -}}
{{- $registration := dict
  "id" $a.id
  "url" nil
  "sender_localpart" $a.senderLocalpart
  "namespaces" (dict "users" list "aliases" list "rooms" list)
  "io.element.msc4512.proxy_prefix" "rtc/livekit"
  "io.element.msc4512.proxy_url" $url -}}
{{- toYaml (merge $registration .tokens) -}}
{{- end -}}

{{/* The tokens from an operator's Secret: field -> the file it is mounted as. */}}
{{- define "synapse.matrixrtc.tokenFiles" -}}
{{- $root := . -}}
{{- $files := dict -}}
{{- range $field, $token := include "synapse.matrixrtc.tokens" . | fromYaml -}}
{{- if $token.credential.secret -}}
{{- $_ := set $files $field (include "msl.credential.path" (dict "root" $root "chartDir" "synapse" "credential" $token.credential "key" $token.key)) -}}
{{- end -}}
{{- end -}}
{{- toJson $files -}}
{{- end -}}

{{/* Where Synapse reads the registration: the chart's Secret, or the file completed at start. */}}
{{- define "synapse.matrixrtc.registrationPath" -}}
{{- if include "synapse.matrixrtc.tokenFiles" . | fromJson -}}
/tmp/matrixrtc-registration.yaml
{{- else -}}
{{- include "msl.credential.path" (dict "root" . "chartDir" "synapse" "credential" dict "key" "matrixrtc-registration.yaml") -}}
{{- end -}}
{{- end -}}

{{/*
The shell step that completes the registration with the tokens of an operator's Secret (their
files, trailing newline removed, as livekit-jwt reads its *_FILE); "" when the chart holds both.
*/}}
{{- define "synapse.matrixrtc.complete" -}}
{{- $files := include "synapse.matrixrtc.tokenFiles" . | fromJson -}}
{{- if and .Values.matrixRTC.appservice.enabled $files -}}
{{- $args := list (include "msl.credential.path" (dict "root" . "chartDir" "synapse" "credential" dict "key" "matrixrtc-registration.yaml")) (include "synapse.matrixrtc.registrationPath" .) -}}
{{- range $field := keys $files | sortAlpha }}{{ $args = concat $args (list $field (get $files $field)) }}{{ end -}}
python -c 'import os, sys, yaml; r = yaml.safe_load(open(sys.argv[1])); a = sys.argv[3:]; r.update((a[i], open(a[i + 1]).read().rstrip("\r\n")) for i in range(0, len(a), 2)); f = os.fdopen(os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w"); yaml.safe_dump(r, f); f.close()' {{ range $args }}{{ squote . }} {{ end }}&&
{{- end -}}
{{- end -}}
