"""``veil deidentify``: de-identify files or a directory tree in this process."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from veil.cli.common import add_key_option, add_recipe_option
from veil.cli.exits import EXIT_FATAL, EXIT_OK, EXIT_QUARANTINED

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = subparsers.add_parser("deidentify", help="de-identify files or a directory tree in this process")
    d.add_argument("src", type=Path)
    d.add_argument("dst", type=Path)
    add_recipe_option(d)
    add_key_option(d)
    d.add_argument("--json", action="store_true", help="print the summary as JSON")


def command(args: argparse.Namespace) -> int:
    """``veil run --workers 1``: the same engine in this process (same outputs, audit under ``DST/.veil`` and
    quarantine copies), with this command's summary and a line on stderr for each quarantined input."""
    import veil.engine as engine
    from veil.keys import run_key
    from veil.recipes import compile_recipe, load_recipe

    recipe = load_recipe(args.recipe)
    compiled = compile_recipe(recipe)
    if compiled.counter is not None:
        print(f"veil deidentify: error: pseudonym pattern {compiled.counter.pattern!r} numbers values through "
              "the key service of a run: use `veil run --reid-table TABLE`, which keeps the numbers",
              file=sys.stderr)
        return EXIT_FATAL
    key = run_key(args.key, required=recipe.requires_key)
    started = time.perf_counter()
    try:
        # The command for the manifest, which digests its paths (SRC, DST, the key file, a recipe file).
        command = ("veil", "deidentify", str(args.src), str(args.dst), "--recipe", args.recipe,
                   *(("--key", str(args.key)) if args.key else ()))
        options = engine.RunOptions(src=str(args.src), dst=str(args.dst), workers=1, command=command)
        run = engine.run(options, compiled, key)
    except engine.FatalRunError as exc:
        print(f"veil deidentify: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    seconds = time.perf_counter() - started
    if run.quarantined:
        _print_quarantined(args.src, args.dst, engine.audit_key(key, run.run_id), run.run_id)
    files, written, quarantined = run.files, run.written, run.quarantined
    bytes_in, bytes_out, reasons = run.input_bytes, run.output_bytes, run.reasons
    summary: dict[str, Any] = {
        "recipe": f"{recipe.name} {recipe.version}",
        "key_id": key.key_id if key else None,
        "files": files,
        "written": written,
        "quarantined": quarantined,
        "quarantine_reasons": dict(reasons),
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "seconds": round(seconds, 3),
        "files_per_second": round(files / seconds, 1) if seconds else None,
        "actions": dict(sorted((name, count) for name, count in run.actions.items() if count)),
        "destination": str(args.dst),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"deidentify: {files} files with recipe {summary['recipe']} (key id {summary['key_id']}): "
            f"{written} written, {quarantined} quarantined, {bytes_in / 1e6:.1f} MB in, "
            f"{bytes_out / 1e6:.1f} MB out, {seconds:.2f} s ({summary['files_per_second']} files/s)"
        )
        print("  elements by action: " + ", ".join(f"{k.lower()} {v}" for k, v in summary["actions"].items()))
        for reason, count in reasons.most_common():
            print(f"  quarantined {count}: {reason}")
        print(f"  output: {args.dst}")
    return EXIT_QUARANTINED if quarantined else EXIT_OK


def _print_quarantined(src: Path, dst: Path, audit_key: bytes, run_id: str) -> None:
    """``quarantined: PATH: REASON`` for each input this run refused, in listing order: the audit names inputs
    by keyed digest only, so the listing is walked again and each path's digest looked up."""
    import veil.audit as audit
    from veil.engine import list_inputs

    table = audit.read_audit(dst, ["run_id", "input_digest", "status", "reason"]).to_pydict()
    refused = {digest: reason for run, digest, status, reason in zip(
        table["run_id"], table["input_digest"], table["status"], table["reason"], strict=True)
        if run == run_id and status == "quarantined"}
    for entry in list_inputs(str(src)):
        reason = refused.get(audit.input_digest(audit_key, entry.rel))
        if reason is not None:
            print(f"quarantined: {entry.path}: {reason}", file=sys.stderr)
