"""Proof that a de-identified output set is clean and consistent with its inputs: ``veil verify SRC DST``.

Independent of the rewriter (it never calls ``veil._core``), four checks:

1. **Leak scan.** Every identifying value of every input is gathered, per patient, in memory only
   (:class:`IdentifierSet`): each component of every person name at any depth, patient and other IDs,
   accession, study, order and procedure numbers, the birth date in several spellings, addresses, telephone
   numbers, institution, station and device serial, and the original instance, series, study and frame of
   reference UIDs. Values the recipe keeps on purpose (their element's rule is KEEP) are not searched and
   are listed in the report. Every byte of every output is then searched at once for all of them with an
   Aho-Corasick automaton (pyahocorasick), case-insensitively for text: File Meta, header, private and
   nested elements, ``UN`` values, the inflated data set of a deflated file; only the value of the top-level
   Pixel Data is skipped, found by a small tag walker of this module. A file that walker cannot parse is
   searched whole. Only when a file matches is it read with pydicom to name each match's element path.
2. **Referential integrity.** Inputs and outputs pair by relative path (veil's mirror layout); inputs with
   no output must have an audit record (``DST/.veil/audit/*.parquet``). Every reference to an instance,
   series, study or frame of reference of the input set resolves to the output that instance became; each
   original maps to one output UID and no two originals to the same one; no original UID survives where
   the recipe remaps UIDs, and with the key, each is the keyed UID of its original;
   MediaStorageSOPInstanceUID equals SOPInstanceUID. Where the recipe pseudonymises PatientID, each patient
   has one pseudonym and each pseudonym one patient, no original is left, and each is the keyed pseudonym of
   its original (with the key), or for counter pseudonyms the number the run's re-identification table
   gives its original (with ``--reid-table``).
3. **Kept attributes.** Top-level public attributes whose rule is KEEP hold the same bytes in the output.
4. **Conformance.** Where ``dciodvfy`` (dicom3tools) is on PATH, a sample of pairs is checked and errors
   the output has that its input had not are reported. A deflated file (input or output) is checked through
   an inflated Explicit VR Little Endian copy in a private temporary directory (:func:`inflated_copy`):
   dciodvfy checks the IOD, and the Debian build does not inflate. Its complaints that a sequence the recipe
   empties has no items are notes, not failures (PS3.5 7.4.5, 7.4.6: any Type 2 or 3 sequence may be sent
   with zero items).

Matching rules (to keep a leak scan that is meant to be read free of noise):

* Values shorter than 4 characters (name components: 3), placeholder words (:data:`PLACEHOLDERS`, a
  placeholder cut short to fit its VR such as ``ANONYMOU``, the Plan's dummy values and the recipe's
  replacement values, a single repeated character, zeros) and name components without a letter are ignored.
* A value that begins or ends with a digit must not touch another digit there (``1234`` is not found in
  ``91234`` nor in a decimal or UID component such as ``2.25.1234``): a leaked number is a whole number.
  An 8-digit birth date may be followed by digits (a date time).
* A value shorter than 6 characters that begins or ends with a letter must not touch another letter there
  (``LEE`` is not found in ``SLEEP``); longer values match anywhere.
* A name component shorter than 5 characters is a whole token or nothing: it must not touch a letter or a
  digit at either end (``RIC`` is found in ``Dr RIC said`` and ``^RIC^``, not inside a keyed pseudonym such
  as ``RIC6EAEJIDWYPQBZ``, where three or four base32 characters spell some name by chance, differently under
  every key). Name components of 5 characters and more keep the rules above.
* A UID must not touch a digit or a dot (``1.2.3`` is not found in ``1.2.34``).
* A match that is the whole value of an element the recipe keeps (say a family name ``WHITE`` that is also
  some patient's Ethnic Group) is reported as a note, not a finding.

Nothing here writes an identifying value anywhere: the report shows each found value masked (first and last
character), names files by relative path (masked where a path holds an identifying value) and never shows
an original UID.
"""

from __future__ import annotations

import html
import io
import json
import logging
import mmap
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import ahocorasick
import pydicom
from pydicom.dataset import Dataset

from veil._version import __version__
from veil.core.plan import DUMMY_VALUES, STANDARD_UID_PREFIX, Action, Plan
from veil.errors import KeyError_
from veil.keys import Key, KeyedFunctions
from veil.preview.inspect import Node, element_bytes, explain_rule, walk_dataset
from veil.recipes.recipe import CompiledRecipe, Recipe, compile_recipe, dictionary_entry

__all__ = [
    "EXIT_FINDINGS",
    "Finding",
    "HIPAA_IDENTIFIERS",
    "IdentifierSet",
    "LeakScanner",
    "PLACEHOLDERS",
    "ParseError",
    "Part10",
    "RawElement",
    "VerifyReport",
    "hipaa_checklist",
    "inflated_copy",
    "mask_value",
    "read_part10",
    "scan_regions",
    "verify",
    "walk_elements",
    "write_report",
]

log = logging.getLogger(__name__)

EXIT_FINDINGS = 4

#: Values that are never searched for: what de-identifiers, modalities and people write instead of a value.
PLACEHOLDERS = frozenset(
    {
        "ANON", "ANONYMOUS", "ANONYMIZED", "ANONYMISED", "ANONYMIZE", "DEIDENTIFIED", "DE-IDENTIFIED",
        "REMOVED", "REDACTED", "DELETED", "HIDDEN", "MASKED", "UNKNOWN", "UNKOWN", "NONE", "NULL", "NIL",
        "N/A", "NOT APPLICABLE", "NOT GIVEN", "NOT AVAILABLE", "UNAVAILABLE", "UNSPECIFIED", "EMPTY", "BLANK",
        "NONAME", "NO NAME", "NOBODY", "DUMMY", "TEST", "TESTING", "PATIENT", "DOCTOR", "PHYSICIAN", "OTHER",
        "MISS", "MRS.", "PROF", "PROF.", "PHD", "PH.D", "PH.D.", "M.D.", "D.O.", "DR.", "JR.", "SR.", "III",
        "ANONYMOUS^ANONYMOUS", "UNKNOWN^UNKNOWN", "DEFAULT", "NORMAL", "ROUTINE",
    }
)  # fmt: skip

_MIN_LENGTH = 4
_MIN_NAME_LENGTH = 3
_SHORT = 6  # letter ends of values shorter than this must be word boundaries
_SHORT_NAME = 5  # both ends of name components shorter than this must be token boundaries (letter or digit)

# --- byte-level reading: File Meta, transfer syntax, an element walker -----------------------------------

_IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
_EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
_DEFLATED = frozenset({"1.2.840.10008.1.2.1.99"})
_LONG_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
_ALL_VRS = frozenset(v.encode("ascii") for v in DUMMY_VALUES)
_UNDEFINED = 0xFFFFFFFF
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
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


def _meta_elements(data: bytes | memoryview | mmap.mmap) -> Iterator[tuple[int, bytes, int, int, int]]:
    """The File Meta elements (PS3.10 7.1) as (element number, VR, start, header length, value length)."""
    n = len(data)
    pos = 132 if n >= 132 and data[128:132] == b"DICM" else 0
    while pos + 8 <= n and data[pos : pos + 2] == b"\x02\x00":
        element = struct.unpack_from("<H", data, pos + 2)[0]
        vr = bytes(data[pos + 4 : pos + 6])
        if vr in _LONG_VRS:
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
    for element, _, start, header, length in _meta_elements(data):
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
    if transfer_syntax in _DEFLATED:
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
                if vr_bytes in _LONG_VRS:
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
                if tag in _PIXEL_TAGS or (vr in ("OB", "OW") and depth > 0):
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


@dataclass(frozen=True)
class Region:
    """A stretch of bytes the scan searches: in the file, or in the inflated data set of a deflated file."""

    buffer: Any
    start: int
    stop: int
    where: str  # "file" | "inflated data set"


def scan_regions(data: bytes | memoryview | mmap.mmap) -> tuple[list[Region], str | None]:
    """What to search in one file: every byte but the value of the top-level Pixel Data (Float and Double
    Float Pixel Data too). Returns the regions and, when the file cannot be walked, why (then all of it)."""
    try:
        part = read_part10(data)
    except ParseError as exc:
        return [Region(data, 0, len(data), "file")], str(exc)
    regions: list[Region] = []
    where = "file"
    if part.deflated:
        regions.append(Region(data, 0, part.meta_end, "file"))
        where = "inflated data set"
    buffer = part.dataset
    try:
        top = walk_elements(part, nested=False)
    except ParseError as exc:
        regions.append(Region(buffer, 0 if not part.deflated else part.start, len(buffer), where))
        return regions, str(exc)
    pos = 0 if not part.deflated else part.start
    for element in top:
        if element.tag in _PIXEL_TAGS:
            regions.append(Region(buffer, pos, element.value, where))
            pos = element.end
    regions.append(Region(buffer, pos, len(buffer), where))
    return [r for r in regions if r.stop > r.start], None


# --- identifying values -------------------------------------------------------------------------------------

# Byte-level case folding applied alike to patterns and to the bytes searched: ASCII and Latin-1 capitals.
_FOLD = bytes.maketrans(
    bytes(range(0x41, 0x5B)) + bytes(b for b in range(0xC0, 0xDF) if b != 0xD7),
    bytes(range(0x61, 0x7B)) + bytes(b for b in range(0xE0, 0xFF) if b != 0xF7),
)

# Attributes whose values are identifiers (beside every PN), by keyword: the kind of identifier they hold.
_IDENTIFIER_KEYWORDS: dict[str, str] = {
    "PatientID": "patient ID",
    "OtherPatientIDs": "other patient ID",
    "MedicalRecordLocator": "medical record locator",
    "AccessionNumber": "accession number",
    "StudyID": "study ID",
    "AdmissionID": "admission ID",
    "ServiceEpisodeID": "service episode ID",
    "RequestedProcedureID": "requested procedure ID",
    "ScheduledProcedureStepID": "scheduled procedure step ID",
    "PerformedProcedureStepID": "performed procedure step ID",
    "PlacerOrderNumberImagingServiceRequest": "order number",
    "FillerOrderNumberImagingServiceRequest": "order number",
    "PlacerOrderNumberImagingServiceRequestRetired": "order number",
    "FillerOrderNumberImagingServiceRequestRetired": "order number",
    "PlacerOrderNumberProcedure": "order number",
    "FillerOrderNumberProcedure": "order number",
    "PatientBirthDate": "birth date",
    "PatientAddress": "address",
    "InstitutionAddress": "address",
    "ReferringPhysicianAddress": "address",
    "PersonAddress": "address",
    "PatientTelephoneNumbers": "telephone number",
    "ReferringPhysicianTelephoneNumbers": "telephone number",
    "PersonTelephoneNumbers": "telephone number",
    "PatientTelecomInformation": "telecom information",
    "InstitutionName": "institution name",
    "StationName": "station name",
    "DeviceSerialNumber": "device serial number",
    "SourceSerialNumber": "device serial number",
    "DetectorID": "device serial number",
    "GantryID": "device serial number",
    "DeviceID": "device serial number",
    "SOPInstanceUID": "UID",
    "SeriesInstanceUID": "UID",
    "StudyInstanceUID": "UID",
    "FrameOfReferenceUID": "UID",
    "MediaStorageSOPInstanceUID": "UID",
}
_IDENTIFIER_TAGS: dict[int, tuple[str, str]] = {}
for _keyword, _kind in _IDENTIFIER_KEYWORDS.items():
    _tag = pydicom.datadict.tag_for_keyword(_keyword)
    if _tag is not None:
        _IDENTIFIER_TAGS[_tag] = (_keyword, _kind)

_SOP_INSTANCE_UID = 0x00080018
_SERIES_INSTANCE_UID = 0x0020000E
_STUDY_INSTANCE_UID = 0x0020000D
_FRAME_OF_REFERENCE_UID = 0x00200052
_MEDIA_STORAGE_SOP_INSTANCE_UID = 0x00020003
_PATIENT_ID = 0x00100020
_IDENTITY_TAGS = {
    _SOP_INSTANCE_UID: "instance",
    _SERIES_INSTANCE_UID: "series",
    _STUDY_INSTANCE_UID: "study",
    _FRAME_OF_REFERENCE_UID: "frame of reference",
}
_UID_KINDS = ("instance", "series", "study", "frame of reference")


def mask_value(value: str) -> str:
    """The first and last character, every other one ``*``: enough to recognise, too little to read."""
    if len(value) <= 2:
        return "*" * len(value)
    return value[0] + "*" * (len(value) - 2) + value[-1]


@dataclass
class _Pattern:
    text: str  # folded, as searched
    display: str  # the value as read (masked before it is shown)
    kinds: set[str]
    patients: set[int]
    left: str  # boundary rule: "none" | "digit" | "letter" | "uid" | "token"
    right: str


def _is_digit(ch: str) -> bool:
    return "0" <= ch <= "9"


def _is_letter(ch: str) -> bool:
    return "a" <= ch <= "z"  # after folding; other characters never extend a word for these rules


def _same_class(ch: str, rule: str) -> bool:
    if rule == "digit":
        return _is_digit(ch)
    if rule == "letter":
        return _is_letter(ch)
    if rule == "token":
        return _is_letter(ch) or _is_digit(ch)
    return _is_digit(ch) or ch == "."  # "uid"


# How much a boundary rule lets through: where one value is registered under several kinds, it is searched
# under the loosest of their rules at each end (found if any of its kinds would be found).
_LOOSENESS = {"none": 2, "digit": 1, "letter": 1, "uid": 1, "token": 0}


def _end_rule(ch: str, kind: str, short: bool, right: bool, text: str) -> str:
    """The boundary rule at one end of a value (see the module docstring)."""
    if kind == "UID":
        return "uid"
    if kind == "name" and len(text) < _SHORT_NAME:
        return "token"
    if _is_digit(ch):
        if right and kind == "birth date" and len(text) == 8 and text.isdigit():
            return "none"  # a date followed by a time is a date time
        return "digit"
    if _is_letter(ch):
        return "letter" if short else "none"
    return "none"


def _textual(s: str, k: int) -> bool:
    """Whether the character at k is printable text (in a byte stream, a neighbour followed by a NUL or a
    control byte is the first byte of the next element's tag or the last of a length, not text)."""
    return 0 <= k < len(s) and " " <= s[k] <= "~"


def _left_ok(s: str, i: int, rule: str, stream: bool) -> bool:
    """Whether a match starting at i keeps its left boundary rule."""
    if rule == "none" or i <= 0:
        return True
    c = s[i - 1]
    if _same_class(c, rule) and (not stream or _textual(s, i - 2)):
        return False
    if rule == "digit" and c == "." and i >= 2 and _is_digit(s[i - 2]):
        return False  # a decimal or UID component, not a whole number
    return True


def _right_ok(s: str, j: int, rule: str, stream: bool) -> bool:
    """Whether a match ending just before j keeps its right boundary rule."""
    if rule == "none" or j >= len(s):
        return True
    c = s[j]
    if _same_class(c, rule) and (not stream or _textual(s, j + 1)):
        return False
    if rule == "digit" and c == "." and j + 1 < len(s) and _is_digit(s[j + 1]):
        return False
    return True


def _fold(data: bytes) -> str:
    return data.translate(_FOLD).decode("latin-1")


class IdentifierSet:
    """The identifying values of the inputs, per patient, held in memory only (never written or logged)."""

    def __init__(self, placeholders: frozenset[str] = PLACEHOLDERS) -> None:
        self.patterns: dict[str, _Pattern] = {}
        self.patients: dict[str, int] = {}  # original PatientID -> ordinal (1-based); never reported
        self.values_by_kind: Counter[str] = Counter()
        self.retained: Counter[str] = Counter()  # keywords not searched because the recipe keeps them
        self._placeholders = {p.upper() for p in placeholders}
        self._long_placeholders = [p for p in self._placeholders if len(p) >= 8]
        self._seen: set[tuple[str, str]] = set()

    def patient(self, patient_id: str) -> int:
        return self.patients.setdefault(patient_id, len(self.patients) + 1)

    def ignored(self, value: str, minimum: int) -> bool:
        v = value.strip()
        upper = v.upper()
        return (
            len(v) < minimum
            or upper in self._placeholders
            or (len(v) >= 5 and any(p.startswith(upper) for p in self._long_placeholders))  # cut to fit
            or len(set(v)) == 1
            or (v.replace("0", "").replace(".", "").replace("-", "") == "")
        )

    def add(self, value: str, kind: str, patient: int, raw: bytes | None = None) -> None:
        """Adds one value (already split into the pieces to search) in its useful spellings and encodings."""
        value = value.strip(" \x00\t\r\n")
        minimum = _MIN_NAME_LENGTH if kind == "name" else _MIN_LENGTH
        if self.ignored(value, minimum) or (kind == "name" and not any(c.isalpha() for c in value)):
            return  # a name component without a letter (a number in a name field) is no name
        if (kind, value) not in self._seen:
            self._seen.add((kind, value))
            self.values_by_kind[kind] += 1
        spellings = {value}
        if not value.isascii():
            spellings |= {value.upper(), value.lower()}
        encoded: set[bytes] = set()
        for spelling in spellings:
            for codec in ("latin-1", "utf-8"):
                try:
                    encoded.add(spelling.encode(codec))
                except UnicodeEncodeError:
                    pass
        if raw:
            encoded.add(raw.strip(b" \x00"))
        for data in encoded:
            if data:
                self._register(_fold(data), value, kind, patient)

    def _register(self, text: str, display: str, kind: str, patient: int) -> None:
        short = len(text) < _SHORT
        left = _end_rule(text[0], kind, short, False, text)
        right = _end_rule(text[-1], kind, short, True, text)
        found = self.patterns.get(text)
        if found is None:
            self.patterns[text] = _Pattern(text, display, {kind}, {patient}, left, right)
            return
        found.kinds.add(kind)
        found.patients.add(patient)
        if _LOOSENESS[left] > _LOOSENESS[found.left]:
            found.left = left
        if _LOOSENESS[right] > _LOOSENESS[found.right]:
            found.right = right

    # -- from one input data set --

    def add_dataset(self, ds: Dataset, plan: Plan, nodes: list[Node] | None = None) -> int:
        """Gathers every identifying value of one input (top level and every item); returns its patient.
        ``nodes`` is ``list(walk_dataset(ds))`` when the caller has it already."""
        patient_id = element_bytes(ds, 0x00100020).strip(b" \x00").decode("latin-1")
        patient = self.patient(patient_id)
        meta = getattr(ds, "file_meta", None)
        if meta is not None and _MEDIA_STORAGE_SOP_INSTANCE_UID in meta:
            uid = element_bytes(meta, _MEDIA_STORAGE_SOP_INSTANCE_UID).strip(b" \x00").decode("latin-1")
            if self._uids_searched(plan):
                self._add_uid(uid, patient)
        for node in walk_dataset(ds) if nodes is None else nodes:
            self._add_node(node, plan, patient)
        return patient

    def _uids_searched(self, plan: Plan) -> bool:
        return explain_rule(plan, _SOP_INSTANCE_UID, "UI").rule.action != Action.KEEP

    def _add_uid(self, uid: str, patient: int) -> None:
        for one in uid.split("\\"):
            one = one.strip(" \x00")
            if one and not one.startswith(STANDARD_UID_PREFIX):
                self.add(one, "UID", patient)

    def _add_node(self, node: Node, plan: Plan, patient: int) -> None:
        if node.sequence or node.tag in _PIXEL_TAGS:
            return
        known = _IDENTIFIER_TAGS.get(node.tag)
        if node.vr != "PN" and known is None:
            return
        if known is not None and known[1] == "UID" and node.depth > 0:
            return  # references: their targets' own UIDs are gathered from the targets
        if explain_rule(plan, node.tag, node.vr, node.creator).rule.action == Action.KEEP:
            self.retained[known[0] if known else (node.keyword or node.path[-11:])] += 1
            return
        raw = node.value_bytes()
        if not raw.strip(b" \x00"):
            return
        if known is None:  # a person name
            self._add_name(node, raw, patient)
            return
        keyword, kind = known
        text = self._text(node, raw)
        if kind == "UID":
            self._add_uid(text, patient)
        elif kind == "birth date":
            for one in text.split("\\"):
                self._add_date(one.strip(), patient)
        elif kind == "address":
            for one in text.split("\\"):
                self.add(one, kind, patient)
                for part in one.replace("\r", "\n").replace("^", "\n").replace(",", "\n").split("\n"):
                    self.add(part, kind, patient)
        elif kind in ("telephone number", "telecom information"):
            for one in text.split("\\"):
                self.add(one, kind, patient)
                digits = "".join(c for c in one if c.isdigit())
                if len(digits) >= 7:
                    self.add(digits, kind, patient)
        else:
            for one in text.split("\\"):
                self.add(one, kind, patient)
                digits = "".join(c for c in one if c.isdigit())
                if kind in ("patient ID", "other patient ID") and len(digits) >= 6 and digits != one.strip():
                    self.add(digits, kind, patient)

    @staticmethod
    def _text(node: Node, raw: bytes) -> str:
        """The value as text without pydicom's conversion: UTF-8 where the bytes are UTF-8, else Latin-1
        (the raw bytes are registered as well, so other character sets are still found byte for byte)."""
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")

    def _add_name(self, node: Node, raw: bytes, patient: int) -> None:
        text = self._text(node, raw)
        pieces: set[str] = set()
        for value in text.split("\\"):
            for group in value.split("="):
                for component in group.split("^"):
                    component = component.strip()
                    if not component:
                        continue
                    pieces.add(component)
                    words = component.replace("-", " ").replace(",", " ").split()
                    if len(words) > 1:
                        pieces.update(w for w in words if len(w) >= _MIN_LENGTH)
        for piece in pieces:
            self.add(piece, "name", patient)
        # The raw components as written (other character sets, ISO 2022 escapes).
        if not raw.isascii():
            for value in raw.split(b"\\"):
                for group in value.split(b"="):
                    for component in group.split(b"^"):
                        component = component.strip(b" \x00")
                        if len(component) >= _MIN_NAME_LENGTH:
                            self._register(_fold(component), component.decode("latin-1"), "name", patient)

    def _add_date(self, value: str, patient: int) -> None:
        if len(value) != 8 or not value.isdigit():
            self.add(value, "birth date", patient)
            return
        y, m, d = value[:4], value[4:6], value[6:]
        for spelling in (
            value,
            f"{y}-{m}-{d}",
            f"{d}/{m}/{y}",
            f"{m}/{d}/{y}",
            f"{d}.{m}.{y}",
            f"{y}/{m}/{d}",
        ):
            self.add(spelling, "birth date", patient)

    def __len__(self) -> int:
        return len(self.patterns)


# --- the scan ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Match:
    pattern: str  # the folded text
    where: str
    offset: int


class LeakScanner:
    """Searches bytes for every identifying value at once (Aho-Corasick over case-folded bytes)."""

    def __init__(self, identifiers: IdentifierSet) -> None:
        self.patterns = identifiers.patterns
        self.automaton: Any = None
        if self.patterns:
            automaton = ahocorasick.Automaton()
            for text in self.patterns:
                automaton.add_word(text, text)
            automaton.make_automaton()
            self.automaton = automaton

    def search_text(self, text: str, *, stream: bool = False) -> Iterator[tuple[str, int]]:
        """(pattern, start offset) of every match in a folded text that keeps its boundary rules.

        ``stream``: the text is a stretch of a file, where a neighbour may be a tag or length byte; it counts
        as a boundary-breaking character only when text follows it. Otherwise the text is one value.
        """
        if self.automaton is None or not text:
            return
        for end, key in self.automaton.iter(text):
            pattern = self.patterns[key]
            i = end - len(key) + 1
            if _left_ok(text, i, pattern.left, stream) and _right_ok(text, end + 1, pattern.right, stream):
                yield key, i

    def scan(self, data: bytes | memoryview | mmap.mmap) -> tuple[list[Match], str | None]:
        """Every match in one file's scanned regions, and a note when the file could not be walked."""
        regions, problem = scan_regions(data)
        matches: list[Match] = []
        if self.automaton is None:
            return matches, problem
        for region in regions:
            text = _fold(bytes(region.buffer[region.start : region.stop]))
            for key, i in self.search_text(text, stream=True):
                matches.append(Match(key, region.where, region.start + i))
        return matches, problem

    def redact(self, text: str) -> str:
        """``text`` with every identifying value in it masked (for file names shown in the report)."""
        if self.automaton is None:
            return text
        folded = text.lower()
        if len(folded) != len(text):
            return text
        out = list(text)
        for key, i in self.search_text(folded):
            masked = mask_value(text[i : i + len(key)])
            out[i : i + len(key)] = list(masked)
        return "".join(out)


# --- findings and the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One problem in the outputs. ``value`` is always masked; ``severity`` "error" fails verification."""

    category: str  # "leak" | "integrity" | "kept attribute" | "conformance"
    file: str
    path: str = ""
    keyword: str = ""
    kind: str = ""
    value: str = ""
    detail: str = ""
    severity: str = "error"  # "error" | "note"

    def to_dict(self) -> dict[str, str]:
        return {
            "category": self.category,
            "severity": self.severity,
            "file": self.file,
            "path": self.path,
            "keyword": self.keyword,
            "kind": self.kind,
            "value": self.value,
            "detail": self.detail,
        }


@dataclass
class VerifyReport:
    """Everything ``veil verify`` found; :meth:`to_dict` is the JSON report, :meth:`to_markdown` the other."""

    source: str
    destination: str
    recipe: str
    recipe_hash: str
    key_id: str | None
    counts: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    retained: dict[str, int] = field(default_factory=dict)
    checklist: list[dict[str, Any]] = field(default_factory=list)
    dciodvfy: str = ""
    files_per_second: float = 0.0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def passed(self) -> bool:
        return not self.errors

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else EXIT_FINDINGS

    def to_dict(self) -> dict[str, Any]:
        by_category = Counter(f.category for f in self.errors)
        return {
            "veil": __version__,
            "verdict": "pass" if self.passed else "fail",
            "source": self.source,
            "destination": self.destination,
            "recipe": self.recipe,
            "recipe_sha256": self.recipe_hash,
            "key_id": self.key_id,
            "counts": {
                **self.counts,
                "findings": len(self.errors),
                "findings_by_category": dict(by_category),
            },
            "files_per_second": round(self.files_per_second, 1),
            "findings": [f.to_dict() for f in self.findings if f.severity == "error"],
            "notes_findings": [f.to_dict() for f in self.findings if f.severity != "error"],
            "notes": self.notes,
            "not_searched_kept_by_recipe": self.retained,
            "dciodvfy": self.dciodvfy,
            "hipaa_safe_harbor": self.checklist,
        }

    def summary_lines(self) -> list[str]:
        c = self.counts
        verdict = "PASS" if self.passed else f"FAIL: {len(self.errors)} findings"
        lines = [
            f"verify: {verdict}",
            f"  recipe {self.recipe} (key id {self.key_id or '-'})",
            f"  inputs {c.get('inputs', 0)} ({c.get('patients', 0)} patients), outputs {c.get('outputs', 0)}, "
            f"{c.get('identifiers', 0)} identifying values in {c.get('patterns', 0)} spellings",
            f"  scanned {c.get('scanned_files', 0)} files ({c.get('scanned_bytes', 0) / 1e6:.1f} MB) in "
            f"{c.get('scan_seconds', 0):.2f} s ({self.files_per_second:,.0f} files/s)",
            f"  references checked {c.get('references_checked', 0)}, kept attributes compared "
            f"{c.get('kept_compared', 0)}; dciodvfy: {self.dciodvfy}",
        ]
        for category, count in sorted(Counter(f.category for f in self.errors).items()):
            lines.append(f"  {category}: {count}")
        return lines

    def to_markdown(self) -> str:
        d = self.to_dict()
        out = [
            "# veil verify report",
            "",
            f"**Verdict: {'PASS' if self.passed else 'FAIL'}** — {len(self.errors)} findings.",
            "",
            f"- Source: `{self.source}`",
            f"- Destination: `{self.destination}`",
            f"- Recipe: {self.recipe} (sha256 `{self.recipe_hash[:16]}`)",
            f"- Key id: {self.key_id or '-'}",
            f"- veil {__version__}",
            "",
            "## Counts",
            "",
            "| count | value |",
            "|---|---|",
        ]
        for k, v in d["counts"].items():
            if isinstance(v, dict):
                v = ", ".join(f"{a}: {b}" for a, b in v.items()) or "-"
            out.append(f"| {k.replace('_', ' ')} | {v} |")
        out.append(f"| files per second (scan) | {d['files_per_second']} |")
        out += ["", "## Findings", ""]
        out += _markdown_findings(self.errors) if self.errors else ["None."]
        notes = [f for f in self.findings if f.severity != "error"]
        if notes:
            out += ["", "## Notes on matches (not failures)", ""]
            out += _markdown_findings(notes)
        if self.notes:
            out += ["", "## Notes", ""] + [f"- {_md(n)}" for n in self.notes]
        out += ["", "## Not searched: kept by the recipe", ""]
        out += [f"- {k}: {v} values" for k, v in sorted(self.retained.items())] or ["Nothing."]
        out += ["", "## Conformance (dciodvfy)", "", self.dciodvfy or "-"]
        out += ["", "## HIPAA Safe Harbor checklist (45 CFR 164.514(b)(2))", ""]
        out += ["| | identifier | attributes and actions | handling |", "|---|---|---|---|"]
        for item in self.checklist:
            attributes = "; ".join(f"{a['attribute']}: {a['action']}" for a in item["attributes"]) or "-"
            out.append(
                f"| ({item['letter']}) | {_md(item['identifier'])} | {_md(attributes)} | {_md(item['handling'])} |"
            )
        return "\n".join(out) + "\n"

    def to_html(self) -> str:
        d = self.to_dict()
        e = html.escape
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'><title>veil verify report</title>",
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}"
            ".fail{color:#b00}.pass{color:#070}code{font-size:90%}</style></head><body>",
            "<h1>veil verify report</h1>",
            f"<p class='{'pass' if self.passed else 'fail'}'><b>Verdict: {'PASS' if self.passed else 'FAIL'}</b>"
            f" — {len(self.errors)} findings.</p>",
            "<ul>",
            f"<li>Source: <code>{e(self.source)}</code></li>",
            f"<li>Destination: <code>{e(self.destination)}</code></li>",
            f"<li>Recipe: {e(self.recipe)} (sha256 <code>{e(self.recipe_hash[:16])}</code>)</li>",
            f"<li>Key id: {e(self.key_id or '-')}</li><li>veil {e(__version__)}</li></ul>",
            "<h2>Counts</h2><table>",
        ]
        for k, v in d["counts"].items():
            if isinstance(v, dict):
                v = ", ".join(f"{a}: {b}" for a, b in v.items()) or "-"
            parts.append(f"<tr><th>{e(k.replace('_', ' '))}</th><td>{e(str(v))}</td></tr>")
        parts.append(f"<tr><th>files per second (scan)</th><td>{d['files_per_second']}</td></tr></table>")

        def table(findings: list[Finding]) -> str:
            rows = [
                "<table><tr><th>#</th><th>category</th><th>file</th><th>element</th><th>keyword</th>"
                "<th>identifier</th><th>value</th><th>detail</th></tr>"
            ]
            for i, f in enumerate(findings, 1):
                rows.append(
                    f"<tr><td>{i}</td><td>{e(f.category)}</td><td><code>{e(f.file)}</code></td>"
                    f"<td><code>{e(f.path)}</code></td><td>{e(f.keyword)}</td><td>{e(f.kind)}</td>"
                    f"<td><code>{e(f.value)}</code></td><td>{e(f.detail)}</td></tr>"
                )
            return "".join(rows) + "</table>"

        parts.append("<h2>Findings</h2>" + (table(self.errors) if self.errors else "<p>None.</p>"))
        notes = [f for f in self.findings if f.severity != "error"]
        if notes:
            parts.append("<h2>Notes on matches (not failures)</h2>" + table(notes))
        if self.notes:
            parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{e(n)}</li>" for n in self.notes) + "</ul>")
        parts.append("<h2>Not searched: kept by the recipe</h2><ul>")
        parts += [f"<li>{e(k)}: {v} values</li>" for k, v in sorted(self.retained.items())] or [
            "<li>Nothing.</li>"
        ]
        parts.append(f"</ul><h2>Conformance (dciodvfy)</h2><p>{e(self.dciodvfy or '-')}</p>")
        parts.append(
            "<h2>HIPAA Safe Harbor checklist (45 CFR 164.514(b)(2))</h2><table>"
            "<tr><th></th><th>identifier</th><th>attributes and actions</th><th>handling</th></tr>"
        )
        for item in self.checklist:
            attributes = "; ".join(f"{a['attribute']}: {a['action']}" for a in item["attributes"]) or "-"
            parts.append(
                f"<tr><td>({e(item['letter'])})</td><td>{e(item['identifier'])}</td><td>{e(attributes)}</td>"
                f"<td>{e(item['handling'])}</td></tr>"
            )
        parts.append("</table></body></html>")
        return "\n".join(parts) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown_findings(findings: list[Finding]) -> list[str]:
    rows = [
        "| # | category | file | element | keyword | identifier | value | detail |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, f in enumerate(findings, 1):
        rows.append(
            f"| {i} | {f.category} | `{_md(f.file)}` | `{_md(f.path)}` | {_md(f.keyword)} | {_md(f.kind)} | "
            f"`{_md(f.value)}` | {_md(f.detail)} |"
        )
    return rows


def write_report(report: VerifyReport, path: str | os.PathLike[str]) -> list[Path]:
    """Writes the report: HTML when ``path`` ends with ``.html``, JSON only for ``.json``, else Markdown;
    the JSON report is written beside it (same name, ``.json``). Returns the files written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"
    json_path = target.with_suffix(".json")
    written = []
    if target.suffix.lower() == ".json":
        target.write_text(data, encoding="utf-8")
        return [target]
    text = report.to_html() if target.suffix.lower() in (".html", ".htm") else report.to_markdown()
    target.write_text(text, encoding="utf-8")
    written.append(target)
    json_path.write_text(data, encoding="utf-8")
    written.append(json_path)
    return written


# --- HIPAA Safe Harbor -------------------------------------------------------------------------------------

#: The 18 identifiers of 45 CFR 164.514(b)(2)(i), with the DICOM attributes (and VR defaults) that carry them.
HIPAA_IDENTIFIERS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("A", "Names", (
        "PatientName", "OtherPatientNames", "PatientBirthName", "PatientMotherBirthName", "ResponsiblePerson",
        "ReferringPhysicianName", "PhysiciansOfRecord", "PerformingPhysicianName", "NameOfPhysiciansReadingStudy",
        "OperatorsName", "RequestingPhysician", "PersonName", "vr:PN"), ""),
    ("B", "Geographic subdivisions smaller than a state", (
        "PatientAddress", "RegionOfResidence", "InstitutionAddress", "ReferringPhysicianAddress", "PersonAddress",
        "CurrentPatientLocation", "InstitutionName"), ""),
    ("C", "Dates (except year) related to the individual; ages over 89", (
        "PatientBirthDate", "StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "AcquisitionDateTime",
        "InstanceCreationDate", "PatientAge", "vr:DA", "vr:DT"), ""),
    ("D", "Telephone numbers", (
        "PatientTelephoneNumbers", "ReferringPhysicianTelephoneNumbers", "PersonTelephoneNumbers"), ""),
    ("E", "Fax numbers", ("PatientTelecomInformation", "PersonTelecomInformation"), ""),
    ("F", "Electronic mail addresses", ("PatientTelecomInformation", "PersonTelecomInformation"), ""),
    ("G", "Social security numbers", ("OtherPatientIDs", "OtherPatientIDsSequence"), ""),
    ("H", "Medical record numbers", ("PatientID", "IssuerOfPatientID", "MedicalRecordLocator"), ""),
    ("I", "Health plan beneficiary numbers", ("PatientInsurancePlanCodeSequence",), ""),
    ("J", "Account numbers", ("AdmissionID", "ServiceEpisodeID", "AccessionNumber"), ""),
    ("K", "Certificate/license numbers", (
        "ReferringPhysicianIdentificationSequence", "PhysiciansOfRecordIdentificationSequence",
        "PerformingPhysicianIdentificationSequence", "OperatorIdentificationSequence"), ""),
    ("L", "Vehicle identifiers and serial numbers", (),
     "not carried by DICOM attributes; free text is handled as shown under (R)"),
    ("M", "Device identifiers and serial numbers", (
        "DeviceSerialNumber", "DeviceUID", "DeviceID", "DetectorID", "SourceSerialNumber", "GantryID",
        "StationName"), ""),
    ("N", "Web URLs", ("RetrieveURL", "RetrieveURI", "vr:UR"), ""),
    ("O", "IP addresses", ("RetrieveAETitle", "ScheduledStationAETitle", "PerformedStationAETitle"), ""),
    ("P", "Biometric identifiers", (), "not carried in DICOM headers"),
    ("Q", "Full-face photographs and comparable images", (),
     "pixel data: out of scope of a header recipe; see `veil profile` for images at risk of burned-in text"),
    ("R", "Any other unique identifying number, characteristic or code", (
        "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "StudyID",
        "RequestedProcedureID", "PlacerOrderNumberImagingServiceRequest",
        "FillerOrderNumberImagingServiceRequest", "ScheduledProcedureStepID", "PerformedProcedureStepID",
        "StudyDescription", "SeriesDescription", "ImageComments", "AdditionalPatientHistory", "PatientComments",
        "vr:UI", "private"), ""),
)  # fmt: skip

_ACTION_WORDS = {
    Action.KEEP: "KEPT",
    Action.REMOVE: "removed",
    Action.EMPTY: "emptied",
    Action.DUMMY: "dummy",
    Action.REPLACE: "replaced",
    Action.UID: "keyed UID",
    Action.SHIFT: "date shifted",
    Action.PSEUDO: "keyed pseudonym",
    Action.AGE: "age capped",
    Action.RECURSE: "items cleaned",
    Action.CALL: "free text cleaned",
}


def hipaa_checklist(plan: Plan) -> list[dict[str, Any]]:
    """How the Plan handles each of the 18 Safe Harbor identifiers: the action on each attribute carrying it."""
    out = []
    for letter, title, attributes, note in HIPAA_IDENTIFIERS:
        rows = []
        actions: set[Action] = set()
        for attribute in attributes:
            if attribute == "private":
                action = plan.default_private
                rows.append({"attribute": "private elements (default)", "action": _ACTION_WORDS[action]})
                actions.add(action)
                continue
            if attribute.startswith("vr:"):
                vr = attribute[3:]
                vr_action = plan.vr_defaults.get(vr)
                if vr_action is None:
                    continue
                rows.append({"attribute": f"any other {vr}", "action": _ACTION_WORDS[vr_action]})
                actions.add(vr_action)
                continue
            tag = pydicom.datadict.tag_for_keyword(attribute)
            if tag is None:
                continue
            entry = dictionary_entry(tag)
            vr = entry[0].split(" or ")[0] if entry else "UN"
            action = explain_rule(plan, tag, vr).rule.action
            rows.append({"attribute": attribute, "action": _ACTION_WORDS[action]})
            actions.add(action)
        if note:
            handling = note
        elif Action.KEEP in actions:
            kept = [r["attribute"] for r in rows if r["action"] == "KEPT"]
            handling = "RETAINED by the recipe: " + ", ".join(kept)
        elif Action.SHIFT in actions:
            handling = (
                "shifted by a keyed per-patient offset (intervals kept), not removed; ages capped"
                if (Action.AGE in actions)
                else "shifted by a keyed per-patient offset, not removed"
            )
        elif actions & {Action.UID, Action.PSEUDO}:
            handling = "replaced by keyed values (linkable only with the key)"
        else:
            handling = "removed or replaced"
        out.append({"letter": letter, "identifier": title, "attributes": rows, "handling": handling})
    return out


# --- pairing, audit -------------------------------------------------------------------------------------------


def _iter_files(root: Path, skip_veil: bool = False) -> Iterator[tuple[Path, str]]:
    """(file, relative path in posix form), sorted; a single file gives its own name."""
    if root.is_file():
        yield root, root.name
        return
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        if skip_veil and Path(dirpath) == root and ".veil" in dirs:
            dirs.remove(".veil")
        for name in sorted(files):
            path = Path(dirpath) / name
            yield path, path.relative_to(root).as_posix()


def _read_bytes(path: Path) -> bytes | mmap.mmap:
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < (1 << 20):
            return fh.read()
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)


@dataclass
class _Audit:
    """The audit rows of ``DST/.veil/audit/*.parquet`` (``veil.audit``): input digest -> (status, output path).

    An input is named by the keyed BLAKE3 digest of its path relative to SRC under the key's ``audit``
    sub-key; a row may hold the whole digest or a prefix of it (``veil run`` writes the first 32 digits).
    """

    rows: dict[str, tuple[str, str]] = field(default_factory=dict)
    lengths: set[int] = field(default_factory=set)
    present: bool = False

    def lookup(self, rel: str, key: Key | None) -> tuple[str, str] | None:
        if not self.rows or key is None:
            return None
        import blake3

        digest = blake3.blake3(rel.encode("utf-8", "surrogateescape"), key=key.subkey("audit")).hexdigest()
        for length in sorted(self.lengths, reverse=True):
            row = self.rows.get(digest[:length])
            if row is not None:
                return row
        return None


def _read_audit(dst: Path) -> _Audit:
    audit = _Audit()
    directory = dst / ".veil" / "audit"
    parts = sorted(directory.glob("*.parquet")) if directory.is_dir() else []
    if not parts:
        return audit
    import pyarrow.parquet as pq

    audit.present = True
    for part in parts:
        table = pq.read_table(part)
        columns = [c for c in ("input_digest", "status", "output_path") if c in table.column_names]
        if "input_digest" not in columns:
            continue
        for row in table.select(columns).to_pylist():
            digest = str(row.get("input_digest") or "").lower()
            if digest:
                audit.rows[digest] = (str(row.get("status") or ""), str(row.get("output_path") or ""))
                audit.lengths.add(len(digest))
    return audit


# --- per-file records for the integrity checks ------------------------------------------------------------


@dataclass
class _Pair:
    rel: str
    identity: dict[str, str]  # kind -> original UID
    patient: int = 0  # ordinal of the input's patient
    rel_out: str = ""  # the output's path relative to DST (the input's own under the mirror layout)
    output: dict[str, str] | None = None  # kind -> output UID
    media_storage: str = ""
    patient_id: str = ""  # the input's top-level PatientID
    patient_id_out: str = ""  # the output's
    references: list[tuple[str, str, str | None]] = field(
        default_factory=list
    )  # (path, original, output value)


def _uid_text(ds: Dataset, tag: int) -> str:
    return element_bytes(ds, tag).strip(b" \x00").decode("latin-1")


def _identity(ds: Dataset) -> dict[str, str]:
    return {kind: _uid_text(ds, tag) for tag, kind in _IDENTITY_TAGS.items() if tag in ds}


def _uid_values(nodes: list[Node]) -> dict[str, list[str]]:
    """Every UI value at any depth by path, except the data set's own identity at the top level."""
    out: dict[str, list[str]] = {}
    for node in nodes:
        if node.vr != "UI" or node.sequence or (node.depth == 0 and node.tag in _IDENTITY_TAGS):
            continue
        values = [v.strip(" \x00") for v in node.value_bytes().decode("latin-1").split("\\")]
        out[node.path] = values
    return out


def _read_dataset(data: bytes | mmap.mmap, *, pixels: bool = False) -> Dataset:
    return pydicom.dcmread(io.BytesIO(bytes(data)), force=True, stop_before_pixels=not pixels)


def _kept_findings(nodes: list[Node], after: Dataset, plan: Plan, rel: str) -> tuple[int, list[Finding]]:
    """Top-level public attributes the recipe keeps must hold the same bytes (a kept odd value may gain its
    padding byte, PS3.5 7.1.1)."""
    inserted = {tag for tag, _, _ in plan.insert}
    compared = 0
    findings = []
    for node in nodes:
        if node.depth:
            continue
        tag = node.tag
        if tag >> 16 & 1 or tag & 0xFFFF == 0 or tag in inserted or tag in _PIXEL_TAGS or node.sequence:
            continue
        if explain_rule(plan, tag, node.vr).rule.action != Action.KEEP:
            continue
        compared += 1
        if tag not in after:
            findings.append(
                Finding("kept attribute", rel, node.path, node.keyword, detail="missing in the output")
            )
            continue
        if not _same_value(node.dataset, after, tag):
            findings.append(Finding("kept attribute", rel, node.path, node.keyword, detail="value changed"))
    return compared, findings


def _same_value(before: Dataset, after: Dataset, tag: int) -> bool:
    """Raw bytes equal (a kept odd value may gain its padding byte, PS3.5 7.1.1); where pydicom converted
    either side already (it does for a few attributes while reading), the converted values equal."""
    a, b = before.get_item(tag), after.get_item(tag)
    if isinstance(a.value, (bytes, bytearray)) and isinstance(b.value, (bytes, bytearray)):
        x, y = bytes(a.value), bytes(b.value)
        return x == y or x.rstrip(b" \x00") == y.rstrip(b" \x00")
    try:
        return bool(before[tag].value == after[tag].value)
    except Exception:
        return False


# --- dciodvfy ----------------------------------------------------------------------------------------------


def inflated_copy(data: bytes | memoryview | mmap.mmap) -> bytes:
    """An Explicit VR Little Endian copy of a Deflated Explicit VR Little Endian file: the same preamble and
    File Meta but for the Transfer Syntax UID (and the group length), then the inflated data set, byte for byte.

    dciodvfy reads it in place of the deflated file: dicom3tools 1.00~20220618 as Debian ships it (built without
    zlib) does not inflate, and reads the deflated bytes themselves as the data set, so its findings on a
    deflated file are noise that changes with every byte of the compressed stream. The copy keeps every element
    of the data set as it is, so the IOD checks see what a reader that inflates sees.
    """
    part = read_part10(data)
    if not part.deflated:
        raise ParseError(f"transfer syntax {part.transfer_syntax or '(none)'} is not deflated")
    new_syntax = _EXPLICIT_VR_LITTLE_ENDIAN.encode("ascii") + b"\x00"  # UI pads with NULL (PS3.5 6.2)
    elements: list[tuple[int, bytes]] = []
    for element, vr, start, header, length in _meta_elements(data):
        if element == 0x0010:
            if vr in _LONG_VRS:
                head = struct.pack("<HH2sHI", 0x0002, 0x0010, vr, 0, len(new_syntax))
            elif vr:
                head = struct.pack("<HH2sH", 0x0002, 0x0010, vr, len(new_syntax))
            else:
                head = struct.pack("<HHI", 0x0002, 0x0010, len(new_syntax))
            elements.append((element, head + new_syntax))
        else:
            elements.append((element, bytes(data[start : start + header + length])))
    group_length = sum(len(raw) for element, raw in elements if element != 0x0000)
    meta = b"".join(
        raw[:-4] + struct.pack("<I", group_length) if element == 0x0000 and len(raw) in (12, 16) else raw
        for element, raw in elements
    )
    preamble = bytes(data[:132]) if len(data) >= 132 and data[128:132] == b"DICM" else b""
    return preamble + meta + bytes(part.dataset)


def _dciodvfy_errors(path: Path, timeout: float = 60.0) -> set[str] | None:
    """The Error lines dciodvfy prints for one file, with values removed (they may identify)."""
    try:
        done = subprocess.run(
            ["dciodvfy", str(path)],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = set()
    for line in (done.stdout + "\n" + done.stderr).splitlines():
        line = line.strip()
        if not line.startswith("Error"):
            continue
        # Attribute and module keywords (Element=<PatientName>) are names from the dictionary and stay, so that
        # the same complaint about another element is another error; anything else in <> may be a value.
        line = _BRACKETED.sub(
            lambda m: m[0] if m[1] and _KEYWORD.fullmatch(m[2]) else f"{m[1] or ''}<…>", line
        )
        line = re.sub(r"\s*=\s*\S.*$", "", line) if " = " in line else line
        out.add(line)
    return out


_BRACKETED = re.compile(r"(Element=|Module=)?<([^>]*)>")
_KEYWORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")

#: dciodvfy's complaints about a sequence present with no items. PS3.5 7.4.5 and 7.4.6 (Note 3) allow any Type 2
#: or Type 3 sequence to be sent with zero length, which is what an ``empty`` rule makes of an X/Z or X/Z/D
#: sequence; dciodvfy 1.00~20220618 reads "one or more Items" of a Type 3 description as required.
_EMPTY_SEQUENCE_COMPLAINT = re.compile(
    r"^Error - (?:Bad Sequence number of Items 0 \([^)]*\)|Bad attribute Value Multiplicity Type 3 Optional)"
    r" Element=<([A-Za-z][A-Za-z0-9]*)>"
)


def _emptied_sequence(message: str, plan: Plan) -> str:
    """The keyword of the sequence a complaint is about, where the plan empties that sequence; else ""."""
    match = _EMPTY_SEQUENCE_COMPLAINT.match(message)
    if match is None:
        return ""
    tag = pydicom.datadict.tag_for_keyword(match[1])
    if tag is None or pydicom.datadict.dictionary_VR(tag) != "SQ":
        return ""
    return match[1] if explain_rule(plan, tag, "SQ").rule.action == Action.EMPTY else ""


# --- verify -------------------------------------------------------------------------------------------------


def verify(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    recipe: CompiledRecipe | Recipe | str | os.PathLike[str] = "research",
    key: Key | None = None,
    dciodvfy_sample: int = 10,
    progress: Callable[[str, int, int], None] | None = None,
    reid_table: str | os.PathLike[str] | None = None,
) -> VerifyReport:
    """Checks DST (veil's output of SRC under ``recipe`` and ``key``); see the module docstring. With the
    run's re-identification table (and its key), counter pseudonyms are checked against it too."""
    src_root, dst_root = Path(src), Path(dst)
    compiled = recipe if isinstance(recipe, CompiledRecipe) else compile_recipe(recipe)
    plan = compiled.plan
    functions = KeyedFunctions(key, **compiled.key_parameters) if key is not None else None
    reid_rows: dict[tuple[str, str], str] | None = None
    if reid_table is not None:
        if key is None:
            raise KeyError_("the re-identification table is read with the project key: give --key")
        from veil.keys.service import read_reid_table

        reid_rows = {(kind, new): original for kind, new, original in read_reid_table(reid_table, key)}
    report = VerifyReport(
        source=str(src_root),
        destination=str(dst_root),
        recipe=f"{compiled.recipe.name} {compiled.recipe.version}",
        recipe_hash=compiled.recipe.content_hash,
        key_id=key.key_id if key is not None else None,
        checklist=hipaa_checklist(plan),
    )
    findings = report.findings
    audit = _read_audit(dst_root) if dst_root.is_dir() else _Audit()
    identifiers = IdentifierSet(
        frozenset(PLACEHOLDERS | {str(v).upper() for v in DUMMY_VALUES.values()} | _recipe_dummies(compiled))
    )
    if dst_root.is_file():
        outputs = {dst_root.name if src_root.is_file() else dst_root.name: dst_root}
    else:
        outputs = {rel: path for path, rel in _iter_files(dst_root, skip_veil=True)}

    # 1. Inputs: identifiers, identities, references; each paired output: identity, references, kept values.
    pairs: list[_Pair] = []
    unreadable = missing = accounted = kept_compared = 0
    inputs_seen: set[str] = set()
    paired_by_audit: set[str] = set()
    input_files = list(_iter_files(src_root))
    for n, (path, rel) in enumerate(input_files, 1):
        if progress:
            progress("index", n, len(input_files))
        inputs_seen.add(rel)
        data = path.read_bytes()
        try:
            before = _read_dataset(data)
            if not len(before):
                raise ValueError("no elements")
        except Exception:
            before = None
            unreadable += 1
        out_path = outputs.get(rel)
        recorded = audit.lookup(rel, key)
        if out_path is None and recorded is not None and recorded[1]:
            out_path = outputs.get(Path(recorded[1]).as_posix())  # another layout than the mirror
            if out_path is not None:
                paired_by_audit.add(Path(recorded[1]).as_posix())
        if before is None:
            if out_path is not None:
                report.notes.append(f"{rel}: the input cannot be read with pydicom, yet it has an output")
            elif recorded is not None:
                accounted += 1
            else:
                missing += 1
                findings.append(Finding("integrity", rel, detail="input has no output and no audit record"))
            continue
        nodes = list(walk_dataset(before))
        pair = _Pair(rel, _identity(before), patient=identifiers.add_dataset(before, plan, nodes),
                     patient_id=_uid_text(before, _PATIENT_ID) if _PATIENT_ID in before else "")
        input_refs = _uid_values(nodes)
        if out_path is None:
            if recorded is None:
                missing += 1
                findings.append(Finding("integrity", rel, detail="input has no output and no audit record"))
            else:
                accounted += 1
            pairs.append(pair)
            continue
        pair.rel_out = rel if rel in outputs else Path(recorded[1]).as_posix() if recorded else rel
        try:
            after = _read_dataset(_read_bytes(out_path))
        except Exception as exc:
            findings.append(
                Finding("integrity", pair.rel_out, detail=f"output cannot be read: {type(exc).__name__}")
            )
            pairs.append(pair)
            continue
        pair.output = _identity(after)
        pair.patient_id_out = _uid_text(after, _PATIENT_ID) if _PATIENT_ID in after else ""
        meta = getattr(after, "file_meta", None)
        pair.media_storage = _uid_text(meta, _MEDIA_STORAGE_SOP_INSTANCE_UID) if meta is not None else ""
        output_refs = _uid_values(list(walk_dataset(after)))
        for ref_path, values in input_refs.items():
            out_values = output_refs.get(ref_path)
            for i, value in enumerate(values):
                if value:
                    out_value = out_values[i] if out_values is not None and i < len(out_values) else None
                    pair.references.append((ref_path, value, out_value))
        compared, kept = _kept_findings(nodes, after, plan, pair.rel_out)
        kept_compared += compared
        findings.extend(kept)
        pairs.append(pair)
    extra = sorted(set(outputs) - inputs_seen - paired_by_audit)
    if extra:
        report.notes.append(
            f"{len(extra)} output files have no input at the same relative path (scanned all the same)"
        )
    if unreadable:
        report.notes.append(
            f"{unreadable} inputs cannot be read with pydicom: their identifying values are unknown"
        )

    references_checked = _integrity(pairs, plan, functions, findings, report)
    _pseudonym_findings(pairs, compiled, functions, reid_rows, findings, report)

    # 2. The leak scan of every output.
    scanner = LeakScanner(identifiers)
    scanned = scanned_bytes = 0
    started = time.perf_counter()
    output_items = sorted(outputs.items())
    patient_of = {pair.rel_out: pair.patient for pair in pairs if pair.rel_out}
    for n, (rel, path) in enumerate(output_items, 1):
        if progress:
            progress("scan", n, len(output_items))
        data = _read_bytes(path)
        try:
            scanned += 1
            scanned_bytes += len(data)
            matches, problem = scanner.scan(data)
            if problem:
                report.notes.append(f"{scanner.redact(rel)}: searched whole ({problem})")
            if matches:
                findings.extend(
                    _locate(data, matches, scanner, plan, scanner.redact(rel), patient_of.get(rel))
                )
        finally:
            if isinstance(data, mmap.mmap):
                data.close()
        for key_text, _ in scanner.search_text(rel.lower()):
            pattern = scanner.patterns[key_text]
            findings.append(
                Finding(
                    "leak",
                    scanner.redact(rel),
                    "(file name)",
                    "",
                    ", ".join(sorted(pattern.kinds)),
                    mask_value(pattern.display),
                    "identifying value in the output's file name",
                )
            )
    scan_seconds = time.perf_counter() - started
    report.files_per_second = scanned / scan_seconds if scan_seconds > 0 else 0.0

    # 3. Conformance on a sample of pairs.
    report.dciodvfy = scanner.redact(
        _conformance(pairs, outputs, input_files, dciodvfy_sample, compiled.plan, findings)
    )

    report.retained = dict(sorted(identifiers.retained.items()))
    report.counts = {
        "inputs": len(input_files),
        "outputs": len(outputs),
        "patients": len(identifiers.patients),
        "identifiers": sum(identifiers.values_by_kind.values()),
        "identifiers_by_kind": dict(sorted(identifiers.values_by_kind.items())),
        "patterns": len(identifiers),
        "inputs_without_output_accounted_by_audit": accounted,
        "inputs_without_output_unaccounted": missing,
        "unreadable_inputs": unreadable,
        "scanned_files": scanned,
        "scanned_bytes": scanned_bytes,
        "scan_seconds": round(scan_seconds, 3),
        "references_checked": references_checked,
        "kept_compared": kept_compared,
    }
    # File names may themselves identify (the mirror layout keeps them): mask what the scan knows of.
    findings[:] = [f if f.file.startswith("(") else replace(f, file=scanner.redact(f.file)) for f in findings]
    report.notes[:] = [scanner.redact(n) for n in report.notes]
    order = {"leak": 0, "integrity": 1, "kept attribute": 2, "conformance": 3}
    findings.sort(key=lambda f: (f.severity != "error", order.get(f.category, 9), f.file, f.path))
    return report


def _recipe_dummies(compiled: CompiledRecipe) -> set[str]:
    dummies = compiled.recipe.parameters.get("dummy", {}) or {}
    values = {str(v).upper() for v in dummies.values()}
    for rule in compiled.plan.tags.values():
        if rule.action == Action.REPLACE and isinstance(rule.value, str):
            values.add(rule.value.upper())
    return values


def _locate(
    data: bytes | mmap.mmap,
    matches: list[Match],
    scanner: LeakScanner,
    plan: Plan,
    rel: str,
    patient: int | None,
) -> list[Finding]:
    """Names the element of each match by walking the output with pydicom (only files that matched).

    Within one value the boundary rules are exact, so a stream match that only a neighbouring byte of another
    element made (or that the exact rules reject) is dropped; a match in no element value at all (preamble,
    bytes pydicom does not show) is reported with its byte offset.

    Two kinds of match are notes, not findings: the whole value of a public attribute the recipe keeps (a
    vocabulary word such as an Ethnic Group that is also a name), and a number found inside a date, time or
    number value (DA DT TM IS DS AS) of an output of another patient: a shifted date that falls on another
    patient's birthday, an instance count equal to another patient's study ID. The same number in the
    patient's own output, or anywhere else, is a finding.
    """
    wanted = {m.pattern for m in matches}
    try:
        ds = _read_dataset(data, pixels=True)
    except Exception:
        ds = None
    contained: set[str] = set()
    findings: list[Finding] = []
    if ds is not None:
        nodes: list[Node] = []
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            nodes += list(walk_dataset(meta))
        nodes += list(walk_dataset(ds))
        for node in nodes:
            if node.sequence or (node.depth == 0 and node.tag in _PIXEL_TAGS):
                continue
            text = _fold(node.value_bytes())
            contained.update(key for key in wanted if key in text)
            hits = sorted({key for key, _ in scanner.search_text(text) if key in wanted})
            for key in hits:
                pattern = scanner.patterns[key]
                whole = text.strip(" \x00") == key
                kept = explain_rule(plan, node.tag, node.vr, node.creator).rule.action == Action.KEEP
                coincidence = whole and kept and node.tag >> 16 & 1 == 0 and node.tag >> 16 != 0x0002
                other = (
                    node.vr in _NUMERIC_VRS
                    and _numeric(key)
                    and patient is not None
                    and patient not in pattern.patients
                )
                findings.append(
                    Finding(
                        "leak",
                        rel,
                        node.path,
                        node.keyword,
                        ", ".join(sorted(pattern.kinds)),
                        mask_value(pattern.display),
                        _leak_detail(pattern, coincidence, other),
                        "note" if coincidence or other else "error",
                    )
                )
    reported: set[str] = set()
    for match in matches:
        if match.pattern in contained or match.pattern in reported:
            continue
        reported.add(match.pattern)
        pattern = scanner.patterns[match.pattern]
        where = (
            "preamble"
            if match.where == "file" and match.offset < 128 and bytes(data[128:132]) == b"DICM"
            else (f"byte {match.offset} of the {match.where}")
        )
        findings.append(
            Finding(
                "leak",
                rel,
                f"({where})",
                "",
                ", ".join(sorted(pattern.kinds)),
                mask_value(pattern.display),
                _leak_detail(pattern, False),
            )
        )
    return findings


_NUMERIC_VRS = frozenset({"DA", "DT", "TM", "IS", "DS", "AS"})


def _numeric(text: str) -> bool:
    """Digits, and date separators only (a birth date in any spelling, a number)."""
    return any(c.isdigit() for c in text) and all(c.isdigit() or c in "-/." for c in text)


def _leak_detail(pattern: _Pattern, coincidence: bool, other_patient: bool = False) -> str:
    patients = sorted(pattern.patients)
    who = f"patient {patients[0]}" if len(patients) == 1 else f"patients {', '.join(map(str, patients[:5]))}"
    if other_patient:
        return f"a date or number of another patient's output equals a value of {who} (a coincidence?)"
    if coincidence:
        return f"the whole value of an attribute the recipe keeps equals a value of {who} (a coincidence?)"
    return f"identifying value of {who}"


def _pseudonym_findings(
    pairs: list[_Pair],
    compiled: CompiledRecipe,
    functions: KeyedFunctions | None,
    reid_rows: dict[tuple[str, str], str] | None,
    findings: list[Finding],
    report: VerifyReport,
) -> None:
    """Where the recipe pseudonymises PatientID: one pseudonym per patient and one patient per pseudonym
    across the output set, no original left, and each pseudonym the right one: the keyed pseudonym of its
    original under the key, or for counter patterns (``SUBJ-{counter:6}``, numbers from the run's key
    service) the original the re-identification table gives for it. No value is written to the report."""
    if explain_rule(compiled.plan, _PATIENT_ID, "LO").rule.action != Action.PSEUDO:
        return
    counter = compiled.counter is not None
    given: dict[str, set[str]] = defaultdict(set)
    owners: dict[str, set[str]] = defaultdict(set)
    checked = wrong = 0
    for pair in pairs:
        original, new = pair.patient_id, pair.patient_id_out
        if pair.output is None or not original or not new:
            continue
        where = pair.rel_out or pair.rel
        given[original].add(new)
        owners[new].add(original)
        if new == original:
            findings.append(Finding("integrity", where, "(0010,0020)", "PatientID",
                                    detail="original Patient ID survives though the recipe pseudonymises it"))
            continue
        if counter and reid_rows is not None:
            expected_original = reid_rows.get(("pseudonym", new), reid_rows.get(("PatientID", new)))
            checked += 1
            if expected_original != original:
                wrong += 1
                findings.append(Finding("integrity", where, "(0010,0020)", "PatientID",
                                        detail="Patient ID pseudonym is not the re-identification table's for "
                                               "this patient" if expected_original is not None else
                                               "Patient ID pseudonym is not in the re-identification table"))
        elif not counter and functions is not None:
            checked += 1
            # _uid_text decoded the stored bytes as latin-1: encoding back gives them exactly (non-ASCII IDs too).
            if new.encode("latin-1") != functions.pseudonym(original.encode("latin-1")):
                wrong += 1
                findings.append(Finding("integrity", where, "(0010,0020)", "PatientID",
                                        detail=f"Patient ID is not the keyed pseudonym of its original under key "
                                               f"id {report.key_id}"))
    split = sum(1 for news in given.values() if len(news) > 1)
    shared = sum(1 for olds in owners.values() if len(olds) > 1)
    if split:
        findings.append(Finding("integrity", f"{split} patients", "(0010,0020)", "PatientID",
                                detail="a patient's files carry more than one pseudonym"))
    if shared:
        findings.append(Finding("integrity", f"{shared} pseudonyms", "(0010,0020)", "PatientID",
                                detail="one pseudonym is carried by files of different patients"))
    if given:
        how = ("against the re-identification table" if counter and reid_rows is not None
               else "against the key" if not counter and functions is not None else "")
        report.notes.append(
            f"Patient ID pseudonyms: {len(given)} patients, one pseudonym each and no pseudonym shared: "
            f"{'yes' if not split and not shared else 'no'}"
            + (f"; {checked} checked {how}, {wrong} wrong" if how else
               "; counter pseudonyms: give --reid-table (with --key) to check each against the table"
               if counter else "; give --key to check each against the key")
        )


def _integrity(
    pairs: list[_Pair],
    plan: Plan,
    functions: KeyedFunctions | None,
    findings: list[Finding],
    report: VerifyReport,
) -> int:
    """Identity, keyed UIDs, one-to-one mappings and references across the output set."""
    uid_action = {kind: explain_rule(plan, tag, "UI").rule.action for tag, kind in _IDENTITY_TAGS.items()}
    originals: dict[str, set[str]] = {kind: set() for kind in _UID_KINDS}
    mapped: dict[str, dict[str, set[str]]] = {kind: defaultdict(set) for kind in _UID_KINDS}
    inverse: dict[str, dict[str, set[str]]] = {kind: defaultdict(set) for kind in _UID_KINDS}
    key_mismatch = 0
    for pair in pairs:
        for kind, uid in pair.identity.items():
            if uid:
                originals[kind].add(uid)
        if pair.output is None:
            continue
        out_instance = pair.output.get("instance", "")
        if not out_instance and pair.identity.get("instance"):
            findings.append(
                Finding(
                    "integrity",
                    pair.rel_out or pair.rel,
                    "(0008,0018)",
                    "SOPInstanceUID",
                    detail="output has no SOPInstanceUID",
                )
            )
        elif out_instance and pair.media_storage != out_instance:
            findings.append(
                Finding(
                    "integrity",
                    pair.rel_out or pair.rel,
                    "(0002,0003)",
                    "MediaStorageSOPInstanceUID",
                    detail="MediaStorageSOPInstanceUID differs from SOPInstanceUID",
                )
            )
        for kind, original in pair.identity.items():
            if not original:
                continue
            new = pair.output.get(kind, "")
            if not new:
                continue
            mapped[kind][original].add(new)
            inverse[kind][new].add(original)
            action = uid_action[kind]
            if original.startswith(STANDARD_UID_PREFIX):
                continue
            if action == Action.UID:
                if new == original:
                    findings.append(
                        Finding(
                            "integrity",
                            pair.rel_out or pair.rel,
                            _tag_path(kind),
                            _IDENTITY_KEYWORDS[kind],
                            detail=f"original {kind} UID survives though the recipe remaps UIDs",
                        )
                    )
                elif (
                    functions is not None
                    and new != functions.uid(original.encode("ascii", "replace")).decode()
                ):
                    key_mismatch += 1
            elif action == Action.KEEP and new != original:
                findings.append(
                    Finding(
                        "integrity",
                        pair.rel_out or pair.rel,
                        _tag_path(kind),
                        _IDENTITY_KEYWORDS[kind],
                        detail=f"the recipe keeps the {kind} UID, yet it changed",
                    )
                )
    if key_mismatch:
        findings.append(
            Finding(
                "integrity",
                "(all outputs)",
                detail=(
                    f"{key_mismatch} UIDs are not the keyed UIDs of their originals under key id {report.key_id}: "
                    "the outputs were made with another key (references across runs and sites will not match)"
                ),
            )
        )
    for kind in _UID_KINDS:
        for news in mapped[kind].values():
            if len(news) > 1:
                findings.append(
                    Finding(
                        "integrity",
                        "(output set)",
                        detail=(f"one original {kind} UID became {len(news)} different UIDs"),
                    )
                )
        for new, olds in inverse[kind].items():
            if len(olds) > 1:
                findings.append(
                    Finding(
                        "integrity",
                        "(output set)",
                        detail=(f"{len(olds)} different original {kind} UIDs became the same UID {new}"),
                    )
                )
    checked = 0
    for pair in pairs:
        if pair.output is None:
            continue
        for path, original, out_value in pair.references:
            kind = next((k for k in _UID_KINDS if original in originals[k]), None)
            if kind is None:
                continue
            checked += 1
            if out_value is None:
                continue  # the recipe removed the reference
            targets = mapped[kind].get(original)
            if not targets:
                if functions is not None and uid_action[kind] == Action.UID:
                    expected = functions.uid(original.encode("ascii", "replace")).decode()
                    if out_value != expected:
                        findings.append(
                            Finding(
                                "integrity",
                                pair.rel_out or pair.rel,
                                path,
                                _keyword_at(path),
                                detail=(
                                    f"reference to a {kind} of the input set that has no output is not its keyed UID"
                                ),
                            )
                        )
                report.notes.append(
                    f"{pair.rel_out or pair.rel}: {path} refers to a {kind} whose input has no output"
                )
                continue
            if out_value == original and uid_action[kind] != Action.KEEP:
                findings.append(
                    Finding(
                        "integrity",
                        pair.rel_out or pair.rel,
                        path,
                        _keyword_at(path),
                        detail=f"reference still holds the original {kind} UID",
                    )
                )
            elif out_value not in targets:
                findings.append(
                    Finding(
                        "integrity",
                        pair.rel_out or pair.rel,
                        path,
                        _keyword_at(path),
                        detail=f"dangling reference: resolves to no output {kind}",
                    )
                )
    return checked


_IDENTITY_KEYWORDS = {
    "instance": "SOPInstanceUID",
    "series": "SeriesInstanceUID",
    "study": "StudyInstanceUID",
    "frame of reference": "FrameOfReferenceUID",
}


def _tag_path(kind: str) -> str:
    tag = next(t for t, k in _IDENTITY_TAGS.items() if k == kind)
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _keyword_at(path: str) -> str:
    tag = int(path[-10:-6] + path[-5:-1], 16)
    entry = dictionary_entry(tag)
    return entry[1] if entry else ""


def _conformance(
    pairs: list[_Pair],
    outputs: dict[str, Path],
    input_files: list[tuple[Path, str]],
    sample: int,
    plan: Plan,
    findings: list[Finding],
) -> str:
    if shutil.which("dciodvfy") is None:
        return "dciodvfy not available (install dicom3tools to check conformance)"
    by_rel = {rel: path for path, rel in input_files}
    candidates = [
        (p.rel, p.rel_out) for p in pairs if p.output is not None and p.rel in by_rel and p.rel_out in outputs
    ]
    if not candidates or sample <= 0:
        return "dciodvfy available; no pairs to check"
    step = max(1, len(candidates) // sample)
    chosen = candidates[::step][:sample]
    new_errors = emptied = 0
    through_copy: list[str] = []
    # Deflated files go to dciodvfy as inflated copies (see inflated_copy), input and output alike; the copies
    # hold the inputs' identifying values, so they live in a private directory (mode 0700) removed at the end.
    with tempfile.TemporaryDirectory(prefix="veil-dciodvfy-") as scratch:
        for rel, rel_out in chosen:
            try:
                before_path = _readable_by_dciodvfy(by_rel[rel], Path(scratch) / "input.dcm")
            except (OSError, ParseError) as exc:
                log.warning("dciodvfy: skipped a pair whose input cannot be inflated (%s)", exc)
                continue
            try:
                after_path = _readable_by_dciodvfy(outputs[rel_out], Path(scratch) / "output.dcm")
            except (OSError, ParseError) as exc:
                new_errors += 1
                findings.append(
                    Finding("conformance", rel_out, detail=f"deflated data set cannot be read: {exc}")
                )
                continue
            if after_path != outputs[rel_out]:
                through_copy.append(rel_out)
            before = _dciodvfy_errors(before_path)
            after = _dciodvfy_errors(after_path)
            if before is None or after is None:
                continue
            for message in sorted(after - before):
                keyword = _emptied_sequence(message, plan)
                if keyword:
                    emptied += 1
                    detail = (
                        f"dciodvfy: {message} (the recipe empties {keyword}; PS3.5 7.4.5 and 7.4.6 allow a Type 2 or "
                        "Type 3 sequence with zero items)"
                    )
                    findings.append(
                        Finding("conformance", rel_out, keyword=keyword, detail=detail, severity="note")
                    )
                    continue
                new_errors += 1
                findings.append(Finding("conformance", rel_out, detail=f"dciodvfy: {message}"))
    status = f"checked {len(chosen)} of {len(candidates)} pairs: {new_errors} errors the inputs did not have"
    if emptied:
        status += (
            f"; {emptied} complaints about sequences the recipe empties (notes: PS3.5 7.4.6 allows them)"
        )
    if through_copy:
        status += (
            f"; {len(through_copy)} deflated pairs checked through inflated Explicit VR Little Endian copies: "
            + ", ".join(through_copy)
        )
    return status


def _readable_by_dciodvfy(path: Path, scratch: Path) -> Path:
    """The file itself, or for a deflated file its inflated copy written at ``scratch``."""
    with open(path, "rb") as f:
        head = f.read(1 << 16)  # the File Meta, with room to spare
        if not _is_deflated(head):
            return path
        data = head + f.read()
    scratch.write_bytes(inflated_copy(data))
    return scratch


def _is_deflated(head: bytes) -> bool:
    """Whether the File Meta at the start of a file names a deflated transfer syntax (never inflates)."""
    try:
        for element, _, start, header, length in _meta_elements(head):
            if element == 0x0010:
                value = head[start + header : start + header + length].strip(b" \x00")
                return value.decode("ascii", "replace") in _DEFLATED
    except ParseError:
        return False
    return False
