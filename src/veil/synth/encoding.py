"""The small DICOM encoder of the synthetic archive: transfer syntaxes, element trees with fixed-width slots.

Also the text forms of the DA, TM, AS and DS values the headers use, and the stored-block deflate stream.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import date

__all__ = [
    "DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN",
    "EXPLICIT_VR_BIG_ENDIAN",
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "IMPLICIT_VR_LITTLE_ENDIAN",
    "series_transfer_syntax",
]

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"


def series_transfer_syntax(patient: int, study: int, series: int) -> str:
    """The transfer syntax UID of a series, from ``n = patient + study + series`` (0-based indices).

    Seed-independent, so that any archive's first series and three quarters of all series are the common case:

    * ``n % 4 != 3``: Explicit VR Little Endian (75 %);
    * ``n % 32 == 15``: Explicit VR Big Endian (retired, still met in old archives; about 3 %);
    * ``n % 32 == 31``: Deflated Explicit VR Little Endian (about 3 %); the deflate stream is written with
      stored blocks so the bytes do not depend on the zlib build, and padded to even length (PS3.5 A.5);
    * otherwise ``n % 4 == 3``: Implicit VR Little Endian (about 19 %).
    """
    n = patient + study + series
    if n % 4 != 3:
        return EXPLICIT_VR_LITTLE_ENDIAN
    if n % 32 == 15:
        return EXPLICIT_VR_BIG_ENDIAN
    if n % 32 == 31:
        return DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
    return IMPLICIT_VR_LITTLE_ENDIAN


# --------------------------------------------------------------------------------------------------------------
# A small DICOM encoder with fixed-width slots
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Seq:
    """A sequence value: items are element lists; either length may be undefined (PS3.5 7.5)."""

    items: tuple[list[_Element], ...]
    undefined_length: bool = False
    undefined_length_items: bool = False


@dataclass(frozen=True)
class _Slot:
    """An instance-varying value of a fixed, even encoded width, patched per instance."""

    name: str
    width: int


_Value = str | bytes | int | float | tuple[int, ...] | tuple[float, ...] | _Seq | _Slot
_Element = tuple[int, str, _Value]

# PS3.5 7.1.2: these VRs have a reserved field and a 32-bit length in explicit VR.
_LONG_LENGTH_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "SV": "q", "UV": "Q"}
_UNDEFINED_LENGTH = 0xFFFFFFFF
_TEXT_ENCODING = "latin-1"  # Specific Character Set ISO_IR 100 (PS3.3 C.12.1.1.2)


class _Encoder:
    """Encodes element lists in one transfer syntax, recording where each slot's value lies."""

    def __init__(self, *, implicit_vr: bool, little_endian: bool) -> None:
        order = "<" if little_endian else ">"
        self.buffer = bytearray()
        self.slots: list[tuple[str, int, int]] = []
        self._order = order
        self._implicit_vr = implicit_vr
        self._implicit_header = struct.Struct(order + "HHI")
        self._short_header = struct.Struct(order + "HH2sH")
        self._long_header = struct.Struct(order + "HH2s2xI")
        self._length = struct.Struct(order + "I")

    def dataset(self, elements: list[_Element]) -> None:
        ordered = sorted(elements, key=_tag_of)
        if len({element[0] for element in ordered}) != len(ordered):
            raise ValueError("duplicate tag in a data set")
        element = self._element
        for tag, vr, value in ordered:
            element(tag, vr, value)

    def _header(self, tag: int, vr: str, length: int) -> int:
        """Write a tag, VR and length; return the offset of the length field for back-patching."""
        start = len(self.buffer)
        if self._implicit_vr:
            self.buffer += self._implicit_header.pack(tag >> 16, tag & 0xFFFF, length)
            return start + 4
        if vr in _LONG_LENGTH_VRS:
            self.buffer += self._long_header.pack(tag >> 16, tag & 0xFFFF, vr.encode(), length)
            return start + 8
        if length > 0xFFFF:
            raise ValueError(f"value of ({tag >> 16:04X},{tag & 0xFFFF:04X}) too long for VR {vr}")
        self.buffer += self._short_header.pack(tag >> 16, tag & 0xFFFF, vr.encode(), length)
        return start + 6

    def _element(self, tag: int, vr: str, value: _Value) -> None:
        if isinstance(
            value, str
        ):  # the common case first: PS3.5 6.2 pads UI with NUL, other text with a space
            data = value.encode(_TEXT_ENCODING)
            if len(data) & 1:
                data += b"\x00" if vr == "UI" else b" "
        elif isinstance(value, _Seq):
            self._sequence(tag, value)
            return
        elif isinstance(value, _Slot):
            width = value.width
            self._header(tag, vr, width)
            self.slots.append((value.name, len(self.buffer), width))
            self.buffer += bytes(width)
            return
        else:
            data = self._value_bytes(vr, value)
        # The header inline: this runs for every element of every series template.
        if self._implicit_vr:
            self.buffer += self._implicit_header.pack(tag >> 16, tag & 0xFFFF, len(data))
        elif vr in _LONG_LENGTH_VRS:
            self.buffer += self._long_header.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(data))
        elif len(data) <= 0xFFFF:
            self.buffer += self._short_header.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(data))
        else:
            raise ValueError(f"value of ({tag >> 16:04X},{tag & 0xFFFF:04X}) too long for VR {vr}")
        self.buffer += data

    def _sequence(self, tag: int, value: _Seq) -> None:
        length_at = self._header(tag, "SQ", _UNDEFINED_LENGTH)
        start = len(self.buffer)
        for item in value.items:
            self.buffer += self._implicit_header.pack(0xFFFE, 0xE000, _UNDEFINED_LENGTH)
            item_start = len(self.buffer)
            self.dataset(item)
            if value.undefined_length_items:
                self.buffer += self._implicit_header.pack(0xFFFE, 0xE00D, 0)  # Item Delimitation Item
            else:
                self._length.pack_into(self.buffer, item_start - 4, len(self.buffer) - item_start)
        if value.undefined_length:
            self.buffer += self._implicit_header.pack(0xFFFE, 0xE0DD, 0)  # Sequence Delimitation Item
        else:
            self._length.pack_into(self.buffer, length_at, len(self.buffer) - start)

    def _value_bytes(self, vr: str, value: _Value) -> bytes:
        """Binary values: numbers and AT in the transfer syntax's byte order, bytes padded with a NUL."""
        if vr in _NUMBER_FORMATS:
            numbers = value if isinstance(value, tuple) else (value,)
            return struct.pack(f"{self._order}{len(numbers)}{_NUMBER_FORMATS[vr]}", *numbers)
        if vr == "AT" and isinstance(value, tuple):
            return b"".join(struct.pack(self._order + "HH", int(t) >> 16, int(t) & 0xFFFF) for t in value)
        if isinstance(value, bytes):
            return value + b"\x00" * (len(value) & 1)
        raise TypeError(f"VR {vr} cannot encode a {type(value).__name__}")


def _tag_of(element: _Element) -> int:
    return element[0]


def _even(length: int) -> int:
    return length + (length & 1)


def _fit(text: str, width: int, vr: str = "") -> bytes:
    """Encode text padded to exactly ``width`` bytes (NUL for UI, space otherwise)."""
    data = text.encode(_TEXT_ENCODING)
    if len(data) > width:
        raise ValueError(f"value {len(data)} bytes long does not fit a {width}-byte slot")
    return data + (b"\x00" if vr == "UI" else b" ") * (width - len(data))


def _deflate_stored(data: bytes | bytearray) -> bytes:
    """A raw deflate stream (RFC 1951 3.2.4) of stored blocks: identical bytes whatever zlib is installed."""
    out = bytearray()
    position = 0
    while True:
        chunk = data[position : position + 0xFFFF]
        position += len(chunk)
        final = position >= len(data)
        out.append(1 if final else 0)  # BFINAL, BTYPE=00 (no compression)
        out += struct.pack("<HH", len(chunk), len(chunk) ^ 0xFFFF)
        out += chunk
        if final:
            # PS3.5 A.5: an odd-length deflated bit stream is padded with a single trailing NULL byte.
            return bytes(out + b"\x00" * (len(out) & 1))


def _patch(buffer: bytearray, slots: tuple[tuple[str, int, int], ...], values: dict[str, bytes]) -> None:
    """Write each slot's value, padded with spaces (text) or a NUL (pixel data) to the slot's width."""
    for name, offset, width in slots:
        value = values[name]
        pad = b"\x00" if name == "pixel_data" else b" "
        buffer[offset : offset + width] = value + pad * (width - len(value))


# --------------------------------------------------------------------------------------------------------------
# Value forms
# --------------------------------------------------------------------------------------------------------------


def _da(value: date) -> str:
    return f"{value.year:04d}{value.month:02d}{value.day:02d}"


def _tm(microseconds: int) -> str:
    seconds, fraction = divmod(microseconds, 1_000_000)
    return f"{seconds // 3600:02d}{seconds // 60 % 60:02d}{seconds % 60:02d}.{fraction:06d}"


def _age(birth: date, on: date) -> str:
    """Patient Age (AS) on a date: years, or months under two years (PS3.5 6.2)."""
    months = (on.year - birth.year) * 12 + on.month - birth.month - (on.day < birth.day)
    return f"{months:03d}M" if months < 24 else f"{months // 12:03d}Y"


def _code(value: str, scheme: str, meaning: str) -> list[_Element]:
    """The basic Code Sequence Macro attributes (PS3.3 8.8)."""
    return [(0x00080100, "SH", value), (0x00080102, "SH", scheme), (0x00080104, "LO", meaning)]


def _decimal(thousandths: int) -> str:
    """A DS value from an integer number of thousandths, formatted without floating point."""
    sign = "-" if thousandths < 0 else ""
    whole, fraction = divmod(abs(thousandths), 1000)
    return f"{sign}{whole}.{fraction:03d}"
