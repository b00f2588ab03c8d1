"""Pixels: which images are at risk of burned-in text, detection (OCR), redaction, and the codecs that decode
and re-encode the images that change. Imported only by runs whose recipe has a ``pixels:`` section.

Each name lives in its module (:mod:`~veil.pixels.policy`, :mod:`~veil.pixels.layout`,
:mod:`~veil.pixels.redact`, :mod:`~veil.pixels.thumbnails`, :mod:`~veil.pixels.ocr`,
:mod:`~veil.pixels.codecs`); the names below load on first use (PEP 562), so importing the package costs
nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from veil.system import lazy_exports

if TYPE_CHECKING:
    from veil.pixels.codecs.base import OUTPUTS, decoded_frames
    from veil.pixels.layout import PixelLayout, Region, frames_view
    from veil.pixels.policy import AT_RISK_MODALITIES, PixelDecision, at_risk, decide, match_rule
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
    from veil.pixels.thumbnails import THUMBNAIL_SIZE

__all__ = [
    "AT_RISK_MODALITIES",
    "CLEAN_PIXEL_DATA_CODE",
    "OUTPUTS",
    "THUMBNAIL_SIZE",
    "PixelDecision",
    "PixelLayout",
    "Redaction",
    "RedactionItem",
    "Region",
    "at_risk",
    "clean_pixel_plan",
    "decide",
    "decoded_frames",
    "frames_view",
    "match_rule",
    "redact_batch",
    "redact_file",
    "redact_file_bytes",
    "redact_native",
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
    "PixelDecision": "policy",
    "at_risk": "policy",
    "decide": "policy",
    "match_rule": "policy",
    "CLEAN_PIXEL_DATA_CODE": "redact",
    "Redaction": "redact",
    "RedactionItem": "redact",
    "clean_pixel_plan": "redact",
    "redact_batch": "redact",
    "redact_file": "redact",
    "redact_file_bytes": "redact",
    "redact_native": "redact",
    "ultrasound_data_regions": "redact",
    "THUMBNAIL_SIZE": "thumbnails",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
