"""The core's speed (issue 2): in-memory rewrite of a typical CT header against pydicom read + save.

Targets: at least 50,000 files/s on one core, at least 50x pydicom's dcmread + save_as of the same bytes.
Each round rewrites 500 distinct instances with a fresh Rewriter, so every SOP Instance UID is a cache miss
and pays its keyed BLAKE3 hash, as in a real run. Run with `make bench`; ratios come from one run.
"""

from __future__ import annotations

import io

import pydicom

from benchmarks.conftest import BENCH_PLAN
from veil.core._core import Rewriter


def test_rewrite_ct_header(benchmark, ct_files, functions) -> None:
    def run() -> int:
        rw = Rewriter(BENCH_PLAN, functions.uid, functions.pseudonym, functions.date_shift)
        total = 0
        for data in ct_files:
            total += len(rw.rewrite(data))
        return total

    benchmark.extra_info["files_per_round"] = len(ct_files)
    assert benchmark(run) > 0


def test_pydicom_read_and_save(benchmark, ct_files) -> None:
    files = ct_files[:50]

    def run() -> int:
        total = 0
        for data in files:
            ds = pydicom.dcmread(io.BytesIO(data))
            out = io.BytesIO()
            ds.save_as(out)
            total += out.tell()
        return total

    benchmark.extra_info["files_per_round"] = len(files)
    assert benchmark(run) > 0
