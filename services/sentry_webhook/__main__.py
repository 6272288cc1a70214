"""`sentry-webhook` console script."""

from matrix_stack.core.server import main_for
from matrix_stack.services.sentry_webhook.app import not_durable, routes
from matrix_stack.services.sentry_webhook.config import SentryWebhookSettings


def main() -> None:
    main_for(SentryWebhookSettings, routes, not_durable=not_durable)


if __name__ == "__main__":
    main()
