"""Start-up of ``veil run``: CPU seconds of the driver before its first file (issue 18: under 0.1 s for a local
run), and the modules it has loaded by then.

    python benchmarks/startup.py [--runs 11] [--files 130]

A run in this process (``--workers 1``) is measured at the core's first call (``Deidentifier.native_files``);
a pooled run (``--workers 2``) at its first shard handed to the pool (the pool's start included). Each is
measured with the compiled-recipe cache warm (``VEIL_CACHE_DIR``, a fresh folder filled by a first run) and
with it turned off (``VEIL_NO_CACHE=1``: the recipe read with the YAML reader and compiled). CPU is
``time.process_time()`` of the driver (user + system); the median of ``--runs`` is reported with its range.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROBE = """
import sys, time
mode = sys.argv.pop(1)
def report():
    cpu = time.process_time()
    heavy = sorted(m for m in ("numpy", "pyarrow", "zarr", "ray", "pydicom", "yaml") if m in sys.modules)
    print(f"STARTUP {cpu:.6f} {','.join(heavy) or '-'}", file=sys.stderr, flush=True)
if mode == "inline":
    import veil.pipeline as pipeline
    real = pipeline.Deidentifier.native_files
    def first(self, *args):
        report()
        pipeline.Deidentifier.native_files = real
        return real(self, *args)
    pipeline.Deidentifier.native_files = first
else:
    import veil.engine.local as local
    real = local.ProcessPoolExecutor.submit
    def submit(self, *args, **kwargs):
        report()
        local.ProcessPoolExecutor.submit = real
        return real(self, *args, **kwargs)
    local.ProcessPoolExecutor.submit = submit
from veil.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def measure(work: Path, src: Path, key: Path, workers: int, env: dict[str, str], runs: int) -> tuple[list[float], str]:
    probe = work / "probe.py"
    probe.write_text(PROBE)
    mode = "inline" if workers == 1 else "pool"
    cpus: list[float] = []
    heavy = ""
    for i in range(runs):
        out = work / f"out-{mode}-{i}-{len(env)}"
        done = subprocess.run(
            [sys.executable, str(probe), mode, "run", str(src), str(out), "--key", str(key), "--recipe", "ps3.15-basic",
             "--workers", str(workers), "--shard-files", "50"],
            env=env, capture_output=True, text=True, check=True)
        line = next(x for x in done.stderr.splitlines() if x.startswith("STARTUP"))
        _, cpu, heavy = line.split()
        cpus.append(float(cpu))
    return cpus, heavy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--files", type=int, default=130)
    args = parser.parse_args()
    from veil.cli.main import main as veil
    from veil.synth import write_archive

    with tempfile.TemporaryDirectory(prefix="veil-startup-") as tmp:
        work = Path(tmp)
        src = work / "in"
        write_archive(src, patients=1, series_per_study=1, instances_per_series=args.files, seed=3)
        key = work / "key"
        veil(["keygen", str(key)])
        warm = {**os.environ, "VEIL_CACHE_DIR": str(work / "cache")}
        warm.pop("VEIL_NO_CACHE", None)
        cold = {**warm, "VEIL_NO_CACHE": "1"}
        measure(work, src, key, 1, warm, 1)  # fills the cache (and the page cache)
        print(f"veil run start-up, CPU s before the first file ({args.runs} runs, {os.cpu_count()} CPUs):")
        for workers in (1, 2):
            for label, env in (("cache warm", warm), ("no cache", cold)):
                cpus, heavy = measure(work, src, key, workers, env, args.runs)
                where = "in this process" if workers == 1 else "2 workers (at the first shard sent)"
                print(f"  {where:38} {label:10}  median {statistics.median(cpus):.3f}  "
                      f"range {min(cpus):.3f}-{max(cpus):.3f}  heavy modules loaded: {heavy}")


if __name__ == "__main__":
    main()
