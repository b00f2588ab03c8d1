"""Audit thumbnails: the first redacted frame, grey, stretched to 8 bits and shrunk, before and after
blanking."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from veil.pixels.layout import PixelLayout, frame_index, frames_view

__all__ = ["THUMBNAIL_SIZE", "thumbnail"]

THUMBNAIL_SIZE = 128  # the longest side of an audit thumbnail, in pixels


def thumbnail(buffer: Any, layout: PixelLayout, frames: Sequence[int] | None, photometric: str) -> np.ndarray:
    """The first redacted frame, grey, stretched to 8 bits and shrunk to :data:`THUMBNAIL_SIZE` at most."""
    from PIL import Image

    chosen = frame_index(frames, layout.number_of_frames)
    first = 0 if isinstance(chosen, slice) or not chosen else chosen[0]
    frame = frames_view(buffer, layout)[first].astype(np.float32)
    # Luminance: the mean of R, G and B; Y alone for YBR (PS3.3 C.7.6.3.1.2); palette indices as they are.
    grey = frame[..., 0] if photometric.upper().startswith("YBR") else frame.mean(axis=2)
    lo, hi = float(grey.min()), float(grey.max())
    scaled = np.zeros(grey.shape, np.uint8) if hi <= lo else ((grey - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    image = Image.fromarray(scaled)
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.uint8)
