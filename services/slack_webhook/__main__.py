"""`slack-webhook` console script: serve, or `slack-webhook new-hook-id`."""

import sys

from services.slack_webhook.app import routes
from services.slack_webhook.config import SlackWebhookSettings, new_hook_id
from shared.service import main_for


def main() -> None:
    if sys.argv[1:] == ["new-hook-id"]:
        print(new_hook_id())
        return
    if sys.argv[1:]:
        sys.exit("usage: slack-webhook [new-hook-id]  (configuration comes from SLACK_WEBHOOK_* variables)")
    main_for(SlackWebhookSettings, routes)


if __name__ == "__main__":
    main()
