"""`alertmanager-receiver` console script: `alertmanager-receiver --config-path FILE` (metio's flag),
or the file named by ALERTMANAGER_RECEIVER_CONFIG_PATH."""

from matrix_stack.services.alertmanager_receiver.app import not_durable, routes
from matrix_stack.services.alertmanager_receiver.config import AlertmanagerReceiverSettings, from_command_line
from matrix_stack.shared.bridge.service import Service
from matrix_stack.shared.kit.server import main_for


def main() -> None:
    main_for(
        AlertmanagerReceiverSettings,
        Service.from_settings,
        routes,
        not_durable=not_durable,
        load=from_command_line,
    )


if __name__ == "__main__":
    main()
