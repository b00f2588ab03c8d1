"""Synthetic native Pixel Data: 16-bit grayscale (12 bits stored, 16 for PT/NM), 8-bit RGB for US, SC.

Integer-only arithmetic and SHAKE-128 noise keyed by the instance, so the bytes are the same on every machine.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from veil.synth.draws import _Draw
from veil.synth.modalities import _ModalitySpec

__all__: list[str] = []  # package-internal: the series template asks _PixelSource for each instance's pixels


@lru_cache(maxsize=4)
def _grid(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column index arrays (read-only, shared by every series of one image size)."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.int32)
    y.setflags(write=False)
    x.setflags(write=False)
    return y, x


class _PixelSource:
    """Native pixel data: a per-series gradient and stripe pattern, a sphere's cross-section, seeded noise."""

    def __init__(
        self,
        seed: int,
        patient: int,
        study: int,
        series: int,
        spec: _ModalitySpec,
        rows: int,
        cols: int,
        instances: int,
        *,
        big_endian: bool,
    ) -> None:
        draw = _Draw(seed, "pixels", patient, study, series)
        self._key = (seed, patient, study, series)
        self._rows, self._cols, self._instances = rows, cols, instances
        self._rgb = spec.samples_per_pixel == 3
        if self._rgb:
            self._low, self._high = 0, 255
        elif spec.pixel_representation:
            self._low, self._high = -1024, (1 << (spec.bits_stored - 1)) - 1
        else:
            self._low, self._high = 0, (1 << spec.bits_stored) - 1
        span = self._high - self._low
        y, x = _grid(rows, cols)
        period = draw.integer("period", 4, 16)
        gradient = (x * (span // 6)) // max(cols, 1) + (y * (span // 6)) // max(rows, 1)
        stripes = ((x // period + y // period) & 1) * (span // 24)
        # int32 throughout: at most 2 * 8192**2 for distances, 65535 plus noise for values.
        self._base = (self._low + span // 16 + gradient + stripes).astype(np.int32)
        centre_row = rows // 2 + draw.integer("centre_row", -rows // 8, rows // 8)
        centre_col = cols // 2 + draw.integer("centre_col", -cols // 8, cols // 8)
        self._distance2 = (y - centre_row) ** 2 + (x - centre_col) ** 2
        self._radius = max(rows, cols) * 3 // 8
        self._feature = span // 3
        self._noise_scale = max(span // 48, 1)
        if self._rgb:
            self._dtype = np.dtype(np.uint8)
        else:
            code = "i2" if spec.pixel_representation else "u2"
            self._dtype = np.dtype((">" if big_endian else "<") + code)

    def instance(self, instance: int) -> bytes:
        """The Pixel Data value of one instance (unpadded)."""
        # A sphere sliced through its centre at the middle instance: the disc grows then shrinks along the series.
        half = max(self._instances // 2, 1)
        dz = (instance - self._instances // 2) * self._radius // half
        radius2 = self._radius * self._radius - dz * dz
        key = "\x1f".join(["veil-synth-noise", *map(str, self._key), str(instance)]).encode()
        noise = np.frombuffer(hashlib.shake_128(key).digest(self._rows * self._cols), dtype=np.uint8)
        noise = noise.reshape(self._rows, self._cols).astype(np.int32)
        image = noise * self._noise_scale
        image >>= 3
        image += self._base
        np.add(image, self._feature, out=image, where=self._distance2 <= radius2)
        np.clip(image, self._low, self._high, out=image)
        if self._rgb:
            red = image
            green = np.flip(image, axis=1)
            blue = (noise * 4) & 0xFF
            pixels = np.stack([red, green, blue], axis=-1).astype(np.uint8)
        else:
            pixels = image.astype(self._dtype)
        data: bytes = pixels.tobytes()
        return data
