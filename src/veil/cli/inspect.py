"""``veil inspect``: every element of one file before and after a recipe, and the rule that decided it."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from veil.cli.common import add_key_option, error
from veil.cli.exits import EXIT_OK
from veil.errors import KeyError_, VeilError

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    i = subparsers.add_parser("inspect", help="every element of one file before and after a recipe, and why")
    i.add_argument("file", type=Path)
    i.add_argument("--recipe", required=True, help="recipe name or YAML path")
    add_key_option(i, help="key file (or VEIL_KEY); without one keyed values use a throwaway key")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")


def command(args: argparse.Namespace) -> int:
    from veil.keys import KeyedFunctions, load_key
    from veil.preview.inspect import inspect_file
    from veil.recipes import compile_recipe

    try:
        compiled = compile_recipe(args.recipe)
        functions = None
        if args.key or os.environ.get("VEIL_KEY"):
            functions = KeyedFunctions(load_key(args.key), **compiled.key_parameters)
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
