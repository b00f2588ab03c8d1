"""``veil reidentify``: read a sealed re-identification table, with the run key (single-user mode) or with the
custodian's private key and its passphrase (a run given ``--custodian-public``)."""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path
from typing import Any

from veil.cli.exits import EXIT_OK

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ri = subparsers.add_parser(
        "reidentify",
        help="read a sealed re-identification table (needs the run key, or the custodian's private key)",
        description="A table of a single-user run opens with the run key (--key, or $VEIL_KEY); one of a run "
                    "sealed to a custodian (veil run --custodian-public) only with the custodian's private key "
                    "(--custodian-key NAME.key, its passphrase asked at the terminal or read from "
                    "$VEIL_CUSTODIAN_PASSPHRASE).",
    )
    ri.add_argument("table", type=Path)
    which = ri.add_mutually_exclusive_group()
    which.add_argument("--key", type=Path, help="run key file (or set VEIL_KEY): a single-user table")
    which.add_argument("--custodian-key", type=Path, metavar="NAME.key",
                       help="the custodian's private key file: a table sealed to the custodian")
    ri.add_argument("--value", help="show only the rows whose new value is this")
    ri.add_argument("--json", action="store_true", help="print the rows as JSON ({kind, new, original} each)")


def command(args: argparse.Namespace) -> int:
    from veil.keys.reid import read_reid_table

    if args.custodian_key is not None:
        from veil.keys.custodian import load_custodian_private

        rows = read_reid_table(str(args.table), load_custodian_private(args.custodian_key))
    else:
        from veil.keys import load_key

        rows = read_reid_table(str(args.table), load_key(args.key))
    chosen = [row for row in rows if args.value is None or row[1] == args.value]
    if args.json:
        print(json.dumps([{"kind": kind, "new": _json_value(new), "original": _json_value(original)}
                          for kind, new, original in chosen], indent=1))
        return EXIT_OK
    for kind, new, original in chosen:
        print(f"{kind}\t{new}\t{original}")
    return EXIT_OK


def _json_value(text: str) -> Any:
    """The text, or ``{"b64": ...}`` of its exact bytes when the value was not UTF-8 (as the table stores it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return {"b64": base64.b64encode(text.encode("utf-8", "surrogateescape")).decode("ascii")}
    return text
