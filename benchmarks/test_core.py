"""The core's speed (issue 2): in-memory rewrite of a typical CT header against pydicom read + save.

Targets: at least 50,000 files/s on one core, at least 50x pydicom's dcmread + save_as of the same bytes.
Each round rewrites 500 distinct instances with a fresh Rewriter, so every SOP Instance UID is a cache miss
and pays its keyed BLAKE3 hash, as in a real run. Run with `make bench`; ratios come from one run.

Recipes that clean free text also read each file's identity first (``identity_values``, every depth, then
``identity_from_values``): its cost is measured beside ``peek`` (top level only) on the same headers.
"""

from __future__ import annotations

import io

import pydicom

from benchmarks.conftest import BENCH_PLAN
from veil.core._core import Rewriter, identity_values, peek
from veil.core.identity import identity_from_values


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


def test_peek_ct_header(benchmark, ct_files) -> None:
    def run() -> int:
        return sum(len(peek(data)) for data in ct_files)

    benchmark.extra_info["files_per_round"] = len(ct_files)
    assert benchmark(run) > 0


def test_identity_values_ct_header(benchmark, ct_files) -> None:
    def run() -> int:
        return sum(len(identity_values(data)) for data in ct_files)

    benchmark.extra_info["files_per_round"] = len(ct_files)
    assert benchmark(run) > 0


def test_file_identity_ct_header(benchmark, ct_files) -> None:
    """The native walk and the FileIdentity built from it (words split in Python): what a rewrite pays."""

    def run() -> int:
        return sum(len(identity_from_values(identity_values(data)).words) for data in ct_files)

    benchmark.extra_info["files_per_round"] = len(ct_files)
    assert benchmark(run) > 0
