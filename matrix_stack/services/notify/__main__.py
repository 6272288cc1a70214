"""`notify` console script."""

from matrix_stack.services.notify.app import routes
from matrix_stack.services.notify.config import NotifySettings
from matrix_stack.shared.bridge.service import Service
from matrix_stack.shared.kit.server import main_for


def main() -> None:
    main_for(NotifySettings, Service.from_settings, routes)


if __name__ == "__main__":
    main()
