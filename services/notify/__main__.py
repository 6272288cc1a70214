"""`notify` console script."""

from services.notify.app import routes
from services.notify.config import NotifySettings
from shared.service import main_for


def main() -> None:
    main_for(NotifySettings, routes)


if __name__ == "__main__":
    main()
