"""Where a pixel's bytes are: the Image Pixel module read from a header, and (frames, rows, columns, samples)
views of native pixel data in any byte order and planar configuration, without a copy."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from veil.errors import MalformedDicom
from veil.pixels.codecs.native import NATIVE_SYNTAXES

__all__ = ["PixelLayout", "Region", "frame_index", "frames_view", "read_header"]

Region = tuple[int, int, int, int]  # x, y, width, height (columns, rows)


@dataclass(frozen=True)
class PixelLayout:
    """The Image Pixel module attributes that place a pixel's bytes (PS3.3 C.7.6.3, PS3.5 8.1)."""

    rows: int
    columns: int
    samples_per_pixel: int = 1
    bits_allocated: int = 8
    planar_configuration: int = 0
    number_of_frames: int = 1
    big_endian: bool = False

    def __post_init__(self) -> None:
        if self.bits_allocated not in (8, 16, 32):
            raise ValueError(f"bits allocated {self.bits_allocated}: redaction handles 8, 16 and 32")
        if self.samples_per_pixel not in (1, 3):
            raise ValueError(f"samples per pixel {self.samples_per_pixel}: 1 or 3")
        if min(self.rows, self.columns, self.number_of_frames) < 1:
            raise ValueError("rows, columns and number of frames must be positive")

    @property
    def dtype(self) -> np.dtype[Any]:
        size = self.bits_allocated // 8
        return np.dtype(f"{'>' if self.big_endian else '<'}u{size}")

    @property
    def frame_bytes(self) -> int:
        return self.rows * self.columns * self.samples_per_pixel * self.bits_allocated // 8

    @property
    def total_bytes(self) -> int:
        return self.frame_bytes * self.number_of_frames

    @classmethod
    def from_dataset(cls, ds: Dataset, big_endian: bool = False) -> PixelLayout:
        try:
            frames = int(ds.get("NumberOfFrames", 1) or 1)
            return cls(
                rows=int(ds.Rows),
                columns=int(ds.Columns),
                samples_per_pixel=int(ds.get("SamplesPerPixel", 1) or 1),
                bits_allocated=int(ds.BitsAllocated),
                planar_configuration=int(ds.get("PlanarConfiguration", 0) or 0),
                number_of_frames=frames,
                big_endian=big_endian,
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise MalformedDicom(getattr(ds, "filename", "") or "", 0, f"pixel module: {exc}") from None

    @classmethod
    def from_header(cls, header: bytes | memoryview, path: str = "") -> PixelLayout:
        """From a rewrite's header bytes (everything up to the Pixel Data element header)."""
        ds = read_header(header, path)
        return cls.from_dataset(ds, NATIVE_SYNTAXES.get(str(ds.file_meta.get("TransferSyntaxUID", "")), False))


class PixelAttributes(dict[str, Any]):
    """The Image Pixel module of a header as the native core reads it (:func:`veil.core._core.pixel_module`),
    answering the few Dataset calls the layout needs: ``ds.Rows`` (AttributeError where absent, as pydicom) and
    ``ds.get(keyword, default)``."""

    def __getattr__(self, name: str) -> Any:
        value = self.get(name)
        if value is None:
            raise AttributeError(name)
        return value


def pixel_attributes(header: bytes | memoryview, path: str = "") -> PixelAttributes:
    """The Image Pixel module of a rewrite's header bytes, without a pydicom parse (a few microseconds against
    half a millisecond); a malformed header raises MalformedDicom."""
    from veil.core._core import pixel_module

    return PixelAttributes(pixel_module(header, path))


def read_header(header: bytes | memoryview, path: str = "") -> Dataset:
    """The data set of a rewrite's header bytes (no pixel data); unreadable raises MalformedDicom."""
    try:
        return pydicom.dcmread(io.BytesIO(bytes(header)), stop_before_pixels=True, force=True)
    except Exception as exc:  # pydicom raises many types on a malformed header
        raise MalformedDicom(path, 0, f"header unreadable for pixel redaction: {type(exc).__name__}") from None


def frames_view(buffer: Any, layout: PixelLayout) -> np.ndarray:
    """A (frames, rows, columns, samples) view of the pixel bytes, writable when the buffer is; planar
    configuration 1 (each colour plane whole, PS3.3 C.7.6.3.1.3) is a transposed view of the same bytes."""
    flat = np.frombuffer(buffer, dtype=np.uint8)
    if flat.size < layout.total_bytes:
        raise MalformedDicom("", 0, f"pixel data holds {flat.size} bytes, the pixel module needs {layout.total_bytes}")
    typed = flat[: layout.total_bytes].view(layout.dtype)
    f, r, c, s = layout.number_of_frames, layout.rows, layout.columns, layout.samples_per_pixel
    if s > 1 and layout.planar_configuration == 1:
        return typed.reshape(f, s, r, c).transpose(0, 2, 3, 1)
    return typed.reshape(f, r, c, s)


def frame_index(frames: Sequence[int] | None, count: int) -> slice | list[int] | None:
    """The frames of an image of ``count`` frames that ``frames`` names (None: all, as a slice); None when it
    names none of them."""
    if frames is None:
        return slice(None)
    chosen = [f for f in frames if 0 <= f < count]  # a rule's frames beyond this image's count do not apply
    return chosen or None
