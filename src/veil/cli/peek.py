"""``veil peek``: the identity and signature values of one file, as JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from veil.cli.exits import EXIT_FATAL, EXIT_OK

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pk = subparsers.add_parser("peek", help="the identity and signature values of one file (JSON)")
    pk.add_argument("file", type=Path)


def command(args: argparse.Namespace) -> int:
    from veil.core._core import peek

    try:
        data = args.file.read_bytes()
    except OSError as exc:
        print(f"veil peek: error: {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_FATAL
    print(json.dumps(peek(data, str(args.file)), indent=2))
    return EXIT_OK
