"""`alertmanager-receiver` console script: `alertmanager-receiver --config-path FILE` (metio's flag),
or the file named by ALERTMANAGER_RECEIVER_CONFIG_PATH."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from matrix_stack.core.server import run
from matrix_stack.core.settings import describe_error, describe_file_error
from matrix_stack.services.alertmanager_receiver.app import not_durable, routes
from matrix_stack.services.alertmanager_receiver.config import (
    AlertmanagerReceiverSettings,
    load_file,
    settings_from_file,
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="alertmanager-receiver")
    parser.add_argument(
        "--config-path", type=Path, default=os.environ.get("ALERTMANAGER_RECEIVER_CONFIG_PATH")
    )
    parser.add_argument("--log-level", choices=["error", "warn", "info", "debug"], default=None)
    args = parser.parse_args()
    if args.config_path is None:
        print("config error: give --config-path or ALERTMANAGER_RECEIVER_CONFIG_PATH", file=sys.stderr)
        sys.exit(2)
    overrides = (
        {"log_level": {"warn": "WARNING"}.get(args.log_level, args.log_level.upper())}
        if args.log_level
        else {}
    )
    try:
        file = load_file(args.config_path)
    except ValidationError as exc:
        print(describe_file_error(args.config_path, exc), file=sys.stderr)
        sys.exit(2)
    except (OSError, ValueError) as exc:
        print(f"config error: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        settings = settings_from_file(file, **overrides)
    except ValidationError as exc:
        print(describe_error(AlertmanagerReceiverSettings, exc), file=sys.stderr)
        sys.exit(2)
    run(settings, routes, not_durable=not_durable)


if __name__ == "__main__":
    main()
