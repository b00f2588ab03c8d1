"""``veil profile``: inventory an archive (SOP classes, tags, private creators, risks) into Parquet tables."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from veil.cli.common import error
from veil.cli.exits import EXIT_OK
from veil.errors import VeilError

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "profile", help="inventory an archive: SOP classes, tags, private creators, risks"
    )
    p.add_argument("src", type=Path)
    p.add_argument(
        "--out",
        type=Path,
        default=Path("veil-profile"),
        help="directory for the Parquet tables (default: ./veil-profile)",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine (as veil run)")
    p.add_argument("--ray", action="store_true", help="run the workers on a local Ray instead of a process pool")
    p.add_argument("--address", help="profile on this Ray cluster")


def command(args: argparse.Namespace) -> int:
    from veil.inventory.profile import profile_archive

    if not args.src.exists():
        return error("profile", f"{args.src}: no such file or directory")
    try:
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            profile = profile_archive(args.src, args.out, workers=max(1, args.workers), address=args.address,
                                      ray=args.ray)
    except (OSError, VeilError) as exc:
        return error("profile", exc)
    if args.json:
        print(json.dumps({**profile.to_dict(), "out": str(args.out)}, indent=2, ensure_ascii=False))
    else:
        for line in profile.summary_lines():
            print(line)
        print(f"  tables: {args.out}/ (files, tags, private_creators, burned_in_risk, counts .parquet)")
    return EXIT_OK
