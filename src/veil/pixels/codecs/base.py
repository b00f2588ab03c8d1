"""The codec interface: decoding an encapsulated data set to native pixels, and the encoders a redacted
image is written with, one per recipe ``pixels.output`` name, each in its own module and loaded on first use.

Decoding is pydicom's (its handlers choose the plugin by transfer syntax: pylibjpeg, pyjpegls, GDCM, Pillow);
encoding is one :class:`Encoder` per output. An encoder whose library is not installed refuses the file with a
``MalformedDicom`` that names the package, so the file is quarantined rather than written some other way.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import UID

from veil.errors import MalformedDicom

__all__ = [
    "LOSSY_METHODS",
    "OUTPUTS",
    "Encoder",
    "decode",
    "decoded_frames",
    "encoder",
    "mark_lossy",
    "was_lossy",
]

# Lossy syntaxes, and the LossyImageCompressionMethod each implies (PS3.3 C.7.6.1.1.5.1).
LOSSY_METHODS = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",
    "1.2.840.10008.1.2.4.91": "ISO_15444_1",
    "1.2.840.10008.1.2.4.203": "ISO_15444_15",
}

# The encodings a redacted compressed input can be written in (recipe ``pixels.output``, in the recipe's
# order), and the module of each backend.
_BACKENDS = {
    "rle": "rle",
    "jpeg-ls": "jpegls",
    "jpeg2000": "jpeg2000",
    "uncompressed": "native",
}
OUTPUTS = tuple(_BACKENDS)


class Encoder(ABC):
    """Writes the pixels of a decoded data set (native little endian, as :func:`decode` leaves it) in one
    transfer syntax, in place: Pixel Data, the pixel module and the File Meta transfer syntax change."""

    output: ClassVar[str]  # the recipe's pixels.output name
    transfer_syntax: ClassVar[UID]
    # The libraries the backend needs: (distribution to install, module it provides); none for pydicom's own.
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()

    def missing(self) -> tuple[str, ...]:
        """The distributions this backend needs that are not installed."""
        return tuple(dist for dist, module in self.requires if importlib.util.find_spec(module) is None)

    def encode(self, ds: Dataset, path: str = "") -> None:
        """Encodes ``ds`` in :attr:`transfer_syntax`; a missing library or an encoder error raises
        MalformedDicom (the file is quarantined, never written in another syntax)."""
        missing = self.missing()
        if missing:
            needs = ", ".join(missing)
            raise MalformedDicom(path, 0, f"cannot encode {self.transfer_syntax.name}: pixels.output "
                                 f"{self.output!r} needs {needs} (pip install 'veil[codecs]'), not installed")
        try:
            self._encode(ds)
        except Exception as exc:
            reason = f"cannot encode {self.transfer_syntax.name}: {type(exc).__name__}: {exc}"
            raise MalformedDicom(path, 0, reason) from None

    @abstractmethod
    def _encode(self, ds: Dataset) -> None:
        """The backend's encoding of ``ds`` in place; any exception is reported by :meth:`encode`."""


def encoder(output: str) -> Encoder:
    """The backend for a ``pixels.output`` name (one of :data:`OUTPUTS`)."""
    module = _BACKENDS.get(output)
    if module is None:
        raise ValueError(f"output {output!r}: one of {', '.join(OUTPUTS)}")
    backend: Encoder = importlib.import_module(f"{__package__}.{module}").ENCODER
    return backend


def was_lossy(ds: Dataset, syntax: UID) -> bool:
    """Whether the pixels have been through lossy compression: a lossy syntax now, or LossyImageCompression
    01."""
    return str(syntax) in LOSSY_METHODS or str(ds.get("LossyImageCompression", "")).strip() == "01"


def mark_lossy(ds: Dataset, syntax: UID) -> None:
    """Once lossy, always lossy (PS3.3 C.7.6.1.1.5): the history stays whatever the new encoding."""
    ds.LossyImageCompression = "01"
    if "LossyImageCompressionMethod" not in ds and str(syntax) in LOSSY_METHODS:
        ds.LossyImageCompressionMethod = LOSSY_METHODS[str(syntax)]


def decode(ds: Dataset, syntax: UID, path: str = "") -> None:
    """Decodes every frame of an encapsulated data set in place into native little endian, YBR converted
    to RGB; keeps the SOP Instance UID (the de-identified one) and updates the pixel module and transfer
    syntax to match. A missing plugin or a corrupt codestream raises MalformedDicom: either way no output."""
    try:
        ds.decompress(as_rgb=True, generate_instance_uid=False)
    except Exception as exc:
        reason = f"cannot decode {syntax.name or syntax}: {type(exc).__name__}: {exc}"
        raise MalformedDicom(path, 0, reason) from None


def decoded_frames(data: bytes | memoryview, path: str = "") -> np.ndarray:
    """Every frame of a file's image, decoded by pydicom's handlers: (frames, rows, columns[, samples]) for
    OCR. Undecodable pixel data raises MalformedDicom (the file is quarantined)."""
    try:
        ds = pydicom.dcmread(io.BytesIO(bytes(data)), force=True)
        array = ds.pixel_array
    except Exception as exc:
        reason = f"pixel data cannot be decoded for text detection: {type(exc).__name__}"
        raise MalformedDicom(path, 0, reason) from None
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if frames == 1:
        array = array[None]
    if samples == 1 and array.ndim == 4:
        array = array[..., 0]
    return array
