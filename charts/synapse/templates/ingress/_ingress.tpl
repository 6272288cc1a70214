{{/* Where public Synapse traffic enters: the router, or (router disabled) the main process. */}}
{{- define "synapse.entryService" -}}
{{- if .Values.router.enabled -}}
{{- toYaml (dict "name" (include "synapse.router.name" .) "port" (int .Values.router.service.port)) -}}
{{- else -}}
{{- $t := include "synapse.topology" . | fromYaml -}}
{{- toYaml (dict "name" (include "synapse.poolName" (dict "root" . "pool" $t.mainPool)) "port" (int (include "synapse.ports" . | fromYaml).http)) -}}
{{- end -}}
{{- end -}}

{{- define "synapse.hostOf" -}}
{{- (urlParse .).host | splitList ":" | first -}}
{{- end -}}

{{/*
The public hosts and their routes, shared by the Ingress and the HTTPRoutes: a list of
{host, routes: [{path, service, port}]}, every path a prefix (matched by path segment).
*/}}
{{- define "synapse.publicRoutes" -}}
{{- $config := .config -}}
{{- $root := .root -}}
{{- if and (not $root.Values.router.enabled) (include "synapse.topology" $root | fromYaml).workers -}}
{{- fail "router.enabled=false with worker pools: an Ingress or HTTPRoute cannot send each request to the pool that serves it (media, stream writers...). Enable the router, or disable ingress/httpRoute and route to the pools yourself (`matrix-stack route explain` shows where each request must go)" -}}
{{- end -}}
{{- $entry := include "synapse.entryService" $root | fromYaml -}}
{{- $synapseHost := include "synapse.hostOf" (required "publicBaseurl is required" $root.Values.publicBaseurl) -}}
{{- $routes := list -}}
{{- if and $root.Values.mas.enabled (not $root.Values.router.enabled) -}}
{{- /* MAS owns the compatibility endpoints; as prefixes they cover logout/all and login/sso/redirect/... */ -}}
{{- $mas := dict "name" (include "synapse.mas.name" $root) "port" 8080 -}}
{{- range $version := list "api/v1" "r0" "v3" "unstable" -}}
{{- range $endpoint := list "login" "logout" "refresh" -}}
{{- $routes = append $routes (merge (dict "path" (printf "/_matrix/client/%s/%s" $version $endpoint)) $mas) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $path := list "/_matrix" "/_synapse/client" "/.well-known/matrix" -}}
{{- $routes = append $routes (merge (dict "path" $path) $entry) -}}
{{- end -}}
{{- if $root.Values.adminUi.enabled -}}
{{- $routes = append $routes (merge (dict "path" "/_synapse/admin") $entry) -}}
{{- end -}}
{{- $hosts := list (dict "host" $synapseHost "routes" $routes) -}}
{{- if $root.Values.mas.enabled -}}
{{- $hosts = append $hosts (dict "host" (include "synapse.hostOf" $root.Values.mas.publicBaseurl) "routes" (list (dict "path" "/" "name" (include "synapse.mas.name" $root) "port" 8080))) -}}
{{- end -}}
{{- $wellKnownHost := $config.wellKnownHost | default $root.Values.serverName -}}
{{- if and $root.Values.wellKnown.enabled (ne $wellKnownHost $synapseHost) -}}
{{- $hosts = append $hosts (dict "host" $wellKnownHost "routes" (list (merge (dict "path" "/.well-known/matrix") $entry))) -}}
{{- end -}}
{{- if $root.Values.adminUi.enabled -}}
{{- $hosts = append $hosts (dict "host" (required "adminUiHost is required with adminUi.enabled" $config.adminUiHost) "routes" (list (dict "path" "/" "name" (include "synapse.adminUi.name" $root) "port" 8080))) -}}
{{- end -}}
{{- toYaml $hosts -}}
{{- end -}}

{{- define "synapse.adminUi.name" -}}{{ include "synapse.name" (dict "root" . "suffix" "admin-ui" "max" 63) }}{{- end -}}
