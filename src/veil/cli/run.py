"""``veil run``: de-identify an archive with worker processes, or on Ray; a status line on a terminal."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veil.cli.common import add_key_option, add_recipe_option, allow_quick_exit
from veil.cli.exits import EXIT_FATAL, EXIT_OK, EXIT_QUARANTINED, EXIT_USAGE

if TYPE_CHECKING:
    from veil.engine import RunSummary

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser(
        "run",
        help="de-identify an archive: worker processes on this machine by default, "
        "Ray with --ray (this machine) or --address (a cluster)",
    )
    run.add_argument("src", type=Path)
    run.add_argument("dst", type=Path)
    add_recipe_option(run)
    add_key_option(run)
    run.add_argument("--address", help="Ray cluster address (default: this machine)")
    run.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                     help="worker processes on this machine (default: one per CPU; 1 runs in this process)")
    run.add_argument("--resume", action="store_true", help="skip the shards a previous run finished")
    run.add_argument("--reid-table", type=Path, help="write the encrypted re-identification table here")
    run.add_argument("--files-from", type=Path, help="a listing file, one path a line (relative to SRC)")
    run.add_argument("--layout", choices=("mirror", "study"), default="mirror")
    run.add_argument("--atomic", choices=("shard", "file"),
                     help="shard (default for a new DST): outputs under their final names, a shard recorded done "
                          "once they are synced, redone whole on --resume if cut short; file: each output under a "
                          "temporary name, renamed (for a DST others read during the run)")
    run.add_argument("--quarantine", choices=("copy", "list"), default="copy",
                     help="copy refused inputs under DST/.veil/quarantine, or only list them in the audit")
    run.add_argument("--shard-files", type=int,
                     help="files per shard: the unit of work, of audit parts and of resume (default 1024; a small "
                          "job on several workers gets about 8 shards per worker, of 64 files at least)")
    run.add_argument("--ray", action="store_true",
                     help="run the workers on a local Ray instead of a process pool (Ray starts in seconds)")
    run.add_argument("--dry-run", action="store_true",
                     help="rewrite a sample in memory and report which rules fired; write nothing")
    run.add_argument("--sample", type=int, default=100, help="files the dry run looks at (default 100)")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    records = run.add_argument_group("run records and custody")
    records.add_argument("--operator", help="who runs it, recorded in the manifest (default: the login name)")
    records.add_argument("--custodian-public", type=Path, metavar="NAME.pub",
                         help="custodian mode: seal the re-identification table, change records, before-images and "
                              "quarantined originals to this custodian public key (the run key opens none of them)")
    records.add_argument("--change-records", action="store_true",
                         help="record every changed attribute per instance for `veil report`; the originals are "
                              "sealed (needs --key or --custodian-public)")
    records.add_argument("--retention", metavar="SPEC",
                         help="how long PHI-bearing items are kept, over the recipe's retention: keep, or "
                              "quarantine=30d,before_images=30d,change_records=365d (d days, h hours)")
    # The command as parsed, for the manifest (which digests its paths): this parser's options in order.
    run.set_defaults(_command_options=tuple(
        (action.option_strings[0] if action.option_strings else None, action.dest, action.default,
         action.nargs == 0) for action in run._actions if action.dest != "help"))


def command(args: argparse.Namespace) -> int:
    import veil.engine as engine
    from veil.audit.retention import parse_retention_spec
    from veil.keys import run_key
    from veil.recipes.cache import compiled_recipe

    try:
        retention = parse_retention_spec(args.retention) if args.retention is not None else None
    except ValueError as exc:
        print(f"veil run: error: --retention: {exc}", file=sys.stderr)
        return EXIT_USAGE
    compiled = compiled_recipe(args.recipe)  # from the compiled-recipe cache where it can
    recipe = compiled.recipe
    key = run_key(args.key, required=recipe.requires_key)
    if args.reid_table and key is None:
        print("veil run: error: --reid-table needs a key", file=sys.stderr)
        return EXIT_FATAL
    if args.dry_run:
        from veil.keys import KeyedFunctions
        from veil.preview.inspect import dry_run

        entries = (e.path for e in engine.list_inputs(str(args.src), str(args.files_from) if args.files_from
                                                      else None) if not e.error)
        functions = KeyedFunctions(key, **compiled.key_parameters) if key is not None else None
        preview = dry_run(entries, compiled, sample=max(1, args.sample), functions=functions)
        print(json.dumps(preview.to_dict(), indent=2) if args.json else preview.format())
        return EXIT_OK
    options = engine.RunOptions(
        src=str(args.src),
        dst=str(args.dst),
        layout=args.layout,
        atomic=args.atomic,
        workers=max(1, args.workers),
        address=args.address,
        resume=args.resume,
        files_from=str(args.files_from) if args.files_from else None,
        reid_table=str(args.reid_table) if args.reid_table else None,
        quarantine_copy=args.quarantine == "copy",
        shard_files=max(1, args.shard_files) if args.shard_files is not None else None,
        force_ray=args.ray,
        operator=args.operator,
        command=_command(args),
        custodian_public=str(args.custodian_public) if args.custodian_public else None,
        change_records=args.change_records,
        retention=retention,
    )
    progress = _RunProgress() if sys.stderr.isatty() and not args.json else None
    try:
        # Ray prints task retries on stdout whatever log_to_driver says: keep --json's stdout pure JSON.
        with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
            summary = engine.run(options, compiled, key, progress.update if progress else None)
    except engine.FatalRunError as exc:
        if progress:
            progress.close()
        print(f"veil run: error: {exc}", file=sys.stderr)
        return EXIT_FATAL
    if progress:
        progress.close()

    totals = summary.totals or engine.RunTotals.of_audit(args.dst)
    result: dict[str, Any] = {
        "run_id": summary.run_id,
        "recipe": f"{recipe.name} {recipe.version}",
        "key_id": key.key_id if key else None,
        "mode": summary.mode,
        "this_run": {"files": summary.files, "written": summary.written, "quarantined": summary.quarantined,
                     "shards": summary.shards, "shards_resumed": summary.shards_resumed,
                     "input_bytes": summary.input_bytes, "output_bytes": summary.output_bytes,
                     "seconds": round(summary.seconds, 3),
                     "files_per_second": round(summary.files / summary.seconds, 1) if summary.seconds else None,
                     "mb_per_second": round(summary.input_bytes / 1e6 / summary.seconds, 1)
                     if summary.seconds else None},
        "all_runs": {"files": totals.files, "written": totals.written, "quarantined": totals.quarantined},
        "quarantine_reasons": dict(totals.reasons),
        "audit": summary.audit_dir,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        t = result["this_run"]
        print(
            f"run {summary.run_id} ({summary.mode}), recipe {result['recipe']}, key id {result['key_id']}: "
            f"{t['files']} files in {t['shards']} shards ({t['shards_resumed']} resumed), {t['written']} written, "
            f"{t['quarantined']} quarantined, {summary.input_bytes / 1e6:.1f} MB in {t['seconds']} s "
            f"({t['files_per_second']} files/s, {t['mb_per_second']} MB/s)"
        )
        print(f"  all runs into {args.dst}: {totals.files} files, {totals.written} written, "
              f"{totals.quarantined} quarantined")
        for reason, count in totals.reasons.items():
            print(f"  quarantined {count}: {reason}")
        print(f"  audit: {summary.audit_dir}  (veil audit {args.dst})")
    if summary.mode in ("in-process", "local-pool"):
        allow_quick_exit()
    return EXIT_QUARANTINED if totals.quarantined else EXIT_OK


def _command(args: argparse.Namespace) -> tuple[str, ...]:
    """``veil run`` as parsed: SRC, DST and every option not at its default, in the parser's order (the same
    command whether typed, scripted or called through ``main(argv)``). The driver digests its paths."""
    out = ["veil", "run"]
    options: tuple[tuple[str | None, str, Any, bool], ...] = getattr(args, "_command_options", ())
    for flag, dest, default, is_flag in options:
        value = getattr(args, dest, default)
        if flag is None:
            out.append(str(value))
        elif value is not None and value != default:
            out.extend([flag] if is_flag else [flag, str(value)])
    return tuple(out)


class _RunProgress:
    """One status line on a terminal: files, rate, MB/s, quarantined so far, tasks in flight."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.last = 0.0

    def update(self, summary: RunSummary, in_flight: int | None) -> None:
        now = time.perf_counter()
        if now - self.last < 0.2:
            return
        self.last = now
        seconds = max(now - self.started, 1e-9)
        flight = f", {in_flight} shards in flight" if in_flight is not None else ""
        rate = summary.files / seconds
        if summary.listed is not None and rate:
            eta = f", ETA {max(summary.listed - summary.files - summary.shards_resumed, 0) / rate:,.0f} s"
        else:
            eta = ", listing"
        sys.stderr.write(
            f"\rrun: {summary.files:,} files, {rate:,.0f} files/s, "
            f"{summary.input_bytes / 1e6 / seconds:,.1f} MB/s, {summary.quarantined} quarantined{flight}{eta}   "
        )
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
