{{/*
NetworkPolicies (opt-in: `networkPolicy.enabled`), the same way in every chart.

Values name peers as Kubernetes spells them (NetworkPolicyPeers: namespaceSelector, podSelector,
ipBlock), passed through. The lists are called after what they admit, the same name in every chart:
`ingressFrom` (the ingress controller or Gateway), `clientsFrom` (in-cluster callers of the Service),
`metricsFrom` (Prometheus), `dnsTo`, `databaseTo`, `homeserverTo`, `federationTo`...; `extraIngress`
and `extraEgress` are whole rules. An ingress rule whose lists are all empty admits the pods of the
release's namespace (a podSelector {}), so nothing from another namespace gets in until it is named;
an egress list left empty allows any address on the rule's ports.
*/}}

{{/* TCP NetworkPolicyPorts of a list of port numbers, as JSON. */}}
{{- define "msl.networkPolicy.tcp" -}}
{{- $ports := list -}}
{{- range . }}{{ $ports = append $ports (dict "port" (int .) "protocol" "TCP") }}{{ end -}}
{{- toJson $ports -}}
{{- end -}}

{{/*
The peers of an ingress rule from values lists, called as (list LIST ...): the peers they name, or,
when every one of them is empty, the pods of the release's namespace (JSON).
*/}}
{{- define "msl.networkPolicy.sources" -}}
{{- $peers := list -}}
{{- range . }}{{ $peers = concat $peers (. | default list) }}{{ end -}}
{{- toJson ($peers | uniq | default (list (dict "podSelector" dict))) -}}
{{- end -}}

{{/*
An egress rule (JSON): dict "comment" TEXT "ports" PORTS "to" PEERS; without peers (an empty values
list) any address on the ports, without ports every port.
*/}}
{{- define "msl.networkPolicy.egress" -}}
{{- $rule := dict -}}
{{- with .ports }}{{ $_ := set $rule "ports" . }}{{ end -}}
{{- with .comment }}{{ $_ := set $rule "comment" . }}{{ end -}}
{{- with .to }}{{ $_ := set $rule "to" . }}{{ end -}}
{{- toJson $rule -}}
{{- end -}}

{{/*
The DNS egress rule (JSON), to `networkPolicy.dnsTo` (empty: any address): port 53 and any `ports`
given, each UDP and TCP. Called as (dict "root" $ "ports" LIST "comment" TEXT).
*/}}
{{- define "msl.networkPolicy.dns" -}}
{{- $ports := list -}}
{{- range (.ports | default (list 53)) -}}
{{- $ports = concat $ports (list (dict "port" (int .) "protocol" "UDP") (dict "port" (int .) "protocol" "TCP")) -}}
{{- end -}}
{{- include "msl.networkPolicy.egress" (dict "comment" (.comment | default "DNS (networkPolicy.dnsTo; empty: any address on port 53)") "ports" $ports "to" (.root.Values.networkPolicy.dnsTo | default list)) -}}
{{- end -}}

{{/* The port of a URL: its own, else 443 for https and wss, 80 otherwise. */}}
{{- define "msl.urlPort" -}}
{{- $url := urlParse . -}}
{{- regexFind ":[0-9]+$" $url.host | trimPrefix ":" | default (ternary "443" "80" (has $url.scheme (list "https" "wss"))) -}}
{{- end -}}

{{/*
A NetworkPolicy, Ingress and Egress unless told: every connection its pods make or take that no
rule allows is dropped (kubelet probes are always allowed). Context: dict
  "root" $              the chart's root context
  "name" NAME           default msl.fullname
  "labels" YAML         the object's labels; default msl.labels
  "podSelector" MAP     default {matchLabels: msl.selectorLabels}
  "ingress" LIST        rules: {comment?, from, ports}; a rule without `from` fails (it would
                        admit every source)
  "egress" LIST         rules: {comment?, to?, ports}
  "extra" bool          default true: networkPolicy.extraIngress and .extraEgress come last
  "policyTypes" LIST    default [Ingress, Egress]; a policy adding rules for pods that another
                        policy already isolates may name one
*/}}
{{- define "msl.networkPolicy" -}}
{{- $root := .root -}}
{{- $np := $root.Values.networkPolicy -}}
{{- $extra := or (not (hasKey . "extra")) .extra -}}
{{- $ingress := .ingress | default list -}}
{{- range $ingress -}}
{{- if not .from }}{{ fail (printf "msl.networkPolicy: an ingress rule without peers (%s) would admit every source" (toJson .)) }}{{ end -}}
{{- end -}}
{{- $egress := .egress | default list -}}
{{- if $extra -}}
{{- $ingress = concat $ingress (get $np "extraIngress" | default list) -}}
{{- $egress = concat $egress (get $np "extraEgress" | default list) -}}
{{- end -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ .name | default (include "msl.fullname" $root) }}
  labels:
    {{- .labels | default (include "msl.labels" $root) | nindent 4 }}
  {{- with .annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  podSelector:
    {{- toYaml (.podSelector | default (dict "matchLabels" (include "msl.selectorLabels" $root | fromYaml))) | nindent 4 }}
  policyTypes: [{{ .policyTypes | default (list "Ingress" "Egress") | join ", " }}]
  {{- if $ingress }}
  ingress:
    {{- range $ingress }}
    {{- with .comment }}
    # {{ . }}
    {{- end }}
    {{- toYaml (list (omit . "comment")) | nindent 4 }}
    {{- end }}
  {{- end }}
  {{- if $egress }}
  egress:
    {{- range $egress }}
    {{- with .comment }}
    # {{ . }}
    {{- end }}
    {{- toYaml (list (omit . "comment")) | nindent 4 }}
    {{- end }}
  {{- end }}
{{- end -}}

{{/*
A bridge's policy (webhook, sentry-webhook, matrix-alertmanager-receiver): the HTTP port (8080)
from `ingressFrom` and `clientsFrom`, and from `metricsFrom` (/metrics is on it); egress to DNS,
the homeserver (matrix.homeserver's port, at `homeserverTo`), with outbox.postgres, PostgreSQL
(`databasePort`, at `databaseTo`), and the chart's own egress rules: its "msl.bridge.egress", a JSON
list of rules (msl.networkPolicy.egress), which every bridge chart defines (`[]` when it has none).
*/}}
{{- define "msl.networkPolicy.bridge" -}}
{{- if .Values.networkPolicy.enabled -}}
{{- $np := .Values.networkPolicy -}}
{{- $http := include "msl.networkPolicy.tcp" (list 8080) | fromJsonArray -}}
{{- $ingress := list
  (dict "comment" "the HTTP API: the ingress controller or Gateway (ingressFrom), in-cluster senders (clientsFrom)"
    "from" (include "msl.networkPolicy.sources" (list $np.ingressFrom $np.clientsFrom) | fromJsonArray) "ports" $http)
  (dict "comment" "/metrics: Prometheus (metricsFrom)"
    "from" (include "msl.networkPolicy.sources" (list $np.metricsFrom) | fromJsonArray) "ports" $http) -}}
{{- $egress := list (include "msl.networkPolicy.dns" (dict "root" .) | fromJson) -}}
{{- $homeserver := required "matrix.homeserver is required" .Values.matrix.homeserver -}}
{{- $egress = append $egress (include "msl.networkPolicy.egress" (dict
  "comment" "the homeserver, on matrix.homeserver's port (homeserverTo; empty: any address)"
  "ports" (include "msl.networkPolicy.tcp" (list (include "msl.urlPort" $homeserver)) | fromJsonArray)
  "to" $np.homeserverTo) | fromJson) -}}
{{- if include "msl.outboxPostgres" . -}}
{{- $egress = append $egress (include "msl.networkPolicy.egress" (dict
  "comment" "the outbox's PostgreSQL on networkPolicy.databasePort (databaseTo; empty: any address)"
  "ports" (include "msl.networkPolicy.tcp" (list $np.databasePort) | fromJsonArray)
  "to" $np.databaseTo) | fromJson) -}}
{{- end -}}
{{- $egress = concat $egress (include "msl.bridge.egress" . | fromJsonArray) -}}
{{- include "msl.networkPolicy" (dict "root" . "ingress" $ingress "egress" $egress) -}}
{{- end -}}
{{- end -}}
