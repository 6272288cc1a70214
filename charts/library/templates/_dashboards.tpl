{{/*
Grafana dashboards as ConfigMaps that Grafana's dashboard sidecar loads (grafanaDashboards.enabled;
the sidecar's label, grafana_dashboard: "1" by default, and annotations such as a folder are
values). Context: dict "root" $ "name" NAME "json" TEXT.
*/}}
{{- define "msl.dashboardConfigMap" -}}
{{- $v := .root.Values.grafanaDashboards }}
apiVersion: v1
kind: ConfigMap
metadata:
  {{- $suffix := printf "-dashboard-%s" .name }}
  name: {{ printf "%s%s" (include "msl.fullname" .root | trunc (int (sub 63 (len $suffix))) | trimSuffix "-") $suffix }}
  namespace: {{ $v.namespace | default .root.Release.Namespace }}
  labels:
    {{- include "msl.labels" .root | nindent 4 }}
    {{- with $v.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $v.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
data:
  {{ .name }}.json: {{ .json | toJson }}
{{- end -}}

{{/*
The bridges' dashboard (webhook, sentry-webhook, matrix-alertmanager-receiver): requests, request
time, deliveries by store and outcome, queue depth, delivery latency, room leases. Our own JSON; every
query names metrics the services export (shared/metrics.py), checked against a real Prometheus in
the tests.
*/}}
{{- define "msl.dashboard.bridges" -}}
{{ `{
 "uid": "matrix-stack-bridges",
 "title": "matrix-stack: bridges",
 "tags": [
  "matrix-stack"
 ],
 "schemaVersion": 39,
 "version": 1,
 "editable": false,
 "time": {
  "from": "now-6h",
  "to": "now"
 },
 "refresh": "30s",
 "templating": {
  "list": [
   {
    "name": "datasource",
    "type": "datasource",
    "query": "prometheus",
    "label": "Prometheus"
   },
   {
    "name": "namespace",
    "type": "query",
    "label": "namespace",
    "datasource": {
     "type": "prometheus",
     "uid": "${datasource}"
    },
    "query": {
     "query": "label_values(matrix_stack_http_requests_total, namespace)",
     "refId": "namespace"
    },
    "definition": "label_values(matrix_stack_http_requests_total, namespace)",
    "refresh": 2
   }
  ]
 },
 "panels": [
  {
   "id": 1,
   "type": "timeseries",
   "title": "Requests by route and status",
   "datasource": {
    "type": "prometheus",
    "uid": "${datasource}"
   },
   "gridPos": {
    "h": 8,
    "w": 12,
    "x": 0,
    "y": 0
   },
   "fieldConfig": {
    "defaults": {
     "unit": "reqps"
    },
    "overrides": []
   },
   "options": {
    "legend": {
     "displayMode": "list",
     "placement": "bottom"
    }
   },
   "targets": [
    {
     "refId": "A",
     "expr": "sum by (job, route, status) (rate(matrix_stack_http_requests_total{namespace=\"$namespace\"}[5m]))",
     "legendFormat": "{{job}} {{route}} {{status}}"
    }
   ]
  },
  {
   "id": 2,
   "type": "timeseries",
   "title": "Request time p99",
   "datasource": {
    "type": "prometheus",
    "uid": "${datasource}"
   },
   "gridPos": {
    "h": 8,
    "w": 12,
    "x": 12,
    "y": 0
   },
   "fieldConfig": {
    "defaults": {
     "unit": "s"
    },
    "overrides": []
   },
   "options": {
    "legend": {
     "displayMode": "list",
     "placement": "bottom"
    }
   },
   "targets": [
    {
     "refId": "A",
     "expr": "histogram_quantile(0.99, sum by (job, le) (rate(matrix_stack_http_request_duration_seconds_bucket{namespace=\"$namespace\"}[5m])))",
     "legendFormat": "{{job}}"
    }
   ]
  },
  {
   "id": 3,
   "type": "timeseries",
   "title": "Deliveries by outcome",
   "datasource": {
    "type": "prometheus",
    "uid": "${datasource}"
   },
   "gridPos": {
    "h": 8,
    "w": 12,
    "x": 0,
    "y": 8
   },
   "fieldConfig": {
    "defaults": {
     "unit": "ops"
    },
    "overrides": []
   },
   "options": {
    "legend": {
     "displayMode": "list",
     "placement": "bottom"
    }
   },
   "targets": [
    {
     "refId": "A",
     "expr": "sum by (job, backend, outcome) (rate(matrix_stack_outbox_deliveries_total{namespace=\"$namespace\"}[5m]))",
     "legendFormat": "{{job}} {{backend}} {{outcome}}"
    }
   ]
  },
  {
   "id": 4,
   "type": "timeseries",
   "title": "Outbox queue depth",
   "datasource": {
    "type": "prometheus",
    "uid": "${datasource}"
   },
   "gridPos": {
    "h": 8,
    "w": 12,
    "x": 12,
    "y": 8
   },
   "fieldConfig": {
    "defaults": {
     "unit": "short"
    },
    "overrides": []
   },
   "options": {
    "legend": {
     "displayMode": "list",
     "placement": "bottom"
    }
   },
   "targets": [
    {
     "refId": "A",
     "expr": "max by (job) (matrix_stack_outbox_queue_depth{namespace=\"$namespace\"})",
     "legendFormat": "{{job}}"
    }
   ]
  },
  {
   "id": 5,
   "type": "timeseries",
   "title": "Delivery latency p99 (accepted to the homeserver's answer)",
   "datasource": {
    "type": "prometheus",
    "uid": "${datasource}"
   },
   "gridPos": {
    "h": 8,
    "w": 12,
    "x": 0,
    "y": 16
   },
   "fieldConfig": {
    "defaults": {
     "unit": "s"
    },
    "overrides": []
   },
   "options": {
    "legend": {
     "displayMode": "list",
     "placement": "bottom"
    }
   },
   "targets": [
    {
     "refId": "A",
     "expr": "histogram_quantile(0.99, sum by (job, le) (rate(matrix_stack_outbox_delivery_latency_seconds_bucket{namespace=\"$namespace\"}[5m])))",
     "legendFormat": "{{job}}"
    }
   ]
  },
  {
   "id": 6,
   "type": "timeseries",
   "title": "Room leases held and taken over (PostgreSQL outbox)",
   "datasource": {
    "type": "prometheus",
    "uid": "${datasource}"
   },
   "gridPos": {
    "h": 8,
    "w": 12,
    "x": 12,
    "y": 16
   },
   "fieldConfig": {
    "defaults": {
     "unit": "short"
    },
    "overrides": []
   },
   "options": {
    "legend": {
     "displayMode": "list",
     "placement": "bottom"
    }
   },
   "targets": [
    {
     "refId": "A",
     "expr": "sum by (job, pod) (matrix_stack_outbox_room_leases{namespace=\"$namespace\"})",
     "legendFormat": "held {{pod}}"
    },
    {
     "refId": "B",
     "expr": "sum by (job) (increase(matrix_stack_outbox_lease_takeovers_total{namespace=\"$namespace\"}[1h]))",
     "legendFormat": "taken over/h {{job}}"
    }
   ]
  }
 ]
}` }}
{{- end -}}
