{{/*
The pod and container vocabulary every component shares, the service charts' and the synapse chart's
(its pools, router, MAS, pgbouncer, admin UI, config check). One convention for every helper here:
called as (dict "root" $ "context" COMPONENT), where COMPONENT holds the component's fields under
the names a service chart's values use: image, resources, probes, podSecurityContext,
containerSecurityContext, imagePullSecrets, priorityClassName, nodeSelector, tolerations, affinity,
podAntiAffinity, topologySpreadConstraints, terminationGracePeriodSeconds, serviceAccount. A service
chart's context is its .Values; the synapse chart builds one per component (synapse.context). A
field the context does not have is left out of the pod.
*/}}

{{/* The image reference of the context's `image`: a digest wins over a tag; the tag defaults to the chart's appVersion. */}}
{{- define "msl.image" -}}
{{- $image := .context.image -}}
{{- $repository := ternary (printf "%s/%s" $image.registry $image.repository) $image.repository (ne (toString $image.registry) "") -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository (default .root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
The pod's affinity: the context's `affinity` when set; else, for a context with `podAntiAffinity`,
`soft` (preferred) or `hard` (required) spreading of the release's pods across nodes; else none.
*/}}
{{- define "msl.affinity" -}}
{{- $preset := get .context "podAntiAffinity" | default "" -}}
{{- if get .context "affinity" -}}
{{- toYaml .context.affinity -}}
{{- else if $preset -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "msl.selectorLabels" .root | fromYaml)) -}}
{{- if eq $preset "hard" -}}
{{- toYaml (dict "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term))) -}}
{{- else if eq $preset "soft" -}}
{{- toYaml (dict "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term)))) -}}
{{- else -}}
{{- fail (printf "podAntiAffinity: %q is not soft, hard or empty" $preset) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Where the pod runs: the context's priority class, node selector, affinity, tolerations, spread (each when set). */}}
{{- define "msl.podScheduling" -}}
{{- $c := .context -}}
{{- with get $c "priorityClassName" }}
priorityClassName: {{ . }}
{{- end }}
{{- with get $c "nodeSelector" }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with include "msl.affinity" . | fromYaml }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with get $c "tolerations" }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with get $c "topologySpreadConstraints" }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Everything of a pod spec that is not the containers or volumes: the service account (a context
with `serviceAccount` names it; its token is never mounted), pull secrets, security, scheduling,
the grace period.
*/}}
{{- define "msl.podSpecCommon" -}}
{{- $c := .context -}}
{{- if hasKey $c "serviceAccount" -}}
serviceAccountName: {{ include "msl.serviceAccountName" .root }}
{{ end -}}
automountServiceAccountToken: false
{{- with get $c "imagePullSecrets" }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $c.podSecurityContext | nindent 2 }}
{{- include "msl.podScheduling" . }}
{{- if hasKey $c "terminationGracePeriodSeconds" }}
terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds }}
{{- end }}
{{- end -}}

{{/* The container's image, security and resources: what every container has. */}}
{{- define "msl.containerBase" -}}
image: {{ include "msl.image" . }}
imagePullPolicy: {{ .context.image.pullPolicy }}
securityContext:
  {{- toYaml .context.containerSecurityContext | nindent 2 }}
resources:
  {{- toYaml .context.resources | nindent 2 }}
{{- end -}}

{{/* msl.containerBase and HTTP probes on the named port `http`: a service's container. */}}
{{- define "msl.containerCommon" -}}
{{ include "msl.containerBase" . }}
startupProbe:
  httpGet: {path: /healthz, port: http}
  {{- toYaml .context.probes.startup | nindent 2 }}
livenessProbe:
  httpGet: {path: /healthz, port: http}
  {{- toYaml .context.probes.liveness | nindent 2 }}
readinessProbe:
  httpGet: {path: /readyz, port: http}
  {{- toYaml .context.probes.readiness | nindent 2 }}
{{- end -}}

{{/*
Environment for the core settings every bridge shares. Context: dict "root" $ "prefix" "SLACK_WEBHOOK_".
Secrets are passed as files (`*_FILE`), never as plain environment values. With outbox.postgres
enabled: OUTBOX_URL_FILE (the URL holds a password), OUTBOX_SCHEMA when set, the lease and pool;
the end-to-end encryption settings (msl.encryption.env).
*/}}
{{- define "msl.coreEnv" -}}
{{- $root := .root -}}
{{- $p := .prefix -}}
{{- $m := $root.Values.matrix -}}
- name: {{ $p }}HOMESERVER
  value: {{ required "matrix.homeserver is required (https://matrix.example.org)" $m.homeserver | quote }}
- name: {{ $p }}USER_ID
  value: {{ required "matrix.userId is required (@bot:example.org)" $m.userId | quote }}
{{- if include "msl.credential.set" $m.accessToken }}
- name: {{ $p }}ACCESS_TOKEN_FILE
  value: {{ include "msl.credential.path" (dict "root" $root "credential" $m.accessToken "key" "access-token") }}
{{- else if include "msl.credential.set" $m.password }}
- name: {{ $p }}PASSWORD_FILE
  value: {{ include "msl.credential.path" (dict "root" $root "credential" $m.password "key" "password") }}
{{- else }}
{{- fail "set matrix.accessToken or matrix.password (each as {value: ...} or {secret: NAME, secretKey: KEY})" }}
{{- end }}
{{- with $m.inviteAllowlist }}
- name: {{ $p }}INVITE_ALLOWLIST
  value: {{ join "," . | quote }}
{{- end }}
- name: {{ $p }}DATA_DIR
  value: /var/lib/matrix-stack
{{- if include "msl.outboxPostgres" $root }}
{{- $o := $root.Values.outbox.postgres }}
- name: {{ $p }}OUTBOX_URL_FILE
  value: {{ include "msl.credential.path" (dict "root" $root "credential" $o.url "key" "outbox-url") }}
{{- with $o.schema }}
- name: {{ $p }}OUTBOX_SCHEMA
  value: {{ . | quote }}
{{- end }}
- name: {{ $p }}OUTBOX_LEASE_SECONDS
  value: {{ $o.leaseSeconds | toString | quote }}
- name: {{ $p }}OUTBOX_POOL_SIZE
  value: {{ $o.poolSize | toString | quote }}
{{- end }}
{{ include "msl.encryption.env" . }}
{{ include "msl.kitEnv" . }}
{{- end -}}

{{/*
Environment every service has, bridge or not: the HTTP port (health, readiness, metrics), the log
level and the operator's extraEnv. Context: dict "root" $ "prefix" "LDAP_PROXY_".
*/}}
{{- define "msl.kitEnv" -}}
- name: {{ .prefix }}PORT
  value: "8080"
- name: {{ .prefix }}LOG_LEVEL
  value: {{ .root.Values.logLevel | quote }}
{{- with .root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Volumes every service pod has: writable data (a PVC with persistence and the outbox not on
PostgreSQL, else an emptyDir: the image's home and working directory) and /tmp, the chart Secret,
existing Secrets.
*/}}
{{- define "msl.coreVolumes" -}}
- name: data
{{- if include "msl.persistent" . }}
  persistentVolumeClaim:
    claimName: {{ include "msl.dataClaimName" . }}
{{- else }}
  emptyDir: {}
{{- end }}
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: 16Mi
{{- if include "msl.chartSecret.needed" . }}
- name: chart-secret
  secret:
    secretName: {{ include "msl.fullname" . }}
{{- end }}
{{- range $name := include "msl.existingSecrets" . | fromJsonArray }}
- name: {{ printf "secret-%s" ($name | sha256sum | trunc 12) }}
  secret:
    secretName: {{ $name }}
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "msl.coreVolumeMounts" -}}
- name: data
  mountPath: /var/lib/matrix-stack
- name: tmp
  mountPath: /tmp
{{- if include "msl.chartSecret.needed" . }}
- name: chart-secret
  mountPath: /secrets/chart
  readOnly: true
{{- end }}
{{- range $name := include "msl.existingSecrets" . | fromJsonArray }}
- name: {{ printf "secret-%s" ($name | sha256sum | trunc 12) }}
  mountPath: {{ include "msl.secretMountPath" $name }}
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}
