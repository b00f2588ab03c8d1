"""Native (uncompressed) pixel data: the transfer syntaxes that carry it and their byte order, the expansion
of native YBR_FULL_422, and ``pixels.output: uncompressed`` (explicit VR little endian)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from veil.errors import MalformedDicom
from veil.pixels.codecs.base import Encoder

__all__ = ["ENCODER", "NATIVE_SYNTAXES", "UncompressedEncoder", "expand_ybr_full_422"]

# The native transfer syntaxes, each with whether its pixel data is big endian (PS3.5 A.1-A.3, A.5).
NATIVE_SYNTAXES = {
    "1.2.840.10008.1.2": False,  # implicit VR little endian
    "1.2.840.10008.1.2.1": False,  # explicit VR little endian
    "1.2.840.10008.1.2.1.99": False,  # deflated explicit VR little endian
    "1.2.840.10008.1.2.2": True,  # explicit VR big endian (retired)
}


class UncompressedEncoder(Encoder):
    """``pixels.output: uncompressed``: decoding already left the pixels native in explicit VR little endian,
    so there is nothing left to encode."""

    output: ClassVar[str] = "uncompressed"
    transfer_syntax: ClassVar[UID] = ExplicitVRLittleEndian

    def _encode(self, ds: Dataset) -> None:
        return None


ENCODER = UncompressedEncoder()


def expand_ybr_full_422(ds: Dataset, path: str) -> None:
    """Native YBR_FULL_422 stores two luminance values and one Cb, Cr pair per two pixels (PS3.3
    C.7.6.3.1.2): no box can be blanked in place. Expanded to YBR_FULL, each pair's chroma repeated for both
    pixels: every sample value is kept exactly (no colour conversion), and the pixel module says so."""
    from pydicom.pixels import pixel_array

    try:
        expanded = pixel_array(ds, as_rgb=False)
    except Exception as exc:
        raise MalformedDicom(path, 0, f"cannot read YBR_FULL_422 pixel data: {type(exc).__name__}: {exc}") from None
    ds.PixelData = np.ascontiguousarray(expanded).tobytes()
    ds.PhotometricInterpretation = "YBR_FULL"
    ds.PlanarConfiguration = 0
