"""The `matrix-stack` command: what works from an installation (`make run` starts the local stack from
a checkout)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="matrix-stack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
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
        from matrix_stack.shared.route.explain import main as explain_main

        sys.exit(explain_main(args.values, args.set, args.method, args.path, args.header, args.batch))


if __name__ == "__main__":
    main()
