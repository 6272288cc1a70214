"""`slack-webhook` console script: serve, or `slack-webhook new-hook-id`."""

import sys

from matrix_stack.services.slack_webhook.app import not_durable, routes
from matrix_stack.services.slack_webhook.config import SlackWebhookSettings, new_hook_id
from matrix_stack.shared.bridge.service import Service
from matrix_stack.shared.kit.server import main_for


def main() -> None:
    if sys.argv[1:] == ["new-hook-id"]:
        print(new_hook_id())
        return
    if sys.argv[1:]:
        sys.exit("usage: slack-webhook [new-hook-id]  (configuration comes from SLACK_WEBHOOK_* variables)")
    main_for(SlackWebhookSettings, Service.from_settings, routes, not_durable=not_durable)


if __name__ == "__main__":
    main()
