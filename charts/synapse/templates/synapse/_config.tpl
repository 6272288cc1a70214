{{/* Synapse's configuration: what every process shares, each pool's own, logging. */}}
{{/* The ConfigMap's files (the config-check hook carries a copy): the shared config, each pool's, logging. */}}
{{- define "synapse.configFiles" -}}
{{- $t := include "synapse.topology" . | fromYaml -}}
homeserver.yaml: |
  {{- include "synapse.homeserver" . | nindent 2 }}
{{- range $name, $pool := $t.pools }}
{{ printf "process-%s.yaml" $name }}: |
  {{- include "synapse.processConfig" (dict "root" $ "pool" $pool) | nindent 2 }}
{{- end }}
log.yaml: |
  {{- include "synapse.logConfig" . | nindent 2 }}
{{- end -}}

{{/* homeserver.yaml: what every process shares (made once, synapse.once). */}}
{{- define "synapse.homeserver" -}}{{ include "synapse.once" (dict "root" . "define" "synapse.homeserver.build") }}{{- end -}}

{{/*
configs/synapse/homeserver.yaml.tpl, then values.extraConfig over it; the matrixRTC appservice's
registration stays first in app_service_config_files, before the operator's own (bridges).
*/}}
{{- define "synapse.homeserver.build" -}}
{{- $config := tpl (.Files.Get "configs/synapse/homeserver.yaml.tpl") . | fromYaml -}}
{{- $merged := mergeOverwrite $config (deepCopy .Values.extraConfig) -}}
{{- if .Values.matrixRTC.appservice.enabled -}}
{{- $_ := set $merged "app_service_config_files" (prepend (.Values.extraConfig.app_service_config_files | default list) (include "synapse.matrixrtc.registrationPath" .) | uniq) -}}
{{- end -}}
{{- toYaml $merged -}}
{{- end -}}

{{/* The process-specific config of a pool; @HOSTNAME@ becomes the pod name at start. */}}
{{- define "synapse.processConfig" -}}
{{- $pool := .pool -}}
{{- $ports := include "synapse.ports" .root | fromYaml -}}
{{- $http := list (dict "type" "metrics" "port" $ports.metrics "bind_addresses" (list "0.0.0.0")) -}}
{{- if $pool.listeners -}}
{{- $http = append $http (dict "type" "http" "port" $ports.http "x_forwarded" true "bind_addresses" (list "0.0.0.0") "resources" (list (dict "names" $pool.listeners "compress" false))) -}}
{{- end -}}
{{- if $pool.named -}}
{{- $http = append $http (dict "type" "http" "port" $ports.replication "bind_addresses" (list "0.0.0.0") "resources" (list (dict "names" (list "replication")))) -}}
{{- end -}}
{{- $root := .root -}}
{{- $override := dict -}}
{{- if and $root.Values.pgbouncer.enabled (not (has $pool.kind $root.Values.pgbouncer.bypassKinds)) -}}
{{- $database := include "synapse.homeserver" $root | fromYaml | dig "database" dict -}}
{{- $_ := set $database.args "host" (include "synapse.name" (dict "root" $root "suffix" "pgbouncer" "max" 63)) -}}
{{- /* pgbouncer takes plain connections in the cluster; its own hop to PostgreSQL uses postgres.sslmode */ -}}
{{- $_ := set $database.args "sslmode" "prefer" -}}
{{- $_ := set $database.args "port" 5432 -}}
{{- $_ := set $override "database" $database -}}
{{- end -}}
{{- if eq $pool.app "homeserver" -}}
{{- toYaml (merge (dict "listeners" $http) $override) -}}
{{- else -}}
{{- $config := dict "worker_app" (printf "synapse.app.%s" $pool.app) "worker_listeners" $http "worker_log_config" "/conf/log.yaml" -}}
{{- if $pool.named }}{{ $_ := set $config "worker_name" "@HOSTNAME@" }}{{ end -}}
{{- if $pool.media }}{{ $_ := set $config "enable_media_repo" true }}{{ end -}}
{{- toYaml (merge $config $override) -}}
{{- end -}}
{{- end -}}

{{/* log.yaml, every process's logging (structured lines on stderr): configs/synapse/log.yaml, as is. */}}
{{- define "synapse.logConfig" -}}
{{- .Files.Get "configs/synapse/log.yaml" | trim -}}
{{- end -}}
