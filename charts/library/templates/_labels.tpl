{{/* Selector labels: stable for the life of a release. */}}
{{- define "msl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "msl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels for every object: the user's commonLabels, with ours taking precedence. */}}
{{- define "msl.labels" -}}
{{- $ours := dict
  "app.kubernetes.io/name" (include "msl.name" .)
  "app.kubernetes.io/instance" .Release.Name
  "app.kubernetes.io/version" ((default .Chart.AppVersion .Values.image.tag) | replace "+" "_" | replace "@" "_" | replace ":" "_" | trunc 63)
  "app.kubernetes.io/managed-by" .Release.Service
  "app.kubernetes.io/part-of" "matrix-stack"
  "app.kubernetes.io/component" (.Values.component | default "bridge")
  "helm.sh/chart" (include "msl.chart" .) -}}
{{- toYaml (merge $ours (.Values.commonLabels | default dict)) -}}
{{- end -}}
