"""Pixel redaction: which images a recipe's pixel rules touch, and blanking their regions, batched.

Two paths. Native (uncompressed) pixel data is redacted on a numpy view of its bytes: every frame, 8/16/32 bits
allocated, either byte order, planar configuration 0 or 1, one or three samples, with no decode. Instances of
the same shape and rule are redacted together (:func:`redact_batch`): their pixel bytes are copied once into
one stacked array (the copy the output needs anyway: the input is a read-only map) and each region is one
assignment over all frames of all of them. Compressed pixel data takes the slow path (:func:`redact_file_bytes`):
pydicom decodes it, it is redacted, and re-encoded losslessly (RLE, JPEG-LS Lossless or JPEG 2000 Lossless, as
the recipe's ``pixels.output`` says) or written uncompressed.

A redacted output says so: BurnedInAnnotation NO (PS3.3 C.7.6.1.1.1: the image no longer holds burned-in
identifying text) and the Clean Pixel Data Option code (113101, PS3.16 CID 7050) among the de-identification
method codes (PS3.15 E.1.1).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID, JPEG2000Lossless, JPEGLSLossless, RLELossless

from veil.core.plan import Inserted, Plan
from veil.errors import MalformedDicom
from veil.recipes.recipe import PIXEL_MATCH_KEYS, PixelPolicy, PixelRule, load_pixel_rules, pixel_policy

__all__ = [
    "AT_RISK_MODALITIES",
    "CLEAN_PIXEL_DATA_CODE",
    "PixelDecision",
    "PixelLayout",
    "PixelPolicy",
    "PixelRule",
    "Redaction",
    "RedactionItem",
    "Region",
    "at_risk",
    "clean_pixel_plan",
    "decide",
    "frames_view",
    "load_pixel_rules",
    "match_rule",
    "pixel_policy",
    "redact_batch",
    "redact_file",
    "redact_file_bytes",
    "redact_native",
    "ultrasound_data_regions",
]

log = logging.getLogger(__name__)

Region = tuple[int, int, int, int]  # x, y, width, height (columns, rows)

# Modalities known to carry burned-in text (PS3.3 C.7.3.1.1.1 defined terms), the same set ``veil profile``
# reports (veil.profile.BURNED_IN_MODALITIES; a test keeps the two equal): ultrasound and intravascular
# ultrasound, secondary capture, X-ray angiography and radiofluoroscopy, endoscopy, external-camera, ophthalmic,
# intra-oral and general microscopy photography, whole slide microscopy (slide labels), panoramic X-ray,
# documents, diaphanography, other. With them the secondary capture classes of PS3.4 B.5
# (1.2.840.10008.5.1.4.1.1.7[.1-4]) and the visible light classes (endoscopic, microscopic, photographic images
# and video, 1.2.840.10008.5.1.4.1.1.77.1.*). Localisers (ImageType value 3 LOCALIZER, PS3.3 C.8.2.1.1.1) of
# any modality are at risk too: scanners annotate them with the patient's name, dates and planned slices.
AT_RISK_MODALITIES = frozenset(
    {"US", "IVUS", "SC", "XA", "RF", "ES", "OT", "XC", "GM", "OP", "DOC", "PX", "IO", "SM", "DG"}
)
_AT_RISK_SOP_PREFIXES = ("1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.77.1.")
CLEAN_PIXEL_DATA_CODE = ("113101", "DCM", "Clean Pixel Data Option")

_NATIVE_SYNTAXES = {
    "1.2.840.10008.1.2": False,  # implicit VR little endian
    "1.2.840.10008.1.2.1": False,  # explicit VR little endian
    "1.2.840.10008.1.2.1.99": False,  # deflated explicit VR little endian
    "1.2.840.10008.1.2.2": True,  # explicit VR big endian (retired)
}
# Lossy syntaxes, and the LossyImageCompressionMethod each implies (PS3.3 C.7.6.1.1.5.1).
_LOSSY_METHODS = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",
    "1.2.840.10008.1.2.4.203": "ISO_15444_15",
}


# Lossless encodings a redacted compressed input can be written in (recipe ``pixels.output``), with the pydicom
# encoding plugin for each: RLE by pydicom itself, JPEG-LS by pyjpegls (CharLS), JPEG 2000 by pylibjpeg-openjpeg.
_ENCODINGS: dict[str, tuple[UID, str]] = {
    "rle": (RLELossless, "pydicom"),
    "jpeg-ls": (JPEGLSLossless, "pyjpegls"),
    "jpeg2000": (JPEG2000Lossless, "pylibjpeg"),
}
OUTPUTS = ("rle", "jpeg-ls", "jpeg2000", "uncompressed")


# --- which images, which rule ---------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _matches(rule: PixelRule, info: Mapping[str, Any]) -> bool:
    for keyword, patterns in rule.match:
        value = _text(info.get(PIXEL_MATCH_KEYS[keyword])).upper()
        if not any(fnmatch.fnmatchcase(value, p.upper()) for p in patterns):
            return False
    return True


def match_rule(policy: PixelPolicy, info: Mapping[str, Any]) -> PixelRule | None:
    """The first rule whose match the header signature (``veil._core.peek``) satisfies, else None.

    With ``ultrasound_regions`` set on the policy, an ultrasound image no rule names gets the data-region rule.
    """
    for rule in policy.rules:
        if _matches(rule, info):
            return rule
    if policy.ultrasound_regions and _text(info.get("modality")).upper() == "US":
        return PixelRule((("Modality", ("US",)),), (), None, True, "ultrasound_regions", "pixels.ultrasound_regions")
    return None


def at_risk(info: Mapping[str, Any]) -> bool:
    """Whether an image may carry burned-in text: BurnedInAnnotation YES, or (unless it says NO) a modality or
    SOP class known for it (:data:`AT_RISK_MODALITIES`: ultrasound, secondary capture, angiography, endoscopy,
    photography, slide microscopy, documents, other) or a localiser. CT, MR, PET slices and the like are not: their scanners do not burn text into the image."""
    burned = _text(info.get("burned_in_annotation")).upper()
    if burned == "YES":
        return True
    if burned == "NO":
        return False
    modality = _text(info.get("modality")).upper()
    sop_class = _text(info.get("sop_class_uid"))
    image_type = [v.strip().upper() for v in _text(info.get("image_type")).split("\\")]
    return (
        modality in AT_RISK_MODALITIES
        or sop_class.startswith(_AT_RISK_SOP_PREFIXES)
        or "LOCALIZER" in image_type[2:3]
    )


@dataclass(frozen=True)
class PixelDecision:
    """What to do with one image's pixels: keep, redact (with ``rule``), or the at-risk action of the policy
    (detect, redact-all, quarantine, flag)."""

    action: str
    rule: PixelRule | None = None


def decide(policy: PixelPolicy, info: Mapping[str, Any]) -> PixelDecision:
    rule = match_rule(policy, info)
    if rule is not None:
        return PixelDecision("redact", rule)
    if at_risk(info):
        return PixelDecision(policy.at_risk)
    return PixelDecision("keep")


# --- layout and the native path -------------------------------------------------------------------------


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
        ds = _read_header(header, path)
        return cls.from_dataset(ds, _NATIVE_SYNTAXES.get(str(ds.file_meta.get("TransferSyntaxUID", "")), False))


def _read_header(header: bytes | memoryview, path: str = "") -> Dataset:
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


def _frame_index(frames: Sequence[int] | None, count: int) -> slice | list[int] | None:
    if frames is None:
        return slice(None)
    chosen = [f for f in frames if 0 <= f < count]  # a rule's frames beyond this image's count do not apply
    return chosen or None


def _assign(arr: np.ndarray, layout: PixelLayout, regions: Sequence[Region], frames: Sequence[int] | None,
            fill: int | tuple[int, ...], keep: Sequence[Region] | None) -> int:
    """Blanks regions (and, with ``keep``, everything outside it) in ``arr`` of shape (..., F, R, C, S)."""
    index = _frame_index(frames, layout.number_of_frames)
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
    ds = source if isinstance(source, Dataset) else _read_header(source, path)
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
    codes = ds.get("DeidentificationMethodCodeSequence", None)
    if codes is None:
        codes = DicomSequence()
        ds.DeidentificationMethodCodeSequence = codes
    if not any(str(getattr(c, "CodeValue", "")) == CLEAN_PIXEL_DATA_CODE[0] for c in codes):
        item = Dataset()
        item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = CLEAN_PIXEL_DATA_CODE
        codes.append(item)


# --- whole files (slow path: compressed syntaxes, or one file at a time) ---------------------------------


THUMBNAIL_SIZE = 128  # the longest side of an audit thumbnail, in pixels


@dataclass(frozen=True)
class Redaction:
    """A redacted output file and what was done to it, for the audit: the boxes blanked (frame, x, y, width,
    height; frame -1 is every frame), the data regions kept (ultrasound: everything outside them was
    blanked), and small thumbnails of the first redacted frame AFTER and BEFORE redaction (uint8, longest side
    :data:`THUMBNAIL_SIZE`). ``before`` carries the burned-in text: the audit stores it only sealed under a key
    derived from the project key (``veil.audit``), never in clear."""

    data: bytes
    boxes: tuple[tuple[int, int, int, int, int], ...]
    kept: tuple[Region, ...] = ()
    thumbnail: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)
    rows: int = 0
    columns: int = 0
    transfer_syntax: str = ""
    before: np.ndarray | None = dataclasses.field(default=None, repr=False, compare=False)


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
    that cannot write the result, raises MalformedDicom (the file is quarantined).
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
    if str(syntax) in _NATIVE_SYNTAXES:
        if str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
            _expand_ybr_full_422(ds, path)
        layout = _layout(ds, _NATIVE_SYNTAXES[str(syntax)], path)
        buffer = bytearray(ds.PixelData)
        photometric = str(ds.get("PhotometricInterpretation", ""))
        before = _thumbnail(buffer, layout, frames, photometric)  # the same frame, before blanking
        redact_native(buffer, layout, regions, frames, fill=_fill_for(ds, layout, fill), keep=keep)
        thumbnail = _thumbnail(buffer, layout, frames, photometric)
        ds.PixelData = bytes(buffer)
    else:
        layout, thumbnail, before = _redact_encapsulated(ds, syntax, regions, frames, fill, keep, output, path)
    _mark_clean(ds)
    out = io.BytesIO()
    try:
        ds.save_as(out, enforce_file_format=True)
    except Exception as exc:
        raise MalformedDicom(path, 0, f"cannot write the redacted file: {type(exc).__name__}: {exc}") from None
    chosen = _frame_index(frames, layout.number_of_frames)
    listed = (-1,) if isinstance(chosen, slice) else tuple(chosen or ())
    boxes = tuple((f, *region) for f in listed for region in regions)
    return Redaction(out.getvalue(), boxes, keep or (), thumbnail, layout.rows, layout.columns,
                     str(ds.file_meta.TransferSyntaxUID), before)


def _fill_for(ds: Dataset, layout: PixelLayout, fill: int) -> int | tuple[int, int, int]:
    """The fill as stored: in YBR colour (PS3.3 C.7.6.3.1.2) black is Y = fill with Cb = Cr at mid-range,
    not all three zero (which would paint the boxes green)."""
    if layout.samples_per_pixel == 3 and str(ds.get("PhotometricInterpretation", "")).strip().startswith("YBR"):
        mid = 1 << (int(ds.get("BitsStored", layout.bits_allocated) or layout.bits_allocated) - 1)
        return fill, mid, mid
    return fill


def _expand_ybr_full_422(ds: Dataset, path: str) -> None:
    """Native YBR_FULL_422 stores two luminance values and one Cb, Cr pair per two pixels (PS3.3
    C.7.6.3.1.2): no box can be blanked in place. Expanded to YBR_FULL, each pair's chroma repeated for both
    pixels: every sample value is kept exactly (no colour conversion), and the pixel module says so."""
    from pydicom.pixels import pixel_array

    try:
        expanded = pixel_array(ds, as_rgb=False)
    except Exception as exc:
        raise MalformedDicom(path, 0, f"cannot read YBR_FULL_422 pixel data: {type(exc).__name__}: {exc}") from None
    ds.PixelData = np.ascontiguousarray(expanded).tobytes()
    ds.PhotometricInterpretation = "YBR_FULL"
    ds.PlanarConfiguration = 0


def _thumbnail(buffer: Any, layout: PixelLayout, frames: Sequence[int] | None, photometric: str) -> np.ndarray:
    """The first redacted frame, grey, stretched to 8 bits and shrunk to :data:`THUMBNAIL_SIZE` at most."""
    from PIL import Image

    chosen = _frame_index(frames, layout.number_of_frames)
    first = 0 if isinstance(chosen, slice) or not chosen else chosen[0]
    frame = frames_view(buffer, layout)[first].astype(np.float32)
    # Luminance: the mean of R, G and B; Y alone for YBR (PS3.3 C.7.6.3.1.2); palette indices as they are.
    grey = frame[..., 0] if photometric.upper().startswith("YBR") else frame.mean(axis=2)
    lo, hi = float(grey.min()), float(grey.max())
    scaled = np.zeros(grey.shape, np.uint8) if hi <= lo else ((grey - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    image = Image.fromarray(scaled)
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.uint8)


def decoded_frames(data: bytes | memoryview, path: str = "") -> np.ndarray:
    """Every frame of a file's image, decoded by pydicom's handlers: (frames, rows, columns[, samples]) for
    OCR. Undecodable pixel data raises MalformedDicom (the file is quarantined)."""
    try:
        ds = pydicom.dcmread(io.BytesIO(bytes(data)), force=True)
        array = ds.pixel_array
    except Exception as exc:
        raise MalformedDicom(path, 0, f"pixel data cannot be decoded for text detection: {type(exc).__name__}") from None
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if frames == 1:
        array = array[None]
    if samples == 1 and array.ndim == 4:
        array = array[..., 0]
    return array


def _layout(ds: Dataset, big_endian: bool, path: str) -> PixelLayout:
    try:
        return PixelLayout.from_dataset(ds, big_endian)
    except ValueError as exc:
        raise MalformedDicom(path, 0, str(exc)) from None


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
    """Decodes, blanks and re-encodes; returns the layout and the after and before thumbnails."""
    lossy = str(syntax) in _LOSSY_METHODS or str(ds.get("LossyImageCompression", "")).strip() == "01"
    try:
        # Decodes every frame into native little endian, YBR converted to RGB; keeps the SOP Instance UID
        # (the de-identified one) and updates the pixel module and transfer syntax to match.
        ds.decompress(as_rgb=True, generate_instance_uid=False)
    except Exception as exc:  # a missing plugin or a corrupt codestream: either way no output
        raise MalformedDicom(path, 0, f"cannot decode {syntax.name or syntax}: {type(exc).__name__}: {exc}") from None
    layout = _layout(ds, False, path)
    buffer = bytearray(ds.PixelData)
    photometric = str(ds.get("PhotometricInterpretation", ""))
    before = _thumbnail(buffer, layout, frames, photometric)
    redact_native(buffer, layout, regions, frames, fill=fill, keep=keep)
    thumbnail = _thumbnail(buffer, layout, frames, photometric)
    ds.PixelData = bytes(buffer)
    if lossy:
        # Once lossy, always lossy (PS3.3 C.7.6.1.1.5): the history stays whatever the new encoding.
        ds.LossyImageCompression = "01"
        if "LossyImageCompressionMethod" not in ds and str(syntax) in _LOSSY_METHODS:
            ds.LossyImageCompressionMethod = _LOSSY_METHODS[str(syntax)]
    encoding = _ENCODINGS.get(output)
    if encoding is not None:
        target, plugin = encoding
        try:
            ds.compress(target, encoding_plugin=plugin, generate_instance_uid=False)
        except Exception as exc:
            raise MalformedDicom(path, 0, f"cannot encode {target.name}: {type(exc).__name__}: {exc}") from None
    log.debug("redacted %s pixel data, written as %s", syntax.name or syntax, ds.file_meta.TransferSyntaxUID.name)
    return layout, thumbnail, before
