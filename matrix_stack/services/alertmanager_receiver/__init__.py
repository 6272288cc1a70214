"""alertmanager-receiver: Prometheus Alertmanager webhooks into Matrix rooms, metio-config compatible."""
