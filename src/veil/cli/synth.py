"""``veil synth``: write a deterministic synthetic archive (a progress line on a terminal)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from veil.cli.exits import EXIT_OK, EXIT_USAGE

__all__ = ["add_parser", "command"]


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    s = subparsers.add_parser(
        "synth", help="write a deterministic synthetic archive with realistic identifiers"
    )
    s.add_argument("out", type=Path)
    s.add_argument("--patients", type=int, required=True)
    s.add_argument("--studies-per-patient", type=int, default=1)
    s.add_argument("--series-per-study", type=int, default=1)
    s.add_argument("--instances-per-series", type=int, default=1)
    s.add_argument("--modality", default="CT", type=str.upper)
    s.add_argument("--rows", type=int, default=64)
    s.add_argument("--cols", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)


def command(args: argparse.Namespace) -> int:
    from veil.synth import write_archive

    total = args.patients * args.studies_per_patient * args.series_per_study * args.instances_per_series
    started = time.perf_counter()
    progress = _Progress(total, "synth") if sys.stderr.isatty() else None
    try:
        summary = write_archive(
            args.out,
            patients=args.patients,
            studies_per_patient=args.studies_per_patient,
            series_per_study=args.series_per_study,
            instances_per_series=args.instances_per_series,
            modality=args.modality,
            rows=args.rows,
            cols=args.cols,
            seed=args.seed,
            progress=progress.update if progress else None,
        )
    except ValueError as exc:
        print(f"veil synth: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if progress:
        progress.close()
    seconds = time.perf_counter() - started
    print(
        f"synth: wrote {summary.files} files ({summary.bytes / 1e6:.1f} MB) for {summary.patients} patients, "
        f"{summary.studies} studies, {summary.series} series to {summary.out} in {seconds:.2f} s"
    )
    for ts, count in summary.transfer_syntaxes:
        print(f"  {count:8d}  {ts}")
    return EXIT_OK


class _Progress:
    """A one-line progress display on a terminal: count, rate, ETA."""

    def __init__(self, total: int, label: str) -> None:
        self.total = total
        self.label = label
        self.started = time.perf_counter()
        self.last = 0.0

    def update(self, done: int) -> None:
        now = time.perf_counter()
        if now - self.last < 0.2 and done < self.total:
            return
        self.last = now
        rate = done / max(now - self.started, 1e-9)
        eta = (self.total - done) / rate if rate else 0
        sys.stderr.write(f"\r{self.label}: {done}/{self.total} files, {rate:,.0f} files/s, ETA {eta:,.0f} s ")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
