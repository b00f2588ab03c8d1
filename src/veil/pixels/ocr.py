"""Burned-in text read by Tesseract (through pytesseract) on the frames that differ, and the matching of words
against a file's own identifying values and identifier patterns (:func:`regions_to_redact`, which ``text:
identifiers`` uses on the words the text detector reads, :mod:`veil.pixels.screen`).

``veil run`` detects text with :mod:`veil.pixels.textdetect` (faster, and it finds more); Tesseract stays as
the independent reader the tests check the outputs with.

Tesseract is an optional system dependency (Debian ``tesseract-ocr``); :func:`available` says whether it can be
run. Identical frames (a cine loop's static overlay, a repeated secondary capture) are recognised once: frames
are keyed by a digest of their bytes. Batches of images can be spread over processes.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

__all__ = [
    "IDENTIFIER_PATTERNS",
    "TextBox",
    "available",
    "detect_batch",
    "detect_text",
    "identifier_tokens",
    "regions_to_redact",
]

log = logging.getLogger(__name__)

Region = tuple[int, int, int, int]

# What looks like an identifier whoever it belongs to: dates in the common written orders, times, and runs of
# five or more digits (medical record, accession and phone numbers).
IDENTIFIER_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"\d{1,4}[./-]\d{1,2}[./-]\d{1,4}"),
    re.compile(r"\d{1,2}:\d{2}(:\d{2})?"),
    re.compile(r"\d{5,}"),
    re.compile(r"(19|20)\d{6}"),
)
# A date written out in words ("Fri Apr 30 06:27:24 1993", "30 APR 1993"): Tesseract reads each part as its own
# word, so the month, weekday and year are matched alone, and a day number beside one of them goes too.
_WRITTEN_DATE = re.compile(
    r"^((JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)[A-Z]{0,6}|(MON|TUE|WED|THU|FRI|SAT|SUN)[A-Z]{0,6}"
    r"|(19|20)\d{2})[.,]?$",
    re.IGNORECASE,
)
_DAY_NUMBER = re.compile(r"^\d{1,2}(ST|ND|RD|TH)?[.,]?$", re.IGNORECASE)


@dataclass(frozen=True)
class TextBox:
    """A word Tesseract found: the frame, its box (x, y, width, height) and the text (kept in memory only)."""

    frame: int
    x: int
    y: int
    width: int
    height: int
    text: str
    confidence: float

    @property
    def region(self) -> Region:
        return self.x, self.y, self.width, self.height


@lru_cache(maxsize=1)
def available() -> bool:
    """Whether pytesseract imports and the tesseract program runs."""
    if shutil.which("tesseract") is None:
        return False
    try:
        import pytesseract

        pytesseract.get_tesseract_version()
    except Exception:
        return False
    return True


def _to_gray8(frame: np.ndarray) -> np.ndarray:
    """One frame (rows, columns[, samples]) as 8-bit dark text on a light ground, the way Tesseract reads best.

    Stretched from its own minimum to maximum (16- and 32-bit data); burned-in text is usually light on dark,
    so a mostly dark frame is inverted.
    """
    a = frame.astype(np.float32)
    if a.ndim == 3:
        a = a.mean(axis=2) if a.shape[2] == 3 else a[..., 0]
    lo, hi = float(a.min()), float(a.max())
    gray = np.zeros(a.shape, np.uint8) if hi <= lo else ((a - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    if gray.mean() < 128:
        gray = 255 - gray
    return gray


def _ocr_frame(gray: np.ndarray, min_confidence: float, scale: int) -> list[tuple[int, int, int, int, str, float]]:
    import pytesseract
    from PIL import Image

    image = Image.fromarray(gray)
    if scale > 1:  # small burned-in fonts (8-12 px) read far better enlarged
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.LANCZOS)
    data = pytesseract.image_to_data(image, config="--psm 11", output_type=pytesseract.Output.DICT)
    out = []
    for i, text in enumerate(data["text"]):
        text = text.strip()
        conf = float(data["conf"][i])
        if not text or conf < min_confidence:
            continue
        x, y = data["left"][i] // scale, data["top"][i] // scale
        w, h = -(-data["width"][i] // scale), -(-data["height"][i] // scale)
        out.append((x, y, w, h, text, conf))
    return out


def detect_text(frames: np.ndarray, *, min_confidence: float = 30.0, scale: int | None = None) -> list[TextBox]:
    """Words in every frame of ``frames`` (frames, rows, columns[, samples]) or one 2-D/colour image; identical
    frames are recognised once and their words repeated for each."""
    if frames.ndim == 2 or (frames.ndim == 3 and frames.shape[-1] == 3 and frames.shape[0] > 4):
        frames = frames[None]
    if scale is None:
        scale = 2 if min(frames.shape[1:3]) < 512 else 1
    seen: dict[bytes, list[tuple[int, int, int, int, str, float]]] = {}
    boxes: list[TextBox] = []
    for index in range(frames.shape[0]):
        frame = np.ascontiguousarray(frames[index])
        digest = hashlib.blake2b(frame.tobytes(), digest_size=16).digest()
        words = seen.get(digest)
        if words is None:
            words = _ocr_frame(_to_gray8(frame), min_confidence, scale)
            seen[digest] = words
        boxes.extend(TextBox(index, *w) for w in words)
    log.debug("OCR: %d frames, %d distinct, %d words", frames.shape[0], len(seen), len(boxes))
    return boxes


def detect_batch(images: Sequence[np.ndarray], *, workers: int | None = None, **kwargs: Any) -> list[list[TextBox]]:
    """:func:`detect_text` over many images; with ``workers`` > 1 in that many processes."""
    if not workers or workers <= 1 or len(images) <= 1:
        return [detect_text(image, **kwargs) for image in images]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(detect_text, image, **kwargs) for image in images]
        return [f.result() for f in futures]


def _normal(text: str) -> str:
    return re.sub(r"[^0-9A-Z]", "", text.upper())


def identifier_tokens(values: Iterable[str | None]) -> set[str]:
    """The normalised tokens (upper-case letters and digits) of a file's identifying values: each name part of
    a person name (``DOE^JOHN``), each word, the whole value, and the written orders of a DA date."""
    tokens: set[str] = set()
    for value in values:
        if not value:
            continue
        value = str(value)
        for part in re.split(r"[\^\s=,]+", value):
            if len(_normal(part)) >= 2:
                tokens.add(_normal(part))
        if len(_normal(value)) >= 2:
            tokens.add(_normal(value))
        m = re.fullmatch(r"(\d{4})(\d{2})(\d{2})", value.strip())
        if m:
            y, mo, d = m.groups()
            tokens.update({d + mo + y, mo + d + y, d + mo + y[2:], mo + d + y[2:], y[2:] + mo + d})
    return tokens


def _matches(text: str, tokens: set[str], patterns: Sequence[re.Pattern[str]]) -> bool:
    word = _normal(text)
    if not word:
        return False
    if any(p.search(text) for p in patterns):
        return True
    if word in tokens:
        return True
    # A word that runs into its neighbour ("DOE,JOHN" read as one) or a token cut by the reader.
    return any((len(t) >= 3 and t in word) or (len(word) >= 4 and word in t) for t in tokens)


def regions_to_redact(
    boxes: Iterable[TextBox],
    identifying_values: Iterable[str | None] = (),
    *,
    all_text: bool = False,
    patterns: Sequence[re.Pattern[str]] = IDENTIFIER_PATTERNS,
    margin: int = 4,
) -> dict[int, list[Region]]:
    """Frame -> regions (with ``margin`` pixels around each box) of the words that match an identifying value
    or pattern, a date written in words (month, weekday, year, and the day number beside them), or of every
    word with ``all_text``."""
    tokens = identifier_tokens(identifying_values)
    boxes = list(boxes)
    dated = [bool(_WRITTEN_DATE.match(box.text.strip())) for box in boxes]
    chosen = [all_text or d or _matches(box.text, tokens, patterns) for box, d in zip(boxes, dated, strict=True)]
    for i, box in enumerate(boxes):
        if not chosen[i] and _DAY_NUMBER.match(box.text.strip()):
            chosen[i] = any(dated[j] and _beside(box, other) for j, other in enumerate(boxes))
    out: dict[int, list[Region]] = {}
    for box, take in zip(boxes, chosen, strict=True):
        if take:
            region = (box.x - margin, box.y - margin, box.width + 2 * margin, box.height + 2 * margin)
            out.setdefault(box.frame, []).append(region)
    return out


def _beside(a: TextBox, b: TextBox) -> bool:
    """Whether two words sit on one line, next to each other (a gap under two character heights)."""
    height = max(a.height, b.height, 1)
    same_line = abs((a.y + a.height / 2) - (b.y + b.height / 2)) <= height / 2
    gap = max(b.x - (a.x + a.width), a.x - (b.x + b.width))
    return a.frame == b.frame and same_line and gap <= 2 * height
