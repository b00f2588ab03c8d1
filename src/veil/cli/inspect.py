"""``veil inspect``: every element of one file before and after a recipe, and the rule that decided it; given a
folder, what the recipe's defacing would do to each head series in it (a dry run: nothing is written but the
after-renderings ``--render`` asks for)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from veil.cli.common import add_key_option, error
from veil.cli.exits import EXIT_OK
from veil.errors import KeyError_, VeilError

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    i = subparsers.add_parser("inspect", help="every element of one file before and after a recipe, and why; "
                              "given a folder, what its defacing would do to each head series")
    i.add_argument("file", type=Path, help="a DICOM file, or a folder of series to preview defacing on")
    i.add_argument("--recipe", required=True, help="recipe name or YAML path")
    add_key_option(i, help="key file (or VEIL_KEY); without one keyed values use a throwaway key")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    i.add_argument("--render", type=Path, metavar="DIR",
                   help="folder: write each defaced series' frontal rendering after defacing here as a PNG")


def command(args: argparse.Namespace) -> int:
    from veil.keys import KeyedFunctions, load_key
    from veil.preview.inspect import inspect_file
    from veil.recipes import compile_recipe

    try:
        compiled = compile_recipe(args.recipe)
        functions = None
        if args.key or os.environ.get("VEIL_KEY"):
            functions = KeyedFunctions(load_key(args.key), **compiled.key_parameters)
        if args.file.is_dir():
            return _folder(args, compiled, functions)
        if args.render is not None:
            raise VeilError("--render previews the defacing of a folder: give a folder, not a file")
        result = inspect_file(args.file, compiled, functions)
    except (KeyError_, VeilError) as exc:
        return error("inspect", exc)
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
    if result.identity:  # how many identity values of each kind the cleaner and verify know (never the values)
        console.print("identity values by kind: " + ", ".join(f"{k} {v}" for k, v in result.identity.items()))
    if result.throwaway_key:
        console.print(
            "keyed values (UIDs, pseudonyms, shifted dates) come from a throwaway key: pass --key to see the real ones"
        )
    return EXIT_OK


def _folder(args: argparse.Namespace, compiled: Any, functions: Any) -> int:
    """``veil inspect FOLDER``: the defacing preview, as a table or JSON; ``--render`` PNGs after defacing."""
    from veil.preview.deface import preview_defacing

    result = preview_defacing(args.file, compiled, functions)
    rendered: dict[int, str] = {}
    if args.render is not None:
        from PIL import Image

        try:
            args.render.mkdir(parents=True, exist_ok=True)
            for n, series in enumerate(result.series, 1):
                if series.after is not None:
                    path = args.render / f"series-{n:03d}-after.png"
                    Image.fromarray(series.after).save(path)
                    rendered[n] = str(path)
        except OSError as exc:
            raise VeilError(f"{args.render}: cannot write the renderings: {exc.strerror}") from None
    if args.json:
        content = result.to_dict()
        for n, series in enumerate(content["series"], 1):
            series["rendering"] = rendered.get(n)
        print(json.dumps(content, indent=2, ensure_ascii=False))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 200)
    title = f"{args.file} — defacing under recipe {result.recipe} (dry run: no DICOM written), " + (
        f"key id {result.key_id}" if result.key_id else "keyed values under a throwaway key"
    )
    table = Table(title=title)
    for column in ("#", "first file", "files", "selected by", "status", "head removed", "plane", "reason"):
        table.add_column(column, overflow="fold")
    styles = {"defaced": "green", "quarantined": "red", "untouched": ""}
    for n, series in enumerate(result.series, 1):
        record = series.record
        removed = f"{record['head_fraction_removed'] * 100:.1f}%" if "head_fraction_removed" in record else ""
        plane = (f"n={tuple(record['plane_normal_lps'])} d={record['plane_offset_mm']} mm"
                 if "plane_normal_lps" in record else "")
        table.add_row(str(n), series.first_file, str(series.files), series.selected_by, series.status, removed,
                      plane, series.reason, style=styles.get(series.status, ""))
    console.print(table)
    console.print(f"{result.files} files: {result.files - result.per_file} in {len(result.series)} series the "
                  f"defacing step takes, {result.per_file} on the per-file path")
    for n, path in sorted(rendered.items()):
        console.print(f"series {n}: rendering after defacing written to {path}")
    return EXIT_OK
