"""Frames to PNG for the review UI: one frame decoded at a time with pydicom, the Modality LUT, a VOI window
(PS3.3 C.11.2.1.2.1), MONOCHROME1 shown inverted, colour converted to RGB; and a series projection (the maximum
or minimum along the slices) so a whole series is checked in one look. Images keep their size in image pixels, so
boxes drawn over them line up. Everything stays in memory; a file that cannot be shown raises :class:`FrameError`
(a ``VeilError``), whose message names what failed and never a value from the file."""

from __future__ import annotations

import io
import os
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from veil.errors import VeilError

__all__ = [
    "FrameError",
    "Window",
    "frame_array",
    "frame_count",
    "png_bytes",
    "projection",
    "projection_png",
    "read_dataset",
    "render",
    "render_png",
    "windows",
]

# Common CT presets (centre, width) in Hounsfield units.
_CT_PRESETS = (
    ("brain", 40.0, 80.0),
    ("soft tissue", 40.0, 400.0),
    ("lung", -600.0, 1500.0),
    ("bone", 400.0, 1800.0),
)
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Luma of ITU-R BT.601, the Y of YBR_FULL (PS3.3 C.7.6.3.1.2): a colour frame's grey for projections.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class FrameError(VeilError):
    """A frame that cannot be shown; the message says why, never a value from the file."""


@dataclass(frozen=True)
class Window:
    """A linear VOI window (PS3.3 C.11.2.1.2.1) offered to the reviewer under a name ("file", "full", ...)."""

    name: str
    center: float
    width: float


@contextmanager
def _failure(what: str) -> Iterator[None]:
    """Turn whatever pydicom or numpy raise on a damaged file into a FrameError naming the step and the type."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    except VeilError:
        raise
    except Exception as exc:  # pydicom raises many types for damaged files
        raise FrameError(f"{what}: {type(exc).__name__}") from None


def read_dataset(data: bytes | str | os.PathLike[str]) -> Dataset:
    """The dataset of a file given as bytes or a path; a FrameError when it cannot be read or has no pixels."""
    import pydicom

    with _failure("cannot read the file"):
        source: Any = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else Path(data)
        ds = pydicom.dcmread(source, force=True)
    _require_pixels(ds)
    return ds


def _require_pixels(ds: Dataset) -> None:
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        raise FrameError("no pixel data")


def frame_count(ds: Dataset) -> int:
    """Number of Frames, or 1 when it is absent or unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except Exception:
        return 1


def _text(ds: Dataset, keyword: str) -> str:
    with _failure(f"cannot read {keyword}"):
        return str(ds.get(keyword, "") or "").strip().upper()


def _number(ds: Dataset, keyword: str, default: int) -> int:
    with _failure(f"cannot read {keyword}"):
        return int(ds.get(keyword, default) or default)


def _colour(ds: Dataset) -> bool:
    return _number(ds, "SamplesPerPixel", 1) == 3 or _text(ds, "PhotometricInterpretation") == "PALETTE COLOR"


def _functional(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """The first item of a functional group macro for ``frame`` of an enhanced multi-frame image: per-frame
    first, then shared (PS3.3 C.7.6.16); None for a classic image."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        items = ds.get(groups)
        macro = items[index].get(sequence) if items is not None and len(items) > index else None
        if macro:
            first: Dataset = macro[0]
            return first
    return None


def frame_array(ds: Dataset, frame: int = 0) -> np.ndarray:
    """One frame: float32 after the Modality LUT for grey images; RGB uint8 ``[rows, columns, 3]`` for colour.

    Only the frame asked for is decoded (``index=``), so a long cine file is not decoded whole to show one."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut, pixel_array

    _require_pixels(ds)
    count = frame_count(ds)
    if not 0 <= frame < count:
        raise FrameError(f"frame {frame} out of range: the image has {count}")
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    with _failure(f"cannot decode the pixels ({getattr(syntax, 'name', 'unknown transfer syntax')})"):
        # as_rgb (pydicom's default, stated here on purpose): YBR_FULL and YBR_FULL_422 come back as RGB, native
        # or compressed, with the colour space the JPEG codestream itself declares; converting again would
        # garble the colours. YBR_ICT/YBR_RCT are undone by the JPEG 2000 decoder.
        arr = pixel_array(ds, index=frame, as_rgb=True)
    photometric = _text(ds, "PhotometricInterpretation")
    if photometric == "PALETTE COLOR":
        with _failure("cannot apply the palette"):
            rgb = apply_color_lut(arr, ds)
        # 16-bit palette entries span 0..65535 (PS3.3 C.7.6.3.1.5); some files keep 8-bit values in them.
        return (
            rgb.astype(np.uint8)
            if rgb.dtype == np.uint8 or int(rgb.max(initial=0)) <= 255
            else (rgb >> 8).astype(np.uint8)
        )
    if _number(ds, "SamplesPerPixel", 1) == 3:
        if arr.dtype == np.uint8:
            return arr
        top = float(2 ** _number(ds, "BitsStored", 8) - 1)
        return np.clip(arr.astype(np.float32) * (255.0 / top), 0, 255).astype(np.uint8)
    with _failure("cannot apply the modality LUT"):
        if "ModalityLUTSequence" in ds or "RescaleSlope" in ds or "RescaleIntercept" in ds:
            return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
        values = arr.astype(np.float32)
        rescale = _functional(ds, frame, "PixelValueTransformationSequence")
        if rescale is not None:  # an enhanced image keeps its rescale in the functional groups
            slope = float(rescale.get("RescaleSlope", 1) or 1)
            values = values * slope + float(rescale.get("RescaleIntercept", 0) or 0)
        return values


def _first(value: Any) -> float:
    """The first value of a possibly multi-valued DS (Window Center and Width may hold several)."""
    return float(value[0] if isinstance(value, Sequence) and not isinstance(value, str) else value)


def _full(name: str, lo: float, hi: float) -> Window:
    # Centre and width so that lo maps to black and hi to white exactly (the DICOM convention: c=2048, w=4096).
    return Window(name, (lo + hi + 1) / 2, max(hi - lo + 1, 1.0))


def windows(ds: Dataset, frame_values: np.ndarray | None = None) -> list[Window]:
    """The windows offered, the default first: the file's own, else "full" (minimum to maximum, so burned-in
    text at the maximum shows), then "auto" (0.5 to 99.5 percentile) and, for CT, the usual presets. Colour
    images have none (the window does not apply to them). ``frame_values`` (from :func:`frame_array`) saves
    decoding frame 0 again."""
    if _colour(ds):
        return []
    out: list[Window] = []
    try:  # an enhanced image keeps its window in the functional groups (frame 0's is offered)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            source = ds if "WindowCenter" in ds else _functional(ds, 0, "FrameVOILUTSequence")
            if source is not None:
                center, width = _first(source.get("WindowCenter")), _first(source.get("WindowWidth"))
                if width > 0 and np.isfinite(center) and np.isfinite(width):
                    out.append(Window("file", center, width))
    except Exception:  # an unreadable window in the file is not offered; the image still shows
        pass
    values = frame_array(ds, 0) if frame_values is None else frame_values
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if finite.size:
        out.append(_full("full", float(finite.min()), float(finite.max())))
        plo, phi = (float(v) for v in np.percentile(finite, [0.5, 99.5]))
        out.append(_full("auto", plo, phi))
    if _text(ds, "Modality") == "CT":
        out.extend(Window(name, center, width) for name, center, width in _CT_PRESETS)
    return out


def _apply_window(values: np.ndarray, window: Window) -> np.ndarray:
    """The linear VOI function of PS3.3 C.11.2.1.2.1, output 0..255."""
    c, w = window.center, window.width
    if w <= 1:  # the standard's width-1 case: a threshold at c - 0.5
        return np.where(values <= c - 0.5, 0, 255).astype(np.uint8)
    scaled = ((values - (c - 0.5)) / (w - 1) + 0.5) * 255.0
    return np.rint(np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255)).astype(np.uint8)


def _choose(ds: Dataset, values: np.ndarray, window: Window | str | tuple[float, float] | None) -> Window:
    if isinstance(window, Window):
        return window
    if isinstance(window, tuple):
        center, width = (float(v) for v in window)
        if not width > 0:
            raise FrameError("a window's width must be positive")
        return Window("custom", center, width)
    presets = windows(ds, values)
    if not presets:
        raise FrameError("no window can be made for this image")
    if not window:
        return presets[0]
    for preset in presets:
        if preset.name == window:
            return preset
    raise FrameError(f"unknown window {window!r}: {', '.join(p.name for p in presets)}")


def render(
    ds: Dataset, frame: int = 0, window: Window | str | tuple[float, float] | None = None
) -> np.ndarray:
    """An 8-bit display image of one frame: grey ``[rows, columns]`` or RGB ``[rows, columns, 3]``.

    ``window`` is a :class:`Window`, a preset's name from :func:`windows`, ``(center, width)``, or None for the
    default preset; colour images ignore it. MONOCHROME1 is inverted after the window (PS3.3 C.7.6.3.1.2)."""
    values = frame_array(ds, frame)
    if values.ndim == 3:
        return values
    image = _apply_window(values, _choose(ds, values, window))
    return 255 - image if _text(ds, "PhotometricInterpretation") == "MONOCHROME1" else image


def png_bytes(image: np.ndarray) -> bytes:
    """A PNG of an 8-bit grey or RGB image, compressed lightly: the review UI wants it fast, not small."""
    from PIL import Image

    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise FrameError("a PNG is made of an 8-bit grey or RGB image")
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(out, format="PNG", optimize=False, compress_level=1)
    return out.getvalue()


def render_png(
    data_or_ds: Dataset | bytes | str | os.PathLike[str],
    frame: int = 0,
    window: Window | str | tuple[float, float] | None = None,
) -> bytes:
    """:func:`render` as a PNG, from a dataset or from a file's bytes or path."""
    ds = data_or_ds if isinstance(data_or_ds, Dataset) else read_dataset(data_or_ds)
    return png_bytes(render(ds, frame, window))


def _shape(ds: Dataset) -> tuple[int, int]:
    return _number(ds, "Rows", 0), _number(ds, "Columns", 0)


def projection(datasets: Sequence[Dataset], kind: str = "max", max_side: int = 512) -> np.ndarray:
    """A series in one 8-bit grey image: every frame of every dataset reduced by its maximum ("max") or minimum
    ("min") along the slices, windowed minimum to maximum and shrunk so its longest side is ``max_side`` at most.

    Only frames of the most common size count (a scout of another size is skipped); frames that cannot be
    decoded are skipped too. One frame is held at a time besides the running result."""
    from PIL import Image

    if kind not in ("max", "min"):
        raise FrameError(f"projection {kind!r}: max or min")
    if max_side < 1:
        raise FrameError("max_side must be at least 1")
    reduce = np.maximum if kind == "max" else np.minimum
    usable: list[Dataset] = []
    for ds in datasets:
        try:
            _require_pixels(ds)
            _shape(ds)
        except FrameError:
            continue
        usable.append(ds)
    shapes: Counter[tuple[int, int]] = Counter()
    for ds in usable:
        shapes[_shape(ds)] += frame_count(ds)
    if not shapes:
        raise FrameError("no images in this series")
    shape = shapes.most_common(1)[0][0]
    result: np.ndarray | None = None
    inverted: bool | None = None
    for ds in usable:
        if _shape(ds) != shape:
            continue
        for index in range(frame_count(ds)):
            try:
                values = frame_array(ds, index)
            except FrameError:
                continue
            if values.ndim == 3:
                values = values.astype(np.float32) @ _LUMA
            if values.shape != shape:
                continue
            if result is None:
                result = np.array(values, dtype=np.float32)
            else:
                reduce(result, values, out=result)
            if inverted is None:
                inverted = _text(ds, "PhotometricInterpretation") == "MONOCHROME1"
    if result is None:
        raise FrameError("no frame of this series could be decoded")
    finite = result[np.isfinite(result)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    image = _apply_window(result, _full("full", lo, hi))
    picture = Image.fromarray(255 - image if inverted else image)
    picture.thumbnail((max_side, max_side), Image.Resampling.BOX)
    return np.asarray(picture, dtype=np.uint8)


def projection_png(datasets: Sequence[Dataset], kind: str = "max", max_side: int = 512) -> bytes:
    """:func:`projection` as a PNG."""
    return png_bytes(projection(datasets, kind, max_side))
