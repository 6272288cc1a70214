{{/* MAS's in-cluster base URL (what Synapse calls to introspect tokens). */}}
{{- define "synapse.mas.name" -}}{{ include "synapse.name" (dict "root" . "suffix" "mas" "max" 63) }}{{- end -}}

{{- define "synapse.mas.endpoint" -}}
{{- printf "http://%s:8080/" (include "synapse.address" (dict "root" . "name" (include "synapse.mas.name" .))) -}}
{{- end -}}

{{/* Synapse's client API inside the cluster: the main process's Service. */}}
{{- define "synapse.clientEndpoint" -}}
{{- $t := include "synapse.topology" . | fromYaml -}}
{{- $main := include "synapse.poolName" (dict "root" . "pool" $t.mainPool) -}}
{{- printf "http://%s:%d/" (include "synapse.address" (dict "root" . "name" $main)) (int (include "synapse.ports" . | fromYaml).http) -}}
{{- end -}}

{{/*
MAS's credentials, each a file under /secrets/mas in the MAS pods: the chart's Secret (generated or
given as a value) or the operator's. The secret shared with Synapse lives in Synapse's Secret.
*/}}
{{- define "synapse.mas.credentials" -}}
{{- $mas := .Values.mas -}}
{{- $credentials := dict
  "encryption" (dict "credential" $mas.secrets.encryption "secret" (include "synapse.mas.name" .) "key" "encryption")
  "signing-key" (dict "credential" $mas.secrets.signingKey "secret" (include "synapse.mas.name" .) "key" "signing-key")
  "synapse-shared" (dict "credential" $mas.secrets.synapseShared "secret" (include "synapse.name" (dict "root" . "suffix" "secrets" "max" 63)) "key" "mas-shared-secret") -}}
{{- if include "msl.credential.set" $mas.database.password -}}
{{- $_ := set $credentials "database-password" (dict "credential" $mas.database.password "secret" (include "synapse.mas.name" .) "key" "database-password") -}}
{{- end -}}
{{- toYaml $credentials -}}
{{- end -}}

{{/* MAS's config.yaml: listeners, database, secrets as files, the homeserver link. */}}
{{- define "synapse.mas.config" -}}
{{- $mas := .Values.mas -}}
{{- $database := dict
  "host" (required "mas.database.host is required when mas.enabled" $mas.database.host)
  "port" $mas.database.port "database" $mas.database.database "username" $mas.database.user
  "ssl_mode" $mas.database.sslmode -}}
{{- if include "msl.credential.set" $mas.database.password -}}
{{- $_ := set $database "password_file" "/secrets/mas/database-password" -}}
{{- end -}}
{{- $config := dict
  "http" (dict
    "public_base" (required "mas.publicBaseurl is required when mas.enabled (e.g. https://auth.example.org/)" $mas.publicBaseurl)
    "listeners" (list
      (dict "name" "web" "binds" (list (dict "address" "[::]:8080"))
        "resources" (list (dict "name" "discovery") (dict "name" "human") (dict "name" "oauth") (dict "name" "compat") (dict "name" "graphql") (dict "name" "assets")))
      (dict "name" "internal" "binds" (list (dict "address" "[::]:8081"))
        "resources" (list (dict "name" "health") (dict "name" "prometheus")))))
  "database" $database
  "secrets" (dict
    "encryption_file" "/secrets/mas/encryption"
    "keys" (list (dict "kid" "chart" "key_file" "/secrets/mas/signing-key")))
  "matrix" (dict
    "kind" "synapse"
    "homeserver" .Values.serverName
    "endpoint" (include "synapse.clientEndpoint" .)
    "secret_file" "/secrets/mas/synapse-shared")
  "passwords" (dict "enabled" $mas.passwords)
  "telemetry" (dict "metrics" (dict "exporter" "prometheus")) -}}
{{- toYaml (mergeOverwrite $config (deepCopy $mas.extraConfig)) -}}
{{- end -}}

{{/* The MAS pods' context for the library's pod helpers (synapse.context): its own user, its scheduling. */}}
{{- define "synapse.mas.context" -}}
{{- $mas := .Values.mas -}}
{{- include "synapse.context" (dict "root" . "image" $mas.image "resources" $mas.resources "uid" 65532 "scheduling" (pick $mas "nodeSelector" "tolerations" "affinity")) -}}
{{- end -}}

{{- define "synapse.mas.image" -}}
{{- include "msl.image" (dict "root" . "context" .Values.mas) -}}
{{- end -}}

{{/* The MAS container's image, security, resources and mounts (server and migration Job). */}}
{{- define "synapse.mas.container" -}}
{{ include "msl.containerBase" (dict "root" . "context" (include "synapse.mas.context" . | fromJson)) }}
volumeMounts:
  - {name: config, mountPath: /conf, readOnly: true}
  - {name: secrets, mountPath: /secrets/mas, readOnly: true}
{{- end -}}

{{/* Pod-level fields of the MAS pods: one projected volume holds exactly the files MAS reads. */}}
{{- define "synapse.mas.podSpec" -}}
{{- $root := .root -}}
{{ include "msl.podSpecCommon" (dict "root" $root "context" (include "synapse.mas.context" $root | fromJson)) }}
volumes:
  - name: config
    configMap:
      name: {{ include "synapse.mas.name" $root }}
  - name: secrets
    projected:
      sources:
        {{- range $file, $c := .credentials }}
        - secret:
            name: {{ tpl ($c.credential.secret | default $c.secret) $root }}
            items:
              - key: {{ $c.credential.secretKey | default $c.key }}
                path: {{ $file }}
        {{- end }}
{{- end -}}
