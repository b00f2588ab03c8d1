"""RLE Lossless (PS3.5 G), written by pydicom's own encoder: the default ``pixels.output``, needing no
library."""

from __future__ import annotations

from typing import ClassVar

from pydicom.dataset import Dataset
from pydicom.uid import UID, RLELossless

from veil.pixels.codecs.base import Encoder

__all__ = ["ENCODER", "RleEncoder"]


class RleEncoder(Encoder):
    """``pixels.output: rle``."""

    output: ClassVar[str] = "rle"
    transfer_syntax: ClassVar[UID] = RLELossless
    plugin: ClassVar[str] = "pydicom"  # pydicom's encoding plugin

    def _encode(self, ds: Dataset) -> None:
        ds.compress(self.transfer_syntax, encoding_plugin=self.plugin, generate_instance_uid=False)


ENCODER = RleEncoder()
