"""`make run`: `python -m devstack [--data-dir DIR] [--synapse-port PORT]` from a checkout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from devstack.stack import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=Path(".local"), help="kept between runs")
    parser.add_argument("--synapse-port", type=int, default=8008)
    args = parser.parse_args(argv)
    sys.exit(run(args.data_dir, args.synapse_port))


if __name__ == "__main__":
    main()
