"""Burned-in text in pixels: a cheap classical pre-filter, the PP-OCRv4 DB text detector and its CTC recognizer.

The two networks are PaddleOCR's PP-OCRv4 ONNX exports as shipped inside the ``rapidocr-onnxruntime`` wheel
(Apache-2.0). Only their files are used: the package is located without being imported (its code imports
OpenCV and caps Python below 3.13) and the models are run with onnxruntime directly. ``VEIL_TEXT_MODELS=dir``
points at another folder holding the same two files. Nothing is ever downloaded.

Sessions are made lazily, once per process, single-threaded, so a pool of workers does not oversubscribe the
machine. Images are 2-D arrays of any dtype and bit depth, light-on-dark or dark-on-light.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TextBox", "available", "detect", "prefilter", "recognize", "unavailable_reason"]

MODELS_ENV = "VEIL_TEXT_MODELS"
DETECTOR_FILE = "ch_PP-OCRv4_det_infer.onnx"
RECOGNIZER_FILE = "ch_PP-OCRv4_rec_infer.onnx"

# DB post-processing as PaddleOCR and rapidocr configure PP-OCRv4 detection: pixels of probability > 0.3 form
# the text kernels, a kernel whose mean probability is under 0.5 is dropped, and each kept kernel is grown by
# area * 1.6 / perimeter (the shrink the network was trained to predict, undone).
_THRESH = 0.3
_BOX_THRESH = 0.5
_UNCLIP_RATIO = 1.6
_MIN_SIDE = 3
# ImageNet statistics, which PaddleOCR's detector normalises with (rapidocr uses 0.5/0.5; both work).
_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(3, 1, 1) * 255.0
_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(3, 1, 1) * 255.0
_REC_HEIGHT = 48
_REC_MAX_WIDTH = 1600


@dataclass(frozen=True)
class TextBox:
    """A detected text region in image pixels (``x1``/``y1`` exclusive) and the detector's mean probability."""

    x0: int
    y0: int
    x1: int
    y1: int
    score: float


def _models_dir() -> Path | None:
    override = os.environ.get(MODELS_ENV)
    if override:
        return Path(override)
    spec = importlib.util.find_spec("rapidocr_onnxruntime")  # finds the package without running its code
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "models"


@lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """Why detection cannot run here (onnxruntime or the model files missing), or None when it can."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed (pip install 'veil[ocr]')"
    if importlib.util.find_spec("scipy") is None:
        return "scipy is not installed (pip install 'veil[ocr]')"
    folder = _models_dir()
    if folder is None:
        return f"the text models were not found: install rapidocr-onnxruntime or set {MODELS_ENV}"
    missing = [name for name in (DETECTOR_FILE, RECOGNIZER_FILE) if not (folder / name).is_file()]
    if missing:
        where = f"{MODELS_ENV}" if os.environ.get(MODELS_ENV) else "the rapidocr-onnxruntime package"
        return f"{', '.join(missing)} not found in {where}"
    return None


def available() -> bool:
    """Whether :func:`detect` and :func:`recognize` can run (onnxruntime and both model files present)."""
    return unavailable_reason() is None


_SESSIONS: dict[tuple[int, str], Any] = {}


def _session(name: str) -> Any:
    """The onnxruntime session of one model, made once per process (a forked worker makes its own)."""
    key = (os.getpid(), name)
    session = _SESSIONS.get(key)
    if session is None:
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"text detection is unavailable: {reason}")
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        folder = _models_dir()
        assert folder is not None
        session = onnxruntime.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])
        _SESSIONS[key] = session
    return session


def _sample(image: np.ndarray, limit: int = 65536) -> np.ndarray:
    step = max(1, int(math.sqrt(image.size / limit)))
    return image[::step, ::step]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """A 2-D image of any dtype as 8 bits, windowed on its 0.5-99.5 percentiles (a few outliers, or text drawn
    at the extreme value, do not flatten the rest); 8-bit images are taken as they are."""
    if image.dtype == np.uint8:
        return image
    lo, hi = np.percentile(_sample(image), (0.5, 99.5))
    if hi <= lo:
        lo, hi = float(image.min()), float(image.max())
        if hi <= lo:
            return np.zeros(image.shape, np.uint8)
    scaled = (image.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _resize(gray: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    if gray.shape == (height, width):
        return gray
    return np.asarray(Image.fromarray(gray).resize((width, height), Image.Resampling.BILINEAR))


def detect(image: np.ndarray, *, max_side: int = 960) -> list[TextBox]:
    """Text regions of a 2-D image: the image is windowed to 8 bits, scaled down so its longer side is at most
    ``max_side`` (never up: a 512 x 512 slice is read at its own size) with both sides multiples of 32, as the
    network needs, and the DB probability map turned into boxes."""
    from scipy import ndimage

    if image.ndim != 2:
        raise ValueError("detect takes a 2-D image")
    gray = to_uint8(image)
    rows, cols = gray.shape
    scale = min(1.0, max_side / max(rows, cols))
    height = max(32, int(round(rows * scale / 32)) * 32)
    width = max(32, int(round(cols * scale / 32)) * 32)
    small = _resize(gray, height, width).astype(np.float32)
    tensor = ((small[None] - _MEAN) / _STD)[None].astype(np.float32)
    session = _session(DETECTOR_FILE)
    prob = session.run(None, {session.get_inputs()[0].name: tensor})[0][0, 0]
    kernels = ndimage.binary_dilation(prob > _THRESH, structure=np.ones((2, 2), bool))
    labels, count = ndimage.label(kernels, structure=np.ones((3, 3), int))
    if not count:
        return []
    fx, fy = cols / width, rows / height
    boxes = []
    for found in ndimage.find_objects(labels):
        if found is None:
            continue
        ys, xs = found
        h, w = ys.stop - ys.start, xs.stop - xs.start
        if min(h, w) < _MIN_SIDE:
            continue
        score = float(prob[found].mean())
        if score < _BOX_THRESH:
            continue
        grow = w * h * _UNCLIP_RATIO / (2 * (w + h))
        if min(h, w) + 2 * grow < _MIN_SIDE + 2:
            continue
        x0 = max(0, int(math.floor((xs.start - grow) * fx)))
        y0 = max(0, int(math.floor((ys.start - grow) * fy)))
        x1 = min(cols, int(math.ceil((xs.stop + grow) * fx)))
        y1 = min(rows, int(math.ceil((ys.stop + grow) * fy)))
        if x1 > x0 and y1 > y0:
            boxes.append(TextBox(x0, y0, x1, y1, score))
    return boxes


@lru_cache(maxsize=1)
def _characters() -> tuple[str, ...]:
    # CTC classes: 0 is the blank, then the model's own character list, then a space (as PaddleOCR adds it).
    meta = _session(RECOGNIZER_FILE).get_modelmeta().custom_metadata_map
    return ("", *meta["character"].splitlines(), " ")


def _line_image(gray: np.ndarray, box: TextBox) -> np.ndarray:
    rows, cols = gray.shape
    pad = max(1, (box.y1 - box.y0) // 8)
    crop = gray[max(0, box.y0 - pad) : min(rows, box.y1 + pad), max(0, box.x0 - pad) : min(cols, box.x1 + pad)]
    h, w = crop.shape
    width = min(_REC_MAX_WIDTH, max(8, int(math.ceil(_REC_HEIGHT * w / max(1, h)))))
    return _resize(np.ascontiguousarray(crop), _REC_HEIGHT, width)


def recognize(image: np.ndarray, boxes: Sequence[TextBox], *, batch: int = 8) -> list[str]:
    """The text of each box (same order), read by the CTC recognizer, greedy decoding; lines of similar width
    are run together."""
    if not boxes:
        return []
    gray = to_uint8(image)
    lines = [_line_image(gray, box) for box in boxes]
    order = sorted(range(len(lines)), key=lambda i: lines[i].shape[1])
    session = _session(RECOGNIZER_FILE)
    characters = _characters()
    texts = [""] * len(lines)
    for start in range(0, len(order), batch):
        chunk = order[start : start + batch]
        width = max(lines[i].shape[1] for i in chunk)
        tensor = np.zeros((len(chunk), 3, _REC_HEIGHT, width), np.float32)
        for row, i in enumerate(chunk):
            tensor[row, :, :, : lines[i].shape[1]] = lines[i].astype(np.float32) / 127.5 - 1.0
        classes = session.run(None, {session.get_inputs()[0].name: tensor})[0].argmax(axis=2)
        for row, i in enumerate(chunk):
            seq = classes[row]
            keep = np.ones(seq.shape, bool)
            keep[1:] = seq[1:] != seq[:-1]
            texts[i] = "".join(characters[c] for c in seq[keep & (seq != 0)])
    return texts


# Pre-filter. The image is first reduced to at most _PRE_SIDE pixels on its longer side (strided: a label of a
# 2k x 2k radiograph is 20+ pixels high, still 10+ after reduction), windowed on robust percentiles of a sample.
# Text is then sought as horizontal runs of strong, alternating edges: an edge is a step of more than _PRE_EDGE
# of the window between neighbouring pixels; a cell (_PRE_CELL_H rows x _PRE_CELL_W columns) is text-like when
# at least _PRE_ROWS of its rows each hold at least _PRE_EDGES edges; a line is _PRE_RUN such cells side by side.
# The search is repeated at half and a quarter of the size while the short side stays >= _PRE_MIN_LEVEL.
# Tuned on the shared corpus and drawn labels (tests/pixels/test_textdetect.py): 6 of 132 text-free CT, MR, CR,
# DX, MG, XA, NM, PT images pass (4.5%), every clear label drawn at 9-64 pixels passes.
_PRE_SIDE = 1024
_PRE_EDGE = 0.4
_PRE_CELL_H = 4
_PRE_CELL_W = 16
_PRE_EDGES = 4
_PRE_ROWS = 2
_PRE_RUN = 2
_PRE_MIN_LEVEL = 256


def _text_cells(part: np.ndarray, edge: float) -> bool:
    """Whether a band holds a run of text-like cells (see the constants above)."""
    rows, cols = part.shape
    rows -= rows % _PRE_CELL_H
    cols = (cols - 1) - (cols - 1) % _PRE_CELL_W
    if rows <= 0 or cols <= 0:
        return False
    step = np.abs(np.diff(part[:rows, : cols + 1], axis=1)) > edge
    per_row = step.reshape(rows, cols // _PRE_CELL_W, _PRE_CELL_W).sum(axis=2, dtype=np.int16) >= _PRE_EDGES
    cells = per_row.reshape(rows // _PRE_CELL_H, _PRE_CELL_H, -1).sum(axis=1, dtype=np.int16) >= _PRE_ROWS
    run = cells[:, : 1 - _PRE_RUN or None].copy()
    for k in range(1, _PRE_RUN):
        run &= cells[:, k : cells.shape[1] - _PRE_RUN + 1 + k]
    return bool(run.any())


def prefilter(image: np.ndarray, *, band: float = 0.2) -> bool:
    """Whether the outer ``band`` of the frame (that share of its height at the top and bottom, of its width at
    the left and right) may hold text: True sends the image on to :func:`detect`. ``band=0.5`` looks at the
    whole frame. Cheap (about a millisecond on a 512 x 512 slice) and biased to say True."""
    if image.ndim != 2:
        raise ValueError("prefilter takes a 2-D image (one frame, grey: colour turned to luma first)")
    if min(image.shape) < 8:
        return True
    factor = max(1, -(-max(image.shape) // _PRE_SIDE))
    small = image[::factor, ::factor]
    sample = _sample(small, 16384)
    lo, hi = np.percentile(sample, (0.5, 99.5))
    if hi <= lo:
        lo, hi = small.min(), small.max()
        if hi <= lo:
            return False
    if small.dtype.kind != "f" or small.itemsize < 4:
        small = small.astype(np.float32)
    edge = _PRE_EDGE * float(hi - lo)
    # Large lettering (a 60-pixel label on a radiograph) is sought again at half and a quarter of the size.
    while True:
        if _outer_band_text(small, edge, band):
            return True
        if min(small.shape) < 2 * _PRE_MIN_LEVEL:
            return False
        small = small[::2, ::2]


def _outer_band_text(small: np.ndarray, edge: float, band: float) -> bool:
    rows, cols = small.shape
    by, bx = max(_PRE_CELL_H, int(rows * band)), max(_PRE_CELL_W, int(cols * band))
    if 2 * by >= rows or 2 * bx >= cols:
        return _text_cells(small, edge)
    return (
        _text_cells(small[:by], edge)
        or _text_cells(small[rows - by :], edge)
        or _text_cells(small[by : rows - by, :bx], edge)
        or _text_cells(small[by : rows - by, cols - bx :], edge)
    )
