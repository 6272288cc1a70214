{{/*
Router targets: the Envoy cluster of each pool kind that serves HTTP, with the Services of its
enabled pools as endpoints (each endpoint names its pool, for logs, the debug header and route
explain). A kind with no enabled pool is served by its fallback (media by any media-capable
pool), else by main, which then holds the role.
*/}}
{{- define "synapse.router.clusters" -}}
{{- $t := include "synapse.topology" . | fromYaml -}}
{{- $ports := include "synapse.ports" . | fromYaml -}}
{{- $clusters := dict -}}
{{- range $name, $pool := $t.pools -}}
{{- if $pool.listeners -}}
{{- $service := include "synapse.address" (dict "root" $ "name" (include "synapse.poolName" (dict "root" $ "pool" $name))) -}}
{{- $existing := get $clusters $pool.kind | default (dict "pools" list) -}}
{{- $_ := set $clusters $pool.kind (dict "pools" (append $existing.pools (dict "pool" $name "address" $service "port" $ports.http))) -}}
{{- end -}}
{{- end -}}
{{- if .Values.mas.enabled -}}
{{- $_ := set $clusters "mas" (dict "pools" (list (dict "pool" "mas" "address" (include "synapse.address" (dict "root" . "name" (include "synapse.mas.name" .))) "port" 8080))) -}}
{{- end -}}
{{- toYaml $clusters -}}
{{- end -}}

{{/*
Where the router sends each route target's requests (target -> cluster): a kind's own cluster, else
its fallbacks' (files/kinds.yaml), else main's, which then holds the role; mas to MAS.
*/}}
{{- define "synapse.router.targets" -}}
{{- $t := include "synapse.topology" . | fromYaml -}}
{{- $clusters := include "synapse.router.clusters" . | fromYaml -}}
{{- $main := (get $t.pools $t.mainPool).kind -}}
{{- $targets := dict -}}
{{- range $name, $kind := include "synapse.kinds" . | fromYaml -}}
{{- $found := "" -}}
{{- range $candidate := prepend ($kind.fallback | default list) $name -}}
{{- if and (not $found) (hasKey $clusters $candidate) }}{{ $found = $candidate }}{{ end -}}
{{- end -}}
{{- $_ := set $targets $name ($found | default $main) -}}
{{- end -}}
{{- if hasKey $clusters "mas" }}{{ $_ := set $targets "mas" "mas" }}{{ end -}}
{{- toYaml $targets -}}
{{- end -}}

{{/* The routes as Envoy takes them: one route per entry of the route table (files/routes.yaml) whose `when` holds, its regexes joined. */}}
{{- define "synapse.router.routeList" -}}
{{- $root := . -}}
{{- $targets := include "synapse.router.targets" . | fromYaml -}}
{{- $routes := list -}}
{{- range $entry := .Files.Get "files/routes.yaml" | fromYamlArray -}}
{{- $when := $entry.when | default "" -}}
{{- if or (eq $when "") (and (eq $when "mas") $root.Values.mas.enabled) (and (eq $when "nomas") (not $root.Values.mas.enabled)) (and (eq $when "msc4306") $root.Values.experimental.msc4306) (and (eq $when "matrixrtc") $root.Values.matrixRTC.appservice.enabled) -}}
{{- $regexes := list -}}
{{- range $entry.regex }}{{ $regexes = append $regexes (printf "(?:%s)" .) }}{{ end -}}
{{- $cluster := required (printf "route %s: target %q is no pool kind" $entry.name $entry.target) (get $targets $entry.target) -}}
{{- if and $entry.hash $entry.media }}{{ fail (printf "route %s: hash and media together: the router's Lua does one or the other" $entry.name) }}{{ end -}}
{{- $routes = append $routes (merge (dict "cluster" $cluster "pattern" (join "|" $regexes)) (omit $entry "regex" "when")) -}}
{{- end -}}
{{- end -}}
{{- toYaml $routes -}}
{{- end -}}

{{/* The Lua filter: the chart's settings, then files/router.lua. */}}
{{- define "synapse.router.lua" -}}
WHOAMI_CLUSTER = {{ get (include "synapse.router.targets" . | fromYaml) "client_reader" | quote }}
CACHE_TTL = {{ .Values.router.whoamiCacheSeconds }}
CACHE_MAX = {{ .Values.router.whoamiCacheEntries }}
{{ .Files.Get "files/router.lua" }}
{{- end -}}

{{/* envoy.yaml: configs/router/envoy.yaml.tpl, a file with the chart's values in it. */}}
{{- define "synapse.router.envoy" -}}
{{- tpl (.Files.Get "configs/router/envoy.yaml.tpl") . | trim -}}
{{- end -}}

{{- define "synapse.router.name" -}}{{ include "synapse.name" (dict "root" . "suffix" "router" "max" 63) }}{{- end -}}
