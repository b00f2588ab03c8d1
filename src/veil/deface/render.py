"""Frontal surface renderings of a head volume, for the audit and the review: the head's surface seen from the
front (the patient's anterior), shaded by the slope of the surface under a light from the viewer. The rendering
of the input shows the face and is sealed like a before-thumbnail; the rendering of the output shows what is
left of it."""

from __future__ import annotations

import numpy as np

from veil.deface.grid import Grid, Volume, patient_grid, resample
from veil.deface.method import head_mask

__all__ = ["RENDER_SPACING", "frontal_render"]

RENDER_SPACING = 2.0  # mm per pixel: a head is about 128 pixels wide, the audit thumbnail's size


def frontal_render(volume: Volume, stored: np.ndarray | None = None, spacing: float = RENDER_SPACING) -> np.ndarray:
    """The head of ``volume`` (or of ``stored``, other values on the same voxels) seen from the front: uint8,
    rows from the top of the head down, columns from the patient's right to left (as one faces them)."""
    values = volume.real(volume.data if stored is None else stored)
    grid = patient_grid(volume, spacing)
    low = float(values.min()) if values.size else 0.0
    sampled = resample(values, volume.affine, grid, order=0, cval=low)
    return shade(head_mask(sampled, volume.modality, fill=False), grid)


def shade(head: np.ndarray, grid: Grid) -> np.ndarray:
    """A shaded depth image of ``head`` (x, y, z on ``grid``) seen along +y (from anterior)."""
    ny = head.shape[1]
    hit = head.any(axis=1)
    first = np.where(hit, head.argmax(axis=1), ny).astype(np.float32) * grid.spacing  # depth in mm (x, z)
    far = float(first[hit].max()) if hit.any() else 0.0
    near = float(first[hit].min()) if hit.any() else 0.0
    depth = np.where(hit, first, far)  # beside the head: as far as its farthest point, so no edge is shaded
    gx = np.gradient(depth, grid.spacing, axis=0)
    gz = np.gradient(depth, grid.spacing, axis=1)
    light = 1.0 / np.sqrt(1.0 + gx * gx + gz * gz)
    fade = 1.0 - 0.5 * np.clip((np.where(hit, first, near) - near) / 120.0, 0.0, 1.0)
    image = np.where(hit, 40.0 + 215.0 * light * fade, 0.0)
    # (x, z) -> rows top-down (z descending), columns the patient's right (x low in LPS) on the left
    return np.ascontiguousarray(image.T[::-1]).astype(np.uint8)
