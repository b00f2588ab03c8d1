"""Batched pixel redaction (issue 5) against a per-frame loop, on the same uncompressed frames in one run.

200 ultrasound-sized instances (480 x 640, 8-bit RGB, 4 frames each) of one shape and one rule: the batch
copies each instance's bytes once into a stacked array and blanks each region with one assignment over all
frames; the loop copies and blanks frame by frame, as a per-image tool does. Both start from read-only bytes
(the rewrite's slice of a mapped input) and yield redacted bytes. Compare the two means for the ratio; no
timing is asserted. The OCR benchmark runs only where tesseract is installed.
"""

from __future__ import annotations

import numpy as np
import pytest

from veil.pixels.layout import PixelLayout, frames_view
from veil.pixels.redact import RedactionItem, redact_batch

LAYOUT = PixelLayout(480, 640, 3, 8, number_of_frames=4)
REGIONS = ((0, 0, 640, 48), (0, 440, 320, 40), (560, 60, 80, 120))


@pytest.fixture(scope="module")
def instances() -> list[bytes]:
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, LAYOUT.total_bytes, dtype=np.uint8).tobytes() for _ in range(200)]


def test_redact_batched(benchmark, instances) -> None:
    items = [RedactionItem(data, LAYOUT, REGIONS) for data in instances]
    benchmark.extra_info["frames_per_round"] = len(instances) * LAYOUT.number_of_frames
    out = benchmark(redact_batch, items)
    assert len(out) == len(instances)


def test_redact_per_frame_loop(benchmark, instances) -> None:
    def run() -> list[bytes]:
        outputs = []
        for data in instances:
            source = frames_view(data, LAYOUT)
            frames = []
            for f in range(LAYOUT.number_of_frames):
                frame = source[f].copy()
                for x, y, w, h in REGIONS:
                    frame[y : y + h, x : x + w, :] = 0
                frames.append(frame.tobytes())
            outputs.append(b"".join(frames))
        return outputs

    benchmark.extra_info["frames_per_round"] = len(instances) * LAYOUT.number_of_frames
    out = benchmark(run)
    assert len(out) == len(instances)


def test_batch_and_loop_agree(instances) -> None:
    batched = redact_batch([RedactionItem(instances[0], LAYOUT, REGIONS)])[0]
    frame = frames_view(bytearray(instances[0]), LAYOUT).copy()
    for x, y, w, h in REGIONS:
        frame[:, y : y + h, x : x + w, :] = 0
    assert bytes(batched) == frame.tobytes()


def test_ocr_frame_throughput(benchmark) -> None:
    from veil.pixels import ocr

    if not ocr.available():
        pytest.skip("tesseract-ocr / pytesseract not installed")
    rng = np.random.default_rng(1)
    frame = (rng.integers(0, 40, (480, 640), dtype=np.uint8))
    frame[10:40, 10:300] = 255  # a bright band where a header line would be
    benchmark.extra_info["frames_per_round"] = 1
    benchmark.pedantic(ocr.detect_text, args=(frame,), rounds=3, iterations=1)
