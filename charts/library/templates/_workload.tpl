{{/*
The Deployment of a service chart. Context: dict
  "root" $            the chart's root context
  "prefix" "X_"       the service's environment prefix
  "command" list      the container command (the image's console script)
  "env" string        extra env entries (YAML list), chart specific
  "checksum" string   anything whose change must roll the pods (rendered config)
  "args" list         optional container arguments
  "volumes", "volumeMounts" string   optional extra entries (YAML lists), chart specific
  "ports" string      optional container ports besides `http` (YAML list), chart specific
  "bridge" bool       default true: a Matrix bridge (the bot account's env from `matrix`, DATA_DIR);
                      false: a service without one, whose env is only msl.kitEnv and `env`
*/}}
{{- define "msl.deployment" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $bridge := or (not (hasKey . "bridge")) .bridge -}}
{{- $persistent := include "msl.persistent" $root -}}
{{- if include "msl.singleWriter" $root -}}
{{- include "msl.singleWriter.check" $root -}}
{{- end -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "msl.fullname" $root }}
  labels:
    {{- include "msl.labels" $root | nindent 4 }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 3
  strategy:
    {{- /* On a claim the old pod lets go of the volume and its SQLite files before the new one
    starts: a ReadWriteOnce volume attaches to one node (a surge pod on another would hang), and
    two pods on one outbox would both deliver it, whatever the access mode. */}}
    {{- if $persistent }}
    type: Recreate
    {{- else }}
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
    {{- end }}
  selector:
    matchLabels:
      {{- include "msl.selectorLabels" $root | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "msl.labels" $root | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ printf "%s|%s" .checksum (include "msl.chartSecret" $root) | sha256sum }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "msl.podSpecCommon" (dict "root" $root "context" $v) | nindent 6 }}
      containers:
        - name: {{ include "msl.name" $root }}
          {{- include "msl.containerCommon" (dict "root" $root "context" $v) | nindent 10 }}
          command:
            {{- toYaml .command | nindent 12 }}
          {{- with .args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          ports:
            - name: http
              containerPort: 8080
              protocol: TCP
            {{- with .ports }}
            {{- . | nindent 12 }}
            {{- end }}
          env:
            {{- if $bridge }}
            {{- include "msl.coreEnv" (dict "root" $root "prefix" .prefix) | nindent 12 }}
            {{- else }}
            {{- include "msl.kitEnv" (dict "root" $root "prefix" .prefix) | nindent 12 }}
            {{- end }}
            {{- with .env }}
            {{- . | nindent 12 }}
            {{- end }}
          volumeMounts:
            {{- include "msl.coreVolumeMounts" $root | nindent 12 }}
            {{- with .volumeMounts }}
            {{- . | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "msl.coreVolumes" $root | nindent 8 }}
        {{- with .volumes }}
        {{- . | nindent 8 }}
        {{- end }}
{{- end -}}

{{- define "msl.serviceAccount" -}}
{{- if .Values.serviceAccount.create }}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "msl.serviceAccountName" . }}
  labels:
    {{- include "msl.labels" . | nindent 4 }}
  {{- with .Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: false
{{- end }}
{{- end -}}

{{- define "msl.pdb" -}}
{{- if .Values.podDisruptionBudget.enabled }}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- if and (not (kindIs "invalid" $pdb.minAvailable)) (not (kindIs "invalid" $pdb.maxUnavailable)) -}}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both" -}}
{{- end }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "msl.fullname" . }}
  labels:
    {{- include "msl.labels" . | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" $pdb.minAvailable) }}
  minAvailable: {{ $pdb.minAvailable }}
  {{- else }}
  {{- /* unset: 1; an explicit 0 stays 0 (default would turn it into 1) */}}
  maxUnavailable: {{ ternary 1 $pdb.maxUnavailable (kindIs "invalid" $pdb.maxUnavailable) }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "msl.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end -}}

{{- define "msl.hpa" -}}
{{- if .Values.autoscaling.enabled }}
{{- $a := .Values.autoscaling -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "msl.fullname" . }}
  labels:
    {{- include "msl.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "msl.fullname" . }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    {{- with $a.targetCPUUtilizationPercentage }}
    - type: Resource
      resource:
        name: cpu
        target: {type: Utilization, averageUtilization: {{ . }}}
    {{- end }}
    {{- with $a.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target: {type: Utilization, averageUtilization: {{ . }}}
    {{- end }}
{{- end }}
{{- end -}}
