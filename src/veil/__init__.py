"""veil: high-throughput DICOM de-identification."""

from __future__ import annotations

__version__ = "0.1.0"
