"""Prints the core's rewrite rate for a typical CT header and its ratio to pydicom, measured in one run.

    python benchmarks/core_ratio.py [--files 2000] [--rounds 5]

The rate is the best of several rounds over distinct instances (fresh Rewriter per round: every SOP
Instance UID is remapped with a keyed BLAKE3 hash, as in a real run), on one core.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.conftest import BENCH_PLAN, ct_instances  # noqa: E402
from veil.core._core import Rewriter  # noqa: E402
from veil.keys import Key, KeyedFunctions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    files = ct_instances(args.files)
    functions = KeyedFunctions(Key(bytes(range(32))))
    probe = pydicom.dcmread(io.BytesIO(files[0]))
    elements = sum(1 for _ in probe.iterall())
    best = float("inf")
    for _ in range(args.rounds):
        rw = Rewriter(BENCH_PLAN, functions.uid, functions.pseudonym, functions.date_shift)
        started = time.perf_counter()
        for data in files:
            rw.rewrite(data)
        best = min(best, time.perf_counter() - started)
    veil_rate = len(files) / best
    sample = files[: max(50, args.files // 20)]
    best_pd = float("inf")
    for _ in range(max(2, args.rounds // 2)):
        started = time.perf_counter()
        for data in sample:
            ds = pydicom.dcmread(io.BytesIO(data))
            ds.save_as(io.BytesIO())
        best_pd = min(best_pd, time.perf_counter() - started)
    pydicom_rate = len(sample) / best_pd
    print(f"CT instance: {len(files[0])} bytes, {len(probe)} top-level / {elements} elements in all")
    print(f"veil rewrite:            {veil_rate:10,.0f} files/s ({1e6 / veil_rate:.1f} us/file, one core)")
    print(f"pydicom dcmread+save_as: {pydicom_rate:10,.0f} files/s ({1e6 / pydicom_rate:.1f} us/file)")
    print(f"ratio: {veil_rate / pydicom_rate:.0f}x")


if __name__ == "__main__":
    main()
