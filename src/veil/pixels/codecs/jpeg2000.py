"""JPEG 2000 Lossless (PS3.5 A.4.4, ISO 15444-1), written by OpenJPEG through pylibjpeg-openjpeg
(``pixels.output: jpeg2000``)."""

from __future__ import annotations

from typing import ClassVar

from pydicom.dataset import Dataset
from pydicom.uid import UID, JPEG2000Lossless

from veil.pixels.codecs.base import Encoder

__all__ = ["ENCODER", "Jpeg2000Encoder"]


class Jpeg2000Encoder(Encoder):
    """``pixels.output: jpeg2000``."""

    output: ClassVar[str] = "jpeg2000"
    transfer_syntax: ClassVar[UID] = JPEG2000Lossless
    requires: ClassVar[tuple[tuple[str, str], ...]] = (
        ("pylibjpeg", "pylibjpeg"),
        ("pylibjpeg-openjpeg", "openjpeg"),
    )
    plugin: ClassVar[str] = "pylibjpeg"  # pydicom's encoding plugin

    def _encode(self, ds: Dataset) -> None:
        ds.compress(self.transfer_syntax, encoding_plugin=self.plugin, generate_instance_uid=False)


ENCODER = Jpeg2000Encoder()
