"""``veil keygen``: write a new project key."""

from __future__ import annotations

import argparse
from pathlib import Path

from veil.cli.exits import EXIT_OK

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    k = subparsers.add_parser("keygen", help="write a new 32-byte project key (mode 0600)")
    k.add_argument("keyfile", type=Path)


def command(args: argparse.Namespace) -> int:
    from veil.keys import generate_key_file

    key = generate_key_file(args.keyfile)
    print(f"keygen: wrote {args.keyfile} (mode 0600), key id {key.key_id}")
    return EXIT_OK
