"""The `matrix-stack` command."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="matrix-stack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="a local Synapse with every service wired to it")
    run.add_argument("--data-dir", type=Path, default=Path(".local"), help="kept between runs")
    run.add_argument("--synapse-port", type=int, default=8008)
    args = parser.parse_args(argv)
    if args.command == "run":
        from shared.devstack.stack import run as run_stack

        sys.exit(run_stack(args.data_dir, args.synapse_port))


if __name__ == "__main__":
    main()
