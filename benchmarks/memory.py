"""Peak memory of ``veil run`` as the archive grows: the driver's and each worker's peak RSS for listings of
20,000, 100,000 and 1,000,000 files, in one run.

    python benchmarks/memory.py                      # 20k, 100k, 1M listed files, 2 workers
    python benchmarks/memory.py --sizes 20000,100000 --workers 2

Each run is ``veil run SRC DST --files-from LIST --workers N`` in its own process. LIST names the files of a
``veil synth`` archive of --real small files, then (past those) paths that do not exist: each such entry is
listed, sharded, sent to a worker, refused and given its audit row like any unreadable file, so the driver and
the workers carry the whole listing and its audit while the disk holds only the real files. The script samples
/proc every 20 ms and reports each process's peak VmRSS (VmHWM where /proc still has it); DST is on tmpfs and
removed after each run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def measure(command: list[str]) -> tuple[float, int, list[int]]:
    """Runs ``command``; (seconds, driver peak KiB, [worker peak KiB, ...])."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peaks: dict[int, int] = {}
    kinds: dict[int, str] = {}
    while process.poll() is None:
        for pid in [process.pid, *children(process.pid)]:
            peak = rss_kib(pid)
            if peak:
                peaks[pid] = max(peaks.get(pid, 0), peak)
                kinds.setdefault(pid, cmdline(pid))
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    err = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.stderr:
        process.stderr.close()
    if process.returncode not in (0, 3):
        raise SystemExit(f"veil run failed ({process.returncode}): {err[-2000:]}")
    driver = peaks.pop(process.pid, 0)
    # Worker processes: the pool's children (a resource tracker or a forkserver, if any, is left out).
    workers = sorted(v for pid, v in peaks.items() if "resource_tracker" not in kinds.get(pid, "")
                     and "forkserver" not in kinds.get(pid, ""))
    return seconds, driver, workers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="20000,100000,1000000")
    parser.add_argument("--real", type=int, default=20000, help="real files in the archive (default 20,000)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--dst-root", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    work = args.work or Path(tempfile.mkdtemp(prefix="veil-memory-"))
    src = work / "src"
    veil = [sys.executable, "-m", "veil.cli"]
    try:
        if not src.exists():
            subprocess.run([*veil, "synth", str(src), "--patients", str(max(1, args.real // 10)),
                            "--instances-per-series", "10", "--rows", "48", "--cols", "64"], check=True,
                           stdout=subprocess.DEVNULL)
        real = sorted(str(p.relative_to(src)) for p in src.rglob("*.dcm"))
        key = work / "bench.key"
        if not key.exists():
            subprocess.run([*veil, "keygen", str(key)], check=True, capture_output=True)
        print(f"{len(real):,} real files of about 12 KB; {args.workers} workers; dst on {args.dst_root}", flush=True)
        rows = []
        for size in sizes:
            listing = work / f"list-{size}.txt"
            with listing.open("w") as out:
                for i in range(size):
                    out.write(real[i] if i < len(real) else f"missing/m{i // 1000:05d}/f{i:07d}.dcm")
                    out.write("\n")
            dst = Path(tempfile.mkdtemp(prefix="veil-memory-dst-", dir=args.dst_root))
            os.rmdir(dst)
            command = [*veil, "run", str(src), str(dst), "--files-from", str(listing), "--key", str(key),
                       "--recipe", "ps3.15-basic", "--workers", str(args.workers), "--quarantine", "list"]
            try:
                seconds, driver, workers = measure(command)
            finally:
                shutil.rmtree(dst, ignore_errors=True)
            rows.append((size, seconds, driver, workers))
            print(f"{size:>10,} listed  {seconds:7.1f} s  driver {driver / 1024:7.1f} MiB  workers "
                  + ", ".join(f"{w / 1024:.1f}" for w in workers) + " MiB", flush=True)
        if len(rows) >= 2:
            base, last = rows[-2], rows[-1]
            growth_driver = last[2] / base[2] if base[2] else float("nan")
            growth_worker = (max(last[3]) / max(base[3])) if base[3] and last[3] else float("nan")
            print(f"peak RSS {base[0]:,} -> {last[0]:,} listed: driver {growth_driver:.2f}x, "
                  f"largest worker {growth_worker:.2f}x (target: within 1.10x)")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
