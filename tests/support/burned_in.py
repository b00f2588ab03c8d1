"""A synthetic burned-in text set: fictional names, IDs and dates drawn into real CR, DX, MG, CT, MR and US
pixel data, at corners and edges, at several sizes and contrasts, light on dark and dark on light, written as
valid DICOM files (MONOCHROME1, colour, multi-frame and RLE-compressed among them).

The pixel data comes from the public corpus beside the repository (``../shared/corpus/public``, see its
SOURCES.md) when it is there, else from pydicom's own test files (CT and MR only). Everything is seeded: the
same seed writes the same files. The identifiers are made of random syllables (no real person's), and none of
them is in the header (which names another fictional patient): only the pixels carry them.

    python tests/support/burned_in.py OUT_DIR [--seed 13]

writes the files and ``labels.json`` (per file: each label's text, tokens, box and polarity).
"""

from __future__ import annotations

import copy
import json
import random
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

SUPPORT = Path(__file__).resolve().parent
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

from corpus import CORPUS_ROOT  # noqa: E402

# (modality, path under the corpus root): plain images without burned-in text of their own. Chosen by
# rendering each one; see ../shared/corpus/SOURCES.md for the provenance of each.
CORPUS_SOURCES = (
    ("CR", "dwv/data/gdcm-CR-MONO1-10-chest.dcm"),  # 440x440, MONOCHROME1, 10 bits
    ("CR", "pydicom-data/RG3_J2KR.dcm"),  # 1760x1760, MONOCHROME1, JPEG 2000 lossless; a lead "R" marker
    ("DX", "highdicom/dx_image.dcm"),  # 169x211, MONOCHROME1, 8 bits
    ("DX", "pylibjpeg-data/JPEG2000Lossless/JPEG2KLossless_1s_1f_u_16_16.dcm"),  # 1416x1420, 16 bits
    ("MG", "fo-dicom/FO-DICOM.Tests/Test Data/OutOfBoundsOverlay.dcm"),  # 1318x788, JPEG lossless
    ("CT", "dwv/data/dicompyler-ct.0.dcm"),  # 512x512, signed 16 bits
    ("CT", "fo-dicom/FO-DICOM.Benchmark/Data/ct.dcm"),
    ("MR", "fo-dicom/FO-DICOM.Benchmark/Data/mr.dcm"),  # 256x256
    ("MR", "dwv/data/bbmri-53323131.dcm"),
    ("US", "pydicom-data/OBXXXX1A.dcm"),  # 800x600 RGB, with ultrasound data regions
    ("US", "dcm4che/dcm4che-test-data/src/main/resources/US-RGB-8-esopecho"),  # RGB, no data regions
)
PYDICOM_SOURCES = (("CT", "CT_small.dcm"), ("MR", "MR_small.dcm"))

_CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right", "top", "bottom", "left")
_SYLLABLES = ("ka", "lo", "ven", "mar", "quo", "thi", "bre", "sul", "dra", "wen", "nix", "pel", "ro", "zan",
              "gor", "hil", "tev", "mun", "osk", "fay", "rud", "bex")


@dataclass
class Label:
    text: str  # what was drawn
    tokens: list[str]  # the identifying parts an OCR must not read afterwards (upper case, letters or digits)
    box: tuple[int, int, int, int]  # x, y, width, height in the image (the ground the text was drawn on)
    text_box: tuple[int, int, int, int]  # the glyphs' box within it
    frame: int
    polarity: str  # "light-on-dark" | "dark-on-light" as displayed
    contrast: float  # share of the image's range between text and ground
    height: int  # text height in pixels


@dataclass
class Synthetic:
    name: str
    modality: str
    source: str
    labels: list[Label] = field(default_factory=list)


def _surname(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 3)))).upper()


def identifier(rng: random.Random) -> tuple[str, list[str]]:
    """A fictional identifier as drawn and its tokens: a name, an ID number, a birth date or an accession."""
    kind = rng.choice(("name", "name", "id", "date", "accession"))
    if kind == "name":
        surname, given = _surname(rng), _surname(rng).capitalize()
        return f"{surname}, {given}", [surname, given.upper()]
    if kind == "id":
        number = str(rng.randrange(1_000_000, 99_999_999))
        return f"ID {number}", [number]
    if kind == "date":
        y, m, d = rng.randrange(1930, 2010), rng.randrange(1, 13), rng.randrange(1, 29)
        text = rng.choice((f"{d:02d}.{m:02d}.{y}", f"{y}-{m:02d}-{d:02d}", f"{m:02d}/{d:02d}/{y}"))
        return f"DOB {text}", ["".join(c for c in text if c.isdigit())]
    number = f"A{rng.randrange(10_000_000, 99_999_999)}"
    return f"ACC {number}", [number]


def _font(height: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=max(6, height))


def _text_mask(text: str, height: int) -> np.ndarray:
    """The glyphs of ``text`` at ``height`` pixels as a float mask 0..1 (anti-aliased)."""
    font = _font(height)
    left, top, right, bottom = font.getbbox(text)
    image = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    ImageDraw.Draw(image).text((1 - left, 1 - top), text, fill=255, font=font)
    return np.asarray(image, np.float32) / 255.0


def _place(where: str, rows: int, columns: int, h: int, w: int, pad: int) -> tuple[int, int]:
    y = pad if where.startswith("top") else rows - h - pad if where.startswith("bottom") else (rows - h) // 2
    x = pad if where.endswith("left") else columns - w - pad if where.endswith("right") else (columns - w) // 2
    return max(0, x), max(0, y)


def draw(display: np.ndarray, text: str, where: str, height: int, polarity: str, contrast: float,
         low: float, high: float, taken: list[tuple[int, int, int, int]]) -> tuple[tuple[int, ...], ...] | None:
    """Draws ``text`` into ``display`` (rows, columns[, 3]: brighter is lighter, values low..high) in place;
    returns the ground box and the glyphs' box, or None when it does not fit or overlaps an earlier label."""
    mask = _text_mask(text, height)
    rows, columns = display.shape[:2]
    pad = max(2, height // 3)
    h, w = mask.shape[0] + 2 * pad, mask.shape[1] + 2 * pad
    if w > columns - 4 or h > rows // 3:
        return None
    x, y = _place(where, rows, columns, h, w, max(2, rows // 100))
    box = (x, y, w, h)
    if any(x < a + c and a < x + w and y < b + d and b < y + h for a, b, c, d in taken):
        return None
    span = high - low
    if polarity == "light-on-dark":
        ground, ink = low + 0.05 * span, low + 0.05 * span + contrast * span
    else:
        ground, ink = high - 0.05 * span, high - 0.05 * span - contrast * span
    region = display[y : y + h, x : x + w]
    region[...] = ground if region.ndim == 2 else np.full(region.shape, ground)
    glyph = mask if region.ndim == 2 else mask[..., None]
    inner = region[pad : pad + mask.shape[0], pad : pad + mask.shape[1]]
    inner[...] = ground + (ink - ground) * glyph
    taken.append(box)
    return box, (x + pad, y + pad, mask.shape[1], mask.shape[0])


def _read(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=True)
        ds.pixel_array  # noqa: B018 - decode now: a source that cannot be decoded is skipped
    return ds


def sources() -> list[tuple[str, Path]]:
    """(modality, path) of the images to draw into: the corpus ones where the corpus is, else pydicom's."""
    if CORPUS_ROOT.is_dir():
        found = [(m, CORPUS_ROOT / p) for m, p in CORPUS_SOURCES if (CORPUS_ROOT / p).is_file()]
        if found:
            return found
    base = Path(pydicom.data.__file__).parent / "test_files"
    return [(m, base / name) for m, name in PYDICOM_SOURCES if (base / name).is_file()]


def _source_pixels(ds: Dataset) -> np.ndarray:
    """The first frame as pydicom decodes it; palette colour through its lookup table as 8-bit RGB (and the
    data set made RGB to match)."""
    array = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        array = array[0]
    if str(ds.get("PhotometricInterpretation", "")).strip() == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        rgb = apply_color_lut(array, ds).astype(np.float64)
        array = np.clip(np.rint(rgb * 255.0 / max(1.0, float(rgb.max()))), 0, 255).astype(np.uint8)
        ds.PhotometricInterpretation, ds.BitsStored, ds.PixelRepresentation = "RGB", 8, 0
    return array


def _display(ds: Dataset, source: np.ndarray) -> tuple[np.ndarray, float, float, bool]:
    """The image as displayed (lighter is higher) in float, its value range, and whether it is MONOCHROME1."""
    array = source.astype(np.float64)
    photometric = str(ds.get("PhotometricInterpretation", "")).strip()
    if photometric.startswith("YBR"):
        photometric = "RGB"  # pydicom converts YBR to RGB on decoding
    bits = int(ds.get("BitsStored", 8) or 8)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    # Draw within what the image uses (a 16-bit CT uses a small part of its range), so text contrast is
    # measured against the image as a viewer windows it.
    used_low, used_high = float(np.percentile(array, 0.5)), float(np.percentile(array, 99.5))
    if used_high <= used_low:
        used_low, used_high = float(low), float(high)
    mono1 = photometric == "MONOCHROME1"
    if mono1:
        array = used_high + used_low - array
    return array, used_low, used_high, mono1


def make_image(ds: Dataset, modality: str, rng: random.Random, *, name: str, source: str,
               labels: int = 3, frames: int = 1, compress: bool = False,
               burned_in: str | None = None) -> tuple[Dataset, Synthetic]:
    """A new instance whose pixels are ``ds``'s first frame with ``labels`` identifiers drawn in (on the last
    frame of ``frames``), its header naming another fictional patient."""
    source_pixels = _source_pixels(ds)
    display, low, high, mono1 = _display(ds, source_pixels)
    rows, columns = display.shape[:2]
    synthetic = Synthetic(name, modality, source)
    taken: list[tuple[int, int, int, int]] = []
    # Ultrasound with data regions: one label inside the first region (a name typed onto the image).
    regions = [
        (int(r.RegionLocationMinX0), int(r.RegionLocationMinY0), int(r.RegionLocationMaxX1),
         int(r.RegionLocationMaxY1))
        for r in ds.get("SequenceOfUltrasoundRegions", None) or ()
    ]
    attempts = 0
    while len(synthetic.labels) < labels and attempts < 40:
        attempts += 1
        text, tokens = identifier(rng)
        height = max(9, int(round(min(rows, columns) * rng.choice((0.022, 0.03, 0.04, 0.055)))))
        polarity = rng.choice(("light-on-dark", "dark-on-light"))
        contrast = rng.choice((0.9, 0.6, 0.4))
        target = display
        offset = (0, 0)
        if regions and not synthetic.labels:
            x0, y0, x1, y1 = regions[0]
            target, offset = display[y0 + 20 : y1 - 20, x0 + 20 : x1 - 20], (x0 + 20, y0 + 20)
            where = rng.choice(_CORNERS[:4])
        else:
            where = rng.choice(_CORNERS)
        drawn = draw(target, text, where, height, polarity, contrast, low, high, taken if target is display else [])
        if drawn is None:
            continue
        box, glyphs = ((b[0] + offset[0], b[1] + offset[1], b[2], b[3]) for b in drawn)
        if target is not display:
            taken.append(box)
        synthetic.labels.append(Label(text, tokens, box, glyphs, frames - 1, polarity, contrast, height))
    stored = high + low - display if mono1 else display
    out = _new_instance(ds, source_pixels, stored, frames, rng, burned_in)
    if compress:
        out.compress(RLELossless, generate_instance_uid=False)
    return out, synthetic


def _new_instance(ds: Dataset, original: np.ndarray, image: np.ndarray, frames: int, rng: random.Random,
                  burned_in: str | None) -> Dataset:
    bits = int(ds.get("BitsStored", 8) or 8)
    signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
    allocated = 8 if bits <= 8 else 16
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    dtype = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16, (16, True): np.int16}[allocated, signed]
    pixels = np.clip(np.rint(image), lo, hi).astype(dtype)
    clean = np.clip(original, lo, hi).astype(dtype)
    if frames > 1:  # the text on the last frame only: every frame must be pre-filtered
        pixels = np.stack([clean] * (frames - 1) + [pixels])
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric.startswith("YBR"):
        photometric = "RGB"
    out = Dataset()
    out.file_meta = pydicom.dataset.FileMetaDataset()
    out.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    keep = ("SOPClassUID", "Modality", "ImageType", "PixelSpacing", "ImagerPixelSpacing", "SliceThickness",
            "SequenceOfUltrasoundRegions", "ViewPosition", "BodyPartExamined", "RescaleIntercept", "RescaleSlope",
            "WindowCenter", "WindowWidth", "Manufacturer")
    for keyword in keep:
        if keyword in ds:
            setattr(out, keyword, ds.data_element(keyword).value)
    if "SOPClassUID" not in out:
        out.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    entropy = [str(rng.random())]
    out.SOPInstanceUID = generate_uid(entropy_srcs=entropy + ["sop"])
    out.StudyInstanceUID = generate_uid(entropy_srcs=entropy + ["study"])
    out.SeriesInstanceUID = generate_uid(entropy_srcs=entropy + ["series"])
    out.file_meta.MediaStorageSOPClassUID = out.SOPClassUID
    out.file_meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
    # The header names another fictional patient: a check that matched header values could not find the text.
    out.PatientName = f"{_surname(rng)}^{_surname(rng).capitalize()}"
    out.PatientID = f"H{rng.randrange(100000, 999999)}"
    out.StudyDate = "20200101"
    if burned_in is not None:
        out.BurnedInAnnotation = burned_in
    out.set_pixel_data(pixels, photometric, bits)
    if frames == 1 and "NumberOfFrames" in out:
        del out.NumberOfFrames
    return out


def write_set(directory: Path, seed: int = 13) -> list[Synthetic]:
    """Writes the synthetic set into ``directory`` (one file per case) and ``labels.json``; returns the cases."""
    rng = random.Random(seed)
    directory.mkdir(parents=True, exist_ok=True)
    cases: list[Synthetic] = []
    for index, (modality, path) in enumerate(sources()):
        try:
            ds = _read(path)
        except Exception:
            continue  # a source pydicom cannot decode here (a codec plugin missing): not drawn into
        variants = [{"burned_in": None}, {"burned_in": "YES", "compress": True}]
        if modality in ("CT", "MR"):
            variants.append({"burned_in": None, "frames": 3})
        if modality == "CR":
            variants.append({"burned_in": "NO"})  # a header that says NO and is wrong
        for number, options in enumerate(variants):
            name = f"{index:02d}-{modality}-{number}.dcm"
            try:
                out, synthetic = make_image(copy.deepcopy(ds), modality, rng, name=name, source=path.name,
                                            **options)
            except Exception:
                continue  # RLE needs numpy only; any failure here is a source the generator cannot use
            out.save_as(directory / name, enforce_file_format=True)
            cases.append(synthetic)
    (directory / "labels.json").write_text(json.dumps([asdict(c) for c in cases], indent=1))
    return cases


def load_labels(directory: Path) -> list[Synthetic]:
    raw = json.loads((directory / "labels.json").read_text())
    return [Synthetic(c["name"], c["modality"], c["source"], [Label(**label) for label in c["labels"]]) for c in raw]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    made = write_set(args.out, args.seed)
    print(f"{len(made)} files, {sum(len(c.labels) for c in made)} labels in {args.out}")


# --- the independent reader: Tesseract on the places the labels were drawn ---------------------------------


def _normal(text: str) -> str:
    return "".join(c for c in text.upper() if c.isalnum())


def _near(token: str, word: str) -> bool:
    """``token`` in ``word``, or within one edit of a same-length part of it for tokens of six or more
    characters (an OCR that reads one character wrong has still read the identifier)."""
    if token in word:
        return True
    if len(token) < 6 or len(word) < len(token) - 1:
        return False
    for start in range(0, max(1, len(word) - len(token) + 2)):
        part = word[start : start + len(token)]
        if len(part) >= len(token) - 1 and _edits(token, part) <= 1:
            return True
    return False


def _edits(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def frames_of(path: Path) -> np.ndarray:
    """(frames, rows, columns) grey, as displayed (MONOCHROME1 inverted), in float."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=True)
        array = ds.pixel_array.astype(np.float32)
    if int(ds.get("NumberOfFrames", 1) or 1) == 1:
        array = array[None]
    if array.ndim == 4:
        array = array.mean(axis=3)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        array = array.max() - array
    return array


def _crop8(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    margin = max(4, h // 2)
    crop = frame[max(0, y - margin) : y + h + margin, max(0, x - margin) : x + w + margin]
    lo, hi = float(crop.min()), float(crop.max())
    gray = np.zeros(crop.shape, np.uint8) if hi <= lo else ((crop - lo) * (255.0 / (hi - lo))).astype(np.uint8)
    return 255 - gray if gray.mean() < 128 else gray  # dark text on a light ground, as Tesseract reads best


def tesseract_words(crops: list[tuple[np.ndarray, int]]) -> str:
    """What Tesseract reads in the crops (each with the height of its text), each enlarged so its text is 40
    pixels high (2x at least for text of 20 pixels or less) and read in both polarities: one mosaic per
    polarity (one Tesseract start each, not one per crop), crops stacked with white gaps."""
    import pytesseract

    if not crops:
        return ""
    images = []
    for crop, height in crops:
        scale = max(40 / max(height, 1), 2.0 if height <= 20 else 0.0)
        size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
        images.append(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS))
    gap = 24
    width = max(image.width for image in images) + 2 * gap
    height = sum(image.height + gap for image in images) + gap
    text = []
    for invert in (False, True):
        mosaic = Image.new("L", (width, height), 255)
        y = gap
        for image in images:
            mosaic.paste(Image.fromarray(255 - np.asarray(image)) if invert else image, (gap, y))
            y += image.height + gap
        text.append(pytesseract.image_to_string(mosaic, config="--psm 11"))
    return "\n".join(text)


def labels_read(cases: list[Synthetic], directory: Path) -> list[tuple[str, str, str]]:
    """(file, label text, token) for every drawn token Tesseract reads in the files of ``directory``."""
    crops: list[tuple[np.ndarray, int]] = []
    owners: list[tuple[str, Label]] = []
    for case in cases:
        path = directory / case.name
        if not path.is_file():
            continue
        frames = frames_of(path)
        for label in case.labels:
            crops.append((_crop8(frames[min(label.frame, frames.shape[0] - 1)], tuple(label.box)), label.height))
            owners.append((case.name, label))
    words = [_normal(w) for w in tesseract_words(crops).split()]
    words = [w for w in words if w]
    found = []
    for name, label in owners:
        for token in label.tokens:
            if any(_near(_normal(token), w) for w in words):
                found.append((name, label.text, token))
    return found


def coverage(path: Path, label: Label, fill: int = 0) -> float:
    """The share of a label's glyph box that holds the fill value in the file (1.0: blanked whole)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path, force=True)
        array = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) == 1:
        array = array[None]
    x, y, w, h = label.text_box
    box = array[min(label.frame, array.shape[0] - 1), y : y + h, x : x + w]
    blank = box == fill
    return float((blank.all(axis=-1) if blank.ndim == 3 else blank).mean())
