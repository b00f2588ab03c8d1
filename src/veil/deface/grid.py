"""Volumes in patient space: a series' voxels with the affine that places them in DICOM patient coordinates
(LPS, millimetres), and resampling onto grids aligned with the patient axes, where the method and the
renderings work whatever the slices' obliquity."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Grid", "Volume", "patient_grid", "resample"]


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
    from scipy import ndimage

    inverse = np.linalg.inv(affine)
    # grid index (x, y, z) -> LPS = origin + spacing * index -> voxel index = inverse @ LPS
    to_lps = np.eye(4)
    to_lps[:3, :3] *= grid.spacing
    to_lps[:3, 3] = grid.origin
    matrix = inverse @ to_lps
    out: np.ndarray = ndimage.affine_transform(values, matrix[:3, :3], offset=matrix[:3, 3], output_shape=grid.shape,
                                               order=order, mode="constant", cval=cval, prefilter=False)
    return out
