{{/* The pool kinds (files/kinds.yaml, the table the schema generator and the tests read too). */}}
{{- define "synapse.kinds" -}}
{{ .Files.Get "files/kinds.yaml" }}
{{- end -}}

{{/* Every stream a kind writes (sorted): the stream_writers Synapse is told about. */}}
{{- define "synapse.streams" -}}
{{- $streams := list -}}
{{- range $kind := include "synapse.kinds" . | fromYaml | values -}}
{{- $streams = concat $streams $kind.writes -}}
{{- end -}}
{{- $streams | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/*
The enabled pools, sorted by name: each pool as every template uses it, computed here once (the one
reader of .Values.pools; fails on invalid pools):
  name, kind and the kind's properties (files/kinds.yaml); replicas;
  resources, podAnnotations and scheduling (priorityClassName, nodeSelector, tolerations, affinity,
    topologySpreadConstraints): the pool's own when it sets them (even empty), else the chart-wide
    ones; media processes on a ReadWriteOnce volume default to one node (required pod affinity);
  scaling: fixed (replicas), hpa (a HorizontalPodAutoscaler: hpa.minReplicas, .maxReplicas,
    .targetCPUUtilizationPercentage) or keda (a KEDA cron ScaledObject: keda.minReplicas,
    .maxReplicas, .timezone, .schedules).
*/}}
{{- define "synapse.pools" -}}
{{- $values := .Values -}}
{{- $kinds := include "synapse.kinds" . | fromYaml -}}
{{- $schedulingFields := list "priorityClassName" "nodeSelector" "tolerations" "affinity" "topologySpreadConstraints" -}}
{{- /* A ReadWriteOnce media volume attaches to one node: media processes are kept together there. */ -}}
{{- $sharedRWO := and $values.media.persistence.enabled (eq $values.media.persistence.accessMode "ReadWriteOnce") -}}
{{- $mediaAffinity := dict "podAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list (dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (merge (dict "matrix-stack.io/media" "true") (include "msl.selectorLabels" . | fromYaml)))))) -}}
{{- $pools := dict -}}
{{- $mains := list -}}
{{- range $name, $pool := $values.pools -}}
{{- if or (not (hasKey $pool "enabled")) $pool.enabled -}}
{{- if not (hasKey $kinds $pool.kind) -}}
{{- fail (printf "pools.%s.kind %q is not a pool kind (one of: %s)" $name $pool.kind (keys $kinds | sortAlpha | join ", ")) -}}
{{- end -}}
{{- if not (regexMatch "^[a-z][a-z0-9_]{0,30}$" $name) -}}
{{- fail (printf "pool name %q: use lower-case letters, digits and _ (at most 31 characters)" $name) -}}
{{- end -}}
{{- $kind := get $kinds $pool.kind -}}
{{- $replicas := int (default 1 $pool.replicas) -}}
{{- if and $kind.singleton (gt $replicas 1) -}}
{{- fail (printf "pools.%s: a %s pool runs exactly one instance (Synapse allows one %s); set replicas: 1" $name $pool.kind (ternary "writer of its stream" "process of this kind" (and (eq $kind.app "generic_worker") (gt (len $kind.writes) 0)))) -}}
{{- end -}}
{{- if eq $kind.app "homeserver" }}{{ $mains = append $mains $name }}{{ end -}}
{{- $defaults := pick $values "priorityClassName" "nodeSelector" "tolerations" "affinity" "topologySpreadConstraints" -}}
{{- if and $kind.media $sharedRWO (not $defaults.affinity) }}{{ $_ := set $defaults "affinity" $mediaAffinity }}{{ end -}}
{{- $scheduling := dict -}}
{{- range $field := $schedulingFields -}}
{{- $_ := set $scheduling $field (hasKey $pool $field | ternary (get $pool $field) (get $defaults $field)) -}}
{{- end -}}
{{- $effective := merge (dict
  "name" $name "kind" $pool.kind "replicas" $replicas
  "resources" ($pool.resources | default $values.resources)
  "podAnnotations" (hasKey $pool "podAnnotations" | ternary $pool.podAnnotations $values.podAnnotations)
  "scheduling" $scheduling
  "scaling" "fixed") $kind -}}
{{- $hpa := $pool.autoscaling | default dict -}}
{{- $keda := $pool.keda | default dict -}}
{{- if and (or $hpa.enabled $keda.enabled) $kind.named -}}
{{- fail (printf "pools.%s: a %s pool is named in Synapse's configuration; it cannot autoscale (set replicas)" $name $pool.kind) -}}
{{- end -}}
{{- if $hpa.enabled -}}
{{- $_ := set $effective "scaling" "hpa" -}}
{{- $_ := set $effective "hpa" (dict
  "minReplicas" ($hpa.minReplicas | default 1)
  "maxReplicas" (required (printf "pools.%s.autoscaling.maxReplicas is required" $name) $hpa.maxReplicas)
  "targetCPUUtilizationPercentage" ($hpa.targetCPUUtilizationPercentage | default 75)) -}}
{{- end -}}
{{- if $keda.enabled -}}
{{- if $hpa.enabled -}}
{{- fail (printf "pools.%s: use autoscaling (HPA) or keda, not both (KEDA creates its own HPA)" $name) -}}
{{- end -}}
{{- $_ := set $effective "scaling" "keda" -}}
{{- $_ := set $effective "keda" (dict
  "minReplicas" (hasKey $keda "minReplicas" | ternary $keda.minReplicas $replicas)
  "maxReplicas" (required (printf "pools.%s.keda.maxReplicas is required" $name) $keda.maxReplicas)
  "timezone" ($keda.timezone | default "Etc/UTC")
  "schedules" (required (printf "pools.%s.keda.schedules needs at least one schedule" $name) $keda.schedules)) -}}
{{- end -}}
{{- $_ := set $pools $name $effective -}}
{{- end -}}
{{- end -}}
{{- if ne (len $mains) 1 -}}
{{- fail (printf "exactly one enabled pool of kind main is needed, found %d" (len $mains)) -}}
{{- end -}}
{{- toYaml $pools -}}
{{- end -}}

{{/*
The output of the define `define` for the root context `root`, made once per render: Helm hands every
template of the chart the same top-level context, so the first call keeps the text there and the
others reuse it (each caller parses its own copy). For what many templates, and every pool, read.
*/}}
{{- define "synapse.once" -}}
{{- if not (hasKey .root "synapseOnce") }}{{ $_ := set .root "synapseOnce" dict }}{{ end -}}
{{- $cache := get .root "synapseOnce" -}}
{{- if not (hasKey $cache .define) }}{{ $_ := set $cache .define (include .define .root) }}{{ end -}}
{{- get $cache .define -}}
{{- end -}}

{{/*
Everything Synapse's configuration derives from the pools: instance names (a named instance's
worker_name is its pod name), stream writers, instance_map, and the instances of each role.
*/}}
{{- define "synapse.topology" -}}{{ include "synapse.once" (dict "root" . "define" "synapse.topology.build") }}{{- end -}}

{{- define "synapse.topology.build" -}}
{{- $root := . -}}
{{- $kinds := include "synapse.kinds" . | fromYaml -}}
{{- $pools := include "synapse.pools" . | fromYaml -}}
{{- $ports := include "synapse.ports" . | fromYaml -}}
{{- $instances := list -}}
{{- $writers := dict -}}
{{- $instanceMap := dict -}}
{{- $roles := dict -}}
{{- $mainPool := "" -}}
{{- range $name, $pool := $pools -}}
{{- $workload := include "synapse.poolName" (dict "root" $root "pool" $name) -}}
{{- if eq $pool.app "homeserver" -}}
{{- /* The main process: `main` in instance_map, `master` first among the writers of its streams. */ -}}
{{- $mainPool = $name -}}
{{- $_ := set $instanceMap "main" (dict "host" (include "synapse.address" (dict "root" $root "name" (printf "%s-0.%s" $workload $workload))) "port" $ports.replication) -}}
{{- range $stream := $pool.writes -}}
{{- $_ := set $writers $stream (prepend (get $writers $stream | default list) "master") -}}
{{- end -}}
{{- else if $pool.named -}}
{{- range $i := until (int $pool.replicas) -}}
{{- $instance := printf "%s-%d" $workload $i -}}
{{- $instances = append $instances (dict "name" $instance "pool" $name "kind" $pool.kind) -}}
{{- range $stream := $pool.writes -}}
{{- $_ := set $writers $stream (append (get $writers $stream | default list) $instance) -}}
{{- $_ := set $instanceMap $instance (dict "host" (include "synapse.address" (dict "root" $root "name" (printf "%s.%s" $instance $workload))) "port" $ports.replication) -}}
{{- end -}}
{{- with $pool.role }}{{ $_ := set $roles . (append (get $roles . | default list) $instance) }}{{ end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $workers := gt (len $pools) 1 -}}
{{- if and $workers (not .Values.redis.host) -}}
{{- fail "workers replicate through Redis: set redis.host (or disable every pool but main)" -}}
{{- end -}}
{{- $media := list -}}
{{- $enabledKinds := dict -}}
{{- range $name, $pool := $pools -}}
{{- $_ := set $enabledKinds $pool.kind true -}}
{{- if $pool.media }}{{ $media = append $media $name }}{{ end -}}
{{- end -}}
{{- if $media -}}
{{- range $kind := keys $kinds | sortAlpha -}}
{{- with (get $kinds $kind).needed_with_media -}}
{{- if not (hasKey $enabledKinds $kind) -}}
{{- fail (printf "media pools (%s) need a %s pool: %s" (join ", " $media) $kind .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* A stream no pool writes is main's. */ -}}
{{- $streamWriters := dict -}}
{{- range $stream := include "synapse.streams" . | fromJsonArray -}}
{{- $_ := set $streamWriters $stream (get $writers $stream | default (list "master")) -}}
{{- end -}}
{{- /* Each role's setting: a singleton kind's one instance, else the list. */ -}}
{{- $settings := dict -}}
{{- range $name, $pool := $pools -}}
{{- with $pool.role -}}
{{- $_ := set $settings . (ternary (first (get $roles .)) (get $roles .) $pool.singleton) -}}
{{- end -}}
{{- end -}}
{{- $topology := dict
  "pools" $pools "mainPool" $mainPool "instances" $instances "workers" $workers
  "stream_writers" $streamWriters "instance_map" $instanceMap "media" (gt (len $media) 0)
  "roles" $settings -}}
{{- toYaml $topology -}}
{{- end -}}
