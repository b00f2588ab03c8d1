"""``veil report``: the change report of a run (per instance, what was done to each attribute and why), with the
original values only for the custodian (or, for a single-user run, the run key's holder)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from veil.cli.exits import EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from veil.keys.envelope import Opener

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rp = subparsers.add_parser(
        "report", help="per instance, every attribute a run changed: action, rule, final value (originals for "
                       "the custodian); needs a run with --change-records")
    rp.add_argument("dst", type=Path)
    keys = rp.add_mutually_exclusive_group()
    keys.add_argument("--custodian-key", type=Path, metavar="FILE",
                      help="the custodian's private key (NAME.key; passphrase asked, or "
                           "$VEIL_CUSTODIAN_PASSPHRASE): show the original values of a run sealed to it")
    keys.add_argument("--key", type=Path, metavar="KEYFILE",
                      help="the run key: show the original values of a single-user run (never read from "
                           "$VEIL_KEY: originals only on request)")
    rp.add_argument("--format", choices=("html", "csv", "parquet"),
                    help="default: from the -o suffix, else csv")
    rp.add_argument("--instances", metavar="SEL",
                    help="comma-separated new SOP Instance UIDs or output paths relative to DST, @FILE (one per "
                         "line), or sample:N (default: every written instance)")
    rp.add_argument("--all", action="store_true", dest="all_rows",
                    help="every element, not only the changed ones (as veil inspect shows them)")
    rp.add_argument("-o", "--output", type=Path, metavar="OUT",
                    help="write here (mode 0600 and outside DST when it holds originals); default stdout")


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    suffix = args.output.suffix.lower().lstrip(".") if args.output is not None else ""
    return {"htm": "html", "html": "html", "csv": "csv", "parquet": "parquet"}.get(suffix, "csv")


def command(args: argparse.Namespace) -> int:
    from veil.audit.changes import audit_seal
    from veil.errors import AuditError
    from veil.preview.report import change_report, report_bytes, save_report

    fmt = _format(args)
    if fmt == "parquet" and args.output is None:
        print("veil report: error: --format parquet needs -o OUT", file=sys.stderr)
        return EXIT_USAGE
    opener: Opener | None = None
    if args.custodian_key is not None:
        from veil.keys.custodian import load_custodian_private

        opener = load_custodian_private(args.custodian_key)
    elif args.key is not None:
        from veil.keys import load_key

        opener = audit_seal(load_key(args.key))
    reports = change_report(args.dst, opener, args.instances, args.all_rows)
    originals = any(r.has_originals for r in reports)
    if args.output is not None:
        try:
            where = save_report(reports, fmt, args.output, args.dst)
        except AuditError as exc:  # a report with originals, asked for inside DST
            print(f"veil report: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except OSError as exc:
            print(f"veil report: error: {args.output}: {exc.strerror}", file=sys.stderr)
            return EXIT_USAGE
        rows = sum(len(r.rows) for r in reports)
        print(f"{len(reports):,} instances, {rows:,} rows ({fmt}) in {where}"
              + (" — it holds original values (PHI)" if originals else ""), file=sys.stderr)
    else:
        sys.stdout.buffer.write(report_bytes(reports, fmt))
        sys.stdout.flush()
        if originals:
            print("veil report: the report above holds original values (PHI)", file=sys.stderr)
    if opener is None and reports and any(r.originals == "sealed" for r in reports):
        print("veil report: original values are sealed; the custodian sees them with --custodian-key FILE "
              "(or --key KEYFILE for a single-user run)", file=sys.stderr)
    return EXIT_OK
