"""`sentry-webhook` console script."""

from matrix_stack.core.server import main_for
from matrix_stack.services.sentry_webhook.app import routes
from matrix_stack.services.sentry_webhook.config import SentryWebhookSettings


def main() -> None:
    main_for(SentryWebhookSettings, routes)


if __name__ == "__main__":
    main()
