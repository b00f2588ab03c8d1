"""Burned-in text: the pre-filter, the DB detector and the CTC recognizer of :mod:`veil.pixels.textdetect`.

Text is drawn with PIL at the corners and edges of phantom CT (512 x 512, 12-bit), ultrasound (640 x 480, 8-bit)
and CR (2000 x 2000, 12-bit) frames, and of real text-free corpus images, at three sizes per modality, light on
dark and (the whole frame inverted, as MONOCHROME1 stores it) dark on light. A drawn line counts as found when
boxes cover 95% of its ink. Tests that run the networks are marked ``ocr`` and skip where they cannot run.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from veil.pixels import textdetect
from veil.pixels.textdetect import TextBox

needs_models = pytest.mark.skipif(not textdetect.available(), reason=str(textdetect.unavailable_reason()))

_FONT_FILES = [p for p in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
                           "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf") if Path(p).is_file()]
_SYLLABLES = ["an", "ber", "chen", "da", "el", "fer", "gu", "han", "is", "jo", "ka", "lu", "mar", "no", "ov",
              "pe", "qui", "ro", "san", "ter", "ul", "vic", "wa", "xi", "yo", "zel"]
SIZES = {"CT": (9, 12, 18), "US": (9, 12, 18), "CR": (24, 40, 64)}
COVERED = 0.95


@cache
def _font(size: int, which: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if _FONT_FILES:
        return ImageFont.truetype(_FONT_FILES[which % len(_FONT_FILES)], size)
    return ImageFont.load_default(size=size)


def _label(rng: np.random.Generator) -> str:
    """A made-up name, ID or birth date, written the ways a modality burns them in."""
    def word(n: int) -> str:
        return "".join(rng.choice(_SYLLABLES) for _ in range(n))

    kind = rng.integers(0, 4)
    if kind == 0:
        return f"{word(2).upper()}^{word(2).upper()}"
    if kind == 1:
        return f"{word(2).capitalize()}, {word(1).capitalize()}"
    if kind == 2:
        return f"ID {rng.integers(10**6, 10**9)}"
    return f"DOB {rng.integers(1930, 2020)}-{rng.integers(1, 13):02d}-{rng.integers(1, 29):02d}"


def _smooth(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth random structure in [0, 1] (a coarse random grid enlarged bilinearly)."""
    coarse = Image.fromarray(rng.random((cells, cells)).astype(np.float32), mode="F")
    return np.asarray(coarse.resize((shape[1], shape[0]), Image.Resampling.BICUBIC)).clip(0, 1)


def phantom(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A text-free frame shaped like the modality's: CT air and body, an ultrasound sector with speckle, a
    radiograph with collimated borders."""
    if kind == "CT":
        y, x = np.mgrid[:512, :512]
        body = ((x - 256) / 200) ** 2 + ((y - 266) / 150) ** 2 < 1
        image = np.where(body, 1064 + 400 * _smooth(rng, (512, 512), 8), 24) + rng.normal(0, 15, (512, 512)) * body
        image[((x - 256) / 30) ** 2 + ((y - 330) / 25) ** 2 < 1] = 1900
        image[420:430, 60:450] = 600
        return image.clip(0, 4095).astype(np.uint16)
    if kind == "US":
        y, x = np.mgrid[:480, :640]
        angle, radius = np.arctan2(x - 320, y + 40), np.hypot(x - 320, y + 40)
        sector = (np.abs(angle) < 0.6) & (radius > 80) & (radius < 440)
        speckle = rng.rayleigh(60, (480, 640)) * (0.5 + _smooth(rng, (480, 640), 12))
        return np.where(sector, speckle.clip(0, 220), 0).astype(np.uint8)
    if kind == "CR":
        n = 2000
        y, x = np.mgrid[:n, :n]
        body = ((x - n / 2) / (0.38 * n)) ** 2 + ((y - n / 2) / (0.45 * n)) ** 2 < 1
        image = np.where(body, 1200 + 1400 * _smooth(rng, (n, n), 24), 3400) + rng.normal(0, 30, (n, n))
        edge = int(0.12 * n)
        image[:, :edge] = image[:, -edge:] = image[:edge] = image[-edge:] = 300
        return image.clip(0, 4095).astype(np.uint16)
    raise ValueError(kind)


def _grow(mask: np.ndarray, steps: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def draw_lines(image: np.ndarray, rng: np.random.Generator, sizes: tuple[int, ...], *, lines: int = 6,
               invert: bool = False, contrast: float = 1.0) -> tuple[np.ndarray, list[tuple[str, np.ndarray, bool]]]:
    """``image`` with ``lines`` labels drawn at distinct corners and edge centres, each at the extreme value
    farther from its background; with ``invert`` the frame is then inverted. Returns the image and, per line,
    its text, ink mask and whether it is clear (10% of its surround differ from the ink by >= 20% of the range)."""
    rows, cols = image.shape
    top = float(image.max()) if image.dtype.kind == "f" else float(
        255 if image.dtype == np.uint8 else max(4095, int(image.max())))
    places = ["tl", "tr", "bl", "br", "tc", "bc"]
    rng.shuffle(places)
    out = image.astype(np.float64)
    drawn = []
    for i, place in enumerate(places[:lines]):
        size = int(rng.choice(sizes))
        font = _font(size, i)
        text = _label(rng)
        canvas = Image.new("L", (cols, rows), 0)
        pen = ImageDraw.Draw(canvas)
        left, upper, right, lower = pen.textbbox((0, 0), text, font=font)
        width, height = right - left, lower - upper
        margin = max(4, size // 2)
        x = {"l": margin, "r": cols - width - margin, "c": (cols - width) // 2}[place[1]]
        y = margin if place[0] == "t" else rows - height - margin
        pen.text((x - left, y - upper), text, fill=255, font=font)
        mask = np.asarray(canvas) > 127
        level = float(np.median(out[max(0, y - 5) : y + height + 5, max(0, x - 5) : x + width + 5]))
        value = level + ((top if level < top / 2 else 0.0) - level) * contrast
        surround = _grow(mask, 2) & ~mask
        clear = bool(np.percentile(np.abs(out[surround] - value), 10) >= 0.2 * top)
        out[mask] = value
        drawn.append((text, mask, clear))
    if invert:
        out = top - out
    return out.astype(image.dtype), drawn


def covered(mask: np.ndarray, boxes: list[TextBox]) -> float:
    inside = np.zeros(mask.shape, bool)
    for box in boxes:
        inside[box.y0 : box.y1, box.x0 : box.x1] = True
    return float((inside & mask).sum() / mask.sum())


def _edit_distance(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


@pytest.fixture(scope="module")
def labelled_frames() -> list[tuple[str, bool, np.ndarray, list[tuple[str, np.ndarray, bool]]]]:
    """CT, US and CR phantoms, both polarities, 3 frames each, 6 labels per frame (108 lines)."""
    rng = np.random.default_rng(13)
    frames = []
    for kind in ("CT", "US", "CR"):
        for invert in (False, True):
            for _ in range(3):
                image, drawn = draw_lines(phantom(kind, rng), rng, SIZES[kind], invert=invert)
                frames.append((kind, invert, image, drawn))
    return frames


# -- availability and types (no model needed) --------------------------------------------------------------


def test_missing_models_make_detection_unavailable_with_a_reason(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(textdetect.MODELS_ENV, str(tmp_path))
    textdetect.unavailable_reason.cache_clear()
    try:
        assert not textdetect.available()
        reason = textdetect.unavailable_reason()
        assert reason is not None and textdetect.DETECTOR_FILE in reason and textdetect.MODELS_ENV in reason
    finally:
        textdetect.unavailable_reason.cache_clear()


def test_models_are_found_without_importing_rapidocr() -> None:
    import sys

    textdetect.unavailable_reason()
    assert "rapidocr_onnxruntime" not in sys.modules


def test_textbox_is_frozen() -> None:
    box = TextBox(1, 2, 3, 4, 0.9)
    with pytest.raises(AttributeError):
        box.x0 = 5  # type: ignore[misc]


def test_to_uint8_windows_any_dtype_and_keeps_8_bit_as_is() -> None:
    rng = np.random.default_rng(0)
    eight = rng.integers(0, 256, (64, 64), dtype=np.uint8)
    assert textdetect.to_uint8(eight) is eight
    for dtype in (np.uint16, np.int16, np.float32, np.float64):
        image = (rng.random((64, 64)) * 1000 - 200).astype(dtype)
        gray = textdetect.to_uint8(image)
        assert gray.dtype == np.uint8 and gray.shape == image.shape and gray.max() == 255 and gray.min() == 0
    assert not textdetect.to_uint8(np.full((8, 8), 7, np.int32)).any()


# -- pre-filter ---------------------------------------------------------------------------------------------


def test_prefilter_passes_frames_with_labels_in_the_outer_band(labelled_frames) -> None:
    assert all(textdetect.prefilter(image) for _, _, image, _ in labelled_frames)


def test_prefilter_passes_single_clear_labels() -> None:
    rng = np.random.default_rng(29)
    results = []
    for kind in ("CT", "US", "CR"):
        for invert in (False, True):
            for _ in range(8):
                image, drawn = draw_lines(phantom(kind, rng), rng, SIZES[kind], lines=1, invert=invert)
                if drawn[0][2]:
                    results.append(textdetect.prefilter(image))
    share = sum(results) / len(results)
    print(f"\nprefilter passed {sum(results)} of {len(results)} frames holding one clear label ({share:.3f})")
    assert share >= 0.95


def test_prefilter_drops_text_free_phantoms() -> None:
    rng = np.random.default_rng(31)
    passed = [textdetect.prefilter(phantom(kind, rng)) for kind in ("CT", "CR") for _ in range(5)]
    passed += [textdetect.prefilter(np.iinfo(np.uint16).max - phantom("CT", rng)) for _ in range(5)]
    assert not any(passed)
    assert not textdetect.prefilter(np.zeros((512, 512), np.uint16))


def test_prefilter_looks_only_at_the_band_it_is_given() -> None:
    rng = np.random.default_rng(37)
    image = phantom("CT", rng)
    canvas = Image.new("L", (512, 512), 0)
    ImageDraw.Draw(canvas).text((180, 250), "DOE^JANE 1970", fill=255, font=_font(14, 0))
    image[np.asarray(canvas) > 127] = 4095
    assert not textdetect.prefilter(image)
    assert textdetect.prefilter(image, band=0.5)


# -- detector and recognizer -------------------------------------------------------------------------------


@pytest.mark.ocr
@needs_models
def test_detector_finds_clear_labels_on_ct_us_and_cr_in_both_polarities(labelled_frames) -> None:
    found, total, missed = 0, 0, []
    for kind, invert, image, drawn in labelled_frames:
        boxes = textdetect.detect(image)
        for _, mask, clear in drawn:
            if not clear:
                continue
            total += 1
            share = covered(mask, boxes)
            if share >= COVERED:
                found += 1
            else:
                missed.append(f"{kind} inverted={invert} {mask.sum()} ink px {share:.2f} covered")
    print(f"\ndetector recall {found}/{total} = {found / total:.3f} clear lines; missed: {missed}")
    assert total >= 100
    assert found / total >= 0.99


@pytest.mark.ocr
@needs_models
def test_detector_boxes_are_in_image_pixels_and_clipped() -> None:
    rng = np.random.default_rng(41)
    image, drawn = draw_lines(phantom("CR", rng), rng, (40,), lines=4)
    boxes = textdetect.detect(image, max_side=640)
    assert boxes
    for box in boxes:
        assert 0 <= box.x0 < box.x1 <= image.shape[1] and 0 <= box.y0 < box.y1 <= image.shape[0]
        assert 0.5 <= box.score <= 1.0
    assert all(covered(mask, boxes) >= COVERED for _, mask, _ in drawn)


@pytest.mark.ocr
@needs_models
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_detector_takes_any_dtype(dtype) -> None:
    rng = np.random.default_rng(43)
    image, drawn = draw_lines(phantom("CT", rng), rng, (14,), lines=2)
    scaled = image.astype(np.float64) / 4095
    converted = {np.uint8: (scaled * 255).astype(np.uint8), np.int16: (scaled * 3000 - 1024).astype(np.int16),
                 np.float32: scaled.astype(np.float32)}[dtype]
    boxes = textdetect.detect(converted)
    assert all(covered(mask, boxes) >= COVERED for _, mask, _ in drawn)


@pytest.mark.ocr
@needs_models
def test_blank_frame_has_no_text() -> None:
    assert textdetect.detect(np.zeros((512, 512), np.uint16)) == []
    assert textdetect.recognize(np.zeros((512, 512), np.uint16), []) == []


@pytest.mark.ocr
@needs_models
@pytest.mark.parametrize("invert", [False, True])
def test_recognizer_reads_a_clear_drawn_line(invert: bool) -> None:
    rng = np.random.default_rng(47)
    image = phantom("CT", rng)
    canvas = Image.new("L", (512, 512), 0)
    ImageDraw.Draw(canvas).text((12, 10), "KOWALSKI ANNA 1962", fill=255, font=_font(16, 0))
    image[np.asarray(canvas) > 127] = 4095
    if invert:
        image = 4095 - image
    boxes = textdetect.detect(image)
    texts = textdetect.recognize(image, boxes)
    assert len(texts) == len(boxes)
    read = " ".join(t for box, t in zip(boxes, texts, strict=True) if box.y0 < 60)
    assert _edit_distance(read.upper(), "KOWALSKI ANNA 1962") <= 2, read


# -- the shared corpus ---------------------------------------------------------------------------------------

# Corpus images of these modalities are taken as text-free unless named here (rendered and read: labels, R/L
# markers or a symbol burned in).
_TEXT_FREE_MODALITIES = {"CT", "MR", "PT", "NM", "CR", "DX", "MG", "XA", "SEG", "RTIMAGE"}
_WITH_TEXT = ("MG_Explicit_Little", "gdcm-CT-MONO2-8-abdo", "GH355", "CT-MONO2-16-ankle", "OutOfBoundsOverlay",
              "RG3_J2K", "CR-ModalitySequenceLUT")


def _first_frames(files: list[Path]) -> list[tuple[str, str, np.ndarray]]:
    import warnings

    import pydicom

    frames = []
    for path in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(path, force=True)
                if "PixelData" not in ds or int(ds.get("SamplesPerPixel", 1)) != 1:
                    continue
                if "TransferSyntaxUID" not in ds.file_meta:
                    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
                pixels = ds.pixel_array
            except Exception:
                continue
        if pixels.ndim == 3:
            pixels = pixels[0]
        if pixels.ndim == 2 and min(pixels.shape) >= 64:
            frames.append((path.as_posix(), str(ds.get("Modality", "")), pixels))
    return frames


def test_prefilter_drops_most_text_free_corpus_images(corpus_files) -> None:
    frames = [(name, pixels) for name, modality, pixels in _first_frames(corpus_files)
              if modality in _TEXT_FREE_MODALITIES and not any(n in name for n in _WITH_TEXT)]
    passed = sum(textdetect.prefilter(pixels) for _, pixels in frames)
    print(f"\nprefilter sent on {passed} of {len(frames)} text-free corpus images ({passed / len(frames):.3f})")
    assert len(frames) >= 50
    assert passed / len(frames) <= 0.10


def test_prefilter_passes_corpus_images_with_burned_in_labels(corpus_files) -> None:
    labelled = ("MG_Explicit_Little", "gdcm-CT-MONO2-8-abdo", "CT-MONO2-16-ankle", "GH355")
    frames = [(name, pixels) for name, _, pixels in _first_frames(corpus_files) if any(n in name for n in labelled)]
    assert frames
    assert all(textdetect.prefilter(pixels) for _, pixels in frames)


def test_prefilter_passes_labels_drawn_on_text_free_corpus_images(corpus_files) -> None:
    rng = np.random.default_rng(53)
    frames = [pixels for name, modality, pixels in _first_frames(corpus_files)
              if modality in _TEXT_FREE_MODALITIES and not any(n in name for n in _WITH_TEXT)
              and min(pixels.shape) >= 128]
    results = []
    for pixels in frames[::2]:
        for invert in (False, True):
            sizes = SIZES["CT"] if max(pixels.shape) <= 1024 else SIZES["CR"]
            image, drawn = draw_lines(pixels, rng, sizes, lines=1, invert=invert)
            if drawn[0][2]:
                results.append(textdetect.prefilter(image))
    share = sum(results) / len(results)
    print(f"\nprefilter passed {sum(results)} of {len(results)} corpus frames given one clear label ({share:.3f})")
    assert share >= 0.95
