"""Burned-in text (issue 13): the pre-filter's images/s, the DB detector's time per image at longer side 960, the
whole check (pre-filter, detector, recognizer on the boxes), and Tesseract as veil called it before on the same
images, all in one run.

Images: a 512 x 512 CT slice (uint16), a 640 x 480 ultrasound frame (8-bit RGB, turned to grey inside the timed
call) and a 2048 x 2048 CR (uint16), each with a name, an ID and a date burned in at its corners. Compare means
within one run; nothing is asserted about time. Detector and Tesseract rows skip where they cannot run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from veil.pixels import textdetect

_FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
_LABELS = ("DOE^JANE", "ID 48213377", "DOB 1961-04-12")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.truetype(_FONT, size) if Path(_FONT).is_file() else ImageFont.load_default(size=size)


def _burn(image: np.ndarray, size: int, value: int) -> np.ndarray:
    rows, cols = image.shape[:2]
    canvas = Image.new("L", (cols, rows), 0)
    pen = ImageDraw.Draw(canvas)
    font = _font(size)
    pen.text((size, size // 2), _LABELS[0], fill=255, font=font)
    pen.text((cols - 12 * size, size // 2), _LABELS[1], fill=255, font=font)
    pen.text((size, rows - 2 * size), _LABELS[2], fill=255, font=font)
    image[np.asarray(canvas) > 127] = value
    return image


def _ct(rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[:512, :512]
    body = ((x - 256) / 200) ** 2 + ((y - 266) / 150) ** 2 < 1
    image = np.where(body, 1064 + rng.normal(0, 20, (512, 512)), 24).clip(0, 4095).astype(np.uint16)
    return _burn(image, 12, 4095)


def _us(rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[:480, :640]
    sector = (np.abs(np.arctan2(x - 320, y + 40)) < 0.6) & (np.hypot(x - 320, y + 40) < 440)
    gray = np.where(sector, rng.rayleigh(50, (480, 640)).clip(0, 220), 0).astype(np.uint8)
    gray = _burn(gray, 12, 255)
    return np.repeat(gray[..., None], 3, axis=2)


def _cr(rng: np.random.Generator) -> np.ndarray:
    image = (1500 + rng.normal(0, 40, (2048, 2048))).clip(0, 4095).astype(np.uint16)
    image[:, :200] = image[:, -200:] = image[:240] = image[-240:] = 300
    return _burn(image, 40, 4095)


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:  # the luma of an RGB ultrasound frame, as the pipeline hands it on
        return (image[..., 0] * 0.299 + image[..., 1] * 0.587 + image[..., 2] * 0.114).astype(np.uint8)
    return image


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(13)
    return {"CT 512x512 uint16": _ct(rng), "US 640x480 RGB": _us(rng), "CR 2048x2048 uint16": _cr(rng)}


KINDS = ["CT 512x512 uint16", "US 640x480 RGB", "CR 2048x2048 uint16"]


@pytest.mark.parametrize("kind", KINDS)
def test_prefilter(benchmark, images, kind: str) -> None:
    image = images[kind]
    benchmark.extra_info["images_per_round"] = 1
    assert benchmark(lambda: textdetect.prefilter(_gray(image)))


@pytest.mark.parametrize("kind", KINDS)
def test_detector_960(benchmark, images, kind: str) -> None:
    if not textdetect.available():
        pytest.skip(str(textdetect.unavailable_reason()))
    image = images[kind]
    textdetect.detect(_gray(image))  # sessions made outside the timing
    benchmark.extra_info["images_per_round"] = 1
    boxes = benchmark.pedantic(lambda: textdetect.detect(_gray(image), max_side=960), rounds=5, iterations=1)
    assert len(boxes) >= 3


@pytest.mark.parametrize("kind", KINDS)
def test_burned_in_check(benchmark, images, kind: str) -> None:
    """The whole check for an image with a label: pre-filter, detector, recognizer on the boxes found."""
    if not textdetect.available():
        pytest.skip(str(textdetect.unavailable_reason()))
    image = images[kind]

    def check() -> list[str]:
        gray = _gray(image)
        if not textdetect.prefilter(gray):
            return []
        return textdetect.recognize(gray, textdetect.detect(gray))

    check()
    benchmark.extra_info["images_per_round"] = 1
    texts = benchmark.pedantic(check, rounds=5, iterations=1)
    assert any("1961" in text for text in texts)


@pytest.mark.parametrize("kind", KINDS)
def test_tesseract_on_every_image(benchmark, images, kind: str) -> None:
    """Tesseract as veil ran it on every image at risk before issue 13 (pytesseract.image_to_data, one
    process per call)."""
    from veil.pixels import ocr

    if not ocr.available():
        pytest.skip("tesseract-ocr / pytesseract not installed")
    image = images[kind]
    benchmark.extra_info["images_per_round"] = 1
    benchmark.pedantic(lambda: ocr.detect_text(_gray(image)), rounds=3, iterations=1)
