"""`notify` console script."""

from matrix_stack.core.server import main_for
from matrix_stack.services.notify.app import routes
from matrix_stack.services.notify.config import NotifySettings


def main() -> None:
    main_for(NotifySettings, routes)


if __name__ == "__main__":
    main()
