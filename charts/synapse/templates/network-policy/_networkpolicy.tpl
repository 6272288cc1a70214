{{/*
The pods of the NetworkPolicies (networkpolicy.yaml), each group the pools' label values
(matrix-stack.io/pool, `-` for `_`), from the topology:
  all: every Synapse process; http: those with an HTTP listener (client, federation, media);
  named: those with a replication listener (main and the named kinds); direct: those connecting to
  PostgreSQL themselves (every pool, or with pgbouncer the bypass kinds); pgbouncer: the others.
*/}}
{{- define "synapse.networkPolicy.groups" -}}
{{- $t := include "synapse.topology" . | fromYaml -}}
{{- $groups := dict "all" list "http" list "named" list "direct" list "pgbouncer" list "main" list -}}
{{- range $name, $pool := $t.pools -}}
{{- $label := $name | replace "_" "-" -}}
{{- $_ := set $groups "all" (append $groups.all $label) -}}
{{- if $pool.listeners }}{{ $_ := set $groups "http" (append $groups.http $label) }}{{ end -}}
{{- if $pool.named }}{{ $_ := set $groups "named" (append $groups.named $label) }}{{ end -}}
{{- if eq $name $t.mainPool }}{{ $_ := set $groups "main" (list $label) }}{{ end -}}
{{- if and $.Values.pgbouncer.enabled (not (has $pool.kind $.Values.pgbouncer.bypassKinds)) -}}
{{- $_ := set $groups "pgbouncer" (append $groups.pgbouncer $label) -}}
{{- else -}}
{{- $_ := set $groups "direct" (append $groups.direct $label) -}}
{{- end -}}
{{- end -}}
{{- toYaml $groups -}}
{{- end -}}

{{/* A label selector for the Synapse processes of the pools `pools` (label values): JSON. */}}
{{- define "synapse.networkPolicy.pools" -}}
{{- toJson (dict
  "matchLabels" (include "msl.selectorLabels" .root | fromYaml)
  "matchExpressions" (list (dict "key" "matrix-stack.io/pool" "operator" "In" "values" .pools))) -}}
{{- end -}}

{{/* A label selector for the release's pods of one component (router, MAS...): JSON. */}}
{{- define "synapse.networkPolicy.component" -}}
{{- toJson (dict "matchLabels" (merge (dict "app.kubernetes.io/component" .component) (include "msl.selectorLabels" .root | fromYaml))) -}}
{{- end -}}
