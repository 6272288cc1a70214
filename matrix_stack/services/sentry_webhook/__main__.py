"""`sentry-webhook` console script."""

from matrix_stack.services.sentry_webhook.app import not_durable, routes
from matrix_stack.services.sentry_webhook.config import SentryWebhookSettings
from matrix_stack.shared.bridge.service import Service
from matrix_stack.shared.kit.server import main_for


def main() -> None:
    main_for(SentryWebhookSettings, Service.from_settings, routes, not_durable=not_durable)


if __name__ == "__main__":
    main()
