"""``veil reidentify``: read an encrypted re-identification table with the project key."""

from __future__ import annotations

import argparse
from pathlib import Path

from veil.cli.common import add_key_option
from veil.cli.exits import EXIT_OK

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ri = subparsers.add_parser("reidentify", help="read an encrypted re-identification table (needs the key)")
    ri.add_argument("table", type=Path)
    add_key_option(ri)
    ri.add_argument("--value", help="show only the rows whose new value is this")


def command(args: argparse.Namespace) -> int:
    from veil.keys import load_key
    from veil.keys.reid import read_reid_table

    key = load_key(args.key)
    rows = read_reid_table(str(args.table), key.material)
    for kind, new, original in rows:
        if args.value is None or new == args.value:
            print(f"{kind}\t{new}\t{original}")
    return EXIT_OK
