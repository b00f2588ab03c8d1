"""``veil audit``: the summary and quarantine list of a run's audit, or PNG images of its redactions."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

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


def command(args: argparse.Namespace) -> int:
    import veil.audit as audit

    if not audit.audit_dir(args.dst).exists():
        print(f"veil audit: error: {args.dst}: no veil audit here", file=sys.stderr)
        return EXIT_FATAL
    if args.key is not None and args.review is None:
        print("veil audit: error: --key is only for --review OUTDIR", file=sys.stderr)
        return EXIT_USAGE
    if args.review is not None:
        return _audit_review(args.dst, args.review, args.key)
    print(audit.format_summary(audit.summarize(args.dst)))
    return EXIT_OK


def _audit_review(dst: Path, outdir: Path, key_file: Path | None) -> int:
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
    key = load_key(key_file) if key_file is not None else None  # never $VEIL_KEY: before-images only on request
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
        print(f"  {sealed_left:,} have a sealed before-image: give --key KEYFILE to see it")
    if key is not None and written and not any(r.before_sealed for rs in records.values() for r in rs):
        print("  no before-images: the run had no project key, so none were stored")
    return EXIT_OK
