{{/*
The data directory (/var/lib/matrix-stack) of a chart whose values have `persistence` (the
bridges): the outbox (SQLite, with the relation roots: thread and edit targets) and the bot's
session, files that one pod owns. Such a chart is a single writer: one pod, its data on a
PersistentVolumeClaim unless the operator accepts an emptyDir and what it loses. Charts without
`persistence` (ldap, livekit-jwt) keep nothing there: none of this applies to them.
*/}}

{{/* "true" for a single-writer chart: its values have `persistence`. */}}
{{- define "msl.singleWriter" -}}
{{- if hasKey .Values "persistence" -}}true{{- end -}}
{{- end -}}

{{/* "true" when the chart keeps its data on a PVC (charts without `persistence` never do). */}}
{{- define "msl.persistent" -}}
{{- if (get .Values "persistence" | default dict).enabled -}}true{{- end -}}
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
HPA (each pod would have its own outbox and roots: that needs a shared PostgreSQL outbox, which
does not exist yet), an emptyDir without persistence.acceptDataLoss, a PDB that would block every
drain of the one pod (minAvailable, or maxUnavailable other than 1). msl.deployment calls it.
*/}}
{{- define "msl.singleWriter.check" -}}
{{- $v := .Values -}}
{{- $p := $v.persistence -}}
{{- if gt (int $v.replicaCount) 1 -}}
{{- fail (printf "replicaCount: %d: the outbox is a SQLite file per pod (each replica would keep its own undelivered messages and any thread roots); several replicas need the PostgreSQL outbox, which is not available yet: use replicaCount: 1" (int $v.replicaCount)) -}}
{{- end -}}
{{- if (get $v "autoscaling" | default dict).enabled -}}
{{- fail "autoscaling.enabled: an HPA would run several pods, and the outbox is a SQLite file per pod; autoscaling needs the PostgreSQL outbox, which is not available yet: set autoscaling.enabled: false" -}}
{{- end -}}
{{- if and (not $p.enabled) (not $p.acceptDataLoss) -}}
{{- fail "persistence.enabled: false puts the outbox on an emptyDir: a pod that goes away loses the messages it accepted and had not delivered, and any thread/edit roots; to accept that, also set persistence.acceptDataLoss: true" -}}
{{- end -}}
{{- $pdb := get $v "podDisruptionBudget" | default dict -}}
{{- if and $pdb.enabled (or (not (kindIs "invalid" $pdb.minAvailable)) (and (not (kindIs "invalid" $pdb.maxUnavailable)) (ne (toString $pdb.maxUnavailable) "1"))) -}}
{{- fail "podDisruptionBudget: with one pod, minAvailable or a maxUnavailable other than 1 would block every node drain; leave both unset (the chart renders maxUnavailable: 1)" -}}
{{- end -}}
{{- end -}}

{{/*
The chart's claim for the data directory, unless persistence is off or existingClaim is set. It
has helm.sh/resource-policy: keep (uninstall leaves it and the undelivered messages) unless the
annotations set that key themselves ("" deletes the claim on uninstall).
*/}}
{{- define "msl.pvc" -}}
{{- $p := get .Values "persistence" | default dict -}}
{{- if and $p.enabled (not $p.existingClaim) }}
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
NOTES.txt lines of a single-writer chart about its data directory. Context: dict "root" $ and
"roots": what the chart's relation roots are for, as a phrase (none: the chart keeps none).
With an emptyDir: what a pod that goes away loses. With a claim and no podSecurityContext.fsGroup:
that the volume may not be writable by the non-root user.
*/}}
{{- define "msl.notes.persistence" -}}
{{- $v := .root.Values -}}
{{- if not $v.persistence.enabled }}

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
persistence.enabled: true (the default) keeps them on a PersistentVolumeClaim.
{{- else if kindIs "invalid" $v.podSecurityContext.fsGroup }}

NOTE: podSecurityContext has no fsGroup: the data volume is writable by the non-root user only if
the platform sets one (OpenShift does) or the volume already belongs to uid {{ $v.podSecurityContext.runAsUser | default "10001" }}.
{{- end }}
{{- end -}}
