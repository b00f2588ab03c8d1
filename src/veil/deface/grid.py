"""Volumes in patient space: a series' voxels with the affine that places them in DICOM patient coordinates
(LPS, millimetres), and resampling onto grids aligned with the patient axes, where the method and the
renderings work whatever the slices' obliquity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Grid", "Volume", "patient_grid", "resample", "sample"]


@dataclass(frozen=True)
class Grid:
    """A regular grid aligned with the patient axes: ``shape`` (x, y, z) voxels of ``spacing`` mm from
    ``origin`` (the LPS position of voxel 0)."""

    origin: np.ndarray
    spacing: float
    shape: tuple[int, int, int]

    def points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The LPS coordinates along each axis (broadcastable: x (n,1,1), y (1,n,1), z (1,1,n))."""
        x, y, z = (self.origin[a] + self.spacing * np.arange(self.shape[a], dtype=np.float64) for a in range(3))
        return x[:, None, None], y[None, :, None], z[None, None, :]

    def index(self, points: np.ndarray) -> np.ndarray:
        """Continuous grid indices of LPS ``points`` (..., 3)."""
        return (points - self.origin) / self.spacing


@dataclass
class Volume:
    """A series' voxels as (slices, rows, columns) in its stored values, with ``affine`` mapping a voxel
    index (slice, row, column, 1) to LPS millimetres; ``slope`` and ``intercept`` give real values (HU for CT)."""

    data: np.ndarray
    affine: np.ndarray
    modality: str
    slope: float = 1.0
    intercept: float = 0.0

    @property
    def spacing(self) -> tuple[float, float, float]:
        """The voxel size along slices, rows and columns, in mm."""
        return tuple(float(np.linalg.norm(self.affine[:3, a])) for a in range(3))  # type: ignore[return-value]

    def real(self, stored: np.ndarray) -> np.ndarray:
        return stored.astype(np.float32) * np.float32(self.slope) + np.float32(self.intercept)

    def corners(self) -> np.ndarray:
        """The LPS positions of the volume's eight corner voxels (8, 3)."""
        n = self.data.shape
        idx = np.array([[k, r, c, 1.0] for k in (0, n[0] - 1) for r in (0, n[1] - 1) for c in (0, n[2] - 1)])
        corners: np.ndarray = (self.affine @ idx.T).T[:, :3]
        return corners


def patient_grid(volume: Volume, spacing: float) -> Grid:
    """The patient-aligned grid of ``spacing`` mm that holds the whole volume."""
    corners = volume.corners()
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    shape = tuple(int(np.floor((hi[a] - lo[a]) / spacing)) + 1 for a in range(3))
    return Grid(lo, float(spacing), shape)  # type: ignore[arg-type]


def resample(values: np.ndarray, affine: np.ndarray, grid: Grid, order: int = 1, cval: float = 0.0) -> np.ndarray:
    """``values`` (indexed as ``affine`` says) sampled at every point of ``grid``; outside is ``cval``."""
    inverse = np.linalg.inv(affine)
    # grid index (x, y, z) -> LPS = origin + spacing * index -> voxel index = inverse @ LPS
    to_lps = np.eye(4)
    to_lps[:3, :3] *= grid.spacing
    to_lps[:3, 3] = grid.origin
    matrix = inverse @ to_lps
    return sample(values, matrix[:3, :3], matrix[:3, 3], grid.shape, order, cval)


def sample(values: np.ndarray, matrix: np.ndarray, offset: np.ndarray, shape: tuple[int, ...], order: int,
           cval: float | None) -> np.ndarray:
    """``values`` read at ``matrix @ index + offset`` for every index of an output of ``shape`` (order 0:
    nearest voxel, 1: linear); outside the input ``cval``, or the nearest edge voxel when ``cval`` is None.

    An axis-aligned mapping (each output axis reads one input axis: an axial, coronal or sagittal stack, with
    any flips and spacings) is sampled one axis at a time, several times faster than the general path
    (:func:`scipy.ndimage.affine_transform`), which oblique stacks take."""
    aligned = _axis_aligned(matrix)
    if aligned is None or order not in (0, 1):
        from scipy import ndimage

        out: np.ndarray = ndimage.affine_transform(
            values, matrix, offset=offset, output_shape=shape, order=order,
            mode="nearest" if cval is None else "constant", cval=0.0 if cval is None else cval, prefilter=False)
        return out
    source, scale = aligned  # output axis j reads input axis source[j] at scale[j] * index + offset
    moved = values.transpose(source)
    outside = np.zeros(shape, bool) if cval is not None else None
    lows: list[np.ndarray] = []
    weights: list[np.ndarray] = []
    for j in range(3):
        n = moved.shape[j]
        at = scale[j] * np.arange(shape[j], dtype=np.float64) + offset[source[j]]
        if outside is not None:
            beyond = (at < 0.0) | (at > n - 1)
            if beyond.any():
                form: list[Any] = [None, None, None]
                form[j] = slice(None)
                outside |= beyond[tuple(form)]
        if order == 0 or n == 1:
            lows.append(np.clip(np.rint(at), 0, n - 1).astype(np.intp))
            weights.append(np.zeros(shape[j], np.float32))
        else:
            low = np.clip(np.floor(at), 0, n - 2).astype(np.intp)
            lows.append(low)
            weights.append(np.clip(at - low, 0.0, 1.0).astype(np.float32))
    if order == 0:
        result: np.ndarray = moved[np.ix_(*lows)]
    else:  # trilinear: the eight neighbours, each gathered once, weighted
        result = np.zeros(shape, np.float32)
        for corner in range(8):
            bits = [(corner >> j) & 1 for j in range(3)]
            w = [weights[j] if bits[j] else 1.0 - weights[j] for j in range(3)]
            index = [np.minimum(lows[j] + bits[j], moved.shape[j] - 1) for j in range(3)]
            result += moved[np.ix_(*index)] * (w[0][:, None, None] * w[1][None, :, None] * w[2][None, None, :])
    if outside is not None and outside.any():
        result[outside] = cval
    return result


def _axis_aligned(matrix: np.ndarray) -> tuple[list[int], list[float]] | None:
    """(source axis, scale) per output axis where every output axis reads exactly one input axis, else None."""
    source = [int(np.argmax(np.abs(matrix[:, j]))) for j in range(3)]
    if sorted(source) != [0, 1, 2]:
        return None
    scale = [float(matrix[source[j], j]) for j in range(3)]
    rest = matrix.copy()
    for j in range(3):
        rest[source[j], j] = 0.0
    if np.abs(rest).max() > 1e-9 * max(1.0, float(np.abs(matrix).max())):
        return None
    return source, scale
