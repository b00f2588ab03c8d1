"""The burned-in text check of one image (PS3.15 E.3.1, Clean Pixel Data Option), as ``veil run`` does it:

1. header triage (:func:`veil.pixels.policy.decide`): a pixel rule, or at risk (ultrasound, secondary capture,
   angiography, photographs, localisers, BurnedInAnnotation YES: straight to the detector), or pre-filtered
   (every other image of a modality that can carry text: CR, DX, MG, CT, MR, PT, NM, ...), or kept;
2. the pre-filter (:func:`veil.pixels.textdetect.prefilter`, a few ms) on every frame of a pre-filtered image;
   a frame where it may see text makes the image at risk;
3. the text detector (:func:`~veil.pixels.textdetect.detect`) on each distinct frame at risk, downscaled;
   the text found inside the data regions of an ultrasound data-region rule too (all outside them is blanked);
4. the recognizer on the boxes only (:func:`~veil.pixels.textdetect.recognize`), for the decision: with
   ``text: all`` a box is kept only when all of its text is a safe annotation of the modality
   (:func:`veil.pixels.policy.is_safe_text`; unreadable text is blanked); with ``text: identifiers`` a box is
   blanked when its text matches the file's identifying values or an identifier pattern (veil.pixels.ocr);
5. the redaction (:func:`veil.pixels.redact.redact_file`) of the union of the boxes on every frame.

An image with nothing to blank is left as the rewrite wrote it: pixels bit-identical, never decoded and
re-encoded. Where detection is needed and cannot run (onnxruntime or the model files missing), or the pixels
cannot be decoded, the file is quarantined (MalformedDicom): fail closed.

Series: every slice is pre-filtered, and a region blanked on one image is blanked on the later images of the
same series with the same rows and columns that this worker processes (:class:`SeriesRegions`, per
Deidentifier, bounded). Slices written before the region was found are not revisited: each was itself
pre-filtered and, where flagged, detected, so what they showed was judged on its own pixels.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import math
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from veil.errors import MalformedDicom
from veil.pixels.codecs.native import NATIVE_SYNTAXES
from veil.pixels.layout import PixelLayout, Region, frames_view, pixel_attributes
from veil.pixels.policy import decide, is_safe_text, triage
from veil.pixels.redact import Redaction, redact_file, ultrasound_data_regions
from veil.recipes import PixelPolicy

__all__ = ["IDENTIFYING_PEEK_VALUES", "SeriesRegions", "check_image", "gray_frames"]

log = logging.getLogger(__name__)

# The peek values whose words ``text: identifiers`` blanks where the recognizer reads them.
IDENTIFYING_PEEK_VALUES = (
    "patient_name", "patient_id", "patient_birth_date", "patient_address", "patient_telephone_numbers",
    "accession_number", "institution_name", "referring_physician_name", "station_name",
    "performing_physician_name", "operators_name", "other_patient_ids", "study_id",
)
_DEFLATED = "1.2.840.10008.1.2.1.99"
_DETECT_SIDE = 960  # the detector's longer side; margins grow with the downscale


class SeriesRegions:
    """Regions blanked per (SeriesInstanceUID, rows, columns), most recent series kept: a bounded per-worker
    memory, so a label found on one slice is blanked on the later slices of the series."""

    def __init__(self, series: int = 512, regions: int = 256) -> None:
        self._series, self._regions = series, regions
        self._found: OrderedDict[tuple[str, int, int], tuple[Region, ...]] = OrderedDict()

    def get(self, key: tuple[str, int, int] | None) -> tuple[Region, ...]:
        if key is None or key not in self._found:
            return ()
        self._found.move_to_end(key)
        return self._found[key]

    def add(self, key: tuple[str, int, int] | None, regions: Iterable[Region]) -> None:
        if key is None:
            return
        merged = tuple(sorted(set(self._found.get(key, ())) | set(regions)))[: self._regions]
        self._found[key] = merged
        self._found.move_to_end(key)
        while len(self._found) > self._series:
            self._found.popitem(last=False)


# --- frames as grey 2-D arrays -----------------------------------------------------------------------------


def _native_gray(ds: Any, pixels: Any, big_endian: bool) -> np.ndarray | None:
    """(frames, rows, columns) grey values of native pixel data, copied out of ``pixels``; None where the
    layout needs pydicom (YBR_FULL_422, palette colour, odd bit depths)."""
    # Without PhotometricInterpretation (retired ACR-NEMA files) one sample a pixel is grey all the same.
    default = "MONOCHROME2" if int(ds.get("SamplesPerPixel", 1) or 1) == 1 else ""
    photometric = str(ds.get("PhotometricInterpretation", "") or default).strip().upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL"):
        return None
    try:
        layout = PixelLayout.from_dataset(ds, big_endian)
    except (MalformedDicom, ValueError):
        return None
    if len(pixels) < layout.total_bytes:
        return None  # short pixel data: pydicom's decoding says why
    view = frames_view(pixels, layout)
    if layout.samples_per_pixel == 3:
        # Luminance: the mean of R, G and B; Y alone for YBR (PS3.3 C.7.6.3.1.2).
        gray = view[..., 0].astype(np.float32) if photometric == "YBR_FULL" else view.mean(axis=3, dtype=np.float32)
        del view
        return gray
    stored = np.array(view[..., 0], dtype=layout.dtype.newbyteorder("="))
    del view
    bits = int(ds.get("BitsStored", layout.bits_allocated) or layout.bits_allocated)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    if bits < layout.bits_allocated:
        stored &= (1 << bits) - 1  # overlay planes or garbage in the high bits are not the image
    if signed:
        values = stored.astype(np.int64)
        values[values >= 1 << (bits - 1)] -= 1 << bits
        return values.astype(np.int32)
    return stored


def _decoded_gray(data: bytes, path: str) -> np.ndarray | None:
    """(frames, rows, columns) grey values decoded by pydicom (its handlers: RLE, JPEG, JPEG-LS, JPEG 2000,
    deflate), colour as the mean of R, G and B, palette colour through its lookup table; None without Pixel
    Data."""
    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        if "PixelData" not in ds:
            return None
        array = ds.pixel_array
        photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
        if photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            array = apply_color_lut(array, ds)
    except Exception as exc:
        reason = f"burned-in text check: pixel data cannot be decoded: {type(exc).__name__}"
        raise MalformedDicom(path, 0, reason) from None
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    colour = array.ndim == (4 if frames > 1 else 3)
    if frames == 1:
        array = array[None]
    return array.mean(axis=3, dtype=np.float32) if colour else array


def gray_frames(result: Any, data: Any, path: str = "") -> np.ndarray | None:
    """Every frame of a rewritten file's image as grey values (frames, rows, columns), any dtype: native pixel
    data read in place (no decode; signed and partial bit depths as stored), anything else decoded; None when
    the file has no Pixel Data (rows and columns, but no image: a character set sample)."""
    syntax = str(result.transfer_syntax)
    if result.pixels is None and result.pixel_range is None and syntax != _DEFLATED:
        return None
    if syntax in NATIVE_SYNTAXES and syntax != _DEFLATED:
        pixels = result.pixels
        if pixels is None and result.pixel_range is not None:
            start, stop = result.pixel_range
            pixels = bytes(data[start:stop])
        if pixels is not None:
            # Views of a mapped input must be gone before an error leaves: the caller closes the map, which
            # fails while a traceback still holds one. So only the reason leaves the except clause.
            failure = ""
            try:
                gray = _native_gray(pixel_attributes(result.header, path), pixels, NATIVE_SYNTAXES[syntax])
            except Exception as exc:
                failure = f"burned-in text check: {getattr(exc, 'reason', None) or type(exc).__name__}"
            if failure:
                raise MalformedDicom(path, 0, failure)
            if gray is not None:
                return gray
    return _decoded_gray(result.tobytes(), path)


# --- detection and the decision per box --------------------------------------------------------------------


def _textdetect(path: str) -> Any:
    """The detector module, or MalformedDicom (quarantine) where it cannot run here."""
    try:
        from veil.pixels import textdetect
    except ImportError as exc:  # numpy or scipy missing: nothing can look at the pixels
        raise MalformedDicom(path, 0, f"burned-in text check cannot run: {exc}") from None
    reason = textdetect.unavailable_reason()
    if reason is not None:
        raise MalformedDicom(path, 0, f"pixels need the burned-in text detector, which cannot run: {reason}")
    return textdetect


def _distinct(frames: np.ndarray, indices: Iterable[int]) -> list[int]:
    """The first of each set of identical frames among ``indices`` (a cine loop's static overlay, a repeated
    secondary capture are read once)."""
    indices = list(indices)
    if len(indices) <= 1:
        return indices
    seen: set[bytes] = set()
    out = []
    for i in indices:
        digest = hashlib.blake2b(np.ascontiguousarray(frames[i]).tobytes(), digest_size=16).digest()
        if digest not in seen:
            seen.add(digest)
            out.append(i)
    return out


def _read_text(detector: Any, frame: np.ndarray, areas: Sequence[Region] | None) -> list[tuple[Region, str]]:
    """Each text box of a frame with the recognizer's reading of it; with ``areas`` (data regions, all else
    blanked anyway) only the boxes that reach into one of them. The whole frame is read either way: a line
    of text across a region's border is found whole, not as the sliver inside."""
    rows, columns = frame.shape
    # A border of the frame's darkest value: the detector misses text that touches the edge of its input
    # (a label in the corner of a film), and finds it once there is ground around it.
    pad = max(16, -(-16 * max(rows, columns) // _DETECT_SIDE))
    padded = np.pad(frame, pad, mode="constant", constant_values=frame.min())
    boxes = [
        detector.TextBox(max(b.x0 - pad, 0), max(b.y0 - pad, 0), min(b.x1 - pad, columns), min(b.y1 - pad, rows), b.score)
        for b in detector.detect(padded, max_side=_detect_side(padded.shape))
    ]
    boxes = [b for b in boxes if b.x1 > b.x0 and b.y1 > b.y0]
    if areas is not None:
        boxes = [b for b in boxes if any(b.x0 < x + w and x < b.x1 and b.y0 < y + h and y < b.y1
                                         for x, y, w, h in areas)]
    texts = detector.recognize(frame, boxes) if boxes else []
    out: list[tuple[Region, str]] = []
    for b, text in zip(boxes, texts, strict=True):
        box = (b.x0, b.y0, b.x1 - b.x0, b.y1 - b.y0)
        if _plausible(box, text, rows, columns):
            out.append((box, text))
    return out


def _detect_side(shape: tuple[int, ...]) -> int:
    """The detector's longer side: :data:`_DETECT_SIDE`, or twice the image's for a small image (a 64-pixel
    MR slice enlarged fifteen times shows the network shapes that are not there)."""
    return max(32, min(_DETECT_SIDE, -(-2 * max(shape) // 32) * 32))


_TEXT_CHARACTER = re.compile(r"[A-Za-z0-9]")


def _plausible(box: Region, text: str, rows: int, columns: int) -> bool:
    """Whether a detected box may be burned-in text: every box, except one taller than any line of burned-in
    text (8% of the shorter side, 48 pixels at least: side markers included) in which the recognizer reads no
    Latin letter or digit; the detector takes such a blob of anatomy (a lung field on a chest film) for a
    character of its Chinese training set."""
    return box[3] <= max(48, 0.08 * min(rows, columns)) or _TEXT_CHARACTER.search(text) is not None


def _to_blank(policy: PixelPolicy, modality: str, read: Sequence[tuple[int, Region, str]],
              identifying: Iterable[str | None], margin: int) -> list[Region]:
    """The boxes to blank, each grown by ``margin``: under ``text: all`` every box whose text is not all safe
    annotations; under ``text: identifiers`` the boxes matching the file's values or an identifier pattern.
    Unreadable boxes are blanked under either."""
    if policy.text == "identifiers":
        from veil.pixels import ocr

        words = [ocr.TextBox(f, x, y, w, h, text, 100.0) for f, (x, y, w, h), text in read]
        found = ocr.regions_to_redact(words, identifying, margin=margin)
        chosen = {region for regions in found.values() for region in regions}
        chosen.update(_grow(box, margin) for _, box, text in read if not text.strip())
        return sorted(chosen)
    return sorted({_grow(box, margin) for _, box, text in read if not is_safe_text(policy, modality, text)})


def _grow(box: Region, margin: int) -> Region:
    x, y, w, h = box
    return x - margin, y - margin, w + 2 * margin, h + 2 * margin


# --- one image ---------------------------------------------------------------------------------------------


def check_image(
    policy: PixelPolicy,
    info: Mapping[str, Any],
    result: Any,
    data: Any,
    path: str = "",
    *,
    identifying: Iterable[str | None] | None = None,
    series: SeriesRegions | None = None,
) -> Redaction | None:
    """The burned-in text check of one rewritten image (see the module docstring): None to write the pixels
    as the rewrite left them, or the redacted output and its record (with the source of its boxes).

    ``info`` is the INPUT's header signature (``veil.core._core.peek``): rules match it (the output may no
    longer name the manufacturer); ``result`` the rewrite (header, pixel slice, ``tobytes()``); ``data`` the
    input (for the pixel slice of a mapped file); ``identifying`` the values ``text: identifiers`` looks for
    (default: those of ``info``). Raises MalformedDicom where the file must be quarantined.
    """
    rows, columns = int(info.get("rows") or 0), int(info.get("columns") or 0)
    if not rows or not columns:
        return None  # no image in this instance
    decision = decide(policy, info)
    action, rule = decision.action, decision.rule
    keep: tuple[Region, ...] = ()
    if rule is not None and rule.ultrasound_regions and not rule.regions:
        keep = ultrasound_data_regions(result.header, path)
        if not keep:
            # No data regions described: decided as if no rule named it (detection finds the text where no
            # data region says where it is not).
            action, rule = _unruled(policy, info), None
    if rule is not None and not keep:  # a rule's fixed regions: what the site knows of the layout
        red = redact_file(result.tobytes(), rule=rule, fill=policy.fill, output=policy.output, path=path)
        return dataclasses.replace(red, source=f"pixel rule {rule.name or rule.source}")
    series_key = (str(info.get("series_instance_uid") or ""), rows, columns)
    earlier = series.get(series_key) if series is not None and series_key[0] else ()
    frames: np.ndarray | None = None
    chosen: Iterable[int] | None = None  # the frames to detect on (None: every frame)
    if action == "prefilter":
        try:
            from veil.pixels import textdetect
        except ImportError as exc:  # numpy or scipy missing: nothing can look at the pixels
            raise MalformedDicom(path, 0, f"burned-in text check cannot run: {exc}") from None
        frames = gray_frames(result, data, path)
        if frames is None:
            return None
        chosen = [i for i in range(frames.shape[0]) if textdetect.prefilter(frames[i])]
        # A frame that may show text makes the image at risk: the policy's action for it.
        action = policy.at_risk if chosen else "keep"
    if action in ("keep", "flag"):
        return _redact(result, earlier, "series", policy, path) if earlier else None
    if action == "quarantine":
        raise MalformedDicom(path, 0, "pixels at risk of burned-in text and no rule names them (policy: quarantine)")
    if action == "redact-all":
        return _redact(result, [(0, 0, columns, rows)], "redact-all", policy, path)
    # Detection ("detect", or an ultrasound data-region rule): every distinct frame at risk or flagged.
    detector = _textdetect(path)
    if frames is None:
        frames = gray_frames(result, data, path)
        if frames is None:
            return None
    indices = _distinct(frames, range(frames.shape[0]) if chosen is None else chosen)
    read = [(i, box, text) for i in indices for box, text in _read_text(detector, frames[i], keep or None)]
    del frames
    margin = policy.margin * max(1, math.ceil(max(rows, columns) / _DETECT_SIDE))
    if identifying is None:
        identifying = [info.get(name) for name in IDENTIFYING_PEEK_VALUES]
    found = _to_blank(policy, str(info.get("modality") or ""), read, identifying, margin)
    log.debug("burned-in text: %d frames read, %d boxes, %d blanked", len(indices), len(read), len(found))
    if series is not None and series_key[0] and found:
        series.add(series_key, found)
    if keep:
        red = redact_file(result.tobytes(), sorted(set(found) | set(earlier)), None, fill=policy.fill,
                          ultrasound_regions=True, output=policy.output, path=path)
        return dataclasses.replace(red, source="ultrasound regions" + (" + detector" if found else ""))
    if not found:
        return _redact(result, earlier, "series", policy, path) if earlier else None
    return _redact(result, sorted(set(found) | set(earlier)), "detector" + (" + series" if earlier else ""),
                   policy, path)


def _unruled(policy: PixelPolicy, info: Mapping[str, Any]) -> str:
    """The action for an image as if no rule named it: the policy's at-risk action, prefilter or keep."""
    found = triage(policy, info)
    return policy.at_risk if found == "at-risk" else found


def _redact(result: Any, regions: Sequence[Region], source: str, policy: PixelPolicy, path: str) -> Redaction:
    """``regions`` blanked on every frame, recorded with ``source``."""
    red = redact_file(result.tobytes(), regions, None, fill=policy.fill, output=policy.output, path=path)
    return dataclasses.replace(red, source=source)
