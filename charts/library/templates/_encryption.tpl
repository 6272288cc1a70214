{{/*
A bridge's end-to-end encryption (values `encryption`): the service's ENCRYPTION,
ENCRYPTION_KEY_FILE and KEY_SHARING(_ALLOWLIST). The key is `encryption.key` when set (a
credential: the chart's Secret or yours). Else, on the chart's claim (SQLite, one pod), none: the
service makes <data dir>/encryption.key on first start, beside the crypto state it protects, which
works whatever renders the chart. Else (outbox.postgres, where the service refuses to start without
a key, or an emptyDir, where a file would die with every pod) a random key in a Secret of its own:
made on install, reused on upgrade (lookup), left by uninstall (helm.sh/resource-policy: keep), so
the crypto state in PostgreSQL and the bot's cross-signing identity stay readable.
*/}}

{{/* "true" when the bot encrypts (encryption.enabled). */}}
{{- define "msl.encryption.enabled" -}}
{{- if (get .Values "encryption" | default dict).enabled -}}true{{- end -}}
{{- end -}}

{{/* "true" when the key is the chart's generated, kept Secret. */}}
{{- define "msl.encryption.generated" -}}
{{- if and (include "msl.encryption.enabled" .) (not (include "msl.credential.set" .Values.encryption.key)) (not (include "msl.persistent" .)) -}}true{{- end -}}
{{- end -}}

{{- define "msl.encryption.secretName" -}}
{{- printf "%s-encryption-key" (include "msl.fullname" .) -}}
{{- end -}}

{{/*
The key as a credential (JSON), for msl.credentials.all and the environment: encryption.key, or the
generated Secret (mounted like an operator's Secret); empty when the service makes its own file.
*/}}
{{- define "msl.encryption.key" -}}
{{- if include "msl.encryption.enabled" . -}}
{{- if include "msl.credential.set" .Values.encryption.key -}}
{{- toJson .Values.encryption.key -}}
{{- else if include "msl.encryption.generated" . -}}
{{- toJson (dict "secret" (include "msl.encryption.secretName" .) "secretKey" "encryption-key") -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The generated key's Secret: the value already in the cluster if there is one, else a new one. */}}
{{- define "msl.encryption.secret" -}}
{{- if include "msl.encryption.generated" . }}
{{- $name := include "msl.encryption.secretName" . -}}
{{- $kept := dig "data" "encryption-key" "" (lookup "v1" "Secret" .Release.Namespace $name) -}}
apiVersion: v1
kind: Secret
metadata:
  name: {{ $name }}
  labels:
    {{- include "msl.labels" . | nindent 4 }}
  annotations:
    helm.sh/resource-policy: keep
type: Opaque
data:
  encryption-key: {{ $kept | default (randAlphaNum 64 | b64enc) }}
{{- end }}
{{- end -}}

{{/* The environment of msl.coreEnv. Context: dict "root" $ "prefix" "SLACK_WEBHOOK_". */}}
{{- define "msl.encryption.env" -}}
{{- $root := .root -}}
{{- $e := $root.Values.encryption -}}
- name: {{ .prefix }}ENCRYPTION
  value: {{ ternary "true" "false" (not (empty (include "msl.encryption.enabled" $root))) | quote }}
{{- if include "msl.encryption.enabled" $root }}
{{- with include "msl.encryption.key" $root }}
- name: {{ $.prefix }}ENCRYPTION_KEY_FILE
  value: {{ include "msl.credential.path" (dict "root" $root "credential" (fromJson .) "key" "encryption-key") }}
{{- end }}
- name: {{ .prefix }}KEY_SHARING
  value: {{ $e.keySharing | quote }}
{{- if eq $e.keySharing "allowlist" }}
- name: {{ .prefix }}KEY_SHARING_ALLOWLIST
  value: {{ join "," $e.keySharingAllowlist | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* NOTES.txt lines: where a generated key is, and what encryption.enabled: false holds back. */}}
{{- define "msl.notes.encryption" -}}
{{- if include "msl.encryption.generated" . }}

The bot's end-to-end encryption key is in the Secret {{ include "msl.encryption.secretName" . }}, made by the
chart on first install and reused on every upgrade. Uninstall leaves it (helm.sh/resource-policy:
keep) for a reinstall to find; deleting or changing it makes the bot's crypto state unreadable (a
new device) and its cross-signing identity no longer its own. Tools that render without a cluster
(helm template, Argo CD) would make a new key each time: give them encryption.key instead.
{{- else if not (include "msl.encryption.enabled" .) }}

NOTE: encryption.enabled is false: messages for rooms with encryption on stay in the outbox and
are never sent (never in plaintext either).
{{- end }}
{{- end -}}
