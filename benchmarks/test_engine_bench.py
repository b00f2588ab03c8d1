"""The driver's own cost per file: listing (``engine.list_inputs``) and sharding (``engine.shards``).

A run of millions of files spends this on the driver before any worker sees a path, so it must stay a few
microseconds per entry and flat in memory. Each round consumes every shard without keeping it, as the driver
does. ``extra_info["entries_per_round"]`` turns a round's time into a per-entry figure. Run with `make bench`;
`benchmarks/compare_peers.py` case (c) measures the same at 1,000,000 entries with peak RSS.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from veil import engine
from veil.synth import write_archive

ENTRIES = 100_000


def _consume(shards: Iterator[tuple[int, list[engine.Entry]]]) -> int:
    total = 0
    for _, batch in shards:
        total += len(batch)
    return total


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("bench-archive") / "in"
    write_archive(src, patients=10, series_per_study=1, instances_per_series=10, seed=3)  # 100 files
    return src


@pytest.fixture(scope="module")
def listing_of_real_files(archive: Path, tmp_path_factory) -> Path:
    """ENTRIES lines naming the archive's 100 real files over and over (each entry is stat'ed)."""
    names = sorted(str(p.relative_to(archive)) for p in archive.rglob("*.dcm"))
    path = tmp_path_factory.mktemp("bench-listing") / "real.txt"
    path.write_text("".join(names[i % len(names)] + "\n" for i in range(ENTRIES)))
    return path


@pytest.fixture(scope="module")
def listing_of_missing_files(tmp_path_factory) -> Path:
    """ENTRIES lines naming files that do not exist: each becomes an error entry, recorded, not processed."""
    path = tmp_path_factory.mktemp("bench-listing") / "missing.txt"
    path.write_text("".join(f"missing/{i // 1000:05d}/{i:08d}.dcm\n" for i in range(ENTRIES)))
    return path


def test_sharding_an_in_memory_listing(benchmark) -> None:
    entries = [
        engine.Entry(f"/data/in/p{i // 1000:05d}/{i:08d}.dcm", f"p{i // 1000:05d}/{i:08d}.dcm", 12_000)
        for i in range(ENTRIES)
    ]

    def run() -> int:
        return _consume(engine.shards(iter(entries), 256, 256 << 20))

    benchmark.extra_info["entries_per_round"] = ENTRIES
    assert benchmark(run) == ENTRIES


def test_listing_and_sharding_files_from_real_files(benchmark, archive, listing_of_real_files) -> None:
    def run() -> int:
        return _consume(
            engine.shards(engine.list_inputs(str(archive), str(listing_of_real_files)), 256, 256 << 20)
        )

    benchmark.extra_info["entries_per_round"] = ENTRIES
    assert benchmark.pedantic(run, rounds=3, iterations=1) == ENTRIES


def test_listing_and_sharding_files_from_missing_files(benchmark, archive, listing_of_missing_files) -> None:
    def run() -> int:
        return _consume(
            engine.shards(engine.list_inputs(str(archive), str(listing_of_missing_files)), 256, 256 << 20)
        )

    benchmark.extra_info["entries_per_round"] = ENTRIES
    assert benchmark.pedantic(run, rounds=3, iterations=1) == ENTRIES


def test_walking_a_directory_tree(benchmark, tmp_path_factory) -> None:
    src = tmp_path_factory.mktemp("bench-tree") / "in"
    files = write_archive(
        src, patients=20, series_per_study=5, instances_per_series=20, seed=4
    ).files  # 2,000

    def run() -> int:
        return _consume(engine.shards(engine.list_inputs(str(src)), 256, 256 << 20))

    benchmark.extra_info["entries_per_round"] = files
    assert benchmark(run) == files
