"""A pure-Python reader of DICOM Part 10 files (PS3.10 7.1, PS3.5 7): File Meta, transfer syntax, a tag walker.

An independent second reading of the bytes, for verify's leak scan and the inventory: it never imports the
native core (``veil.core._core``) nor pydicom.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

from veil.core.dictionary import dictionary_entry
from veil.core.plan import DUMMY_VALUES

__all__ = [
    "DEFLATED_TRANSFER_SYNTAXES",
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "LONG_VRS",
    "PIXEL_DATA_TAGS",
    "ParseError",
    "Part10",
    "RawElement",
    "implicit_vr",
    "meta_elements",
    "read_part10",
    "walk_elements",
]

_IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
#: Explicit VR Little Endian, the transfer syntax of an inflated copy of a deflated file.
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
_EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
#: Transfer syntaxes whose data set is deflated (PS3.5 A.5).
DEFLATED_TRANSFER_SYNTAXES = frozenset({"1.2.840.10008.1.2.1.99"})
#: Explicit VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_ALL_VRS = frozenset(v.encode("ascii") for v in DUMMY_VALUES)
_UNDEFINED = 0xFFFFFFFF
#: Float Pixel Data, Double Float Pixel Data and Pixel Data.
PIXEL_DATA_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_MAX_DEPTH = 64
_INFLATE_RATIO = 200


class ParseError(ValueError):
    """Bytes the tag walker cannot follow (the scan then searches the whole file)."""


@dataclass(frozen=True)
class Part10:
    """A file as the scan needs it: where the data set is, in which encoding, inflated when deflated."""

    meta_end: int  # bytes of preamble and File Meta at the start of the file
    dataset: bytes | memoryview | mmap.mmap  # the file itself, or the inflated data set
    start: int  # where the data set starts in ``dataset``
    transfer_syntax: str
    explicit: bool
    little: bool
    deflated: bool


def meta_elements(data: bytes | memoryview | mmap.mmap) -> Iterator[tuple[int, bytes, int, int, int]]:
    """The File Meta elements (PS3.10 7.1) as (element number, VR, start, header length, value length)."""
    n = len(data)
    pos = 132 if n >= 132 and data[128:132] == b"DICM" else 0
    while pos + 8 <= n and data[pos : pos + 2] == b"\x02\x00":
        element = struct.unpack_from("<H", data, pos + 2)[0]
        vr = bytes(data[pos + 4 : pos + 6])
        if vr in LONG_VRS:
            if pos + 12 > n:
                raise ParseError(f"File Meta element at byte {pos} runs past the end")
            length, header = struct.unpack_from("<I", data, pos + 8)[0], 12
        elif vr in _ALL_VRS:
            length, header = struct.unpack_from("<H", data, pos + 6)[0], 8
        else:  # File Meta written in implicit VR (seen in the wild)
            vr = b""
            length, header = struct.unpack_from("<I", data, pos + 4)[0], 8
        if length == _UNDEFINED or pos + header + length > n:
            raise ParseError(f"File Meta element at byte {pos} runs past the end")
        yield element, vr, pos, header, length
        pos += header + length


def read_part10(data: bytes | memoryview | mmap.mmap) -> Part10:
    """Splits a Part 10 file (or a bare data set) into its File Meta and data set (PS3.10 7.1)."""
    n = len(data)
    pos = 132 if n >= 132 and data[128:132] == b"DICM" else 0
    transfer_syntax = ""
    for element, _, start, header, length in meta_elements(data):
        if element == 0x0010:
            value = bytes(data[start + header : start + header + length])
            transfer_syntax = value.strip(b" \x00").decode("ascii", "replace")
        pos = start + header + length
    meta_end = pos
    if transfer_syntax:
        explicit = transfer_syntax != _IMPLICIT_VR_LITTLE_ENDIAN
        little = transfer_syntax != _EXPLICIT_VR_BIG_ENDIAN
    else:  # no File Meta: guess from the first element, as readers do
        explicit = pos + 6 <= n and bytes(data[pos + 4 : pos + 6]) in _ALL_VRS
        little = True
    if transfer_syntax in DEFLATED_TRANSFER_SYNTAXES:
        return Part10(meta_end, _inflate(data, meta_end), 0, transfer_syntax, True, True, True)
    return Part10(meta_end, data, meta_end, transfer_syntax, explicit, little, False)


def _inflate(data: bytes | memoryview | mmap.mmap, offset: int) -> bytes:
    """The inflated data set (raw deflate, RFC 1951; a zlib wrapper is accepted too), bounded in size."""
    compressed = bytes(data[offset:])
    limit = max(64 << 20, len(compressed) * _INFLATE_RATIO)
    for wbits in (-15, 15):
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(compressed, limit)
        except zlib.error:
            continue
        if inflater.unconsumed_tail:
            raise ParseError(f"deflated data set inflates past {limit} bytes")
        return out
    raise ParseError("deflated data set cannot be inflated")


class RawElement:
    """One element found by the walker: where its header and value are, and its path."""

    __slots__ = ("tag", "vr", "header", "value", "end", "depth", "path", "sequence")

    def __init__(self, tag: int, vr: str, header: int, value: int, depth: int, path: str) -> None:
        self.tag = tag
        self.vr = vr
        self.header = header
        self.value = value
        self.end = value
        self.depth = depth
        self.path = path
        self.sequence = False

    def __repr__(self) -> str:
        return f"RawElement({self.path} {self.vr} [{self.value}:{self.end}])"


@lru_cache(maxsize=8192)
def implicit_vr(tag: int) -> str:
    """The VR of a tag in an implicit VR data set: the dictionary's (first choice when ambiguous)."""
    group, element = tag >> 16, tag & 0xFFFF
    if element == 0:
        return "UL"
    if group & 1:
        return "LO" if 0x0010 <= element <= 0x00FF else "UN"
    entry = dictionary_entry(tag)
    return entry[0].split(" or ")[0].strip() if entry else "UN"


class _Walker:
    def __init__(self, buf: bytes | memoryview | mmap.mmap, nested: bool) -> None:
        self.buf = buf
        self.n = len(buf)
        self.nested = nested
        self.out: list[RawElement] = []

    def dataset(
        self, pos: int, end: int, explicit: bool, little: bool, depth: int, prefix: str, item: bool
    ) -> int:
        """Walks elements from pos to end (or, in an item of undefined length, to its delimiter)."""
        buf = self.buf
        tag_format = "<HH" if little else ">HH"
        u16 = "<H" if little else ">H"
        u32 = "<I" if little else ">I"
        while pos < end:
            if pos + 8 > end:
                raise ParseError(f"element header at byte {pos} runs past the end")
            group, element = struct.unpack_from(tag_format, buf, pos)
            tag = group << 16 | element
            if group == 0xFFFE:
                if tag == 0xFFFEE00D and item:
                    return pos + 8
                raise ParseError(f"unexpected item tag ({group:04X},{element:04X}) at byte {pos}")
            if explicit:
                vr_bytes = bytes(buf[pos + 4 : pos + 6])
                if vr_bytes in LONG_VRS:
                    if pos + 12 > end:
                        raise ParseError(f"element header at byte {pos} runs past the end")
                    length, header = struct.unpack_from(u32, buf, pos + 8)[0], 12
                elif vr_bytes in _ALL_VRS:
                    length, header = struct.unpack_from(u16, buf, pos + 6)[0], 8
                else:
                    raise ParseError(f"unknown VR {vr_bytes!r} at byte {pos}")
                vr = vr_bytes.decode("ascii")
            else:
                length, header = struct.unpack_from(u32, buf, pos + 4)[0], 8
                vr = implicit_vr(tag)
            node = RawElement(tag, vr, pos, pos + header, depth, f"{prefix}({group:04X},{element:04X})")
            if depth == 0 or self.nested:
                self.out.append(node)
            vpos = pos + header
            # Items of an explicit UN are implicit VR little endian (PS3.5 6.2.2).
            items_explicit = explicit and vr != "UN"
            items_little = little or not items_explicit
            if length == _UNDEFINED:
                if tag in PIXEL_DATA_TAGS or (vr in ("OB", "OW") and depth > 0):
                    vend = self.fragments(vpos)
                else:
                    node.sequence = True
                    vend = self.items(vpos, None, items_explicit, items_little, depth, node.path)
            else:
                vend = vpos + length
                if vend > end:
                    raise ParseError(f"value of {node.path} at byte {vpos} runs past the end")
                if self.nested and length and self._defined_sequence(tag, vr, vpos, explicit, little):
                    node.sequence = True
                    self.items(vpos, vend, items_explicit, items_little, depth, node.path)
            node.end = vend
            pos = vend
        if item:
            raise ParseError("item of undefined length without its delimiter")
        return pos

    def _defined_sequence(self, tag: int, vr: str, vpos: int, explicit: bool, little: bool) -> bool:
        """An explicit SQ; or, where only the dictionary says SQ (implicit VR, explicit UN), a value that
        starts with an item (a mislabelled value of another VR stays a leaf, as pydicom reads it)."""
        if vr == "SQ" and explicit:
            return True
        if vr == "SQ" or (vr == "UN" and implicit_vr(tag) == "SQ"):
            item = b"\xfe\xff\x00\xe0" if little or vr == "UN" else b"\xff\xfe\xe0\x00"
            return bytes(self.buf[vpos : vpos + 4]) == item
        return False

    def items(self, pos: int, end: int | None, explicit: bool, little: bool, depth: int, path: str) -> int:
        """Walks the items of a sequence; returns the position after it (after its delimiter if undefined)."""
        if depth + 1 > _MAX_DEPTH:
            raise ParseError(f"sequences nested deeper than {_MAX_DEPTH}")
        buf = self.buf
        limit = self.n if end is None else end
        item_format = "<HHI" if little else ">HHI"
        index = 0
        while end is None or pos < end:
            if pos + 8 > limit:
                raise ParseError(f"item header at byte {pos} runs past the end")
            group, element, length = struct.unpack_from(item_format, buf, pos)
            if group == 0xFFFE and element == 0xE0DD:
                return pos + 8
            if group != 0xFFFE or element != 0xE000:
                raise ParseError(f"expected an item at byte {pos} in {path}")
            start = pos + 8
            prefix = f"{path}[{index}]"
            if length == _UNDEFINED:
                pos = self.dataset(start, limit, explicit, little, depth + 1, prefix, True)
            else:
                if start + length > limit:
                    raise ParseError(f"item at byte {pos} runs past the end")
                if self.nested or end is None:
                    self.dataset(start, start + length, explicit, little, depth + 1, prefix, False)
                pos = start + length
            index += 1
        return pos

    def fragments(self, pos: int) -> int:
        """Skips encapsulated pixel data: items of defined length up to the sequence delimiter (PS3.5 A.4)."""
        buf = self.buf
        while True:
            if pos + 8 > self.n:
                raise ParseError(f"encapsulated pixel data at byte {pos} runs past the end")
            group, element, length = struct.unpack_from("<HHI", buf, pos)
            if group == 0xFFFE and element == 0xE0DD:
                return pos + 8
            if group != 0xFFFE or element != 0xE000 or length == _UNDEFINED or pos + 8 + length > self.n:
                raise ParseError(f"bad fragment at byte {pos} of encapsulated pixel data")
            pos += 8 + length


def walk_elements(part: Part10, *, nested: bool = True) -> list[RawElement]:
    """Every element of the data set in document order (sequences before their items' elements); with
    ``nested`` False only the top level (sequences of undefined length are still followed to their end)."""
    walker = _Walker(part.dataset, nested)
    walker.dataset(part.start, len(part.dataset), part.explicit, part.little, 0, "", False)
    return walker.out
