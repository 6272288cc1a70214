{{/*
The data directory (/var/lib/matrix-stack) of a chart whose values have `persistence` (the
bridges). By default it holds the outbox (SQLite, with the relation roots: thread and edit
targets) and the bot's session, files that one pod owns. Such a chart is a single writer: one pod,
its data on a PersistentVolumeClaim unless the operator accepts an emptyDir and what it loses.
With outbox.postgres.enabled all of that lives in PostgreSQL, shared by the replicas: any number
of them, an HPA and any PDB are allowed, and the data directory is an emptyDir that holds nothing
durable (persistence is not used). Charts without `persistence` (ldap, livekit-jwt) keep nothing
there: none of this applies to them.
*/}}

{{/* "true" for a single-writer chart: its values have `persistence`. */}}
{{- define "msl.singleWriter" -}}
{{- if hasKey .Values "persistence" -}}true{{- end -}}
{{- end -}}

{{/* "true" when the outbox, relation roots and session are in PostgreSQL (outbox.postgres.enabled). */}}
{{- define "msl.outboxPostgres" -}}
{{- if ((get .Values "outbox" | default dict).postgres | default dict).enabled -}}true{{- end -}}
{{- end -}}

{{/*
"true" when the chart keeps its data on a PVC: `persistence.enabled` and the outbox not on
PostgreSQL (then nothing durable is on the volume). Charts without `persistence` never do.
*/}}
{{- define "msl.persistent" -}}
{{- if and (get .Values "persistence" | default dict).enabled (not (include "msl.outboxPostgres" .)) -}}true{{- end -}}
{{- end -}}

{{/* The data claim: persistence.existingClaim (templates allowed), else the chart's own. */}}
{{- define "msl.dataClaimName" -}}
{{- with .Values.persistence.existingClaim -}}
{{- tpl . $ -}}
{{- else -}}
{{- printf "%s-data" (include "msl.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/*
Fails, with one line naming the value, on what a single writer cannot do: several replicas or an
HPA (each pod would have its own outbox and roots: that needs the outbox on PostgreSQL,
outbox.postgres), an emptyDir without persistence.acceptDataLoss, a PDB that would block every
drain of the one pod (minAvailable, or maxUnavailable other than 1). With outbox.postgres.enabled
none of these apply; its url is required. msl.deployment calls it.
*/}}
{{- define "msl.singleWriter.check" -}}
{{- $v := .Values -}}
{{- $p := $v.persistence -}}
{{- if include "msl.outboxPostgres" . -}}
{{- if not (include "msl.credential.set" $v.outbox.postgres.url) -}}
{{- fail "outbox.postgres.url is required with outbox.postgres.enabled: a libpq URL or key=value string, as {secret: NAME, secretKey: KEY} (an existing Secret, where the password belongs) or {value: ...}" -}}
{{- end -}}
{{- else -}}
{{- if gt (int $v.replicaCount) 1 -}}
{{- fail (printf "replicaCount: %d: the outbox is a SQLite file per pod (each replica would keep its own undelivered messages and any thread roots); several replicas need the outbox on PostgreSQL: set outbox.postgres (enabled, url), or use replicaCount: 1" (int $v.replicaCount)) -}}
{{- end -}}
{{- if (get $v "autoscaling" | default dict).enabled -}}
{{- fail "autoscaling.enabled: an HPA would run several pods, and the outbox is a SQLite file per pod; autoscaling needs the outbox on PostgreSQL: set outbox.postgres (enabled, url), or autoscaling.enabled: false" -}}
{{- end -}}
{{- if and (not $p.enabled) (not $p.acceptDataLoss) -}}
{{- fail "persistence.enabled: false puts the outbox on an emptyDir: a pod that goes away loses the messages it accepted and had not delivered, and any thread/edit roots; to accept that, also set persistence.acceptDataLoss: true (or keep the outbox on PostgreSQL: outbox.postgres)" -}}
{{- end -}}
{{- $pdb := get $v "podDisruptionBudget" | default dict -}}
{{- if and $pdb.enabled (or (not (kindIs "invalid" $pdb.minAvailable)) (and (not (kindIs "invalid" $pdb.maxUnavailable)) (ne (toString $pdb.maxUnavailable) "1"))) -}}
{{- fail "podDisruptionBudget: with one pod, minAvailable or a maxUnavailable other than 1 would block every node drain; leave both unset (the chart renders maxUnavailable: 1), or run several replicas on outbox.postgres" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The chart's claim for the data directory, unless persistence is off, existingClaim is set or the
outbox is on PostgreSQL (nothing durable on the volume then). It has helm.sh/resource-policy: keep
(uninstall leaves it and the undelivered messages) unless the annotations set that key themselves
("" deletes the claim on uninstall).
*/}}
{{- define "msl.pvc" -}}
{{- $p := get .Values "persistence" | default dict -}}
{{- if and (include "msl.persistent" .) (not $p.existingClaim) }}
{{- $annotations := deepCopy ($p.annotations | default dict) -}}
{{- if not (hasKey $annotations "helm.sh/resource-policy") -}}
{{- $_ := set $annotations "helm.sh/resource-policy" "keep" -}}
{{- end }}
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: {{ include "msl.dataClaimName" . }}
  labels:
    {{- include "msl.labels" . | nindent 4 }}
  annotations:
    {{- toYaml $annotations | nindent 4 }}
spec:
  accessModes:
    {{- toYaml ($p.accessModes | default (list "ReadWriteOnce")) | nindent 4 }}
  {{- with $p.storageClass }}
  storageClassName: {{ . | quote }}
  {{- end }}
  resources:
    requests:
      storage: {{ $p.size | quote }}
{{- end }}
{{- end -}}

{{/*
NOTES.txt lines of a single-writer chart about its data directory. Context: dict "root" $,
"roots": what the chart's relation roots are for, as a phrase (none: the chart keeps none), and
"prefix": the service's environment prefix (for the default PostgreSQL schema, its name).
With the outbox on PostgreSQL: that it is there, in which schema, shared by the replicas.
With an emptyDir: what a pod that goes away loses. With a claim and no podSecurityContext.fsGroup:
that the volume may not be writable by the non-root user.
*/}}
{{- define "msl.notes.persistence" -}}
{{- $v := .root.Values -}}
{{- if include "msl.outboxPostgres" .root }}
{{- $o := $v.outbox.postgres }}
{{- $schema := $o.schema | default (.prefix | default "" | trimSuffix "_" | lower) | default "the service's name" }}

The outbox is on PostgreSQL (outbox.postgres, schema {{ $schema }}), shared by every replica
{{ if $v.autoscaling.enabled }}(the HPA runs {{ $v.autoscaling.minReplicas }} to {{ $v.autoscaling.maxReplicas }}){{ else }}(replicaCount: {{ $v.replicaCount }}){{ end }}:
  - what it holds: the messages accepted and not delivered yet, the bot's login session (one
    device for all replicas){{ if .roots }} and the relation roots{{ end }};
  - each room has one sender at a time (a lease of {{ $o.leaseSeconds }} s); the rooms of a replica that
    dies are taken over within about {{ round (divf (mulf $o.leaseSeconds 4) 3) 0 }} s;
  - the data directory (/var/lib/matrix-stack) is an emptyDir and holds nothing durable.
{{- else if not $v.persistence.enabled }}

WARNING: the data directory (/var/lib/matrix-stack) is an emptyDir (persistence.enabled: false,
persistence.acceptDataLoss: true). It is deleted with the pod (upgrade, node drain, eviction,
rescheduling), and with it:
  - every message the pod accepted and had not delivered yet: all those accepted while the
    homeserver is unreachable
{{- with .roots }}
  - {{ . | wrapWith 92 "\n    " }}
{{- end }}
{{- if not (include "msl.credential.set" $v.matrix.accessToken) }}
  - the bot's login session: the next pod logs in again, as a new device
{{- end }}
{{- if include "msl.encryption.enabled" .root }}
  - the bot's encryption state{{ if include "msl.credential.set" $v.matrix.accessToken }}: its device (matrix.accessToken) cannot encrypt again until the bot
    logs in as a new device (matrix.password does that by itself){{ end }}
{{- end }}
persistence.enabled: true (the default) keeps them on a PersistentVolumeClaim.
{{- else if kindIs "invalid" $v.podSecurityContext.fsGroup }}

NOTE: podSecurityContext has no fsGroup: the data volume is writable by the non-root user only if
the platform sets one (OpenShift does) or the volume already belongs to uid {{ $v.podSecurityContext.runAsUser | default "10001" }}.
{{- end }}
{{- end -}}
