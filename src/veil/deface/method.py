"""The defacing method: which voxels of a head volume are the face, with no FSL or FreeSurfer and nothing
downloaded.

1. **Head.** The volume is resampled onto a 3 mm grid aligned with the patient axes (so an oblique stack is
   handled like an axial one) and the head is segmented: CT above -400 HU, MR above a fraction of its bright
   end; the largest connected part, holes filled.
2. **Brain.** The shipped atlas (:mod:`veil.deface.atlas`, a real T1 head with its brain mask) is registered to
   the head: translation, scale along each axis and a nod (rotation about the left-right axis), by the overlap
   of the two head masks on an 8 mm grid. Its brain mask, carried over, is the brain estimate. For CT the soft
   tissue inside the bony ring is added to it. The estimate grown by ``margin`` mm is protected: no voxel of it
   is ever changed.
3. **Face plane.** A plane whose normal points forward and down (the atlas's face direction, nodded with the
   head) is placed tangent to the protected brain, then moved ``depth`` mm back into it: the quickshear idea,
   with the plane set well behind the face. Every voxel in front of it that is not protected is removed: the
   eyes, nose, mouth, chin and cheeks, and the face tissue beside the temporal poles that a plane alone, kept in
   front of the whole brain, leaves. ``ears`` also removes what stands out of the head beside the brain at the
   level of the ears.
4. With ``method="shell"`` only the outer ``shell`` mm of the head in front of the plane go (head-and-neck
   series whose lower face is anatomy of interest).

A head the method cannot place (no head found, the atlas does not fit) raises :class:`DefaceError`: the series
is quarantined, never written with its face.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from veil.deface.atlas import atlas
from veil.deface.grid import Grid, Volume, patient_grid, resample, sample

__all__ = ["DefaceError", "DefaceOptions", "Defaced", "METHOD_VERSION", "deface", "head_mask", "register"]

METHOD_VERSION = "veil-deface 1 (atlas plane)"
WORK_SPACING = 3.0  # mm: the grid the head, the brain and the plane are found on
FIT_SPACING = 8.0  # mm: the grid the atlas is registered on
FACE_ANGLE = 40.0  # degrees below the anterior direction: the face plane's normal in the atlas
MIN_FIT = 0.80  # overlap (Dice) of the registered atlas head and the series' head below which it is refused


class DefaceError(ValueError):
    """A head this method cannot deface safely; the message says why (no value from the file)."""


@dataclass(frozen=True)
class DefaceOptions:
    """What the recipe's ``deface:`` section sets for the method."""

    method: str = "plane"  # "plane" (everything in front of the face plane) or "shell" (the outer shell only)
    margin: float = 10.0  # mm kept around the brain estimate
    depth: float = 20.0  # mm the face plane is moved back from the protected brain's front
    shell: float = 8.0  # mm of head removed under method "shell"
    ears: bool = False


@dataclass
class Defaced:
    """What was removed, for the audit: the plane (unit normal pointing to the face, LPS, and offset in mm:
    removed where normal . p > offset), the fraction of head voxels removed, the fit of the atlas, and the
    removal mask over the volume's voxels."""

    removed: np.ndarray = field(repr=False)
    normal: tuple[float, float, float]
    offset: float
    fraction: float
    fit: float
    parameters: dict[str, Any]


def head_mask(values: np.ndarray, modality: str, fill: bool = True) -> np.ndarray:
    """The head (bool, same shape): tissue above the threshold, its largest connected part, holes filled
    (not with ``fill`` false: a surface rendering sees only the outside)."""
    from scipy import ndimage

    if modality == "CT":
        tissue = values > -400.0
    else:
        bright = float(np.percentile(values, 99.5)) if values.size else 0.0
        if bright <= 0:
            return np.zeros(values.shape, bool)
        tissue = values > 0.1 * bright
    tissue = ndimage.binary_opening(tissue, iterations=1)
    if not tissue.any():
        return tissue
    head = _largest(tissue)
    if not fill:
        return head
    head = ndimage.binary_closing(head, iterations=2)
    filled: np.ndarray = ndimage.binary_fill_holes(head)
    for z in range(filled.shape[2]):  # air in the sinuses and the mouth opens to the outside in 3-D
        filled[:, :, z] = ndimage.binary_fill_holes(filled[:, :, z])
    return filled


def _largest(mask: np.ndarray) -> np.ndarray:
    """The largest connected part of a non-empty ``mask``."""
    from scipy import ndimage

    labels, _ = ndimage.label(mask)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest: np.ndarray = labels == int(sizes.argmax())
    return largest


def _rotation_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _transform(params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, t): subject = M @ atlas + t, from (tx, ty, tz, log sx, log sy, log sz, nod)."""
    matrix = _rotation_x(params[6]) @ np.diag(np.exp(params[3:6]))
    return matrix, params[:3]


def _warp(values: np.ndarray, source: Grid, target: Grid, matrix: np.ndarray, shift: np.ndarray,
          cval: float = 0.0) -> np.ndarray:
    """Atlas ``values`` on ``source`` carried onto ``target`` by subject = matrix @ atlas + shift."""
    from scipy import ndimage

    inverse = np.linalg.inv(matrix)
    # target index -> subject LPS -> atlas LPS -> source index
    lin = inverse * (target.spacing / source.spacing)
    off = (inverse @ (target.origin - shift) - source.origin) / source.spacing
    out: np.ndarray = ndimage.affine_transform(values, lin, offset=off, output_shape=target.shape, order=1,
                                               mode="constant", cval=cval, prefilter=False)
    return out


def register(head: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray, float]:
    """The atlas registered to a head mask on ``grid``: (M, t, fit), subject = M @ atlas + t, ``fit`` the Dice
    overlap of the two heads over the part of the subject the atlas covers."""
    from scipy import ndimage, optimize

    ref = atlas()
    factor = FIT_SPACING / grid.spacing
    small = ndimage.zoom(head.astype(np.float32), 1.0 / factor, order=1, prefilter=False)
    fit_grid = Grid(grid.origin, grid.spacing * head.shape[0] / small.shape[0], small.shape)
    ref_small = ndimage.zoom(ref.head, ref.grid.spacing / FIT_SPACING, order=1, prefilter=False)
    ref_grid = Grid(ref.grid.origin, ref.grid.spacing * ref.head.shape[0] / ref_small.shape[0], ref_small.shape)
    # Start: the tops of the heads together, their centres over each other (in the top 12 cm).
    start = np.zeros(7)
    start[:3] = _top(head, grid) - _top(ref.head, ref.grid)
    # The overlap changes only near the surfaces: it is measured on the points of the subject's grid within
    # three voxels of its head's surface (about a third of them), the atlas sampled there (map_coordinates).
    band = ndimage.binary_dilation(small > 0.5, iterations=3) & ~ndimage.binary_erosion(small > 0.5, iterations=3)
    where = np.nonzero(band)
    points = np.stack(where).astype(np.float64) * fit_grid.spacing + fit_grid.origin[:, None]
    target = small[where]

    def overlap(params: np.ndarray, at: np.ndarray, values: np.ndarray) -> float:
        matrix, shift = _transform(params)
        atlas_index = (np.linalg.inv(matrix) @ (at - shift[:, None]) - ref_grid.origin[:, None]) / ref_grid.spacing
        warped = ndimage.map_coordinates(ref_small, atlas_index, order=1, mode="constant", cval=-1.0,
                                         prefilter=False)
        covered = warped >= 0.0  # inside the atlas's field of view
        a, b = warped[covered], values[covered]
        total = float(a.sum() + b.sum())
        return 2.0 * float((a * b).sum()) / total if total else 0.0

    best = optimize.minimize(lambda p: 1.0 - overlap(p, points, target), start, method="Powell",
                             bounds=[(v - 60.0, v + 60.0) for v in start[:3]] + [(-0.4, 0.4)] * 3 + [(-0.6, 0.6)],
                             options={"xtol": 1e-2, "ftol": 1e-3, "maxfev": 600})
    matrix, shift = _transform(best.x)
    # The fit: the same overlap over the whole grid, not the band.
    warped = _warp(ref_small, ref_grid, fit_grid, matrix, shift, cval=-1.0)
    covered = warped >= 0.0
    a, b = warped[covered], small[covered]
    total = float(a.sum() + b.sum())
    return matrix, shift, 2.0 * float((a * b).sum()) / total if total else 0.0


def _top(head: np.ndarray, grid: Grid) -> np.ndarray:
    """The head's top (highest z with head) and the centre of its top 12 cm, in LPS."""
    zs = np.nonzero(head.any(axis=(0, 1)))[0]
    if zs.size == 0:
        raise DefaceError("no head found in the volume")
    top = int(zs.max())
    low = max(0, top - int(120 / grid.spacing))
    xs, ys, _ = np.nonzero(head[:, :, low: top + 1])
    centre = np.array([xs.mean(), ys.mean(), float(top)]) * grid.spacing + grid.origin
    return centre


def _intracranial(values: np.ndarray, head: np.ndarray) -> np.ndarray:
    """CT: soft tissue inside the bony ring, slice by slice (bool)."""
    from scipy import ndimage

    bone = ndimage.binary_closing(values > 300.0, iterations=1)
    inside = np.zeros_like(bone)
    for z in range(bone.shape[2]):
        if bone[:, :, z].any():
            inside[:, :, z] = ndimage.binary_fill_holes(bone[:, :, z]) & ~bone[:, :, z]
    soft = inside & (values > -10.0) & (values < 100.0) & head
    return _largest(soft) if soft.any() else soft


def deface(volume: Volume, options: DefaceOptions | None = None) -> Defaced:
    """The face of ``volume`` found (see the module docstring): the removal mask over its voxels and the record.
    Raises :class:`DefaceError` where it cannot be found safely."""
    from scipy import ndimage

    options = options or DefaceOptions()
    grid = patient_grid(volume, WORK_SPACING)
    real = volume.real(volume.data)
    low = float(real.min()) if real.size else 0.0
    coarse = resample(real, volume.affine, grid, order=1, cval=low)
    head = head_mask(coarse, volume.modality)
    head_voxels = int(head.sum())
    if head_voxels * WORK_SPACING ** 3 < 300_000:  # 0.3 litres: not a head, or only a sliver of one
        raise DefaceError("no head found in the volume")
    matrix, shift, fit = register(head, grid)
    if fit < MIN_FIT:
        raise DefaceError(f"the head atlas does not fit this volume (overlap {fit:.2f} < {MIN_FIT})")
    ref = atlas()
    brain = _warp(ref.brain, ref.grid, grid, matrix, shift) > 0.5
    if volume.modality == "CT":
        brain |= _intracranial(coarse, head)
    if not brain.any():
        raise DefaceError("no brain found under the head atlas")
    steps = max(1, int(round(options.margin / WORK_SPACING)))
    protect = ndimage.binary_dilation(brain, iterations=steps)
    # The face direction: forward (-y in LPS) and down (-z), nodded with the head.
    angle = np.radians(FACE_ANGLE)
    normal = np.linalg.inv(matrix).T @ np.array([0.0, -np.cos(angle), -np.sin(angle)])
    normal /= np.linalg.norm(normal)
    x, y, z = grid.points()
    along = normal[0] * x + normal[1] * y + normal[2] * z
    offset = float(along[np.broadcast_to(protect, along.shape)].max()) - options.depth
    ears = _ears(head, protect) if options.ears else np.zeros_like(head)
    keep = protect
    if options.method == "shell":  # only the outer shell of the head in front of the plane goes
        keep = protect | (ndimage.distance_transform_edt(head) * grid.spacing > options.shell)
    removed_coarse = (head & (along > offset) & ~keep) | (ears & ~keep)
    fraction = float(removed_coarse.sum()) / head_voxels
    removed = _full_removal(volume, grid, normal, offset, keep, ears)
    scales = np.linalg.norm(matrix, axis=0)
    nod = float(np.degrees(np.arctan2(matrix[2, 1], matrix[1, 1])))
    return Defaced(removed, tuple(float(v) for v in normal), offset, fraction, fit,  # type: ignore[arg-type]
                   {"margin_mm": options.margin, "depth_mm": options.depth, "nod_deg": round(nod, 2),
                    "atlas_scale": [round(float(v), 3) for v in scales]})


def _ears(head: np.ndarray, protect: np.ndarray) -> np.ndarray:
    """The ears: head outside the protected brain and lateral to it (beyond its left or right edge at the same
    front-back and height), from the bottom of the protected region to 45% of its height."""
    zs = np.nonzero(protect.any(axis=(0, 1)))[0]
    if zs.size == 0:
        return np.zeros_like(head)
    x = np.arange(head.shape[0])[:, None, None]
    present: np.ndarray = np.asarray(protect.any(axis=0))
    left = np.where(present, protect.argmax(axis=0), head.shape[0])[None]
    right = np.where(present, head.shape[0] - 1 - protect[::-1].argmax(axis=0), -1)[None]
    lateral = (x < left) | (x > right)
    z = np.arange(head.shape[2])[None, None, :]
    band = z <= zs.min() + 0.45 * (zs.max() - zs.min())
    result: np.ndarray = head & ~protect & lateral & band & present[None]
    return result


def _full_removal(volume: Volume, grid: Grid, normal: np.ndarray, offset: float, keep_grid: np.ndarray,
                  ears: np.ndarray) -> np.ndarray:
    """The removal mask over the volume's own voxels: in front of the plane and outside the kept region, plus
    the ears (both looked up on the work grid, nearest voxel)."""
    n = volume.data.shape
    a = volume.affine
    # normal . p for every voxel, linear in its index (float32, broadcast over slices, rows, columns)
    step = (normal @ a[:3, :3]).astype(np.float32)
    side = (step[0] * np.arange(n[0], dtype=np.float32)[:, None, None]
            + step[1] * np.arange(n[1], dtype=np.float32)[None, :, None]
            + (step[2] * np.arange(n[2], dtype=np.float32) + np.float32(normal @ a[:3, 3] - offset))[None, None, :])
    front = side > 0
    # The kept region looked up at every voxel (nearest grid voxel): volume index -> LPS -> grid index.
    to_grid = np.eye(4)
    to_grid[:3, :3] /= grid.spacing
    to_grid[:3, 3] = -grid.origin / grid.spacing
    matrix = to_grid @ a
    # 0 removed in front of the plane, 1 kept, 2 removed wherever it is (the ears)
    code = keep_grid.astype(np.uint8) + 2 * (ears & ~keep_grid).astype(np.uint8)
    looked = sample(code, matrix[:3, :3], matrix[:3, 3], n, 0, None)
    removed: np.ndarray = (front & (looked == 0)) | (looked == 2)
    return removed
