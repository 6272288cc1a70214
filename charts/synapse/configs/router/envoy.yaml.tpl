{{- /* Envoy's configuration for the router (rendered with tpl by synapse.router.envoy): the listener, the Lua filter, one route per route table entry (files/routes.yaml) and one cluster per target. */ -}}
{{- $r := .Values.router -}}
{{- $ports := include "synapse.ports" . | fromYaml -}}
{{- $clusters := include "synapse.router.clusters" . | fromYaml -}}
{{- $routes := include "synapse.router.routeList" . | fromYamlArray -}}
{{- $hashed := dict -}}
{{- range $route := $routes }}{{ if $route.hash }}{{ $_ := set $hashed $route.cluster true }}{{ end }}{{ end -}}
{{- /* Retries: what cannot have reached Synapse everywhere; a reset too where repeating is safe. */ -}}
{{- $safe := "connect-failure,refused-stream,reset-before-request" -}}
{{- $idempotent := printf "%s,reset" $safe -}}
{{- /* A PUT whose path ends in a transaction id (send, redact, sendToDevice, federation /send): Synapse answers a repeat with the first answer. */ -}}
{{- $transaction := `/_matrix/(client/(api/v1|r0|v3|unstable)/(rooms/[^/]+/(send|redact)/[^/]+|sendToDevice/[^/]+)|federation/v1/send)/[^/?]+/?(\?.*)?` -}}
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 9901}}
# Each route's regexes are joined into one RE2 program: larger than Envoy's default limit of 100.
layered_runtime:
  layers:
    - name: static
      static_layer:
        re2.max_program_size.error_level: 4096
        re2.max_program_size.warn_level: 4096
overload_manager:
  refresh_interval: 0.25s
  resource_monitors:
    - name: envoy.resource_monitors.fixed_heap
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig
        max_heap_size_bytes: {{ $r.overload.maxHeapBytes | int64 }}
    - name: envoy.resource_monitors.global_downstream_max_connections
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
        max_active_downstream_connections: {{ $r.overload.maxConnections | int64 }}
  actions:
    - name: envoy.overload_actions.shrink_heap
      triggers: [{name: envoy.resource_monitors.fixed_heap, threshold: {value: 0.95}}]
    - name: envoy.overload_actions.stop_accepting_requests
      triggers: [{name: envoy.resource_monitors.fixed_heap, threshold: {value: 0.98}}]
static_resources:
  listeners:
    - name: matrix
      address: {socket_address: {address: 0.0.0.0, port_value: {{ $ports.http }}}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: matrix
                use_remote_address: true
                xff_num_trusted_hops: {{ $r.trustedHops }}
                stream_idle_timeout: 300s
                request_headers_timeout: 30s
                common_http_protocol_options: {idle_timeout: 3600s, headers_with_underscores_action: REJECT_REQUEST}
                access_log:
                  {{- if $r.accessLog }}
                  - name: envoy.access_loggers.stdout
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
                      log_format:
                        formatters:
                          - name: envoy.formatter.req_without_query
                            typed_config:
                              "@type": type.googleapis.com/envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery
                        json_format:
                          time: "%START_TIME%"
                          method: "%REQ(:METHOD)%"
                          path: "%REQ_WITHOUT_QUERY(:PATH)%"
                          status: "%RESPONSE_CODE%"
                          route: "%ROUTE_NAME%"
                          pool: "%METADATA(UPSTREAM_HOST:matrix_stack:pool)%"
                          upstream: "%UPSTREAM_HOST%"
                          hash_key: "%REQ(X-MATRIX-STACK-HASH)%"
                          duration_ms: "%DURATION%"
                          attempts: "%UPSTREAM_REQUEST_ATTEMPT_COUNT%"
                          flags: "%RESPONSE_FLAGS%"
                          bytes_received: "%BYTES_RECEIVED%"
                          bytes_sent: "%BYTES_SENT%"
                          client: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
                          request_id: "%REQ(X-REQUEST-ID)%"
                  {{- end }}
                http_filters:
                  - name: envoy.filters.http.lua
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
                      # Lua changes only the hash header, which no route matches on: the route it
                      # runs on stays the route (by default every header change makes Envoy match
                      # the whole table again, as many route matches as the request took first).
                      clear_route_cache: false
                      default_source_code:
                        inline_string: |
                          {{- include "synapse.router.lua" . | nindent 26 }}
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
                route_config:
                  name: matrix
                  virtual_hosts:
                    - name: matrix
                      domains: ["*"]
                      routes:
                        - name: cors-preflight
                          match: {prefix: "/", headers: [{name: ":method", string_match: {exact: OPTIONS}}]}
                          direct_response: {status: 204}
                          response_headers_to_add:
                            - header: {key: access-control-allow-origin, value: "*"}
                            - header: {key: access-control-allow-methods, value: "GET, HEAD, POST, PUT, DELETE, OPTIONS"}
                            - header: {key: access-control-allow-headers, value: "X-Requested-With, Content-Type, Authorization, Date"}
                            - header: {key: access-control-max-age, value: "86400"}
                        {{- range $route := $routes }}
                        {{- /* Each entry is one route per retry class, its methods split between them: GET and HEAD, PUT with a transaction id (entries with transactions), everything else. */}}
                        {{- $methods := $route.methods | default list }}
                        {{- $reads := list }}
                        {{- range $m := list "GET" "HEAD" }}{{ if or (not $methods) (has $m $methods) }}{{ $reads = append $reads $m }}{{ end }}{{ end }}
                        {{- $variants := list }}
                        {{- if $reads }}
                        {{- $variants = append $variants (dict "retryOn" $idempotent "headers" (list (dict "name" ":method" "string_match" (dict "safe_regex" (dict "regex" (join "|" $reads)))))) }}
                        {{- end }}
                        {{- if and $route.transactions (or (not $methods) (has "PUT" $methods)) }}
                        {{- $variants = append $variants (dict "retryOn" $idempotent "headers" (list (dict "name" ":method" "string_match" (dict "exact" "PUT")) (dict "name" ":path" "string_match" (dict "safe_regex" (dict "regex" $transaction))))) }}
                        {{- end }}
                        {{- if not $methods }}
                        {{- $variants = append $variants (dict "retryOn" $safe "headers" (list (dict "name" ":method" "string_match" (dict "safe_regex" (dict "regex" "GET|HEAD")) "invert_match" true))) }}
                        {{- else if without $methods "GET" "HEAD" }}
                        {{- $variants = append $variants (dict "retryOn" $safe "headers" (list (dict "name" ":method" "string_match" (dict "safe_regex" (dict "regex" (join "|" (without $methods "GET" "HEAD"))))))) }}
                        {{- end }}
                        {{- range $variant := $variants }}
                        - name: {{ $route.name }}
                          match:
                            safe_regex: {regex: {{ $route.pattern | quote }}}
                            headers: {{ toJson $variant.headers }}
                          {{- if not (or $route.hash $route.media) }}
                          # Nothing to hash and no media body: the Lua filter is skipped (and a
                          # client's own hash header dropped, as Lua does elsewhere).
                          typed_per_filter_config:
                            envoy.filters.http.lua:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.LuaPerRoute
                              disabled: true
                          request_headers_to_remove: [x-matrix-stack-hash]
                          {{- end }}
                          metadata:
                            filter_metadata:
                              envoy.filters.http.lua:
                                {{- with $route.hash }}
                                hash: {{ . }}
                                {{- end }}
                                {{- if $route.media }}
                                max_bytes: {{ $r.maxUploadBytes | int64 | quote }}
                                {{- end }}
                          route:
                            cluster: {{ $route.cluster }}
                            timeout: {{ $route.timeout | default (ternary $r.timeouts.media $r.timeouts.default (or (default false $route.media) (default false $route.slow))) }}
                            {{- if eq ($route.timeout | default "") "0s" }}
                            idle_timeout: {{ $r.timeouts.longPoll }}
                            {{- end }}
                            {{- if $route.hash }}
                            hash_policy: [{header: {header_name: x-matrix-stack-hash}}]
                            {{- end }}
                            # Tried again on another instance of the pool: on a hash ring the next entry
                            # of another instance (a run of one instance's entries can be long).
                            retry_policy:
                              retry_on: {{ $variant.retryOn }}
                              num_retries: {{ $r.retries.maxRetries }}
                              retry_host_predicate:
                                - name: envoy.retry_host_predicates.previous_hosts
                                  typed_config: {"@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate}
                              host_selection_retry_max_attempts: 64
                          {{- if $r.debugHeader }}
                          response_headers_to_add:
                            - header: {key: x-matrix-stack-pool, value: "%UPSTREAM_METADATA([\"matrix_stack\", \"pool\"])%"}
                          {{- end }}
                        {{- end }}
                        {{- end }}
                        - name: unmatched
                          match: {prefix: "/"}
                          direct_response:
                            status: 404
                            body: {inline_string: '{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}'}
    - name: metrics
      address: {socket_address: {address: 0.0.0.0, port_value: 9102}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: metrics
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
                route_config:
                  virtual_hosts:
                    - name: metrics
                      domains: ["*"]
                      routes:
                        - match: {path: /metrics}
                          route: {cluster: admin, prefix_rewrite: /stats/prometheus}
                        - match: {path: /ready}
                          route: {cluster: admin}
  clusters:
    - name: admin
      type: STATIC
      connect_timeout: 1s
      load_assignment:
        cluster_name: admin
        endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9901}}}}]}]
    {{- range $kind, $cluster := $clusters }}
    - name: {{ $kind }}
      type: STRICT_DNS
      dns_lookup_family: V4_PREFERRED
      respect_dns_ttl: true
      connect_timeout: 2s
      {{- if hasKey $hashed $kind }}
      lb_policy: RING_HASH
      ring_hash_lb_config: {minimum_ring_size: 1024}
      {{- else }}
      lb_policy: LEAST_REQUEST
      {{- end }}
      circuit_breakers:
        thresholds:
          - max_connections: 100000
            max_pending_requests: 100000
            max_requests: 100000
            retry_budget:
              budget_percent: {value: {{ $r.retries.budgetPercent }}}
              min_retry_concurrency: {{ $r.retries.minRetryConcurrency }}
      outlier_detection: {consecutive_gateway_failure: 5, enforcing_consecutive_gateway_failure: 100, enforcing_consecutive_5xx: 0, interval: 10s, base_ejection_time: 30s}
      {{- if ne $kind "mas" }}
      # Synapse's /health on each instance, idle or not: a dead one leaves the pool (and its hash
      # ring) within unhealthyThreshold intervals, and comes back at its first answer.
      health_checks:
        - timeout: {{ $r.healthCheck.timeout }}
          interval: {{ $r.healthCheck.interval }}
          no_traffic_interval: {{ $r.healthCheck.interval }}
          unhealthy_threshold: {{ $r.healthCheck.unhealthyThreshold }}
          healthy_threshold: {{ $r.healthCheck.healthyThreshold }}
          http_health_check: {path: /health}
      # A pod stopping leaves DNS (its endpoint is no longer ready) before Synapse gets SIGTERM: no
      # new request goes to it from then, though it still answers /health while it drains.
      ignore_health_on_host_removal: true
      {{- end }}
      load_assignment:
        cluster_name: {{ $kind }}
        endpoints:
          - lb_endpoints:
              {{- range $cluster.pools }}
              - endpoint:
                  hostname: {{ .pool }}
                  address: {socket_address: {address: {{ .address }}, port_value: {{ .port }}}}
                metadata: {filter_metadata: {matrix_stack: {pool: {{ .pool }}}}}
              {{- end }}
    {{- end }}
