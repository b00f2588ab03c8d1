"""Frames to PNG for the review UI: one frame decoded at a time with pydicom, the Modality LUT, a VOI window
(PS3.3 C.11.2.1.2.1), MONOCHROME1 shown inverted, colour converted to RGB; and a series projection (the maximum
or minimum along the slices) so a whole series is checked in one look. Images keep their size in image pixels, so
boxes drawn over them line up. Everything stays in memory."""

from __future__ import annotations

import io
import os
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from veil.errors import VeilError

__all__ = ["FrameError", "Window", "frame_array", "frame_count", "png_bytes", "projection", "projection_png",
           "read_dataset", "render", "render_png", "windows"]

# Common CT presets (centre, width) in Hounsfield units.
_CT_PRESETS = (("brain", 40.0, 80.0), ("soft tissue", 40.0, 400.0), ("lung", -600.0, 1500.0),
               ("bone", 400.0, 1800.0))


class FrameError(VeilError):
    """A frame that cannot be shown; the message says why, never a value from the file."""


@dataclass(frozen=True)
class Window:
    name: str
    center: float
    width: float


def read_dataset(data: bytes | str | os.PathLike[str]) -> Any:
    """The dataset of a file (bytes or a path), with pixel data."""
    import pydicom

    try:
        source: Any = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else Path(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(source, force=True)
    except Exception as exc:  # pydicom raises many types for damaged files
        raise FrameError(f"cannot read the file: {type(exc).__name__}") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise FrameError("no pixel data")
    return ds


def frame_count(ds: Any) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def _colour(ds: Any) -> bool:
    return int(ds.get("SamplesPerPixel", 1) or 1) == 3 or str(ds.get("PhotometricInterpretation", "")) == \
        "PALETTE COLOR"


def frame_array(ds: Any, frame: int = 0) -> np.ndarray:
    """One frame: float32 after the Modality LUT for grey images; RGB uint8 ``[rows, columns, 3]`` for colour."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut, pixel_array

    count = frame_count(ds)
    if not 0 <= frame < count:
        raise FrameError(f"frame {frame} out of range: the image has {count}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = pixel_array(ds, index=frame if count > 1 else None)
    except Exception as exc:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", str(syntax or "unknown"))
        raise FrameError(f"cannot decode the pixels ({name}): {type(exc).__name__}") from None
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        return _to_uint8(apply_color_lut(arr, ds))
    if arr.ndim == 3 and arr.shape[-1] == 3:
        return _to_uint8(arr)  # pydicom converts YBR to RGB when it decodes (as_rgb, its default)
    return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    top = float(arr.max()) if arr.size else 0.0
    if top <= 255:
        return arr.astype(np.uint8)
    return (arr.astype(np.float32) * (255.0 / top)).astype(np.uint8)


def windows(ds: Any, frame_values: np.ndarray | None = None) -> list[Window]:
    """The windows offered, the default first: the file's own, else "full" (minimum to maximum, so burned-in
    text at the maximum shows), then "auto" (0.5 to 99.5 percentile) and, for CT, the usual presets."""
    out: list[Window] = []
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    try:
        c = float(center[0] if isinstance(center, Sequence) and not isinstance(center, str) else center)
        w = float(width[0] if isinstance(width, Sequence) and not isinstance(width, str) else width)
        if w > 0:
            out.append(Window("file", c, w))
    except (TypeError, ValueError, IndexError):
        pass
    values = frame_values
    if values is None and not _colour(ds):
        try:
            values = frame_array(ds, 0)
        except FrameError:
            values = None
    if values is not None and values.size:
        lo, hi = float(values.min()), float(values.max())
        out.append(Window("full", (lo + hi) / 2, max(hi - lo, 1.0)))
        plo, phi = (float(v) for v in np.percentile(values, [0.5, 99.5]))
        out.append(Window("auto", (plo + phi) / 2, max(phi - plo, 1.0)))
    if str(ds.get("Modality", "")).upper() == "CT":
        out.extend(Window(n, c, w) for n, c, w in _CT_PRESETS)
    return out


def _apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """The linear VOI function of PS3.3 C.11.2.1.2.1 to 0..255."""
    c, w = window.center, window.width
    if w <= 1:
        return np.where(values <= c - 0.5, 0, 255).astype(np.uint8)
    scaled = ((values - (c - 0.5)) / (w - 1) + 0.5) * 255.0
    return np.clip(scaled, 0, 255).astype(np.uint8)


def render(ds: Any, frame: int = 0, window: Window | str | tuple[float, float] | None = None) -> np.ndarray:
    """An 8-bit display image of one frame: grey ``[rows, columns]`` or RGB ``[rows, columns, 3]``."""
    values = frame_array(ds, frame)
    if values.ndim == 3:
        return values
    if isinstance(window, tuple):
        chosen = Window("custom", float(window[0]), float(window[1]))
    else:
        presets = windows(ds, values)
        if not presets:
            raise FrameError("no window can be made for this image")
        if window is None or window == "":
            chosen = presets[0]
        elif isinstance(window, Window):
            chosen = window
        else:
            found = [p for p in presets if p.name == window]
            if not found:
                raise FrameError(f"unknown window {window!r}: {', '.join(p.name for p in presets)}")
            chosen = found[0]
    image = _apply_window(values, chosen)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        image = 255 - image
    return image


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def render_png(data_or_ds: Any, frame: int = 0, window: Window | str | tuple[float, float] | None = None) -> bytes:
    ds = data_or_ds if hasattr(data_or_ds, "PixelData") or hasattr(data_or_ds, "file_meta") else \
        read_dataset(data_or_ds)
    return png_bytes(render(ds, frame, window))


def projection(datasets: Sequence[Any], kind: str = "max", max_side: int = 512) -> np.ndarray:
    """A series in one image: every frame of every dataset reduced by its maximum ("max") or minimum ("min")
    along the slices (frames of the most common size only), windowed minimum to maximum, shrunk to
    ``max_side``. One frame in memory at a time besides the running result."""
    if kind not in ("max", "min"):
        raise FrameError(f"projection {kind!r}: max or min")
    shapes: Counter[tuple[int, int]] = Counter(
        (int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)) for ds in datasets)
    if not shapes:
        raise FrameError("no images in this series")
    shape = shapes.most_common(1)[0][0]
    result: np.ndarray | None = None
    inverted = False
    for ds in datasets:
        if (int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)) != shape:
            continue
        inverted = str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1"
        for i in range(frame_count(ds)):
            try:
                values = frame_array(ds, i)
            except FrameError:
                continue
            if values.ndim == 3:
                values = values.astype(np.float32).mean(axis=2)
            if result is None:
                result = values.astype(np.float32).copy()
            else:
                np.maximum(result, values, out=result) if kind == "max" else np.minimum(result, values, out=result)
    if result is None:
        raise FrameError("no frame of this series could be decoded")
    lo, hi = float(result.min()), float(result.max())
    image = _apply_window(result, Window("full", (lo + hi) / 2, max(hi - lo, 1.0)))
    if inverted:
        image = 255 - image
    from PIL import Image

    picture = Image.fromarray(image)
    picture.thumbnail((max_side, max_side), Image.Resampling.BOX)
    return np.asarray(picture)


def projection_png(datasets: Sequence[Any], kind: str = "max", max_side: int = 512) -> bytes:
    return png_bytes(projection(datasets, kind, max_side))
