{{/*
Alert rules for the Prometheus Operator: the PrometheusRule every chart renders its groups into, and
the rules the service charts share. Rendered only with prometheusRule.enabled and when the
PrometheusRule CRD is installed (like the monitors). Alert annotations are Prometheus templates:
`{{`{{ $labels.x }}`}}` in these files is written out for Prometheus, not evaluated by Helm.
*/}}

{{- define "msl.prometheusRule.enabled" -}}
{{- if and .Values.prometheusRule.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PrometheusRule") }}true{{ end -}}
{{- end -}}

{{/*
A rule's runbook: the section of the chart's README named after the alert (dict root, alert). The
base is prometheusRule.runbookBaseUrl, else the README's path in the repository.
*/}}
{{- define "msl.rules.runbook" -}}
{{- $base := .root.Values.prometheusRule.runbookBaseUrl | default (printf "charts/%s/README.md" .root.Chart.Name) -}}
{{- printf "%s#%s" $base (lower .alert) -}}
{{- end -}}

{{/*
The PrometheusRule: dict root, groups (YAML text, a list of rule groups). In the release's
namespace unless prometheusRule.namespace names the one the Prometheus reads rules from.
*/}}
{{- define "msl.prometheusRule" -}}
{{- $root := .root -}}
{{- if include "msl.prometheusRule.enabled" $root }}
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: {{ include "msl.fullname" $root }}
  {{- with $root.Values.prometheusRule.namespace }}
  namespace: {{ . }}
  {{- end }}
  labels:
    {{- include "msl.labels" $root | nindent 4 }}
    {{- with $root.Values.prometheusRule.additionalLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  groups:
    {{- .groups | nindent 4 }}
{{- end }}
{{- end -}}

{{/*
The label matchers of the service's scraped series: prometheusRule.selector, else the job the
chart's ServiceMonitor gives them (the Service's name) in the release's namespace.
*/}}
{{- define "msl.rules.selector" -}}
{{- .Values.prometheusRule.selector | default (printf "namespace=%q, job=%q" .Release.Namespace (include "msl.fullname" .)) -}}
{{- end -}}

{{/*
Every service: no replica answers scrapes; a pod not ready (kube-state-metrics' readiness of the
Deployment's pods, named <fullname>-<replicaset hash>-<suffix>).
*/}}
{{- define "msl.rules.service" -}}
{{- $s := include "msl.rules.selector" . -}}
{{- $pods := printf "%s-[a-z0-9]+-[a-z0-9]{5}" (include "msl.fullname" .) -}}
- alert: MatrixStackServiceDown
  expr: max by (namespace, job) (up{ {{- $s }}}) == 0
  for: 5m
  labels:
    severity: critical
  annotations:
    summary: '{{`{{ $labels.job }}`}} ({{ .Chart.Name }}) is down'
    description: 'No replica of {{`{{ $labels.job }}`}} in {{`{{ $labels.namespace }}`}} has answered a scrape for 5 minutes.'
    runbook_url: {{ include "msl.rules.runbook" (dict "root" . "alert" "MatrixStackServiceDown") }}
- alert: MatrixStackServiceNotReady
  expr: kube_pod_status_ready{namespace={{ .Release.Namespace | quote }}, condition="true", pod=~{{ $pods | quote }}} == 0
  for: 10m
  labels:
    severity: warning
  annotations:
    summary: '{{`{{ $labels.pod }}`}} ({{ .Chart.Name }}) is not ready'
    description: '{{`{{ $labels.pod }}`}} in {{`{{ $labels.namespace }}`}} has failed its readiness check (/readyz) for 10 minutes and gets no traffic.'
    runbook_url: {{ include "msl.rules.runbook" (dict "root" . "alert" "MatrixStackServiceNotReady") }}
{{- end -}}

{{/*
Every Matrix bridge: the outbox (matrix_stack_outbox_*). A counter appears at its first increment:
a dead-letter series that was not there 15 minutes ago counts with its value, an older one with its
increase.
*/}}
{{- define "msl.rules.bridge" -}}
{{- $s := include "msl.rules.selector" . -}}
{{- $dead := printf "matrix_stack_outbox_deliveries_total{%s, outcome=\"dead\"}" $s -}}
- alert: MatrixStackOutboxGrowing
  expr: |-
    max by (namespace, job) (min_over_time(matrix_stack_outbox_queue_depth{ {{- $s }}}[15m])) > 0
    and
    max by (namespace, job) (delta(matrix_stack_outbox_queue_depth{ {{- $s }}}[15m])) > 0
  for: 15m
  labels:
    severity: warning
  annotations:
    summary: '{{`{{ $labels.job }}`}} ({{ .Chart.Name }}): the outbox is not draining'
    description: 'The outbox of {{`{{ $labels.job }}`}} in {{`{{ $labels.namespace }}`}} has not been empty for 30 minutes and keeps growing: messages are accepted faster than the homeserver takes them, or not taken at all.'
    runbook_url: {{ include "msl.rules.runbook" (dict "root" . "alert" "MatrixStackOutboxGrowing") }}
- alert: MatrixStackOutboxDeadLetters
  expr: |-
    sum by (namespace, job) (
      ({{ $dead }} unless {{ $dead }} offset 15m)
      or increase({{ $dead }}[15m])
    ) > 0
  labels:
    severity: warning
  annotations:
    summary: '{{`{{ $labels.job }}`}} ({{ .Chart.Name }}): messages went to dead letters'
    description: '{{`{{ $value | printf "%.0f" }}`}} message(s) of {{`{{ $labels.job }}`}} in {{`{{ $labels.namespace }}`}} could not be delivered in the last 15 minutes and will not be retried.'
    runbook_url: {{ include "msl.rules.runbook" (dict "root" . "alert" "MatrixStackOutboxDeadLetters") }}
- alert: MatrixStackOutboxDeliveriesFailing
  expr: |-
    sum by (namespace, job) (rate(matrix_stack_outbox_deliveries_total{ {{- $s }}, outcome="retry"}[10m])) > 0
    unless
    sum by (namespace, job) (rate(matrix_stack_outbox_deliveries_total{ {{- $s }}, outcome="sent"}[10m])) > 0
  for: 10m
  labels:
    severity: critical
  annotations:
    summary: '{{`{{ $labels.job }}`}} ({{ .Chart.Name }}): no message is getting through'
    description: '{{`{{ $labels.job }}`}} in {{`{{ $labels.namespace }}`}} has retried deliveries for 20 minutes without sending one: messages are kept and wait in the outbox.'
    runbook_url: {{ include "msl.rules.runbook" (dict "root" . "alert" "MatrixStackOutboxDeliveriesFailing") }}
- alert: MatrixStackEncryptionFailing
  expr: |-
    sum by (namespace, job) (rate(matrix_stack_encryption_failures_total{ {{- $s }} }[10m])) > 0
  for: 10m
  labels:
    severity: critical
  annotations:
    summary: '{{`{{ $labels.job }}`}} ({{ .Chart.Name }}): messages to encrypted rooms are held back'
    description: '{{`{{ $labels.job }}`}} in {{`{{ $labels.namespace }}`}} has failed to encrypt for 10 minutes: those messages wait in the outbox, never sent in the clear; its log says why (ERROR "cannot encrypt").'
    runbook_url: {{ include "msl.rules.runbook" (dict "root" . "alert" "MatrixStackEncryptionFailing") }}
{{- end -}}

{{/* A Matrix bridge's rule group: the service's rules and the outbox's. */}}
{{- define "msl.rules.bridgeGroups" -}}
- name: {{ .Chart.Name }}
  rules:
    {{- include "msl.rules.service" . | nindent 4 }}
    {{- include "msl.rules.bridge" . | nindent 4 }}
{{- end -}}
