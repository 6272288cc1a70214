{{/* Selector labels: stable for the life of a release. */}}
{{- define "msl.selectorLabels" -}}
app.kubernetes.io/name: {{ include "msl.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels for every object: the user's commonLabels, with ours taking precedence. */}}
{{- define "msl.labels" -}}
{{- include "msl.componentLabels" (dict "root" . "component" (.Values.component | default "bridge") "version" (default .Chart.AppVersion .Values.image.tag)) -}}
{{- end -}}

{{/* The same for a component of a release that runs its own image: dict root, component, version. */}}
{{- define "msl.componentLabels" -}}
{{- $root := .root -}}
{{- $ours := dict
  "app.kubernetes.io/name" (include "msl.name" $root)
  "app.kubernetes.io/instance" $root.Release.Name
  "app.kubernetes.io/version" (.version | toString | replace "+" "_" | replace "@" "_" | replace ":" "_" | trunc 63)
  "app.kubernetes.io/managed-by" $root.Release.Service
  "app.kubernetes.io/part-of" "matrix-stack"
  "app.kubernetes.io/component" .component
  "helm.sh/chart" (include "msl.chart" $root) -}}
{{- toYaml (merge $ours ($root.Values.commonLabels | default dict)) -}}
{{- end -}}
