"""Runs veil beside peer tools on the same `veil synth` archives and prints the rates and ratios of one run.

    python benchmarks/compare_peers.py                 # quick sizes (about 90 s on 2 cores)
    python benchmarks/compare_peers.py --full          # 2,000 CT files, 50,000 small files, 1,000,000 entries
    python benchmarks/compare_peers.py --cases b --small-files 10000

Cases:
  (a) CT instances of 0.5 MB (512 x 512, 16-bit): veil vs ``cp -r`` (the floor: bytes moved, nothing parsed)
      vs GDCM ``gdcmanon`` in dumb mode (a few header edits) and in PS3.15 Basic Profile mode (``-e`` with a
      throwaway self-signed certificate made with openssl).
  (b) small instances of about 12 KB (64 x 48): veil files/s vs ``gdcmanon`` (Basic Profile) vs dicognito.
  (c) the driver alone on a listing of N entries (``--files-from``): ``engine.list_inputs`` + ``engine.shards``
      in a fresh process, microseconds per entry and peak RSS, for entries naming real files and for entries
      naming missing paths (which become error entries), at N/10 and N entries to show memory stays flat.

Inputs are written under --work and read once into the page cache before each tool runs; outputs go to
tmpfs (/dev/shm) and are removed after each tool. Every time is the wall time of the tool's own process,
start-up included (Python imports, Ray start for veil on Ray); veil's in-run rate is shown beside it. A tool
that takes under 5 s is run ``--repeat`` times (default 3, each from a warm cache into an empty output) and
its median reported, with the range beside it: on a shared 2-CPU machine one run can be 15 % off.
veil runs three ways: one worker in its own process (``--workers 1``), 2 worker processes (``--workers 2``,
the default on one machine) and 2 workers on a local Ray (``--ray``; leave it out with ``--no-ray``). The
peers run as shipped: one process each. A missing peer is skipped with the command that installs it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from veil.synth import write_archive

# Case (c) runs in a fresh interpreter so its peak RSS is the driver's and nothing else's.
DRIVER_PROBE = r"""
import json, resource, sys, time
from veil import engine
src, listing = sys.argv[1], sys.argv[2]
def rss_kib():
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
before = rss_kib()
started = time.perf_counter()
entries = shards = errors = 0
for _, batch in engine.shards(engine.list_inputs(src, listing), 256, 256 << 20):
    shards += 1
    entries += len(batch)
    errors += sum(1 for e in batch if e.error)
seconds = time.perf_counter() - started
print(json.dumps({"entries": entries, "shards": shards, "errors": errors, "seconds": seconds,
                  "rss_before_kib": before,
                  "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""

INSTALL = {
    "gdcmanon": "apt-get install libgdcm-tools",
    "dicognito": "pip install dicognito",
    "openssl": "apt-get install openssl",
    "cp": "coreutils",
}


@dataclass
class Result:
    case: str
    tool: str
    files: int
    input_bytes: int
    seconds: float
    outputs: int
    note: str = ""

    @property
    def files_per_second(self) -> float:
        return self.files / self.seconds

    @property
    def mb_per_second(self) -> float:
        return self.input_bytes / 1e6 / self.seconds


def synth(root: Path, files: int, rows: int, cols: int, seed: int) -> tuple[int, int]:
    """A `veil synth` archive of about ``files`` instances; returns (files, bytes) actually written."""
    per_series = min(files, 50)
    summary = write_archive(
        root,
        patients=max(1, files // per_series),
        series_per_study=1,
        instances_per_series=per_series,
        rows=rows,
        cols=cols,
        seed=seed,
    )
    return summary.files, summary.bytes


def warm(root: Path) -> None:
    """Reads every input file once so the tools are timed from the page cache, not the disk; first writes back
    what is dirty (the inputs just written), so no tool is timed beside the kernel's writeback of them."""
    os.sync()
    for folder, _, names in os.walk(root):
        for name in names:
            with open(os.path.join(folder, name), "rb") as fh:
                while fh.read(1 << 20):
                    pass


def count_files(root: Path) -> int:
    """Output files, veil's own .veil folder (audit, manifest) left out."""
    total = 0
    for _, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".veil"]
        total += len(names)
    return total


def timed(
    command: list[str], env: dict[str, str] | None = None
) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    return time.perf_counter() - started, done


RECIPE = "ps3.15-basic"
REPEAT_UNDER = 5.0  # seconds: tools that take longer run once


class Bench:
    def __init__(self, work: Path, out_root: Path, ray: bool = True, repeat: int = 3) -> None:
        self.ray = ray
        self.repeat = max(1, repeat)
        self.work = work
        self.out_root = out_root
        self.results: list[Result] = []
        self.skipped: list[str] = []
        self.key = work / "bench.key"
        if not self.key.exists():
            from veil.keys import generate_key_file

            generate_key_file(self.key)
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        self.env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        self._cert: tuple[Path, Path] | None = None

    def output(self, name: str) -> Path:
        path = self.out_root / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    def skip(self, tool: str, why: str) -> None:
        self.skipped.append(f"{tool}: {why}")
        print(f"  skipped {tool}: {why}", flush=True)

    def record(
        self,
        case: str,
        tool: str,
        src: Path,
        files: int,
        nbytes: int,
        command: list[str],
        out: Path,
        env: dict[str, str] | None = None,
        veil: bool = False,
    ) -> Result | None:
        times: list[float] = []
        while True:
            shutil.rmtree(out, ignore_errors=True)
            warm(src)
            seconds, done = timed(command, env)
            if done.returncode not in (0, 3):  # veil: 3 = finished with quarantined files
                print(f"  {tool} failed ({done.returncode}): {(done.stderr or done.stdout)[-1500:]}", flush=True)
                self.skip(tool, f"exit {done.returncode}")
                shutil.rmtree(out, ignore_errors=True)
                return None
            times.append(seconds)
            # Short runs are repeated and their median kept: on a shared 2-CPU machine one run can be 15 %
            # off. A run over REPEAT_UNDER seconds (dicognito, Ray) is run once.
            if len(times) >= self.repeat or seconds > REPEAT_UNDER:
                break
        seconds = statistics.median(times)
        spread = f"median of {len(times)}: {min(times):.2f}-{max(times):.2f} s" if len(times) > 1 else ""
        note = spread
        if veil:
            summary = json.loads(done.stdout[done.stdout.index("{") :])
            run = summary["this_run"]
            note = "; ".join(filter(None, [spread, f"{summary['mode']}, in-run {run['files_per_second']:,.0f} files/s"])) + (
                f", {run['quarantined']} quarantined" if run["quarantined"] else ""
            )
        result = Result(case, tool, files, nbytes, seconds, count_files(out), note)
        shutil.rmtree(out, ignore_errors=True)
        self.results.append(result)
        print(
            f"  {tool:38s} {seconds:8.2f} s  {result.files_per_second:10,.0f} files/s  "
            f"{result.mb_per_second:8,.1f} MB/s  {note}",
            flush=True,
        )
        return result

    def veil(self, case: str, src: Path, files: int, nbytes: int, shard_files: int | None) -> None:
        # veil chooses its shards as a user's run would (a small job gets about 8 per worker), unless told.
        common = ["--key", str(self.key), "--json", "--quarantine", "list", "--recipe", RECIPE]
        if shard_files:
            common += ["--shard-files", str(shard_files)]
        out = self.output("veil-1")
        self.record(
            case,
            "veil run, 1 worker (in-process)",
            src,
            files,
            nbytes,
            [sys.executable, "-m", "veil.cli", "run", str(src), str(out), *common, "--workers", "1"],
            out,
            self.env,
            veil=True,
        )
        out = self.output("veil-2")
        self.record(
            case,
            "veil run, 2 workers (process pool)",
            src,
            files,
            nbytes,
            [sys.executable, "-m", "veil.cli", "run", str(src), str(out), *common, "--workers", "2"],
            out,
            self.env,
            veil=True,
        )
        if self.ray:
            out = self.output("veil-ray")
            self.record(
                case,
                "veil run, 2 workers (Ray local)",
                src,
                files,
                nbytes,
                [sys.executable, "-m", "veil.cli", "run", str(src), str(out), *common, "--workers", "2", "--ray"],
                out,
                self.env,
                veil=True,
            )

    def cp(self, case: str, src: Path, files: int, nbytes: int) -> None:
        out = self.output("cp")
        self.record(case, "cp -r", src, files, nbytes, ["cp", "-r", str(src), str(out)], out)

    def certificate(self) -> tuple[Path, Path] | None:
        """A throwaway self-signed certificate for gdcmanon's PS3.15 mode (it encrypts the originals)."""
        if self._cert is None:
            if shutil.which("openssl") is None:
                return None
            folder = Path(tempfile.mkdtemp(prefix="cert-", dir=self.work))
            key, cert = folder / "key.pem", folder / "cert.pem"
            subprocess.run(
                [
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-keyout",
                    str(key),
                    "-out",
                    str(cert),
                    "-subj",
                    "/CN=veil-bench",
                    "-days",
                    "1",
                ],
                check=True,
                capture_output=True,
            )
            self._cert = (key, cert)
        return self._cert

    def gdcm_basic(self, case: str, src: Path, files: int, nbytes: int) -> None:
        if shutil.which("gdcmanon") is None:
            return self.skip("gdcmanon", f"not installed ({INSTALL['gdcmanon']})")
        cert = self.certificate()
        if cert is None:
            return self.skip("gdcmanon -e", f"openssl not installed ({INSTALL['openssl']})")
        out = self.output("gdcm-basic")
        self.record(
            case,
            "gdcmanon -e (PS3.15 Basic Profile)",
            src,
            files,
            nbytes,
            [
                "gdcmanon",
                "-e",
                "--certificate",
                str(cert[1]),
                "--continue",
                "-r",
                "-i",
                str(src),
                "-o",
                str(out),
            ],
            out,
        )

    def gdcm_dumb(self, case: str, src: Path, files: int, nbytes: int) -> None:
        if shutil.which("gdcmanon") is None:
            return self.skip("gdcmanon", f"not installed ({INSTALL['gdcmanon']})")
        out = self.output("gdcm-dumb")
        # A few header edits only: PatientName emptied, PatientID replaced, birth date and institution removed.
        self.record(
            case,
            "gdcmanon --dumb (4 header edits)",
            src,
            files,
            nbytes,
            [
                "gdcmanon",
                "--dumb",
                "--empty",
                "10,10",
                "--replace",
                "10,20=ANON",
                "--remove",
                "10,30",
                "--remove",
                "8,80",
                "--continue",
                "-r",
                "-i",
                str(src),
                "-o",
                str(out),
            ],
            out,
        )

    def dicognito(self, case: str, src: Path, files: int, nbytes: int) -> None:
        if importlib.util.find_spec("dicognito") is None:
            return self.skip("dicognito", f"not installed ({INSTALL['dicognito']})")
        out = self.output("dicognito")
        # `python -m dicognito`: the console script of dicognito 0.19.0 calls main() without its argument.
        self.record(
            case,
            "dicognito (pydicom, one process)",
            src,
            files,
            nbytes,
            [sys.executable, "-m", "dicognito", "--quiet", "-o", str(out), str(src)],
            out,
        )


def driver_probe(src: Path, listing: Path) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", DRIVER_PROBE, str(src), str(listing)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def write_listing(path: Path, entries: int, names: list[str]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        if names:
            for i in range(entries):
                fh.write(names[i % len(names)] + "\n")
        else:
            for i in range(entries):
                fh.write(f"missing/{i // 1000:05d}/{i:08d}.dcm\n")


def case_c(work: Path, src: Path, entries: int) -> list[str]:
    """Driver-only cost of listing + sharding; returns the table lines."""
    real = sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.is_file())[:1000]
    lines = []
    for label, names in (("real files", real), ("missing paths", [])):
        for n in sorted({max(1, entries // 10), entries}):
            listing = work / f"listing-{'real' if names else 'missing'}-{n}.txt"
            write_listing(listing, n, names)
            r = driver_probe(src, listing)
            lines.append(
                f"  {label:14s} {int(r['entries']):>10,} entries {int(r['shards']):>7,} shards "
                f"{r['seconds'] / r['entries'] * 1e6:7.2f} us/entry   peak RSS {r['peak_rss_kib'] / 1024:7.1f} MiB "
                f"(after imports {r['rss_before_kib'] / 1024:.1f} MiB)"
            )
            print(lines[-1], flush=True)
            listing.unlink()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--full", action="store_true", help="2,000 CT files, 50,000 small files, 1,000,000 entries"
    )
    parser.add_argument("--cases", default="abc", help="which cases to run (default: abc)")
    parser.add_argument("--ct-files", type=int, help="case (a) files (default 200; --full 2,000)")
    parser.add_argument("--small-files", type=int, help="case (b) files (default 2,000; --full 50,000)")
    parser.add_argument("--listing-entries", type=int, default=1_000_000, help="case (c) entries")
    parser.add_argument(
        "--shard-files", type=int, help="veil --shard-files (default: veil's own choice)"
    )
    parser.add_argument("--no-ray", action="store_true", help="leave out veil on a local Ray")
    parser.add_argument("--repeat", type=int, default=3,
                        help=f"runs of each tool that takes under {REPEAT_UNDER:.0f} s; the median is reported")
    parser.add_argument("--no-dicognito", action="store_true",
                        help="leave out dicognito (about 440 s for 50,000 small files on 2 CPUs)")
    parser.add_argument("--small-rows", type=int, default=64)
    parser.add_argument("--small-cols", type=int, default=48, help="64 x 48, 16-bit: about 12 KB a file")
    parser.add_argument("--work", type=Path, help="where inputs are written (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=Path("/dev/shm"), help="tmpfs for outputs")
    parser.add_argument("--keep", action="store_true", help="keep the generated inputs")
    parser.add_argument("--recipe", default="ps3.15-basic",
                        help="veil's recipe (default ps3.15-basic, the profile gdcmanon -e applies)")
    args = parser.parse_args()
    ct_files = args.ct_files or (2000 if args.full else 200)
    small_files = args.small_files or (50_000 if args.full else 2000)

    work = args.work or Path(tempfile.mkdtemp(prefix="veil-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    out_root = Path(tempfile.mkdtemp(prefix="veil-bench-out-", dir=args.out))
    global RECIPE
    RECIPE = args.recipe
    bench = Bench(work, out_root, ray=not args.no_ray, repeat=args.repeat)
    listing_lines: list[str] = []
    print(f"veil compare_peers: inputs in {work}, outputs in {out_root} ({os.cpu_count()} CPUs)", flush=True)
    try:
        if "a" in args.cases:
            src = work / "ct"
            files, nbytes = synth(src, ct_files, 512, 512, seed=11)
            case = f"(a) CT {nbytes / files / 1e6:.2f} MB x {files:,}"
            print(case, flush=True)
            bench.veil(case, src, files, nbytes, args.shard_files)
            bench.cp(case, src, files, nbytes)
            bench.gdcm_dumb(case, src, files, nbytes)
            bench.gdcm_basic(case, src, files, nbytes)
        if "b" in args.cases or "c" in args.cases:
            src = work / "small"
            files, nbytes = synth(src, small_files, args.small_rows, args.small_cols, seed=12)
            case = f"(b) {nbytes / files / 1e3:.0f} KB x {files:,}"
            if "b" in args.cases:
                print(case, flush=True)
                bench.veil(case, src, files, nbytes, args.shard_files)
                bench.cp(case, src, files, nbytes)
                bench.gdcm_basic(case, src, files, nbytes)
                if not args.no_dicognito:
                    bench.dicognito(case, src, files, nbytes)
            if "c" in args.cases:
                print(
                    f"(c) driver listing + sharding, --files-from of {args.listing_entries:,} entries",
                    flush=True,
                )
                listing_lines = case_c(work, src, args.listing_entries)
    finally:
        shutil.rmtree(out_root, ignore_errors=True)
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    report(bench, listing_lines)


def report(bench: Bench, listing_lines: list[str]) -> None:
    print()
    header = f"{'case':22s} {'tool':38s} {'files':>8s} {'MB':>8s} {'wall s':>8s} {'files/s':>9s} {'MB/s':>8s}  note"
    print(header)
    print("-" * len(header))
    for r in bench.results:
        print(
            f"{r.case:22s} {r.tool:38s} {r.files:8,d} {r.input_bytes / 1e6:8.1f} {r.seconds:8.2f} "
            f"{r.files_per_second:9,.0f} {r.mb_per_second:8.1f}  {r.note}"
            + ("" if r.outputs == r.files else f" [{r.outputs:,} outputs]")
        )
    print()
    print("ratios (peer wall time / veil wall time: above 1, veil is faster)")
    for case in dict.fromkeys(r.case for r in bench.results):
        rows = [r for r in bench.results if r.case == case]
        veils = [r for r in rows if r.tool.startswith("veil")]
        for peer in (r for r in rows if not r.tool.startswith("veil")):
            ratios = ", ".join(
                f"{peer.seconds / v.seconds:6.2f}x vs {v.tool.removeprefix('veil run, ')}" for v in veils
            )
            print(f"  {case:22s} {peer.tool:38s} {ratios}")
    if listing_lines:
        print()
        print(
            "driver: listing + sharding only (engine.list_inputs over --files-from, engine.shards 256 files)"
        )
        for line in listing_lines:
            print(line)
    for line in bench.skipped:
        print(f"skipped {line}")


if __name__ == "__main__":
    main()
