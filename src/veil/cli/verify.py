"""``veil verify``: prove an output set clean (leak scan, referential integrity, kept attributes).

Its exit code is 4 (:data:`~veil.cli.exits.EXIT_FINDINGS`) when the report has findings."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from veil.cli.common import add_key_option, add_recipe_option, error
from veil.errors import KeyError_, VeilError

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    v = subparsers.add_parser(
        "verify",
        help="prove an output set clean: leak scan, referential integrity, kept attributes (exit 4 on findings)",
    )
    v.add_argument("src", type=Path, help="the inputs that were de-identified")
    v.add_argument("dst", type=Path, help="veil's output of SRC")
    add_key_option(v, help="the key the outputs were made with (or set VEIL_KEY)")
    add_recipe_option(v)
    v.add_argument("--report", type=Path, help="write the report here (.md, or .html) and JSON beside it")
    v.add_argument(
        "--dciodvfy-sample",
        type=int,
        default=10,
        metavar="N",
        help="input/output pairs to check with dciodvfy when it is installed (default 10)",
    )
    v.add_argument("--json", action="store_true", help="print the JSON report")
    v.add_argument("--reid-table", type=Path,
                   help="the run's re-identification table: counter pseudonyms are checked against it")
    v.add_argument("--custodian-key", type=Path, metavar="NAME.key",
                   help="with --reid-table of a run sealed to a custodian: the custodian's private key (its "
                        "passphrase is asked, or read from VEIL_CUSTODIAN_PASSPHRASE)")


def command(args: argparse.Namespace) -> int:
    from veil.keys import load_key
    from veil.verification import verify, write_report

    if not args.src.exists():
        return error("verify", f"{args.src}: no such file or directory")
    if not args.dst.exists():
        return error("verify", f"{args.dst}: no such file or directory")
    if args.dciodvfy_sample < 0:
        return error("verify", "--dciodvfy-sample must be 0 or more")
    try:
        key = load_key(args.key)  # required: without it neither keyed UIDs nor references can be checked
        custodian = None
        if args.custodian_key is not None:
            from veil.keys.custodian import load_custodian_private

            custodian = load_custodian_private(args.custodian_key)
        report = verify(
            args.src,
            args.dst,
            recipe=args.recipe,
            key=key,
            dciodvfy_sample=args.dciodvfy_sample,
            progress=_progress() if sys.stderr.isatty() else None,
            reid_table=args.reid_table,
            custodian=custodian,
        )
    except (KeyError_, VeilError) as exc:
        return error("verify", exc)
    if sys.stderr.isatty():
        sys.stderr.write("\n")
    written = write_report(report, args.report) if args.report else []
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        for line in report.summary_lines():
            print(line)
        shown = report.errors[:20]
        for f in shown:
            where = f"{f.file} {f.path}".strip()
            what = " ".join(x for x in (f.keyword, f.kind) if x)
            print(f"  - {f.category}: {where}: {what} {('- ' + f.detail) if f.detail else ''}".rstrip())
        if len(report.errors) > len(shown):
            print(f"  ... and {len(report.errors) - len(shown)} more (see the report)")
        notes = len(report.findings) - len(report.errors)
        if notes:
            print(f"  {notes} matches judged coincidences (notes in the report)")
        for path in written:
            print(f"  report: {path}")
    return report.exit_code


def _progress() -> Callable[[str, int, int], None]:
    def show(stage: str, done: int, total: int) -> None:
        if done == total or done % 200 == 0:
            sys.stderr.write(f"\rverify: {stage} {done}/{total} files ")
            sys.stderr.flush()

    return show
