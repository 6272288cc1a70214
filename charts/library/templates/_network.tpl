{{- define "msl.service" -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "msl.fullname" . }}
  labels:
    {{- include "msl.labels" . | nindent 4 }}
  {{- with .Values.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ .Values.service.type }}
  ports:
    - name: http
      port: {{ .Values.service.port }}
      targetPort: http
      protocol: TCP
  selector:
    {{- include "msl.selectorLabels" . | nindent 4 }}
{{- end -}}

{{/*
The Ingress and the HTTPRoute of the chart's Service (port `http`). Called with the root, they
publish the paths of the values (`ingress.hosts[].paths`, `httpRoute.paths` as prefixes). Called
as (dict "root" $ "paths" LIST), they publish only the chart's LIST of {path, pathType} (`Exact`
or `Prefix`) on every host, whatever the values say: for a chart whose other paths must stay
inside the cluster.
*/}}
{{- define "msl.routeContext" -}}
{{- if hasKey . "root" -}}
{{- toJson (dict "paths" (required "msl.ingress/msl.httpRoute: paths is required with root" (get . "paths")) "fixed" true) -}}
{{- else -}}
{{- toJson (dict "paths" list "fixed" false) -}}
{{- end -}}
{{- end -}}

{{- define "msl.ingress" -}}
{{- $context := include "msl.routeContext" . | fromJson -}}
{{- $root := . -}}
{{- if $context.fixed }}{{ $root = .root }}{{ end -}}
{{- if $root.Values.ingress.enabled }}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ include "msl.fullname" $root }}
  labels:
    {{- include "msl.labels" $root | nindent 4 }}
  {{- with $root.Values.ingress.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with $root.Values.ingress.className }}
  ingressClassName: {{ . }}
  {{- end }}
  {{- with $root.Values.ingress.tls }}
  tls:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  rules:
    {{- range required "ingress.hosts needs at least one host" $root.Values.ingress.hosts }}
    - host: {{ .host | quote }}
      http:
        paths:
          {{- range ternary $context.paths (get . "paths" | default list) $context.fixed }}
          - path: {{ .path }}
            pathType: {{ .pathType | default "Prefix" }}
            backend:
              service:
                name: {{ include "msl.fullname" $root }}
                port:
                  name: http
          {{- end }}
    {{- end }}
{{- end }}
{{- end -}}

{{- define "msl.httpRoute" -}}
{{- $context := include "msl.routeContext" . | fromJson -}}
{{- $root := . -}}
{{- if $context.fixed }}{{ $root = .root }}{{ end -}}
{{- if $root.Values.httpRoute.enabled }}
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: {{ include "msl.fullname" $root }}
  labels:
    {{- include "msl.labels" $root | nindent 4 }}
  {{- with $root.Values.httpRoute.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  parentRefs:
    {{- toYaml (required "httpRoute.parentRefs needs the Gateway to attach to" $root.Values.httpRoute.parentRefs) | nindent 4 }}
  {{- with $root.Values.httpRoute.hostnames }}
  hostnames:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  rules:
    - matches:
        {{- if $context.fixed }}
        {{- range $context.paths }}
        - path:
            type: {{ ternary "Exact" "PathPrefix" (eq .pathType "Exact") }}
            value: {{ .path }}
        {{- end }}
        {{- else }}
        {{- range $root.Values.httpRoute.paths }}
        - path:
            type: PathPrefix
            value: {{ . }}
        {{- end }}
        {{- end }}
      backendRefs:
        - name: {{ include "msl.fullname" $root }}
          port: {{ $root.Values.service.port }}
{{- end }}
{{- end -}}

{{- define "msl.serviceMonitor" -}}
{{- if and .Values.serviceMonitor.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "msl.fullname" . }}
  labels:
    {{- include "msl.labels" . | nindent 4 }}
    {{- with .Values.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "msl.selectorLabels" . | nindent 6 }}
  endpoints:
    - port: http
      path: /metrics
      interval: {{ .Values.serviceMonitor.interval }}
      scrapeTimeout: {{ .Values.serviceMonitor.scrapeTimeout }}
{{- end }}
{{- end -}}
