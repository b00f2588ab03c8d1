"""Burned-in text: Tesseract finds planted text, the boxes that match the file's identifying values are
redacted, and afterwards Tesseract finds none of it. Skipped where tesseract is not installed."""

from __future__ import annotations

import numpy as np
import pytest

from veil.pixels import ocr
from veil.pixels.layout import PixelLayout
from veil.pixels.redact import redact_native

pytestmark = [
    pytest.mark.ocr,
    pytest.mark.skipif(not ocr.available(), reason="tesseract-ocr / pytesseract not installed"),
]

IDENTIFYING = ["DOE^JOHN", "12345678", "20240102"]


def planted(bits: int = 16, frames: int = 1, colour: bool = False) -> np.ndarray:
    """(frames, rows, columns, samples) with a name, an ID, a date and a harmless word drawn large."""
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("L", (640, 300), 0)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=36)
    draw.text((20, 20), "JOHN DOE", fill=255, font=font)
    draw.text((20, 90), "ID 12345678", fill=255, font=font)
    draw.text((20, 160), "02/01/2024", fill=255, font=font)
    draw.text((380, 230), "ABDOMEN", fill=255, font=font)
    gray = np.asarray(image).astype(np.uint32) * ((2**bits - 1) // 255)
    gray = gray.astype(np.uint16 if bits == 16 else np.uint8)
    arr = np.repeat(gray[None, :, :, None], frames, axis=0)
    return np.repeat(arr, 3, axis=3) if colour else arr


def words(frames: np.ndarray) -> set[str]:
    return {b.text.upper() for b in ocr.detect_text(frames)}


@pytest.mark.parametrize(("bits", "nframes", "colour"), [(16, 1, False), (8, 3, True)])
def test_planted_identifiers_are_found_and_gone_after_redaction(bits: int, nframes: int, colour: bool) -> None:
    arr = planted(bits, nframes, colour)
    found = words(arr if colour else arr[..., 0])
    assert {"JOHN", "DOE", "12345678", "02/01/2024", "ABDOMEN"} <= found
    boxes = ocr.detect_text(arr if colour else arr[..., 0])
    regions = ocr.regions_to_redact(boxes, IDENTIFYING, margin=6)
    assert set(regions) == set(range(nframes))
    layout = PixelLayout(300, 640, arr.shape[3], bits, number_of_frames=nframes)
    buffer = bytearray(np.ascontiguousarray(arr).tobytes())
    for frame, frame_regions in regions.items():
        redact_native(buffer, layout, frame_regions, frames=[frame])
    after = np.frombuffer(buffer, dtype=arr.dtype).reshape(arr.shape)
    left = words(after if colour else after[..., 0])
    assert not left & {"JOHN", "DOE", "12345678", "02/01/2024"}
    assert "ABDOMEN" in left  # a word that identifies no one stays


def test_all_text_redacts_every_word() -> None:
    arr = planted()[..., 0]
    regions = ocr.regions_to_redact(ocr.detect_text(arr), all_text=True)
    buffer = bytearray(arr.tobytes())
    redact_native(buffer, PixelLayout(300, 640, 1, 16), regions[0])
    assert words(np.frombuffer(buffer, np.uint16).reshape(arr.shape)) == set()


def test_identical_frames_are_recognised_once(monkeypatch) -> None:
    calls = []
    real = ocr._ocr_frame
    monkeypatch.setattr(ocr, "_ocr_frame", lambda *a: calls.append(1) or real(*a))
    boxes = ocr.detect_text(planted(8, 4)[..., 0])
    assert len(calls) == 1
    assert {b.frame for b in boxes} == {0, 1, 2, 3}


def test_identifier_tokens_cover_name_parts_and_date_orders() -> None:
    tokens = ocr.identifier_tokens(["DOE^JOHN", "20240102", None])
    assert {"DOE", "JOHN", "DOEJOHN", "20240102", "02012024", "01022024"} <= tokens


def test_a_date_written_in_words_is_redacted_whole_and_other_numbers_stay() -> None:
    def box(x: int, text: str, y: int = 10) -> ocr.TextBox:
        return ocr.TextBox(0, x, y, 10 * len(text), 10, text, 90.0)

    line = [box(0, "Fri"), box(40, "Apr"), box(80, "30"), box(110, "06:27:24"), box(200, "1993"), box(260, "3D")]
    other = [box(0, "Ex:", y=40), box(40, "30", y=40), box(0, "kV", y=80), box(30, "120", y=80)]
    regions = ocr.regions_to_redact(line + other, [], margin=0)
    assert sorted(regions[0]) == sorted(b.region for b in line[:5])  # "3D" and the other lines' numbers stay
