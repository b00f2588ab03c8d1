"""veil: high-throughput DICOM de-identification."""

from __future__ import annotations

from veil._version import __version__

__all__ = ["__version__"]
