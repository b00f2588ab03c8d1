"""What durability costs: ``veil run`` with and without the one ``syncfs`` per shard that makes a shard's
outputs durable before its audit part marks it done, under both ``--atomic`` modes, in one run.

    python benchmarks/durability.py --dst-root /dev/shm            # tmpfs
    python benchmarks/durability.py --dst-root /mnt/ext4 --files 20000

Inputs: a ``veil synth`` archive of small CT files (64x64) under --work, read into the page cache first. Each
configuration runs in this process on one worker (the inline executor), --repeat times into a new folder under
--dst-root (removed after each run), ps3.15-basic recipe; the median wall time is reported per file. "no sync"
replaces the engine's ``sync_filesystem`` with nothing: what the run cost before the fix, not a mode veil offers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from veil.engine import RunOptions, run, sharding  # noqa: E402
from veil.keys import Key  # noqa: E402
from veil.recipes import compile_recipe  # noqa: E402
from veil.synth import write_archive  # noqa: E402


def read_all(root: Path) -> None:
    for path in root.rglob("*.dcm"):
        path.read_bytes()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dst-root", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--shard-files", type=int, default=1024)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="veil-durability-"))
    src = work / "src"
    if not src.exists():
        write_archive(src, patients=args.files // 10, series_per_study=1, instances_per_series=10, seed=3)
    files = sum(1 for _ in src.rglob("*.dcm"))
    compiled = compile_recipe("ps3.15-basic")
    key = Key(os.urandom(32))
    real_sync = sharding.sync_filesystem
    root = args.dst_root or work
    results: dict[str, float] = {}
    try:
        for atomic in ("shard", "file"):
            for sync in (True, False):
                label = f"--atomic {atomic}, {'syncfs per shard' if sync else 'no sync'}"
                sharding.sync_filesystem = real_sync if sync else (lambda path: None)  # type: ignore[assignment]
                seconds = []
                for _ in range(args.repeat):
                    read_all(src)
                    dst = Path(tempfile.mkdtemp(prefix="veil-durability-dst-", dir=root))
                    os.rmdir(dst)
                    started = time.perf_counter()
                    run(RunOptions(src=str(src), dst=str(dst), workers=1, atomic=atomic,
                                   shard_files=args.shard_files), compiled, key)
                    seconds.append(time.perf_counter() - started)
                    shutil.rmtree(dst)
                results[label] = statistics.median(seconds)
                print(f"{label:40s} {results[label]:7.3f} s  {results[label] / files * 1e6:7.1f} us/file", flush=True)
    finally:
        sharding.sync_filesystem = real_sync  # type: ignore[assignment]
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    for atomic in ("shard", "file"):
        synced, bare = results[f"--atomic {atomic}, syncfs per shard"], results[f"--atomic {atomic}, no sync"]
        print(f"--atomic {atomic}: syncfs costs {synced / bare:.2f}x ({(synced - bare) / files * 1e6:+.1f} us/file)")
    print(f"--atomic shard / --atomic file (both synced): {results['--atomic shard, syncfs per shard'] / results['--atomic file, syncfs per shard']:.2f}x")
    print(f"{files:,} files, dst on {root}, medians of {args.repeat}")


if __name__ == "__main__":
    main()
