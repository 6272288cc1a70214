"""sentry-webhook: Sentry alerts and issue events into Matrix rooms."""
