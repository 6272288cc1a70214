{{/*
The objects every bridge chart (webhook, sentry-webhook, matrix-alertmanager-receiver) renders the
same way, written once: each of those charts has one templates/bridge.yaml that includes this set.
Helm splits a template's output on `---`, so one file can carry every object; an object whose
feature is off renders empty and is dropped. Only what a bridge does its own way (its Deployment's
command, environment and config, the receiver's ConfigMap, NOTES.txt) stays in the chart.
*/}}
{{- define "msl.bridge" -}}
{{- $objects := list
  (include "msl.chartSecret" .)
  (include "msl.encryption.secret" .)
  (include "msl.serviceAccount" .)
  (include "msl.service" .)
  (include "msl.pvc" .)
  (include "msl.pdb" .)
  (include "msl.hpa" .)
  (include "msl.ingress" .)
  (include "msl.httpRoute" .)
  (include "msl.networkPolicy.bridge" .)
  (include "msl.serviceMonitor" .)
  (include "msl.prometheusRule" (dict "root" . "groups" (include "msl.rules.bridgeGroups" .)))
-}}
{{- if .Values.grafanaDashboards.enabled }}
{{- $objects = append $objects (include "msl.dashboardConfigMap" (dict "root" . "name" "bridges" "json" (include "msl.dashboard.bridges" .))) }}
{{- end }}
{{- range $objects }}
{{- if trim . }}
---
{{ trim . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* NOTES.txt: what a chart asked for that the cluster cannot take (the Prometheus Operator's CRDs). */}}
{{- define "msl.notes.missingCrds" -}}
{{- if and .Values.serviceMonitor.enabled (not (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor")) }}

WARNING: serviceMonitor.enabled is set but the ServiceMonitor CRD is not installed; none was created.
{{- end }}
{{- if and .Values.prometheusRule.enabled (not (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PrometheusRule")) }}

WARNING: prometheusRule.enabled is set but the PrometheusRule CRD is not installed; no alert rules were created.
{{- end }}
{{- end -}}
