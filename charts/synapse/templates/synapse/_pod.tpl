{{/* What every Synapse pod shares: its context for the library's pod helpers, and when to roll. */}}
{{/*
A component's context for the library's pod helpers (msl.podSpecCommon, msl.containerBase, msl.image,
called as (dict "root" $ "context" CONTEXT)), JSON (fromJson). Called as (dict "root" $ ...):
  "image", "resources"  the component's
  "scheduling"          a dict whose priorityClassName, nodeSelector, tolerations, affinity and
                        topologySpreadConstraints the pods take (those it sets, even empty)
  "uid"                 optional: the chart-wide podSecurityContext, running as the image's own user
                        (runAsUser, runAsGroup, fsGroup), with "podSecurityExtra" added
  "podSecurity"         optional: the pods' securityContext as given
else the chart-wide podSecurityContext. The container security is the chart-wide one. No service
account: Synapse's pods use none.
*/}}
{{- define "synapse.context" -}}
{{- $root := .root -}}
{{- $security := .podSecurity | default $root.Values.podSecurityContext -}}
{{- if .uid -}}
{{- $security = merge (dict "runAsUser" .uid "runAsGroup" .uid "fsGroup" .uid) (.podSecurityExtra | default dict) (omit $root.Values.podSecurityContext "runAsUser" "runAsGroup" "fsGroup") -}}
{{- end -}}
{{- $context := dict "image" .image "resources" .resources "containerSecurityContext" $root.Values.containerSecurityContext "podSecurityContext" $security -}}
{{- $scheduling := .scheduling | default dict -}}
{{- range $field := list "priorityClassName" "nodeSelector" "tolerations" "affinity" "topologySpreadConstraints" -}}
{{- if hasKey $scheduling $field }}{{ $_ := set $context $field (get $scheduling $field) }}{{ end -}}
{{- end -}}
{{- toJson $context -}}
{{- end -}}

{{/*
What a pool's pods must restart for: the shared config, the pool's own, the log config, and where
their secrets come from (values and operator Secret names; a value changed in place changes it too),
and the MatrixRTC registration's settings.
*/}}
{{- define "synapse.podChecksum" -}}
{{- $root := .root -}}
{{- $inputs := list (include "synapse.homeserver" $root) (include "synapse.processConfig" (dict "root" $root "pool" .pool)) (include "synapse.logConfig" $root) (toJson $root.Values.secrets) (toJson $root.Values.postgres.password) (toJson $root.Values.redis.password) (toJson $root.Values.mas.secrets.synapseShared) (toJson $root.Values.matrixRTC) -}}
{{- join "\n---\n" $inputs | sha256sum -}}
{{- end -}}

