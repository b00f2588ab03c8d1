"""JPEG-LS Lossless (PS3.5 A.4.3, ISO 14495-1), written by CharLS through pyjpegls
(``pixels.output: jpeg-ls``)."""

from __future__ import annotations

from typing import ClassVar

from pydicom.dataset import Dataset
from pydicom.uid import UID, JPEGLSLossless

from veil.pixels.codecs.base import Encoder

__all__ = ["ENCODER", "JpegLsEncoder"]


class JpegLsEncoder(Encoder):
    """``pixels.output: jpeg-ls``."""

    output: ClassVar[str] = "jpeg-ls"
    transfer_syntax: ClassVar[UID] = JPEGLSLossless
    requires: ClassVar[tuple[tuple[str, str], ...]] = (("pyjpegls", "jpeg_ls"),)
    plugin: ClassVar[str] = "pyjpegls"  # pydicom's encoding plugin

    def _encode(self, ds: Dataset) -> None:
        ds.compress(self.transfer_syntax, encoding_plugin=self.plugin, generate_instance_uid=False)


ENCODER = JpegLsEncoder()
