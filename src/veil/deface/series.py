"""A series' files as one volume and back: classic series (one slice a file, in any file order) and enhanced
multi-frame objects, sorted along the slice normal, their geometry checked; the defaced voxels written back into
each data set (native pixels in place, compressed ones decoded and re-encoded losslessly) with the marking of
PS3.15 E.3.2: RecognizableVisualFeatures NO and code 113102."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from veil.core.plan import Inserted
from veil.deface.grid import Volume
from veil.deface.method import DefaceError

__all__ = ["CLEAN_VISUAL_FEATURES_CODE", "Assembled", "NotAVolume", "assemble", "background", "marking",
           "native_frames", "splice", "write_back"]

CLEAN_VISUAL_FEATURES_CODE = ("113102", "DCM", "Clean Recognizable Visual Features Option")
_NATIVE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"}
_LITTLE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}  # pixels as stored in the file, little endian
_CODES = 0x00120064  # DeidentificationMethodCodeSequence
_FEATURES = 0x00280302  # RecognizableVisualFeatures


def marking(insert: tuple[Inserted, ...]) -> tuple[Inserted, ...]:
    """A Plan's marking elements (:func:`veil.recipes.marking`) with those of a defaced series, as :func:`mark`
    gives a data set: RecognizableVisualFeatures NO and code 113102 after the profile's codes in
    DeidentificationMethodCodeSequence. The core writes them while it rewrites the header."""
    value, scheme, meaning = CLEAN_VISUAL_FEATURES_CODE
    item = ((0x00080100, "SH", value), (0x00080102, "SH", scheme), (0x00080104, "LO", meaning))
    out: list[Inserted] = []
    coded = False
    for tag, vr, content in insert:
        if tag == _FEATURES:
            continue
        if tag == _CODES and not isinstance(content, str):
            coded = True
            if not any(dict((t, v) for t, _, v in it).get(0x00080100) == value for it in content):
                content = (*content, item)
        out.append((tag, vr, content))
    if not coded:
        out.append((_CODES, "SQ", (item,)))
    out.append((_FEATURES, "CS", "NO"))
    return tuple(sorted(out, key=lambda e: e[0]))


class NotAVolume(ValueError):
    """Files that are not a volume the method can look at (too few slices, a single image): left as they are."""


@dataclass
class Assembled:
    """The volume and where each of its slices lives: ``placement[k]`` = (data set index, frame index)."""

    volume: Volume
    placement: list[tuple[int, int]]
    compressed: list[bool]
    lossy: list[str]  # the input's transfer syntax where its pixels had been through lossy compression, else ""


def _floats(value: Any, count: int, what: str) -> np.ndarray:
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        raise DefaceError(f"{what} is not a list of numbers") from None
    if out.shape != (count,) or not np.all(np.isfinite(out)):
        raise DefaceError(f"{what} does not hold {count} numbers")
    return out


def _groups(ds: Dataset, frame: int, name: str) -> Any:
    """The functional group ``name`` of an enhanced object's frame (per-frame first, then shared)."""
    for holder in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        groups = ds.get(holder)
        if not groups:
            continue
        item = groups[frame] if holder.startswith("PerFrame") and frame < len(groups) else groups[0]
        seq = item.get(name)
        if seq:
            return seq[0]
    return None


def _slices(datasets: Sequence[Dataset]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, int, int]]:
    """(position, orientation, pixel spacing, data set index, frame index) of every image."""
    out = []
    for i, ds in enumerate(datasets):
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if "PerFrameFunctionalGroupsSequence" in ds or frames > 1:
            for f in range(frames):
                position, orientation = _groups(ds, f, "PlanePositionSequence"), _groups(ds, f, "PlaneOrientationSequence")
                measures = _groups(ds, f, "PixelMeasuresSequence")
                if position is None or orientation is None or measures is None:
                    raise DefaceError("a frame has no plane position, orientation or pixel spacing")
                out.append((_floats(position.get("ImagePositionPatient"), 3, "ImagePositionPatient"),
                            _floats(orientation.get("ImageOrientationPatient"), 6, "ImageOrientationPatient"),
                            _floats(measures.get("PixelSpacing"), 2, "PixelSpacing"), i, f))
        else:
            if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds or "PixelSpacing" not in ds:
                raise NotAVolume("an image has no position, orientation or pixel spacing")
            out.append((_floats(ds.ImagePositionPatient, 3, "ImagePositionPatient"),
                        _floats(ds.ImageOrientationPatient, 6, "ImageOrientationPatient"),
                        _floats(ds.PixelSpacing, 2, "PixelSpacing"), i, 0))
    return out


def assemble(datasets: Sequence[Dataset], modality: str, min_slices: int = 20,
             frames: Sequence[np.ndarray] | None = None) -> Assembled:
    """The series as one volume, slices sorted along the normal of their orientation, pixels decoded.

    Raises :class:`NotAVolume` for files that are no volume (fewer than ``min_slices`` images or under 50 mm
    of extent, no geometry: left as they are) and :class:`DefaceError` for a volume that cannot be trusted
    (orientations or sizes that differ, slices at the same place, uneven spacing: a head series then goes to
    quarantine). ``frames``: each data set's pixels already read (:func:`native_frames`), else decoded here."""
    slices = _slices(datasets)
    if len(slices) < min_slices:
        raise NotAVolume(f"{len(slices)} images, fewer than {min_slices}")
    orientation = slices[0][1]
    if any(np.abs(s[1] - orientation).max() > 1e-3 for s in slices):
        raise DefaceError("the images of the series are not parallel (more than one orientation)")
    spacing = slices[0][2]
    if any(np.abs(s[2] - spacing).max() > 1e-3 for s in slices) or np.any(spacing <= 0):
        raise DefaceError("the images of the series differ in pixel spacing")
    shapes = {(int(datasets[s[3]].Rows), int(datasets[s[3]].Columns)) for s in slices}
    if len(shapes) != 1:
        raise DefaceError("the images of the series differ in size")
    if any(int(ds.get("SamplesPerPixel", 1) or 1) != 1 for ds in datasets):
        raise DefaceError("a colour image in a head series")
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    if not 0.99 < np.linalg.norm(normal) < 1.01:
        raise DefaceError("ImageOrientationPatient is not two unit vectors at right angles")
    order = sorted(range(len(slices)), key=lambda k: float(normal @ slices[k][0]))
    positions = np.array([slices[k][0] for k in order])
    along = positions @ normal
    steps = np.diff(along)
    if np.any(steps < 1e-3):
        raise DefaceError("two images of the series lie at the same position")
    extent = float(along[-1] - along[0])
    if extent < 50.0:
        raise NotAVolume(f"the images span {extent:.0f} mm, under 50")
    step = (positions[-1] - positions[0]) / (len(order) - 1)  # a gantry tilt shears: the real step, not the normal
    expected = positions[0] + np.arange(len(order))[:, None] * step
    if np.abs(positions - expected).max() > max(0.2, 0.1 * float(np.linalg.norm(step))):
        raise DefaceError("the slices are not evenly spaced (a gap, or uneven spacing)")
    affine = np.eye(4)
    affine[:3, 0] = step
    affine[:3, 1] = col_dir * spacing[0]
    affine[:3, 2] = row_dir * spacing[1]
    affine[:3, 3] = positions[0]
    from veil.pixels.codecs.base import was_lossy

    syntaxes = [UID(str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2"))) for ds in datasets]
    compressed = [str(syntax) not in _NATIVE for syntax in syntaxes]
    lossy = [str(syntax) if was_lossy(ds, syntax) else "" for ds, syntax in zip(datasets, syntaxes, strict=True)]
    arrays = list(frames) if frames is not None else [_pixels(ds, was) for ds, was in zip(datasets, compressed,
                                                                                              strict=True)]
    placement = [(slices[k][3], slices[k][4]) for k in order]
    data = np.stack([arrays[i][f] for i, f in placement])
    first = datasets[0]
    slope, intercept = _rescale(first)
    return Assembled(Volume(data, affine, modality, slope, intercept), placement, compressed, lossy)


def _rescale(ds: Dataset) -> tuple[float, float]:
    transform = _groups(ds, 0, "PixelValueTransformationSequence") if "SharedFunctionalGroupsSequence" in ds else None
    source = transform if transform is not None else ds
    try:
        return float(source.get("RescaleSlope", 1.0) or 1.0), float(source.get("RescaleIntercept", 0.0) or 0.0)
    except (TypeError, ValueError):
        raise DefaceError("RescaleSlope or RescaleIntercept is not a number") from None


def _pixels(ds: Dataset, compressed: bool) -> np.ndarray:
    """The data set's frames (frames, rows, columns) as stored; compressed pixels decoded in place first."""
    from veil.errors import MalformedDicom
    from veil.pixels.codecs.base import decode

    syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2")))
    if str(syntax) == "1.2.840.10008.1.2.2":
        raise DefaceError("pixels in the retired Explicit VR Big Endian transfer syntax")
    try:
        if compressed:
            decode(ds, syntax)
        array = ds.pixel_array
    except MalformedDicom as exc:
        raise DefaceError(exc.reason) from None
    except Exception as exc:
        raise DefaceError(f"the pixels cannot be decoded: {type(exc).__name__}") from None
    return array[None] if array.ndim == 2 else array


def background(datasets: Sequence[Dataset], volume: Volume) -> int:
    """The stored value removed voxels get: PixelPaddingValue, else air (-1000 HU) for CT, else the volume's
    lowest value."""
    padding = datasets[0].get("PixelPaddingValue")
    if isinstance(padding, int):
        return padding
    low = int(volume.data.min())
    if volume.modality == "CT" and volume.slope:
        air = int(round((-1000.0 - volume.intercept) / volume.slope))
        info = np.iinfo(volume.data.dtype) if volume.data.dtype.kind in "iu" else None
        if info is not None:
            air = max(int(info.min), min(int(info.max), air))
        return max(low, air) if air > low else low
    return low


def write_back(datasets: Sequence[Dataset], assembled: Assembled, values: np.ndarray, output: str) -> None:
    """The new voxels into each data set's Pixel Data (re-encoded with ``output`` where the input was
    compressed, lossy history kept), marked as PS3.15 E.3.2 asks."""
    from veil.errors import MalformedDicom
    from veil.pixels.codecs.base import encoder, mark_lossy

    frames: dict[int, dict[int, np.ndarray]] = {}
    for k, (i, f) in enumerate(assembled.placement):
        frames.setdefault(i, {})[f] = values[k]
    for i, ds in enumerate(datasets):
        count = int(ds.get("NumberOfFrames", 1) or 1)
        stack = np.stack([frames[i][f] for f in range(count)])
        dtype = assembled.volume.data.dtype.newbyteorder("<")
        ds.PixelData = stack.astype(dtype).tobytes()
        mark(ds)
        if assembled.lossy[i]:
            mark_lossy(ds, UID(assembled.lossy[i]))  # once lossy, always lossy
        if assembled.compressed[i]:
            try:
                encoder(output).encode(ds)
            except MalformedDicom as exc:
                raise DefaceError(exc.reason) from None


def mark(ds: Dataset) -> None:
    """RecognizableVisualFeatures NO and code 113102 in DeidentificationMethodCodeSequence (once)."""
    from veil.pixels.redact import add_method_code

    ds.RecognizableVisualFeatures = "NO"
    add_method_code(ds, CLEAN_VISUAL_FEATURES_CODE)


def native_frames(datasets: Sequence[Dataset], outputs: Sequence[bytes],
                  pixels_at: Sequence[tuple[int, int] | None]) -> list[np.ndarray] | None:
    """Each output's image read in place from its bytes (1, rows, columns), as the values its stored bits
    mean, where every file of the series is one uncompressed little-endian greyscale image whose Pixel Data
    lies at ``pixels_at`` (:meth:`veil.pipeline.Deidentifier.rewritten`); else None (the data sets' own
    decoding then, :func:`assemble`)."""
    out = []
    for ds, data, at in zip(datasets, outputs, pixels_at, strict=True):
        if at is None or str(ds.file_meta.get("TransferSyntaxUID", "")) not in _LITTLE:
            return None
        if "PerFrameFunctionalGroupsSequence" in ds or int(ds.get("NumberOfFrames", 1) or 1) != 1:
            return None
        try:
            rows, columns = int(ds.Rows), int(ds.Columns)
            allocated, stored = int(ds.BitsAllocated), int(ds.get("BitsStored", ds.BitsAllocated))
            signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
            samples = int(ds.get("SamplesPerPixel", 1) or 1)
        except (AttributeError, TypeError, ValueError):
            return None
        if samples != 1 or allocated not in (8, 16, 32) or not 0 < stored <= allocated:
            return None
        dtype = np.dtype(f"<{'i' if signed else 'u'}{allocated // 8}")
        if at[1] - at[0] < rows * columns * dtype.itemsize:
            return None
        raw = np.frombuffer(data, dtype, rows * columns, at[0]).reshape(1, rows, columns)
        if stored < allocated:  # the stored bits only, as a decoder reads them
            shift = allocated - stored
            raw = (raw << shift) >> shift if signed else raw & ((1 << stored) - 1)
        out.append(raw)
    return out


def splice(outputs: Sequence[bytes], pixels_at: Sequence[tuple[int, int] | None], assembled: Assembled,
           values: np.ndarray) -> list[bytes]:
    """The outputs with the defaced voxels written over their Pixel Data values in place (those of
    :func:`native_frames`; every voxel the method did not change keeps its stored bytes). Their headers are
    already marked: the core wrote :func:`marking`'s elements."""
    written = list(outputs)
    data = assembled.volume.data
    for k, (i, _) in enumerate(assembled.placement):
        at = pixels_at[i]
        assert at is not None
        start = at[0]
        size = values[k].size * values[k].itemsize
        changed = values[k] != data[k]
        if not changed.any():
            continue
        stored = np.frombuffer(outputs[i], values.dtype.newbyteorder("<"), values[k].size, start)
        new = np.where(changed.ravel(), values[k].ravel(), stored)
        written[i] = b"".join((outputs[i][:start], new.astype(stored.dtype).tobytes(), outputs[i][start + size:]))
    return written
