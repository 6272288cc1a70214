{{/* Names of the chart's objects: every one at most 63 characters and distinct. */}}
{{- define "synapse.fullname" -}}{{ include "msl.fullname" . }}{{- end -}}

{{/* The Kubernetes name of a pool's workload (pool names use _, Kubernetes names -). */}}
{{- define "synapse.poolName" -}}
{{- /* At most 52 characters: a StatefulSet's pods and revision label add to it. */ -}}
{{- include "synapse.name" (dict "root" .root "suffix" (.pool | replace "_" "-") "max" 52) -}}
{{- end -}}

{{/*
`<fullname>-<suffix>` in at most `max` characters: the release part is shortened (with a hash of
the full name, so two long release names stay apart), never the suffix, so components stay distinct.
*/}}
{{- define "synapse.name" -}}
{{- $release := include "msl.fullname" .root -}}
{{- $room := int (sub (sub (int .max) 1) (len .suffix)) -}}
{{- if gt (len $release) $room -}}
{{- $release = printf "%s-%s" ($release | trunc (int (sub $room 5)) | trimSuffix "-") ($release | sha256sum | trunc 4) -}}
{{- end -}}
{{- printf "%s-%s" $release .suffix -}}
{{- end -}}


{{/* Synapse's listeners, the same in every process (HTTP: client, federation, media; replication; metrics). */}}
{{- define "synapse.ports" -}}
{http: 8008, replication: 9093, metrics: 9000}
{{- end -}}

{{/*
The in-cluster DNS name of `name` (a Service, or `<pod>.<headless Service>`) in the release's
namespace: `<name>.<namespace>.svc.<clusterDomain>`.
*/}}
{{- define "synapse.address" -}}
{{- printf "%s.%s.svc.%s" .name .root.Release.Namespace .root.Values.clusterDomain -}}
{{- end -}}
