"""``veil push``: send a de-identified folder (a run's DST) to a DICOM AE or a DICOMweb server; resumable."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from veil.cli.exits import EXIT_FATAL, EXIT_OK, EXIT_USAGE

__all__ = ["add_parser", "command"]

_AE_TARGET = re.compile(r"(?P<ae>[^@]{1,16})@(?P<host>[^:]+):(?P<port>\d{1,5})")


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    pp = subparsers.add_parser("push", help="send a de-identified folder (a veil run's DST) by C-STORE or STOW-RS; "
                                            "a second push sends only what is not there yet")
    pp.add_argument("dst", type=Path, help="the run's output folder (its audit lists what to send)")
    target = pp.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="AE@HOST:PORT", help="a DICOM AE (C-STORE)")
    target.add_argument("--stow", metavar="URL", help="a DICOMweb server's base URL (STOW-RS to URL/studies)")
    pp.add_argument("--calling-ae", default="VEIL", help="this end's AE title (default VEIL)")
    pp.add_argument("--bearer-env", metavar="VAR", help="STOW-RS: the bearer token is in this variable")


def command(args: argparse.Namespace) -> int:
    import blake3

    from veil.audit.read import iter_instances
    from veil.net.config import Destination
    from veil.net.queue import JobQueue
    from veil.net.senders import SendError, send_files

    if args.to:
        match = _AE_TARGET.fullmatch(args.to)
        if match is None:
            print("veil push: error: --to is AE@HOST:PORT", file=sys.stderr)
            return EXIT_USAGE
        dest = Destination("push", "dimse", ae_title=match["ae"], host=match["host"], port=int(match["port"]))
        label = args.to
    else:
        dest = Destination("push", "stow", url=args.stow.rstrip("/"), bearer_env=args.bearer_env or "")
        label = args.stow
    root = args.dst.resolve()
    files = [root / row["output_path"] for row in iter_instances(root) if row["status"] == "written"]
    log = JobQueue(root / ".veil" / "push" / blake3.blake3(label.encode()).hexdigest()[:32])
    sent = log.sent("push")
    pending = [f for f in files if str(f.relative_to(root)) not in sent]
    done = 0

    def confirmed(path: Path) -> None:
        nonlocal done
        log.mark_sent("push", str(path.relative_to(root)))
        done += 1

    try:
        send_files(dest, pending, root, confirmed, args.calling_ae)
    except SendError as exc:
        print(f"veil push: {exc}; {done:,} of {len(pending):,} sent this time; rerun to go on", file=sys.stderr)
        return EXIT_FATAL
    print(f"veil push: {done:,} sent, {len(files) - len(pending):,} already there, {len(files):,} in all",
          file=sys.stderr)
    return EXIT_OK
