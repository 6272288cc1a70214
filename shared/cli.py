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
    route = commands.add_parser("route", help="the synapse chart's router")
    route_commands = route.add_subparsers(dest="route_command", required=True)
    explain = route_commands.add_parser(
        "explain",
        help="the pool a request reaches with these values, and its hash key (the real Envoy, stub pools)",
    )
    explain.add_argument(
        "-f", "--values", type=Path, action="append", default=[], help="a values file (repeatable)"
    )
    explain.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as helm --set")
    explain.add_argument("-H", "--header", action="append", default=[], metavar="'NAME: VALUE'")
    explain.add_argument(
        "--batch",
        action="store_true",
        help="read METHOD<TAB>PATH lines on stdin; print METHOD<TAB>PATH<TAB>POOL<TAB>HASH_KEY",
    )
    explain.add_argument("method", nargs="?")
    explain.add_argument("path", nargs="?")
    args = parser.parse_args(argv)
    if args.command == "route":
        from matrix_stack.core.route_explain import main as explain_main

        sys.exit(explain_main(args.values, args.set, args.method, args.path, args.header, args.batch))
    if args.command == "run":
        try:
            from matrix_stack.devstack.stack import run as run_stack
        except ModuleNotFoundError as missing:
            # The wheel carries no development stack; a checkout's `make run` installs what it needs.
            print(f"matrix-stack run: a development tool, not in this installation ({missing.name} missing):"
                  " run `make run` in a clone of matrix-stack", file=sys.stderr)  # fmt: skip
            sys.exit(2)
        sys.exit(run_stack(args.data_dir, args.synapse_port))


if __name__ == "__main__":
    main()
