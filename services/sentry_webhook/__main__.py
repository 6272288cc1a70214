"""`sentry-webhook` console script."""

from services.sentry_webhook.app import routes
from services.sentry_webhook.config import SentryWebhookSettings
from shared.service import main_for


def main() -> None:
    main_for(SentryWebhookSettings, routes)


if __name__ == "__main__":
    main()
