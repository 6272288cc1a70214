{{/* The Secrets a Synapse pod mounts: the chart's own and every operator Secret a credential names. */}}
{{- define "synapse.secretVolumes" -}}
{{- $names := list (include "synapse.name" (dict "root" . "suffix" "secrets" "max" 63)) -}}
{{- range $credential := list .Values.secrets.macaroon .Values.secrets.form .Values.secrets.registrationSharedSecret .Values.secrets.signingKey (ternary .Values.mas.secrets.synapseShared dict .Values.mas.enabled) .Values.redis.password (ternary .Values.matrixRTC.appservice.asToken dict .Values.matrixRTC.appservice.enabled) (ternary .Values.matrixRTC.appservice.hsToken dict .Values.matrixRTC.appservice.enabled) -}}
{{- if $credential.secret }}{{ $names = append $names (tpl $credential.secret $) }}{{ end -}}
{{- end -}}
{{- toJson ($names | uniq) -}}
{{- end -}}
