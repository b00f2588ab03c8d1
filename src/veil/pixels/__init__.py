"""Pixels: which images may carry burned-in text (header triage, pre-filter), detection (a text detector and
recognizer), redaction, and the codecs that decode and re-encode the images that change. Imported only by runs
whose recipe has a ``pixels:`` section.

Each name lives in its module (:mod:`~veil.pixels.policy`, :mod:`~veil.pixels.screen` (the check of one
image), :mod:`~veil.pixels.textdetect`, :mod:`~veil.pixels.layout`, :mod:`~veil.pixels.redact`,
:mod:`~veil.pixels.thumbnails`, :mod:`~veil.pixels.ocr` (Tesseract, the tests' independent reader),
:mod:`~veil.pixels.codecs`); the names below load on first use (PEP 562), so importing the package costs
nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from veil.system import lazy_exports

if TYPE_CHECKING:
    from veil.pixels.codecs.base import OUTPUTS, decoded_frames
    from veil.pixels.layout import PixelLayout, Region, frames_view
    from veil.pixels.policy import (
        AT_RISK_MODALITIES,
        NO_BURNED_IN_TEXT_MODALITIES,
        PixelDecision,
        at_risk,
        decide,
        is_safe_text,
        match_rule,
        triage,
    )
    from veil.pixels.redact import (
        CLEAN_PIXEL_DATA_CODE,
        Redaction,
        RedactionItem,
        clean_pixel_plan,
        redact_batch,
        redact_file,
        redact_file_bytes,
        redact_native,
        ultrasound_data_regions,
    )
    from veil.pixels.screen import SeriesRegions, check_image, gray_frames
    from veil.pixels.thumbnails import THUMBNAIL_SIZE

__all__ = [
    "AT_RISK_MODALITIES",
    "CLEAN_PIXEL_DATA_CODE",
    "NO_BURNED_IN_TEXT_MODALITIES",
    "OUTPUTS",
    "THUMBNAIL_SIZE",
    "PixelDecision",
    "PixelLayout",
    "Redaction",
    "RedactionItem",
    "Region",
    "SeriesRegions",
    "at_risk",
    "check_image",
    "clean_pixel_plan",
    "decide",
    "decoded_frames",
    "frames_view",
    "gray_frames",
    "is_safe_text",
    "match_rule",
    "redact_batch",
    "redact_file",
    "redact_file_bytes",
    "redact_native",
    "triage",
    "ultrasound_data_regions",
]

# Each public name and the module that holds it.
_HOMES = {
    "OUTPUTS": "codecs.base",
    "decoded_frames": "codecs.base",
    "PixelLayout": "layout",
    "Region": "layout",
    "frames_view": "layout",
    "AT_RISK_MODALITIES": "policy",
    "NO_BURNED_IN_TEXT_MODALITIES": "policy",
    "PixelDecision": "policy",
    "at_risk": "policy",
    "decide": "policy",
    "is_safe_text": "policy",
    "match_rule": "policy",
    "triage": "policy",
    "CLEAN_PIXEL_DATA_CODE": "redact",
    "Redaction": "redact",
    "RedactionItem": "redact",
    "clean_pixel_plan": "redact",
    "redact_batch": "redact",
    "redact_file": "redact",
    "redact_file_bytes": "redact",
    "redact_native": "redact",
    "ultrasound_data_regions": "redact",
    "SeriesRegions": "screen",
    "check_image": "screen",
    "gray_frames": "screen",
    "THUMBNAIL_SIZE": "thumbnails",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
