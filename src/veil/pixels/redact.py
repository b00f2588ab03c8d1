"""Pixel redaction: blanking regions of native pixel data, batched, and of whole files, marked clean.

Native (uncompressed) pixel data is redacted on a numpy view of its bytes: every frame, 8/16/32 bits
allocated, either byte order, planar configuration 0 or 1, one or three samples, with no decode. Instances of
the same shape and rule are redacted together (:func:`redact_batch`): their pixel bytes are copied once into
one stacked array (the copy the output needs anyway: the input is a read-only map) and each region is one
assignment over all frames of all of them. Compressed pixel data takes the slow path (:func:`redact_file`):
it is decoded, redacted, and re-encoded losslessly by the backend of the recipe's ``pixels.output``
(:mod:`veil.pixels.codecs`: RLE, JPEG-LS Lossless, JPEG 2000 Lossless) or written uncompressed.

A redacted output says so: BurnedInAnnotation NO (PS3.3 C.7.6.1.1.1: the image no longer holds burned-in
identifying text) and the Clean Pixel Data Option code (113101, PS3.16 CID 7050) among the de-identification
method codes (PS3.15 E.1.1).
"""

from __future__ import annotations

import dataclasses
import io
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID

from veil.core.plan import Inserted, Plan
from veil.errors import MalformedDicom
from veil.pixels.codecs.base import OUTPUTS, decode, encoder, mark_lossy, was_lossy
from veil.pixels.codecs.native import NATIVE_SYNTAXES, expand_ybr_full_422
from veil.pixels.layout import PixelLayout, Region, frame_index, frames_view, read_header
from veil.pixels.thumbnails import thumbnail
from veil.recipes import PixelRule

__all__ = [
    "CLEAN_PIXEL_DATA_CODE",
    "Redaction",
    "RedactionItem",
    "Region",
    "clean_pixel_plan",
    "redact_batch",
    "redact_file",
    "redact_file_bytes",
    "redact_native",
    "ultrasound_data_regions",
]

log = logging.getLogger(__name__)

CLEAN_PIXEL_DATA_CODE = ("113101", "DCM", "Clean Pixel Data Option")


# --- the native path ------------------------------------------------------------------------------------


def _clip(regions: Iterable[Region], rows: int, columns: int) -> list[tuple[slice, slice]]:
    out = []
    for x, y, w, h in regions:
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, columns), min(y + h, rows)
        if x0 < x1 and y0 < y1:
            out.append((slice(y0, y1), slice(x0, x1)))
    return out


def _keep_mask(keep: Iterable[Region], rows: int, columns: int) -> np.ndarray:
    """True where a pixel is blanked: outside every kept region."""
    blank = np.ones((rows, columns), dtype=bool)
    for ys, xs in _clip(keep, rows, columns):
        blank[ys, xs] = False
    return blank


def _assign(arr: np.ndarray, layout: PixelLayout, regions: Sequence[Region], frames: Sequence[int] | None,
            fill: int | tuple[int, ...], keep: Sequence[Region] | None) -> int:
    """Blanks regions (and, with ``keep``, everything outside it) in ``arr`` of shape (..., F, R, C, S)."""
    index = frame_index(frames, layout.number_of_frames)
    if index is None:
        return 0
    written = 0
    if keep is not None:
        blank = _keep_mask(keep, layout.rows, layout.columns)
        for ys, xs in _clip(regions, layout.rows, layout.columns):
            blank[ys, xs] = True
        target = arr[..., index, :, :, :]
        # One boolean assignment over every frame (and instance) of the array.
        if isinstance(index, list):
            target[..., blank, :] = fill
            arr[..., index, :, :, :] = target
        else:
            target[..., blank, :] = fill
        return int(blank.sum())
    for ys, xs in _clip(regions, layout.rows, layout.columns):
        arr[..., index, ys, xs, :] = fill
        written += (ys.stop - ys.start) * (xs.stop - xs.start)
    return written


def redact_native(
    buffer: bytearray | memoryview | np.ndarray,
    layout: PixelLayout,
    regions: Sequence[Region],
    frames: Sequence[int] | None = None,
    *,
    fill: int | tuple[int, ...] = 0,
    keep: Sequence[Region] | None = None,
) -> int:
    """Blanks ``regions`` (x, y, width, height) of the listed frames (None: all) in a writable buffer of native
    pixel data, in place; with ``keep``, every pixel outside those regions too. Returns pixels blanked per frame."""
    arr = frames_view(buffer, layout)
    if not arr.flags.writeable:
        raise ValueError("redact_native needs a writable buffer (a bytearray); copy read-only pixel data first")
    return _assign(arr, layout, regions, frames, fill, keep)


@dataclass(frozen=True)
class RedactionItem:
    """One instance's native pixel bytes (read-only is fine) and what to blank in them."""

    pixels: Any  # bytes, bytearray, memoryview (the rewrite's slice of the mapped input)
    layout: PixelLayout
    regions: tuple[Region, ...]
    frames: tuple[int, ...] | None = None
    fill: int = 0
    keep: tuple[Region, ...] | None = None  # ultrasound data regions: blank everything else


def redact_batch(items: Sequence[RedactionItem]) -> list[memoryview]:
    """The redacted pixel bytes of each item, in order. Items of the same shape and rule are copied into one
    stacked array and each region is blanked there with one assignment over all their frames."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, item in enumerate(items):
        key = (item.layout, len(memoryview(item.pixels)), item.regions, item.frames, item.fill, item.keep)
        groups.setdefault(key, []).append(i)
    out: list[memoryview | None] = [None] * len(items)
    for (layout, length, regions, frames, fill, keep), members in groups.items():
        if length < layout.total_bytes:
            raise MalformedDicom("", 0, f"pixel data holds {length} bytes, the pixel module needs {layout.total_bytes}")
        # The one copy: each instance's bytes into its row of the stack (padding byte included).
        stack = np.empty((len(members), length), dtype=np.uint8)
        for row, i in enumerate(members):
            stack[row] = np.frombuffer(items[i].pixels, dtype=np.uint8)
        typed = stack[:, : layout.total_bytes].view(layout.dtype)
        f, r, c, s = layout.number_of_frames, layout.rows, layout.columns, layout.samples_per_pixel
        if s > 1 and layout.planar_configuration == 1:
            arr = typed.reshape(len(members), f, s, r, c).transpose(0, 1, 3, 4, 2)
        else:
            arr = typed.reshape(len(members), f, r, c, s)
        assert np.shares_memory(arr, stack)
        _assign(arr, layout, regions, frames, fill, keep)
        for row, i in enumerate(members):
            out[i] = memoryview(stack[row]).cast("B")
    return [m for m in out if m is not None]


# --- ultrasound regions ---------------------------------------------------------------------------------


def ultrasound_data_regions(source: bytes | memoryview | Dataset, path: str = "") -> tuple[Region, ...]:
    """The regions of the Sequence of Ultrasound Regions (PS3.3 C.8.5.5) as (x, y, width, height); the bounds
    RegionLocationMinX0..MaxX1 and MinY0..MaxY1 are inclusive pixel positions."""
    ds = source if isinstance(source, Dataset) else read_header(source, path)
    out: list[Region] = []
    for item in ds.get("SequenceOfUltrasoundRegions", None) or ():
        try:
            x0, y0 = int(item.RegionLocationMinX0), int(item.RegionLocationMinY0)
            x1, y1 = int(item.RegionLocationMaxX1), int(item.RegionLocationMaxY1)
        except (AttributeError, TypeError, ValueError):
            raise MalformedDicom(path, 0, "an ultrasound region without its location") from None
        if x1 >= x0 and y1 >= y0:
            out.append((x0, y0, x1 - x0 + 1, y1 - y0 + 1))
    return tuple(out)


# --- marking --------------------------------------------------------------------------------------------


def clean_pixel_plan(plan: Plan) -> Plan:
    """The plan for files whose pixels are redacted on the native path: the same rules, and the output marked
    BurnedInAnnotation NO with the Clean Pixel Data code added to DeidentificationMethodCodeSequence."""
    code = ((0x00080100, "SH", CLEAN_PIXEL_DATA_CODE[0]), (0x00080102, "SH", CLEAN_PIXEL_DATA_CODE[1]),
            (0x00080104, "LO", CLEAN_PIXEL_DATA_CODE[2]))
    inserted: list[Inserted] = []
    have_codes = False
    for tag, vr, value in plan.insert:
        if tag == 0x00120064 and isinstance(value, tuple):
            have_codes = True
            if code not in value:
                value = (*value, code)
        if tag != 0x00280301:
            inserted.append((tag, vr, value))
    if not have_codes:
        inserted.append((0x00120064, "SQ", (code,)))
    inserted.append((0x00280301, "CS", "NO"))
    inserted.sort(key=lambda e: e[0])
    return dataclasses.replace(plan, insert=tuple(inserted))


def _mark_clean(ds: Dataset) -> None:
    ds.BurnedInAnnotation = "NO"
    add_method_code(ds, CLEAN_PIXEL_DATA_CODE)


def add_method_code(ds: Dataset, code: tuple[str, str, str]) -> None:
    """``code`` (value, scheme, meaning) added to DeidentificationMethodCodeSequence, once."""
    codes = ds.get("DeidentificationMethodCodeSequence", None)
    if codes is None:
        codes = DicomSequence()
        ds.DeidentificationMethodCodeSequence = codes
    if not any(str(getattr(c, "CodeValue", "")) == code[0] for c in codes):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code
        codes.append(item)


# --- whole files (slow path: compressed syntaxes, or one file at a time) ---------------------------------


@dataclass(frozen=True)
class Redaction:
    """A redacted output file and what was done to it, for the audit: the boxes blanked (frame, x, y, width,
    height; frame -1 is every frame), the data regions kept (ultrasound: everything outside them was
    blanked), and small thumbnails of the first redacted frame AFTER and BEFORE redaction (uint8, longest side
    :data:`~veil.pixels.thumbnails.THUMBNAIL_SIZE`). ``before`` carries the burned-in text: the audit stores it
    only sealed under a key derived from the project key (``veil.audit``), never in clear. ``source`` says what
    found the boxes: ``"pixel rule NAME"``, ``"ultrasound regions"``, ``"detector"``, ``"series"`` (a region
    found on an earlier image of the series), ``"redact-all"``, joined by ``" + "``."""

    data: bytes
    boxes: tuple[tuple[int, int, int, int, int], ...]
    kept: tuple[Region, ...] = ()
    thumbnail: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    rows: int = 0
    columns: int = 0
    transfer_syntax: str = ""
    before: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    source: str = ""


def redact_file_bytes(
    data: bytes | memoryview,
    regions: Sequence[Region] = (),
    frames: Sequence[int] | None = None,
    *,
    rule: PixelRule | None = None,
    fill: int = 0,
    ultrasound_regions: bool = False,
    output: str = "rle",
    path: str = "",
) -> bytes:
    """A complete output file with the regions blanked, from a (de-identified) file's bytes; see
    :func:`redact_file` (which also says what was blanked, for the audit)."""
    return redact_file(data, regions, frames, rule=rule, fill=fill, ultrasound_regions=ultrasound_regions,
                       output=output, path=path).data


def redact_file(
    data: bytes | memoryview,
    regions: Sequence[Region] = (),
    frames: Sequence[int] | None = None,
    *,
    rule: PixelRule | None = None,
    fill: int = 0,
    ultrasound_regions: bool = False,
    output: str = "rle",
    path: str = "",
) -> Redaction:
    """The regions blanked in a (de-identified) file's bytes: the complete output file and the record of it.

    ``rule`` supplies regions, frames and ultrasound_regions in place of the arguments. Native pixel data keeps
    its transfer syntax; compressed pixel data is decoded with pydicom's handlers and written as RLE Lossless
    (``output="rle"``), JPEG-LS Lossless (``"jpeg-ls"``), JPEG 2000 Lossless (``"jpeg2000"``) or explicit VR
    little endian (``"uncompressed"``), colour converted to RGB where the decoder does (YBR_FULL_422 JPEG),
    with LossyImageCompression kept "01" when the input had been lossy. Undecodable pixel data, or an encoder
    that cannot write the result (its library not installed included), raises MalformedDicom (the file is
    quarantined).
    """
    if rule is not None:
        regions, frames, ultrasound_regions = rule.regions, rule.frames, rule.ultrasound_regions
    if output not in OUTPUTS:
        raise ValueError(f"output {output!r}: one of {', '.join(OUTPUTS)}")
    try:
        ds = pydicom.dcmread(io.BytesIO(bytes(data)), force=True)
    except Exception as exc:
        raise MalformedDicom(path, 0, f"unreadable for pixel redaction: {type(exc).__name__}") from None
    if "PixelData" not in ds:
        raise MalformedDicom(path, 0, "no Pixel Data to redact")
    syntax = UID(str(ds.file_meta.get("TransferSyntaxUID", "1.2.840.10008.1.2")))
    keep: tuple[Region, ...] | None = None
    if ultrasound_regions:
        keep = ultrasound_data_regions(ds, path)
        if not keep:
            # Fail closed: no data regions described, so nothing says where the burned-in text is not.
            raise MalformedDicom(path, 0, "ultrasound_regions: no Sequence of Ultrasound Regions")
    if str(syntax) in NATIVE_SYNTAXES:
        if str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
            expand_ybr_full_422(ds, path)
        layout = _layout(ds, NATIVE_SYNTAXES[str(syntax)], path)
        buffer = bytearray(ds.PixelData)
        photometric = str(ds.get("PhotometricInterpretation", ""))
        before = thumbnail(buffer, layout, frames, photometric)  # the same frame, before blanking
        redact_native(buffer, layout, regions, frames, fill=_fill_for(ds, layout, fill), keep=keep)
        after = thumbnail(buffer, layout, frames, photometric)
        ds.PixelData = bytes(buffer)
    else:
        layout, after, before = _redact_encapsulated(ds, syntax, regions, frames, fill, keep, output, path)
    _mark_clean(ds)
    out = io.BytesIO()
    try:
        ds.save_as(out, enforce_file_format=True)
    except Exception as exc:
        raise MalformedDicom(path, 0, f"cannot write the redacted file: {type(exc).__name__}: {exc}") from None
    chosen = frame_index(frames, layout.number_of_frames)
    listed = (-1,) if isinstance(chosen, slice) else tuple(chosen or ())
    boxes = tuple((f, *region) for f in listed for region in regions)
    return Redaction(out.getvalue(), boxes, keep or (), after, layout.rows, layout.columns,
                     str(ds.file_meta.TransferSyntaxUID), before)


def _fill_for(ds: Dataset, layout: PixelLayout, fill: int) -> int | tuple[int, int, int]:
    """The fill as stored: in YBR colour (PS3.3 C.7.6.3.1.2) black is Y = fill with Cb = Cr at mid-range,
    not all three zero (which would paint the boxes green)."""
    if layout.samples_per_pixel == 3 and str(ds.get("PhotometricInterpretation", "")).strip().startswith("YBR"):
        mid = 1 << (int(ds.get("BitsStored", layout.bits_allocated) or layout.bits_allocated) - 1)
        return fill, mid, mid
    return fill


def _layout(ds: Dataset, big_endian: bool, path: str) -> PixelLayout:
    try:
        layout = PixelLayout.from_dataset(ds, big_endian)
    except ValueError as exc:
        raise MalformedDicom(path, 0, str(exc)) from None
    element = ds["PixelData"] if "PixelData" in ds else None
    if big_endian and layout.bits_allocated == 8 and element is not None and element.VR == "OW":
        # Explicit VR Big Endian is retired (PS3.5 A.3); 8-bit samples in an OW value are byte-swapped in pairs
        # there, which the in-place blanking does not undo (a public palette file came out wrong): fail
        # closed, blank nothing.
        raise MalformedDicom(path, 0, "pixels to redact are in the retired Explicit VR Big Endian transfer "
                                      "syntax, whose pixel byte order cannot be relied on")
    return layout


def _redact_encapsulated(
    ds: Dataset,
    syntax: UID,
    regions: Sequence[Region],
    frames: Sequence[int] | None,
    fill: int,
    keep: tuple[Region, ...] | None,
    output: str,
    path: str,
) -> tuple[PixelLayout, np.ndarray, np.ndarray]:
    """Decodes, blanks and re-encodes with the ``output`` backend; returns the layout and the after and before
    thumbnails."""
    lossy = was_lossy(ds, syntax)
    decode(ds, syntax, path)
    layout = _layout(ds, False, path)
    buffer = bytearray(ds.PixelData)
    photometric = str(ds.get("PhotometricInterpretation", ""))
    before = thumbnail(buffer, layout, frames, photometric)
    redact_native(buffer, layout, regions, frames, fill=fill, keep=keep)
    after = thumbnail(buffer, layout, frames, photometric)
    ds.PixelData = bytes(buffer)
    if lossy:
        mark_lossy(ds, syntax)
    encoder(output).encode(ds, path)
    log.debug("redacted %s pixel data, written as %s", syntax.name or syntax, ds.file_meta.TransferSyntaxUID.name)
    return layout, after, before
