"""``veil audit``: the summary and quarantine list of a run's audit, its export (``--json``, ``--csv``), the
retention purge (``--purge``), or PNG images of its redactions (``--review``)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from veil.cli.exits import EXIT_FATAL, EXIT_OK, EXIT_USAGE

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    au = subparsers.add_parser("audit", help="summary and quarantine list of a run's audit")
    au.add_argument("dst", type=Path)
    au.add_argument("--review", type=Path, metavar="OUTDIR",
                    help="write a PNG per redacted instance (boxes outlined) into OUTDIR, outside DST")
    au.add_argument("--key", type=Path, metavar="KEYFILE",
                    help="with --review: the project key, to show each image before redaction beside after "
                         "(the review images then hold PHI)")
    au.add_argument("--custodian-key", type=Path, metavar="NAME.key",
                    help="with --review of a run sealed to a custodian: the custodian's private key (passphrase "
                         "asked, or $VEIL_CUSTODIAN_PASSPHRASE), to show the before-images")
    export = au.add_mutually_exclusive_group()
    export.add_argument("--json", action="store_true",
                        help="export the manifest, the summary and every instance's row as one JSON document")
    export.add_argument("--csv", action="store_true", help="export every instance's row as CSV (times ISO 8601 UTC)")
    au.add_argument("-o", "--output", type=Path, metavar="OUT", help="with --json or --csv: write OUT, not stdout")
    au.add_argument("--purge", action="store_true",
                    help="remove what still holds PHI and is older than the run's retention policy (quarantined "
                         "originals, sealed before-images, sealed change-record originals if the policy says "
                         "so); keeps the audit and records the purge")
    au.add_argument("--older-than", metavar="AGE",
                    help="with --purge: remove quarantined originals and before-images older than AGE (30d, 12h), "
                         "whatever the policy")
    au.add_argument("--operator", help="with --purge: who purges, recorded (default: the login name)")
    au.add_argument("--dry-run", action="store_true", help="with --purge: list what would go, remove nothing")


def command(args: argparse.Namespace) -> int:
    import veil.audit as audit

    if not audit.audit_dir(args.dst).exists():
        print(f"veil audit: error: {args.dst}: no veil audit here", file=sys.stderr)
        return EXIT_FATAL
    if (args.key is not None or args.custodian_key is not None) and args.review is None:
        print("veil audit: error: --key and --custodian-key are only for --review OUTDIR", file=sys.stderr)
        return EXIT_USAGE
    if args.key is not None and args.custodian_key is not None:
        print("veil audit: error: give --key (single-user run) or --custodian-key (custodian run), not both",
              file=sys.stderr)
        return EXIT_USAGE
    modes = [name for name, on in (("--review", args.review is not None), ("--json", args.json),
                                   ("--csv", args.csv), ("--purge", args.purge)) if on]
    if len(modes) > 1:
        print(f"veil audit: error: {' and '.join(modes)} do not go together", file=sys.stderr)
        return EXIT_USAGE
    if args.output is not None and not (args.json or args.csv):
        print("veil audit: error: -o is for --json or --csv", file=sys.stderr)
        return EXIT_USAGE
    if not args.purge and (args.older_than or args.dry_run or args.operator):
        print("veil audit: error: --older-than, --operator and --dry-run are for --purge", file=sys.stderr)
        return EXIT_USAGE
    if args.review is not None:
        return _audit_review(args.dst, args.review, args.key, args.custodian_key)
    if args.purge:
        return _purge(args.dst, args.older_than, args.operator, args.dry_run)
    if args.json or args.csv:
        try:
            with _output(args.output) as out:
                (_export_json if args.json else _export_csv)(args.dst, out)
        except BrokenPipeError:  # stdout closed early (``| head``): what was read is what was wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    print(audit.format_summary(audit.summarize(args.dst)))
    return EXIT_OK


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[IO[str]]:
    """stdout, or OUT written whole (a temporary renamed at the end)."""
    if path is None:
        yield sys.stdout
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _export_json(dst: Path, out: IO[str]) -> None:
    """``{"manifest": ..., "summary": ..., "instances": [...]}``, the rows streamed one part at a time."""
    import json

    import veil.audit as audit
    from veil.audit.read import iter_instances

    summary = audit.summarize(dst)
    out.write('{"manifest": ' + json.dumps(summary.manifest, sort_keys=True) + ',\n"summary": '
              + json.dumps(summary.to_dict(), sort_keys=True) + ',\n"instances": [')
    for i, row in enumerate(iter_instances(dst)):
        out.write(("\n" if i == 0 else ",\n") + json.dumps(row))
    out.write("\n]}\n")


def _export_csv(dst: Path, out: IO[str]) -> None:
    """One line per instance, every audit column, booleans as true/false, times ISO 8601 UTC."""
    import csv

    from veil.audit.read import iter_instances
    from veil.audit.schema import AUDIT_COLUMNS

    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(AUDIT_COLUMNS)
    for row in iter_instances(dst):
        writer.writerow([_csv_value(row[name]) for name in AUDIT_COLUMNS])


def _csv_value(value: Any) -> Any:
    return ("true" if value else "false") if isinstance(value, bool) else value


def _purge(dst: Path, older_than: str | None, operator: str | None, dry_run: bool) -> int:
    from veil.audit.retention import purge

    try:
        plan = purge(dst, older_than=older_than, operator=operator, dry_run=dry_run)
    except ValueError as exc:
        print(f"veil audit: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    verb = "would remove" if dry_run else "removed"
    limits = ", ".join(f"{k} {v or 'kept'}" for k, v in plan.limits.items())
    print(f"purge ({limits}): {verb}")
    for kind, counts in plan.counts().items():
        unit = {"quarantine": "quarantined originals", "before_images": "sealed before-images",
                "change_records": "shards of sealed change-record originals"}[kind]
        number = counts["items"] if kind != "change_records" else counts["files"]
        print(f"  {number:,} {unit} ({counts['bytes']:,} bytes)")
    kept = plan.counts(plan.held)
    left = {k: kept[k]["files"] - plan.counts()[k]["files"] for k in kept}
    if any(left.values()):
        print("  kept (not due): " + ", ".join(f"{k} {n:,}" for k, n in left.items() if n))
    if not dry_run:
        print(f"  recorded in {os.path.join(str(dst), '.veil', 'purges.jsonl')}")
    return EXIT_OK


def _audit_review(dst: Path, outdir: Path, key_file: Path | None, custodian_file: Path | None = None) -> int:
    """PNG review images, one per pixel record of a complete shard, named by shard and row only; a folder of
    mode 0700 and files of mode 0600, since with the key they show the burned-in text."""
    import numpy as np
    from PIL import Image

    import veil.audit as audit
    from veil.keys import load_key

    out = Path(os.path.realpath(outdir))
    root = Path(os.path.realpath(dst))
    if out == root or root in out.parents:
        print(f"veil audit: error: {outdir}: the review folder must be outside DST (it would be shared with it)",
              file=sys.stderr)
        return EXIT_USAGE
    key: Any = load_key(key_file) if key_file is not None else None  # never $VEIL_KEY: before-images on request
    if custodian_file is not None:
        from veil.keys.custodian import load_custodian_private

        key = load_custodian_private(custodian_file)
    records = {shard: audit.read_pixel_records(dst, shard, key).get(shard, [])
               for shard in sorted(audit.completed_shards(dst))}  # read (and checked) before anything is written
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(out, 0o700)
    written = sealed_left = 0
    for shard, shard_records in records.items():
        for record in shard_records:
            name = f"shard-{shard:08d}-row-{record.row:08d}.png"
            tmp = out / f".{name}.{os.getpid()}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
            with os.fdopen(fd, "wb") as fh:
                Image.fromarray(np.asarray(audit.review_image(record))).save(fh, format="PNG")
            os.replace(tmp, out / name)
            os.chmod(out / name, 0o600)
            written += 1
            if key is None and record.before_sealed:
                sealed_left += 1
    what = "before | after" if key is not None else "after redaction"
    print(f"{written:,} review images ({what}, boxes in red, kept regions in green) in {out}")
    if sealed_left:
        print(f"  {sealed_left:,} have a sealed before-image: give --key KEYFILE (or --custodian-key) to see it")
    if key is not None and written and not any(r.before_sealed for rs in records.values() for r in rs):
        print("  no before-images: the run had no project key, so none were stored")
    return EXIT_OK
