{{/* The volume name of a Secret a Synapse pod mounts (by the Secret's name). */}}
{{- define "synapse.secretVolumeName" -}}
{{- printf "secret-%s" (. | sha256sum | trunc 12) -}}
{{- end -}}

{{/*
The volumeMounts of the Secrets a Synapse pod mounts (dict root, secrets: names): the chart's own at
/secrets/synapse, an operator's where msl.secretMountPath puts it.
*/}}
{{- define "synapse.secretMounts" -}}
{{- $own := include "synapse.name" (dict "root" .root "suffix" "secrets" "max" 63) -}}
{{- range $secret := .secrets }}
- name: {{ include "synapse.secretVolumeName" $secret }}
  mountPath: {{ ternary "/secrets/synapse" (include "msl.secretMountPath" $secret) (eq $secret $own) }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* The Secrets a Synapse pod mounts: the chart's own and every operator Secret a credential names. */}}
{{- define "synapse.secretVolumes" -}}
{{- $names := list (include "synapse.name" (dict "root" . "suffix" "secrets" "max" 63)) -}}
{{- range $credential := list .Values.secrets.macaroon .Values.secrets.form .Values.secrets.registrationSharedSecret .Values.secrets.signingKey (ternary .Values.mas.secrets.synapseShared dict .Values.mas.enabled) .Values.redis.password (ternary .Values.matrixRTC.appservice.asToken dict .Values.matrixRTC.appservice.enabled) (ternary .Values.matrixRTC.appservice.hsToken dict .Values.matrixRTC.appservice.enabled) -}}
{{- if $credential.secret }}{{ $names = append $names (tpl $credential.secret $) }}{{ end -}}
{{- end -}}
{{- toJson ($names | uniq) -}}
{{- end -}}

{{/* The chart Secret's data (base64): given, or generated once and kept (looked up on upgrade).
The config-check hook carries a copy. */}}
{{- define "synapse.secretData" -}}
{{- $name := include "synapse.name" (dict "root" . "suffix" "secrets" "max" 63) -}}
{{- $existing := (lookup "v1" "Secret" .Release.Namespace $name).data | default dict -}}
{{- $data := dict -}}
{{- $generated := dict "macaroon" .Values.secrets.macaroon "form" .Values.secrets.form "registration-shared-secret" .Values.secrets.registrationSharedSecret -}}
{{- if .Values.mas.enabled }}{{ $_ := set $generated "mas-shared-secret" .Values.mas.secrets.synapseShared }}{{ end -}}
{{- range $key, $credential := $generated -}}
{{- if not $credential.secret -}}
{{- $_ := set $data $key (get $existing $key | default ($credential.value | default (randAlphaNum 48) | b64enc)) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.secrets.signingKey.secret -}}
{{- $generated := "" -}}
{{- if not .Values.secrets.signingKey.value -}}
{{- /* ed25519: the last 32 bytes of the PKCS#8 key are the seed Synapse stores, unpadded base64. */ -}}
{{- $der := genPrivateKey "ed25519" | replace "-----BEGIN PRIVATE KEY-----" "" | replace "-----END PRIVATE KEY-----" "" | nospace | b64dec -}}
{{- $generated = printf "ed25519 a_%s %s" (randAlphaNum 4) (substr 16 48 $der | b64enc | trimSuffix "=") -}}
{{- end -}}
{{- $_ := set $data "signing.key" (get $existing "signing.key" | default ((.Values.secrets.signingKey.value | default $generated) | b64enc)) -}}
{{- end -}}
{{- if .Values.matrixRTC.appservice.enabled -}}
{{- /* MatrixRTC's registration: a given value wins, else the kept one, else generated once. */ -}}
{{- $inline := dict -}}
{{- range $field, $token := include "synapse.matrixrtc.tokens" . | fromYaml -}}
{{- if not $token.credential.secret -}}
{{- $encoded := ternary ($token.credential.value | default "" | b64enc) (get $existing $token.key | default (randAlphaNum 48 | b64enc)) (not (empty $token.credential.value)) -}}
{{- $_ := set $data $token.key $encoded -}}
{{- $_ := set $inline $field ($encoded | b64dec) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $data "matrixrtc-registration.yaml" (include "synapse.matrixrtc.registration" (dict "root" . "tokens" $inline) | b64enc) -}}
{{- end -}}
{{- if and (include "msl.credential.set" .Values.redis.password) (not .Values.redis.password.secret) -}}
{{- $_ := set $data "redis-password" (.Values.redis.password.value | b64enc) -}}
{{- end -}}
{{- if include "msl.credential.set" .Values.postgres.password -}}
{{- if not .Values.postgres.password.secret -}}
{{- $_ := set $data "postgres-password" (.Values.postgres.password.value | b64enc) -}}
{{- end -}}
{{- end -}}
{{- toYaml $data -}}
{{- end -}}
