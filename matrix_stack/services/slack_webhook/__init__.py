"""slack-webhook: Slack-compatible incoming webhooks into Matrix rooms."""
