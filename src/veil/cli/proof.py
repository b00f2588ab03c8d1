"""The ``veil verify``, ``veil inspect`` and ``veil profile`` commands: argument parsing and printing only.

``cli.py`` wires them in with :func:`add_parsers`, which adds the subcommands to its subparsers and returns
the handlers by command name; each handler returns the exit code (0 ok, 1 fatal, 4 verify findings).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from veil.errors import KeyError_, VeilError

__all__ = ["add_parsers", "EXIT_OK", "EXIT_FATAL", "EXIT_FINDINGS"]

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_FINDINGS = 4


def add_parsers(subparsers: argparse._SubParsersAction) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Adds ``verify``, ``inspect`` and ``profile`` to ``subparsers``; returns command name -> handler."""
    v = subparsers.add_parser(
        "verify",
        help="prove an output set clean: leak scan, referential integrity, kept attributes (exit 4 on findings)",
    )
    v.add_argument("src", type=Path, help="the inputs that were de-identified")
    v.add_argument("dst", type=Path, help="veil's output of SRC")
    v.add_argument("--key", type=Path, help="the key the outputs were made with (or set VEIL_KEY)")
    v.add_argument("--recipe", default="research", help="recipe name or YAML path (default: research)")
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

    i = subparsers.add_parser("inspect", help="every element of one file before and after a recipe, and why")
    i.add_argument("file", type=Path)
    i.add_argument("--recipe", required=True, help="recipe name or YAML path")
    i.add_argument(
        "--key", type=Path, help="key file (or VEIL_KEY); without one keyed values use a throwaway key"
    )
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")

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
    return {"verify": _verify, "inspect": _inspect, "profile": _profile}


def _error(command: str, message: object) -> int:
    print(f"veil {command}: error: {message}", file=sys.stderr)
    return EXIT_FATAL


def _verify(args: argparse.Namespace) -> int:
    from veil.keys import load_key
    from veil.verify.verify import verify, write_report

    if not args.src.exists():
        return _error("verify", f"{args.src}: no such file or directory")
    if not args.dst.exists():
        return _error("verify", f"{args.dst}: no such file or directory")
    if args.dciodvfy_sample < 0:
        return _error("verify", "--dciodvfy-sample must be 0 or more")
    try:
        key = load_key(args.key)  # required: without it neither keyed UIDs nor references can be checked
        report = verify(
            args.src,
            args.dst,
            recipe=args.recipe,
            key=key,
            dciodvfy_sample=args.dciodvfy_sample,
            progress=_progress() if sys.stderr.isatty() else None,
            reid_table=args.reid_table,
        )
    except (KeyError_, VeilError) as exc:
        return _error("verify", exc)
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
            what = " ".join(x for x in (f.keyword, f.kind, f.value) if x)
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


def _inspect(args: argparse.Namespace) -> int:
    from veil.keys import KeyedFunctions, load_key
    from veil.preview.inspect import inspect_file
    from veil.recipes.recipe import compile_recipe

    try:
        compiled = compile_recipe(args.recipe)
        functions = None
        if args.key or os.environ.get("VEIL_KEY"):
            functions = KeyedFunctions(load_key(args.key), **compiled.key_parameters)
        result = inspect_file(args.file, compiled, functions)
    except (KeyError_, VeilError) as exc:
        return _error("inspect", exc)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    # A preview is wide: on a terminal rich uses its width; piped to a file or a pager, 200 columns.
    console = Console(width=None if sys.stdout.isatty() else 200)
    title = f"{args.file} — recipe {result.recipe}, " + (
        f"key id {result.key_id}" if result.key_id else "keyed values under a throwaway key"
    )
    table = Table(title=title, show_lines=False)
    for column in ("path", "tag", "keyword", "VR", "before", "after", "action", "rule"):
        table.add_column(column, overflow="fold")
    styles = {"KEEP": "", "RECURSE": "dim", "REMOVE": "red", "EMPTY": "red", "DUMMY": "yellow"}
    for row in result.rows:
        after = row.after if row.present_after else "(removed)"
        table.add_row(
            row.path,
            row.tag,
            row.keyword,
            row.vr,
            row.before,
            after,
            row.action,
            row.rule,
            style=styles.get(row.action, "cyan"),
        )
    console.print(table)
    console.print("elements by action: " + ", ".join(f"{k.lower()} {v}" for k, v in result.counts.items()))
    if result.throwaway_key:
        console.print(
            "keyed values (UIDs, pseudonyms, shifted dates) come from a throwaway key: pass --key to see the real ones"
        )
    return EXIT_OK


def _profile(args: argparse.Namespace) -> int:
    from veil.inventory.profile import profile_archive

    if not args.src.exists():
        return _error("profile", f"{args.src}: no such file or directory")
    try:
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            profile = profile_archive(args.src, args.out, workers=max(1, args.workers), address=args.address,
                                      ray=args.ray)
    except (OSError, VeilError) as exc:
        return _error("profile", exc)
    if args.json:
        print(json.dumps({**profile.to_dict(), "out": str(args.out)}, indent=2, ensure_ascii=False))
    else:
        for line in profile.summary_lines():
            print(line)
        print(f"  tables: {args.out}/ (files, tags, private_creators, burned_in_risk, counts .parquet)")
    return EXIT_OK
