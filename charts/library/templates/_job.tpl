{{/*
The spec of a Job that runs one of the image's console scripts to completion (also a CronJob's
jobTemplate.spec). Context: dict
  "root" $                 the chart's root context
  "job" map                backoffLimit (default 0), activeDeadlineSeconds, ttlSecondsAfterFinished
                           (each null or absent: not set)
  "podFailurePolicy" map   optional, as Kubernetes spells it (the pod's restartPolicy is Never)
  "command" list           the container command, exec form
  "args" list              optional container arguments, exec form
  "env" string             env entries (YAML list), chart specific; the values' extraEnv follow
  "volumes", "volumeMounts" string   optional extra entries (YAML lists), chart specific
The pod is the services' pod without what only a server has: msl.podSpecCommon (the service
account's token not mounted), msl.containerBase (no ports, no probes), the library's volumes
(msl.coreVolumes: the data and /tmp emptyDirs, credential Secrets, extraVolumes), restartPolicy
Never (a failed run is a failed pod, counted by backoffLimit and podFailurePolicy, never restarted
in place).
*/}}
{{- define "msl.jobSpec" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $job := .job | default dict -}}
{{- $env := concat (.env | default "" | fromYamlArray) ($v.extraEnv | default list) -}}
backoffLimit: {{ $job.backoffLimit | default 0 | int }}
{{- if not (kindIs "invalid" $job.activeDeadlineSeconds) }}
activeDeadlineSeconds: {{ $job.activeDeadlineSeconds | int64 }}
{{- end }}
{{- if not (kindIs "invalid" $job.ttlSecondsAfterFinished) }}
ttlSecondsAfterFinished: {{ $job.ttlSecondsAfterFinished | int64 }}
{{- end }}
{{- with .podFailurePolicy }}
podFailurePolicy:
  {{- toYaml . | nindent 2 }}
{{- end }}
template:
  metadata:
    labels:
      {{- include "msl.labels" $root | nindent 6 }}
      {{- with $v.podLabels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with $v.podAnnotations }}
    annotations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  spec:
    restartPolicy: Never
    {{- include "msl.podSpecCommon" (dict "root" $root "context" $v) | nindent 4 }}
    containers:
      - name: {{ include "msl.name" $root }}
        {{- include "msl.containerBase" (dict "root" $root "context" $v) | nindent 8 }}
        command:
          {{- toYaml (required "msl.jobSpec: command is required" .command) | nindent 10 }}
        {{- with .args }}
        args:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with $env }}
        env:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        volumeMounts:
          {{- include "msl.coreVolumeMounts" $root | nindent 10 }}
          {{- with .volumeMounts }}
          {{- . | nindent 10 }}
          {{- end }}
    volumes:
      {{- include "msl.coreVolumes" $root | nindent 6 }}
      {{- with .volumes }}
      {{- . | nindent 6 }}
      {{- end }}
{{- end -}}

{{/* A CronJob's name: msl.fullname cut to 52 characters (the controller appends 11 for its Jobs). */}}
{{- define "msl.cronJobName" -}}
{{- include "msl.fullname" . | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/*
A CronJob of msl.jobSpec's Job. Context: msl.jobSpec's, and
  "cronJob" map              schedule (required), timeZone, suspend, startingDeadlineSeconds,
                             successfulJobsHistoryLimit, failedJobsHistoryLimit (null or "": unset)
  "concurrencyPolicy" string default Forbid
*/}}
{{- define "msl.cronJob" -}}
{{- $root := .root -}}
{{- $c := .cronJob -}}
apiVersion: batch/v1
kind: CronJob
metadata:
  name: {{ include "msl.cronJobName" $root }}
  labels:
    {{- include "msl.labels" $root | nindent 4 }}
spec:
  schedule: {{ required "cronJob.schedule is required (e.g. \"17 3 * * *\")" $c.schedule | quote }}
  {{- with $c.timeZone }}
  timeZone: {{ . | quote }}
  {{- end }}
  concurrencyPolicy: {{ .concurrencyPolicy | default "Forbid" }}
  suspend: {{ $c.suspend | default false }}
  {{- if not (kindIs "invalid" $c.startingDeadlineSeconds) }}
  startingDeadlineSeconds: {{ $c.startingDeadlineSeconds | int64 }}
  {{- end }}
  {{- if not (kindIs "invalid" $c.successfulJobsHistoryLimit) }}
  successfulJobsHistoryLimit: {{ $c.successfulJobsHistoryLimit | int }}
  {{- end }}
  {{- if not (kindIs "invalid" $c.failedJobsHistoryLimit) }}
  failedJobsHistoryLimit: {{ $c.failedJobsHistoryLimit | int }}
  {{- end }}
  jobTemplate:
    metadata:
      labels:
        {{- include "msl.labels" $root | nindent 8 }}
    spec:
      {{- include "msl.jobSpec" . | nindent 6 }}
{{- end -}}

{{/*
A one-off Job of msl.jobSpec's spec. Context: msl.jobSpec's, and
  "suffix" string   default "once"
Its name is <fullname>-<suffix>-<hash of the rendered spec>: a Job's pod template cannot change,
so any change to it (values, image, chart version) is a new Job, and so a new run, rather than an
upgrade that fails; an unchanged one is left as it is (and runs once).
*/}}
{{- define "msl.job" -}}
{{- $root := .root -}}
{{- $suffix := .suffix | default "once" -}}
{{- $spec := include "msl.jobSpec" . -}}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ printf "%s-%s-%s" (include "msl.fullname" $root | trunc (int (sub 53 (len $suffix))) | trimSuffix "-") $suffix ($spec | sha256sum | trunc 8) }}
  labels:
    {{- include "msl.labels" $root | nindent 4 }}
spec:
  {{- $spec | nindent 2 }}
{{- end -}}
