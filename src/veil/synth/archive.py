"""Deterministic synthetic DICOM archives with realistic identifying headers, for demos, tests and benchmarks.

Every file is a pure function of ``(seed, patient, study, series, instance)`` and of ``instances_per_series``,
``modality``, ``rows`` and ``cols`` (never of how many patients, studies or series the archive has): no clock,
no ``os.urandom``, no ``random`` module, no hash randomisation and integer-only pixel arithmetic, so the same
arguments give byte-identical archives on every run and machine. Values are drawn from BLAKE2b digests of named
keys, so the draws do not depend on the order they are made in.

References: each instance's Referenced Image Sequence names the previous instance of its series (the first names
the last; a one-instance series names itself); series after the first of a study are derived images whose
Source Image Sequence names the same-numbered instance of the study's first series; the Referenced Study
Sequence names the study itself.

Speed comes from encoding each series once: the header is built as an element tree, encoded by the small
encoder below into a template whose instance-varying values (SOP Instance UID, references, Instance Number,
positions, times, Pixel Data) are fixed-width *slots*, and each instance only patches those slots. Fixed-width
values keep every enclosing length right: UIDs are always ``2.25.`` plus 38 digits, and the text slots are
padded to the widest value of the series with trailing spaces (allowed for IS/DS/TM/DT, PS3.5 6.2).

Transfer syntax, per series, from ``n = patient + study + series`` (0-based indices, seed-independent so that
any archive's first series and three quarters of all series are the common case):

* ``n % 4 != 3``: Explicit VR Little Endian (75 %);
* ``n % 32 == 15``: Explicit VR Big Endian (retired, still met in old archives; about 3 %);
* ``n % 32 == 31``: Deflated Explicit VR Little Endian (about 3 %); the deflate stream is written here with
  stored blocks so the bytes do not depend on the zlib build, and padded to even length (PS3.5 A.5);
* otherwise ``n % 4 == 3``: Implicit VR Little Endian (about 19 %).

Layout: ``OUT/p0001/s01/se01/i0001.dcm`` (1-based, zero-padded, widened for large counts; names carry no
identifying value). Pixel Data is native: 16-bit grayscale (12 bits stored, 16 for PT/NM) for CT, MR, CR, DX,
MG, XA, PT, NM; 8-bit RGB for US and SC.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import TypeVar

import numpy as np

__all__ = [
    "DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN",
    "EXPLICIT_VR_BIG_ENDIAN",
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "IMPLICIT_VR_LITTLE_ENDIAN",
    "MODALITIES",
    "PRIVATE_CREATORS",
    "SynthSummary",
    "instance_bytes",
    "iter_archive",
    "series_transfer_syntax",
    "write_archive",
]

EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
IMPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2"
EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"

MODALITIES: tuple[str, ...] = ("CT", "MR", "US", "CR", "DX", "MG", "PT", "NM", "XA", "SC")

#: The private creators written, as (group, creator); each block carries identifying or vendor-like data.
PRIVATE_CREATORS: tuple[tuple[int, str], ...] = (
    (0x0009, "VEILSYNTH_GEMS_LIKE"),
    (0x0019, "VEILSYNTH_ACQ_PARAMS"),
    (0x0029, "VEILSYNTH_CSA_LIKE"),
    (0x0029, "VEILSYNTH_MEDCOM_LIKE"),
)

_MAX_DIMENSION = 8192
_IMPLEMENTATION_CLASS_UID = "2.25.148329153729840291748302617459302746581"
_IMPLEMENTATION_VERSION_NAME = "VEIL_SYNTH_1"
_TIMEZONE_OFFSET = "-0500"


# --------------------------------------------------------------------------------------------------------------
# Public results
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`write_archive` wrote: counts, total size and the files per transfer syntax."""

    out: Path
    files: int
    bytes: int
    patients: int
    studies: int
    series: int
    #: (transfer syntax UID, number of files written with it), sorted by UID.
    transfer_syntaxes: tuple[tuple[str, int], ...] = ()


# --------------------------------------------------------------------------------------------------------------
# Deterministic draws and UIDs
# --------------------------------------------------------------------------------------------------------------

_T = TypeVar("_T")
_UID_FLOOR = 10**37  # 38-digit integers only: every UID has the same length, so slots stay fixed width
_UID_SPAN = 9 * 10**37  # floor + span < 2**128, as PS3.5 B.2 asks of a 2.25 UID


class _Draw:
    """Values keyed by (seed, scope, name) through BLAKE2b: stable across Python versions and draw order."""

    __slots__ = ("_prefix",)

    def __init__(self, seed: int, *scope: object) -> None:
        self._prefix = "\x1f".join(["veil-synth", str(seed), *map(str, scope), ""]).encode()

    def integer(self, name: str, low: int, high: int) -> int:
        """An integer in ``[low, high]``."""
        digest = hashlib.blake2b(self._prefix + name.encode(), digest_size=8).digest()
        return low + int.from_bytes(digest, "big") % (high - low + 1)

    def choice(self, name: str, options: Sequence[_T]) -> _T:
        return options[self.integer(name, 0, len(options) - 1)]


def _uid(seed: int, kind: str, *indices: int) -> str:
    """A 43-character UID under ``2.25.`` derived from the seed, the kind of object and its indices."""
    key = "\x1f".join(["veil-synth-uid", str(seed), kind, *map(str, indices)]).encode()
    digest = hashlib.blake2b(key, digest_size=16).digest()
    return f"2.25.{_UID_FLOOR + int.from_bytes(digest, 'big') % _UID_SPAN}"


def series_transfer_syntax(patient: int, study: int, series: int) -> str:
    """The transfer syntax UID of a series (0-based indices); see the module docstring for the mix."""
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


# --------------------------------------------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------------------------------------------

_FAMILY_NAMES = (
    "SMITH", "JOHNSON", "WILLIAMS", "BROWN", "JONES", "GARCIA", "MILLER", "DAVIS", "RODRIGUEZ", "MARTINEZ",
    "HERNANDEZ", "LOPEZ", "GONZALEZ", "WILSON", "ANDERSON", "THOMAS", "TAYLOR", "MOORE", "JACKSON", "MARTIN",
    "LEE", "PEREZ", "THOMPSON", "WHITE", "HARRIS", "SANCHEZ", "CLARK", "RAMIREZ", "LEWIS", "ROBINSON",
    "WALKER", "YOUNG", "ALLEN", "KING", "WRIGHT", "SCOTT", "TORRES", "NGUYEN", "HILL", "FLORES",
    "O'BRIEN", "SMITH-JONES", "MÜLLER", "GARCÍA", "DUBOIS", "VAN DER BERG", "KOWALSKI", "NAKAMURA", "OKAFOR",
    "DOE",
)  # fmt: skip
_MALE_NAMES = (
    "JOHN", "JAMES", "ROBERT", "MICHAEL", "WILLIAM", "DAVID", "RICHARD", "JOSEPH", "THOMAS", "CHARLES",
    "CHRISTOPHER", "DANIEL", "MATTHEW", "ANTHONY", "MARK", "JOSÉ", "JÜRGEN", "KENJI", "CHIDI", "LUCAS",
)  # fmt: skip
_FEMALE_NAMES = (
    "MARY", "PATRICIA", "JENNIFER", "LINDA", "ELIZABETH", "BARBARA", "SUSAN", "JESSICA", "SARAH", "KAREN",
    "NANCY", "LISA", "BETTY", "MARGARET", "SANDRA", "ASHLEY", "ZOË", "RENÉE", "AIKO", "NGOZI",
)  # fmt: skip
_STREETS = (
    "OAK ST",
    "MAPLE AVE",
    "ELM ST",
    "PINE RD",
    "CEDAR LN",
    "LAKE DR",
    "HILL ST",
    "PARK AVE",
    "MAIN ST",
)
_CITIES = (
    ("SPRINGFIELD", "IL", "62704", "217"), ("RIVERSIDE", "CA", "92501", "951"), ("FAIRVIEW", "TN", "37062", "615"),
    ("GREENVILLE", "SC", "29601", "864"), ("MADISON", "WI", "53703", "608"), ("SALEM", "OR", "97301", "503"),
    ("FRANKLIN", "MA", "02038", "508"), ("CLINTON", "IA", "52732", "563"),
)  # fmt: skip
_INSTITUTIONS = (
    ("SPRINGFIELD GENERAL HOSPITAL", "SGH", "1 HOSPITAL PLAZA, SPRINGFIELD, IL 62702"),
    ("RIVERSIDE MEDICAL CENTER", "RMC", "4500 RIVER RD, RIVERSIDE, CA 92505"),
    ("ST. ELSEWHERE HOSPITAL", "STE", "736 CAMBRIDGE ST, BOSTON, MA 02135"),
    ("MERCY REGIONAL HEALTH", "MRH", "200 MERCY WAY, GREENVILLE, SC 29605"),
    ("LAKEVIEW UNIVERSITY HOSPITAL", "LUH", "1 UNIVERSITY AVE, MADISON, WI 53706"),
    ("FAIRVIEW IMAGING CENTER", "FIC", "88 COMMERCE BLVD, FAIRVIEW, TN 37062"),
)
_DEPARTMENTS = ("RADIOLOGY", "EMERGENCY RADIOLOGY", "CARDIOLOGY", "NUCLEAR MEDICINE", "WOMENS IMAGING")
_OCCUPATIONS = ("TEACHER", "NURSE", "ENGINEER", "RETIRED", "FARMER", "STUDENT", "ACCOUNTANT", "DRIVER")
_ETHNIC_GROUPS = ("WHITE", "BLACK", "HISPANIC", "ASIAN", "OTHER", "UNKNOWN")
_RELIGIONS = ("CATHOLIC", "PROTESTANT", "JEWISH", "MUSLIM", "HINDU", "NONE", "DECLINED")
_ALERTS = ("NONE", "PENICILLIN ALLERGY", "IODINE CONTRAST ALLERGY", "LATEX ALLERGY", "PACEMAKER")
_HISTORIES = (
    "hypertension and type 2 diabetes", "prior left lower lobe pneumonia", "smoker, 30 pack-years",
    "fall from ladder two days ago", "follow-up of a 6 mm pulmonary nodule", "chronic kidney disease stage 3",
)  # fmt: skip
_EQUIPMENT = (  # manufacturer, model family, software version prefix
    ("GE MEDICAL SYSTEMS", "Revolution", "gmp_vct"),
    ("SIEMENS", "SOMATOM", "syngo"),
    ("Philips", "Ingenuity", "PHL"),
    ("Canon Medical Systems", "Aquilion", "V"),
)
# Exams per modality: (local code, description, Body Part Examined).
_EXAMS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "CT": (
        ("CTCHESTC", "CT CHEST W CONTRAST", "CHEST"),
        ("CTABPELC", "CT ABDOMEN PELVIS W CONTRAST", "ABDOMEN"),
        ("CTHEADNC", "CT HEAD WO CONTRAST", "HEAD"),
        ("CTAPE", "CTA CHEST PE PROTOCOL", "CHEST"),
    ),
    "MR": (
        ("MRBRAINWWO", "MRI BRAIN W WO CONTRAST", "BRAIN"),
        ("MRKNEERT", "MRI KNEE RIGHT WO CONTRAST", "KNEE"),
        ("MRLSPINE", "MRI LUMBAR SPINE WO CONTRAST", "LSPINE"),
    ),
    "US": (
        ("USABDCOMP", "US ABDOMEN COMPLETE", "ABDOMEN"),
        ("USTHYROID", "US THYROID", "NECK"),
        ("USOB2", "US OB SECOND TRIMESTER", "PELVIS"),
    ),
    "CR": (("CRCHEST2V", "XR CHEST 2 VIEWS", "CHEST"), ("CRHAND3V", "XR HAND 3 VIEWS", "HAND")),
    "DX": (("DXCHEST1V", "XR CHEST 1 VIEW PORTABLE", "CHEST"), ("DXKNEE2V", "XR KNEE 2 VIEWS", "KNEE")),
    "MG": (
        ("MGSCRBIL", "MAMMO SCREENING BILATERAL", "BREAST"),
        ("MGDXLT", "MAMMO DIAGNOSTIC LEFT", "BREAST"),
    ),
    "PT": (("PTCTWBFDG", "PET CT WHOLE BODY FDG", "WHOLEBODY"),),
    "NM": (
        ("NMBONEWB", "NM BONE SCAN WHOLE BODY", "WHOLEBODY"),
        ("NMMPI", "NM MYOCARDIAL PERFUSION", "HEART"),
    ),
    "XA": (("XACORO", "CARDIAC CATH CORONARY ANGIOGRAPHY", "HEART"),),
    "SC": (("SCOUTSIDE", "OUTSIDE IMAGES IMPORT", "CHEST"),),
}
_SERIES_DESCRIPTIONS: dict[str, tuple[str, ...]] = {
    "CT": ("AX 5.0 SOFT TISSUE", "AX 1.25 LUNG", "COR MPR 3.0", "SAG MPR 3.0", "TOPOGRAM"),
    "MR": ("AX T1 SE", "AX T2 FSE", "SAG T2 FLAIR", "AX DWI B1000", "COR T1 POST GAD"),
    "US": ("ABDOMEN", "LIVER LONG", "RIGHT KIDNEY", "THYROID TRANSVERSE"),
    "CR": ("CHEST PA", "CHEST LAT", "HAND PA"),
    "DX": ("CHEST AP PORTABLE", "KNEE AP", "KNEE LAT"),
    "MG": ("L CC", "L MLO", "R CC", "R MLO"),
    "PT": ("PET WB AC", "PET WB NAC"),
    "NM": ("ANT WB", "POST WB", "STRESS"),
    "XA": ("LCA RAO 30", "RCA LAO 45"),
    "SC": ("OUTSIDE IMAGE", "SCANNED DOCUMENT"),
}


@dataclass(frozen=True)
class _ModalitySpec:
    """Per-modality SOP class and pixel format (PS3.3 C.7.6.3 Image Pixel Module)."""

    sop_class_uid: str
    samples_per_pixel: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str
    cross_sectional: bool  # slices with Image Position/Orientation (Patient) and Slice Location


_SPECS: dict[str, _ModalitySpec] = {
    "CT": _ModalitySpec("1.2.840.10008.5.1.4.1.1.2", 1, 12, 1, "MONOCHROME2", True),
    "MR": _ModalitySpec("1.2.840.10008.5.1.4.1.1.4", 1, 12, 0, "MONOCHROME2", True),
    "US": _ModalitySpec("1.2.840.10008.5.1.4.1.1.6.1", 3, 8, 0, "RGB", False),
    "CR": _ModalitySpec("1.2.840.10008.5.1.4.1.1.1", 1, 12, 0, "MONOCHROME1", False),
    "DX": _ModalitySpec("1.2.840.10008.5.1.4.1.1.1.1", 1, 12, 0, "MONOCHROME2", False),
    "MG": _ModalitySpec("1.2.840.10008.5.1.4.1.1.1.2", 1, 12, 0, "MONOCHROME2", False),
    "PT": _ModalitySpec("1.2.840.10008.5.1.4.1.1.128", 1, 16, 1, "MONOCHROME2", True),
    "NM": _ModalitySpec("1.2.840.10008.5.1.4.1.1.20", 1, 16, 0, "MONOCHROME2", False),
    "XA": _ModalitySpec("1.2.840.10008.5.1.4.1.1.12.1", 1, 12, 0, "MONOCHROME2", False),
    "SC": _ModalitySpec("1.2.840.10008.5.1.4.1.1.7", 3, 8, 0, "RGB", False),
}
_STUDY_ROOT_REFERENCE_CLASS = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired), as in practice
_MPPS_CLASS = "1.2.840.10008.3.1.2.3.3"


# --------------------------------------------------------------------------------------------------------------
# Patient, study and series values
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Patient:
    family: str
    given: str
    middle: str
    sex: str
    patient_id: str
    birth_date: date
    first_study_date: date
    address: str
    street: str
    city: str
    state: str
    telephone: str
    other_id: str
    national_id: str
    mother_family: str
    height_mm: int
    weight_kg: int
    draw: _Draw

    @property
    def name(self) -> str:
        return f"{self.family}^{self.given}^{self.middle}"


@dataclass(frozen=True)
class _Study:
    uid: str
    date: date
    seconds: int
    accession: str
    study_id: str
    institution: tuple[str, str, str]
    exam: tuple[str, str, str]
    referring: str
    reading: str
    requesting: str
    admission_id: str
    draw: _Draw


def _person(draw: _Draw, role: str, title: str = "") -> str:
    """A PN value for a staff member: family^given^middle^prefix (PS3.5 6.2.1.1)."""
    family = draw.choice(role + ".family", _FAMILY_NAMES)
    given = draw.choice(role + ".given", _MALE_NAMES + _FEMALE_NAMES)
    middle = chr(ord("A") + draw.integer(role + ".middle", 0, 25))
    return f"{family}^{given}^{middle}^{title}" if title else f"{family}^{given}^{middle}"


def _patient(seed: int, patient: int) -> _Patient:
    draw = _Draw(seed, "patient", patient)
    sex_draw = draw.integer("sex", 0, 99)
    sex = "M" if sex_draw < 48 else ("F" if sex_draw < 97 else "O")
    given_names = (
        _MALE_NAMES if sex == "M" else (_FEMALE_NAMES if sex == "F" else _MALE_NAMES + _FEMALE_NAMES)
    )
    first_study = date(2012, 1, 1) + timedelta(days=draw.integer("first_study", 0, 9 * 365))
    # About 8 % of patients are over 89: their age is itself identifying (HIPAA Safe Harbor, 45 CFR 164.514).
    bucket = draw.integer("age_bucket", 0, 999)
    if bucket < 20:
        age = 0
    elif bucket < 60:
        age = draw.integer("age", 1, 17)
    elif bucket < 920:
        age = draw.integer("age", 18, 89)
    else:
        age = draw.integer("age", 90, 104)
    birth = first_study - timedelta(days=age * 365 + age // 4 + draw.integer("birthday", 0, 330))
    city, state, zip_code, area = draw.choice("city", _CITIES)
    street = f"{draw.integer('house', 1, 9999)} {draw.choice('street', _STREETS)}"
    # An MRN per patient index through a bijection of [0, 9e7): unique in any archive, yet not sequential.
    mrn = 10_000_000 + (patient * 48_271 + _Draw(seed, "mrn").integer("offset", 0, 89_999_999)) % 90_000_000
    return _Patient(
        family=draw.choice("family", _FAMILY_NAMES),
        given=draw.choice("given", given_names),
        middle=chr(ord("A") + draw.integer("middle", 0, 25)),
        sex=sex,
        patient_id=str(mrn),
        birth_date=birth,
        first_study_date=first_study,
        address=f"{street}^^{city}^{state}^{zip_code}",
        street=street,
        city=city,
        state=state,
        telephone=f"+1 {area} 555 {draw.integer('phone', 100, 199):04d}",
        other_id=f"RMC{draw.integer('other_id', 100_000, 999_999)}",
        # 987-65-4320..4329 are reserved for advertising: an SSN-shaped value that is nobody's.
        national_id=f"987-65-432{draw.integer('ssn', 0, 9)}",
        mother_family=draw.choice("mother_family", _FAMILY_NAMES),
        height_mm=draw.integer("height", 500, 800)
        if age < 2
        else draw.integer("height", 1000 + min(age, 18) * 30, 1950),
        weight_kg=draw.integer("weight", 3, 12)
        if age < 2
        else draw.integer("weight", 15 + min(age, 18) * 2, 130),
        draw=draw,
    )


def _study(seed: int, patient: _Patient, patient_index: int, study: int, modality: str) -> _Study:
    draw = _Draw(seed, "study", patient_index, study)
    study_date = patient.first_study_date + timedelta(days=study * 120 + draw.integer("date", 0, 90))
    return _Study(
        uid=_uid(seed, "study", patient_index, study),
        date=study_date,
        seconds=draw.integer("time", 7 * 3600, 19 * 3600),
        accession=f"E{draw.integer('accession', 0, 10**13 - 1):013d}",
        study_id=str(draw.integer("study_id", 1000, 99999)),
        institution=draw.choice("institution", _INSTITUTIONS),
        exam=draw.choice("exam", _EXAMS[modality]),
        referring=_person(draw, "referring", "DR"),
        reading=_person(draw, "reading", "DR"),
        requesting=_person(draw, "requesting", "DR"),
        admission_id=f"ADM{draw.integer('admission', 1_000_000, 9_999_999)}",
        draw=draw,
    )


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


# --------------------------------------------------------------------------------------------------------------
# Private blocks
# --------------------------------------------------------------------------------------------------------------


def _csa_header(entries: list[tuple[str, str, list[str]]]) -> bytes:
    """A Siemens CSA2-shaped binary blob ("SV10"): named entries with VR and string items, little endian."""
    out = bytearray(b"SV10\x04\x03\x02\x01")
    out += struct.pack("<II", len(entries), 77)
    for name, vr, items in entries:
        out += struct.pack("<64si4siii", name.encode(), len(items), vr.encode(), 0, len(items), 77)
        for item in items:
            data = item.encode(_TEXT_ENCODING) + b"\x00"
            out += struct.pack("<iiii", len(data), len(data), 77, len(data))
            out += data + b"\x00" * (-len(data) % 4)
    return bytes(out)


def _private_elements(patient: _Patient, study: _Study, station: str, series_seconds: int) -> list[_Element]:
    """Three vendor-like private blocks that repeat identifying values (PS3.5 7.8.1 private creators)."""
    draw = study.draw
    name = patient.name
    gems = 0x00090000
    gems_item: list[_Element] = [
        (gems | 0x0010, "LO", "VEILSYNTH_GEMS_LIKE"),
        (gems | 0x1001, "LO", f"{patient.family}^{patient.given}"),
        (gems | 0x1002, "SH", study.accession),
    ]
    acquisition = 0x00190000
    csa = 0x00290000
    epoch_days = (study.date - date(1970, 1, 1)).days
    csa_image = _csa_header(
        [
            ("ImageNumber", "IS", ["1"]),
            ("SliceMeasurementDuration", "DS", ["1000.0"]),
            ("UsedPatientWeight", "DS", [str(patient.weight_kg)]),
        ]
    )
    csa_series = _csa_header(
        [
            ("PatientName", "PN", [name]),
            ("PatientID", "LO", [patient.patient_id]),
            ("PatientBirthDate", "DA", [_da(patient.birth_date)]),
            ("ProtocolName", "LO", [f"{study.exam[1]} {patient.family}"]),
            ("OperatorComment", "LT", [f"scanned {patient.given} {patient.family} at {station}"]),
        ]
    )
    return [
        (gems | 0x0010, "LO", "VEILSYNTH_GEMS_LIKE"),
        (gems | 0x1001, "LO", name),
        (gems | 0x1002, "SH", patient.patient_id),
        (gems | 0x1004, "SH", station),
        (gems | 0x1027, "SL", epoch_days * 86400 + series_seconds),
        (gems | 0x1030, "DA", _da(patient.birth_date)),
        (gems | 0x1040, "SQ", _Seq((gems_item,), undefined_length=True)),
        (gems | 0x10E3, "UI", study.uid),
        (acquisition | 0x0010, "LO", "VEILSYNTH_ACQ_PARAMS"),
        (acquisition | 0x1002, "SL", draw.integer("cells", 700, 900)),
        (acquisition | 0x1003, "DS", _decimal(draw.integer("cell_spacing", 1000, 1400))),
        (acquisition | 0x1018, "LO", f"SCAN FROM {station}"),
        (acquisition | 0x1023, "DS", _decimal(draw.integer("table_speed", 10_000, 80_000))),
        (acquisition | 0x1026, "SS", draw.integer("gantry_pos", -300, 300)),
        (acquisition | 0x102A, "FD", draw.integer("xray_on", 0, 4000) / 8.0),
        (acquisition | 0x1047, "US", (draw.integer("views", 400, 1200), 1)),
        (csa | 0x0010, "LO", "VEILSYNTH_CSA_LIKE"),
        (csa | 0x0011, "LO", "VEILSYNTH_MEDCOM_LIKE"),
        (csa | 0x1008, "CS", "IMAGE NUM 4"),
        (csa | 0x1009, "LO", _da(study.date)),
        (csa | 0x1010, "OB", csa_image),
        (csa | 0x1018, "CS", "SERIES NUM 4"),
        (csa | 0x1020, "OB", csa_series),
        (csa | 0x1131, "LO", "4.0.163040021"),
        (csa | 0x1134, "CS", "DB TO DICOM"),
        (csa | 0x1160, "LO", f"com {patient.family}"),
    ]


# --------------------------------------------------------------------------------------------------------------
# Modality-specific acquisition attributes
# --------------------------------------------------------------------------------------------------------------


def _acquisition_elements(modality: str, draw: _Draw, body_part: str, series: int) -> list[_Element]:
    """Acquisition parameters of the modality's image module (PS3.3 C.8)."""
    xray = [
        (0x00180060, "DS", str(draw.integer("kvp", 60, 140))),
        (0x00181150, "IS", str(draw.integer("exposure_time", 5, 1500))),
        (0x00181151, "IS", str(draw.integer("tube_current", 50, 600))),
        (0x00181152, "IS", str(draw.integer("exposure", 1, 400))),
    ]
    if modality == "CT":
        return xray + [
            (0x00180010, "LO", draw.choice("contrast", ("OMNIPAQUE 350", "ISOVUE 370", "NONE"))),
            (0x00180022, "CS", "HELICAL MODE"),
            (0x00180090, "DS", "500"),
            (0x00181100, "DS", str(draw.integer("recon_diameter", 250, 500))),
            (0x00181110, "DS", "946.746"),
            (0x00181111, "DS", "538.52"),
            (0x00181120, "DS", "0"),
            (0x00181130, "DS", _decimal(draw.integer("table_height", 120_000, 200_000))),
            (0x00181140, "CS", "CW"),
            (0x00181160, "SH", draw.choice("filter", ("BODY FILTER", "HEAD FILTER", "FLAT"))),
            (0x00181170, "IS", str(draw.integer("generator_power", 10, 120))),
            (0x00181190, "DS", "0.7\\1.2"),
            (0x00181210, "SH", draw.choice("kernel", ("STANDARD", "LUNG", "BONE", "B30f", "FC08"))),
            (0x00185100, "CS", "FFS" if body_part != "HEAD" else "HFS"),
            (0x00189305, "FD", 0.5),
            (0x00189306, "FD", 0.625),
            (0x00189307, "FD", 40.0),
            (0x00189309, "FD", draw.integer("table_speed_fd", 200, 1600) / 8.0),
            (0x00189310, "FD", 39.375),
            (0x00189311, "FD", 0.984375),
            (0x00189345, "FD", draw.integer("ctdivol", 8, 200) / 8.0),
            (0x00189346, "SQ", _Seq((_code("113691", "DCM", "IEC Body Dosimetry Phantom"),))),
        ]
    if modality == "MR":
        return [
            (0x00180020, "CS", "SE"),
            (0x00180021, "CS", "SK\\SP"),
            (0x00180022, "CS", "PFP\\SAT1"),
            (0x00180023, "CS", "2D"),
            (0x00180080, "DS", str(draw.integer("tr", 400, 9000))),
            (0x00180081, "DS", str(draw.integer("te", 8, 120))),
            (0x00180083, "DS", "1"),
            (0x00180084, "DS", "127.7413"),
            (0x00180085, "SH", "1H"),
            (0x00180086, "IS", "1"),
            (0x00180087, "DS", draw.choice("field", ("1.5", "3"))),
            (0x00180091, "IS", str(draw.integer("etl", 1, 24))),
            (0x00180095, "DS", "195"),
            (0x00181250, "SH", "Body"),
            (0x00181310, "US", (0, 320, 224, 0)),
            (0x00181312, "CS", "ROW"),
            (0x00181314, "DS", str(draw.integer("flip", 10, 160))),
            (0x00181316, "DS", "0.8"),
            (0x00185100, "CS", "HFS"),
        ]
    if modality == "US":
        return [
            (0x00185010, "LO", draw.choice("transducer", ("C5-1", "L12-5", "C1-6-D"))),
            (0x00186031, "CS", "CURVED LINEAR"),
            (0x00181088, "IS", "60"),
        ]
    if modality in ("CR", "DX", "MG", "XA"):
        view = draw.choice("view", ("PA", "AP", "LL", "CC", "MLO"))
        extra: list[_Element] = [
            (0x00181110, "DS", str(draw.integer("sid", 650, 1800))),
            (0x00181164, "DS", "0.139\\0.139"),
            (0x00185101, "CS", view),
            (0x00200020, "CS", "A\\F"),
        ]
        if modality in ("DX", "MG"):
            extra.append((0x00080068, "CS", "FOR PRESENTATION"))
        if modality == "MG":
            extra.append((0x00200062, "CS", "L" if series % 2 else "R"))
        if modality == "XA":
            extra += [(0x00181510, "DS", "-30"), (0x00181511, "DS", "20")]
        return xray + extra
    if modality == "PT":
        radionuclide = _Seq((_code("C-111A1", "SRT", "^18^Fluorine"),))
        pharmaceutical: list[_Element] = [
            (0x00180031, "LO", "FDG -- fluorodeoxyglucose"),
            (0x00181072, "TM", "091500.000000"),
            (0x00181074, "DS", str(draw.integer("dose", 200_000_000, 450_000_000))),
            (0x00181075, "DS", "6586.2"),
            (0x00540300, "SQ", radionuclide),
        ]
        return [
            (0x00541001, "CS", "BQML"),
            (0x00541102, "CS", "START"),
            (0x00540081, "US", 1),
            (0x00280051, "CS", "DECY\\ATTN"),
            (0x00541000, "CS", "WHOLE BODY\\IMAGE"),
            (0x00540016, "SQ", _Seq((pharmaceutical,))),
            (0x00185100, "CS", "FFS"),
        ]
    if modality == "NM":
        return [
            (0x00280008, "IS", "1"),
            (0x00280009, "AT", (0x00540010,)),
            (0x00540010, "US", 1),
            (0x00540011, "US", 1),
            (0x00540020, "US", 1),
            (0x00540021, "US", 1),
            (0x00180031, "LO", "Tc-99m MDP"),
        ]
    return [(0x00080064, "CS", "WSD"), (0x00181016, "LO", "VEIL SCANNER")]  # SC: SC Equipment Module


# --------------------------------------------------------------------------------------------------------------
# The per-series template
# --------------------------------------------------------------------------------------------------------------


class _SeriesTemplate:
    """One series encoded once; :meth:`render` patches an instance's slots into a copy."""

    def __init__(
        self,
        *,
        seed: int,
        patient: int,
        study: int,
        series: int,
        instances_per_series: int,
        modality: str,
        rows: int,
        cols: int,
    ) -> None:
        self.seed, self.patient, self.study, self.series = seed, patient, study, series
        self.instances = instances_per_series
        self.transfer_syntax = series_transfer_syntax(patient, study, series)
        spec = _SPECS[modality]
        self._spec = spec
        self._big_endian = self.transfer_syntax == EXPLICIT_VR_BIG_ENDIAN
        self._deflate = self.transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN

        patient_values = _patient(seed, patient)
        study_values = _study(seed, patient_values, patient, study, modality)
        draw = _Draw(seed, "series", patient, study, series)
        self._draw = draw
        self._station = f"{study_values.institution[1]}{modality}{draw.integer('station', 1, 9)}"

        # Instance times spread over at most two hours after the series start, so they never pass midnight.
        series_seconds = min(
            study_values.seconds + series * 90 + draw.integer("time", 0, 60), 21 * 3600 + 1800
        )
        self._time_origin = series_seconds * 1_000_000
        self._time_step = min(500_000, 2 * 3600 * 1_000_000 // max(instances_per_series, 1))
        self._series_date = _da(study_values.date)

        # Slice positions in thousandths of a mm, moving away from zero so the widest value is the last one.
        self._slice_spacing = draw.integer("slice_spacing", 625, 5000)
        self._z_start = -draw.integer("z_start", 10_000, 400_000)
        fov = draw.integer("fov", 250_000, 450_000)
        self._position_prefix = (
            f"{_decimal(-fov // 2)}\\{_decimal(-fov // 2 + draw.integer('table', 0, 40_000))}\\"
        )
        last = instances_per_series - 1
        z_width = len(self._z(last))
        self._number_width = _even(len(str(instances_per_series)))

        slots: dict[str, _Slot] = {
            "sop_instance_uid": _Slot("sop_instance_uid", 44),
            "instance_number": _Slot("instance_number", self._number_width),
            "acquisition_time": _Slot("acquisition_time", 14),
            "content_time": _Slot("content_time", 14),
            "acquisition_datetime": _Slot("acquisition_datetime", 26),
        }
        if spec.cross_sectional:
            slots["image_position"] = _Slot("image_position", _even(len(self._position_prefix) + z_width))
            slots["slice_location"] = _Slot("slice_location", _even(z_width))

        self._pixel_bytes = rows * cols * spec.samples_per_pixel * (2 if spec.samples_per_pixel == 1 else 1)
        elements = self._elements(
            patient_values, study_values, modality, rows, cols, fov, series_seconds, slots
        )

        meta = _Encoder(implicit_vr=False, little_endian=True)
        meta.dataset(
            [
                (0x00020001, "OB", b"\x00\x01"),
                (0x00020002, "UI", spec.sop_class_uid),
                (0x00020003, "UI", slots["sop_instance_uid"]),
                (0x00020010, "UI", self.transfer_syntax),
                (0x00020012, "UI", _IMPLEMENTATION_CLASS_UID),
                (0x00020013, "SH", _IMPLEMENTATION_VERSION_NAME),
                (0x00020016, "AE", self._station),
            ]
        )
        # PS3.10 7.1: File Meta Information Group Length counts the bytes after its own element.
        group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(meta.buffer))
        self._prefix = bytes(128) + b"DICM" + group_length + bytes(meta.buffer)
        shift = 128 + 4 + len(group_length)
        self._prefix_slots = tuple((name, offset + shift, width) for name, offset, width in meta.slots)

        body = _Encoder(
            implicit_vr=self.transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN, little_endian=not self._big_endian
        )
        body.dataset(elements)
        self._body = bytes(body.buffer)
        self._body_slots = tuple(body.slots)

        self._pixels = _PixelSource(
            seed, patient, study, series, spec, rows, cols, instances_per_series, big_endian=self._big_endian
        )

    def _z(self, instance: int) -> str:
        return _decimal(self._z_start - instance * self._slice_spacing)

    def _elements(
        self,
        patient: _Patient,
        study: _Study,
        modality: str,
        rows: int,
        cols: int,
        fov: int,
        series_seconds: int,
        slots: dict[str, _Slot],
    ) -> list[_Element]:
        """The full header of the series, with slots where instances differ (PS3.3 A.3 CT Image IOD and kin)."""
        spec = self._spec
        draw = self._draw
        seed, p, st, se = self.seed, self.patient, self.study, self.series
        exam_code, exam_description, body_part = study.exam
        institution, institution_short, institution_address = study.institution
        manufacturer, model_family, software = draw.choice("equipment", _EQUIPMENT)
        station = self._station
        operator = _person(draw, "operator")
        performing = _person(draw, "performing", "DR")
        dob = patient.birth_date
        dob_us = f"{dob.month:02d}/{dob.day:02d}/{dob.year:04d}"
        dob_iso = f"{dob.year:04d}-{dob.month:02d}-{dob.day:02d}"
        series_description = draw.choice("description", _SERIES_DESCRIPTIONS[modality])
        study_date = _da(study.date)
        study_time = _tm(study.seconds * 1_000_000)
        series_time = _tm(series_seconds * 1_000_000)
        derived = se > 0 and spec.cross_sectional
        image_type = "DERIVED\\SECONDARY\\REFORMATTED" if derived else "ORIGINAL\\PRIMARY\\AXIAL"
        history = draw.choice("history", _HISTORIES)
        mpps_uid = _uid(seed, "mpps", p, st)

        referenced_image = _Seq(
            (
                [
                    (0x00081150, "UI", spec.sop_class_uid),
                    (0x00081155, "UI", _Slot("referenced_sop_instance_uid", 44)),
                ],
            )
        )
        protocol_context: list[_Element] = [
            (0x0040A040, "CS", "TEXT"),
            (0x0040A043, "SQ", _Seq((_code("121106", "DCM", "Comment"),))),
            (
                0x0040A160,
                "UT",
                f"Patient {patient.family}^{patient.given} weighs {patient.weight_kg} kg",
            ),
        ]
        scheduled_protocol = _code(exam_code, "99VEILSYNTH", exam_description) + [
            (0x00400440, "SQ", _Seq((protocol_context,))),
        ]
        request_attributes: list[_Element] = [
            (0x00080050, "SH", study.accession),
            (0x00321060, "LO", exam_description),
            (0x00400007, "LO", f"{exam_description} {patient.family}"),
            (0x00400008, "SQ", _Seq((scheduled_protocol,))),
            (0x00400009, "SH", f"SPS{draw.integer('sps', 100_000, 999_999)}"),
            (0x00401001, "SH", f"RP{draw.integer('rp', 100_000, 999_999)}"),
            (0x00401002, "LO", f"r/o pathology {patient.given} {patient.family} DOB {_da(dob)}"[:64]),
        ]
        other_patient_ids = _Seq(
            (
                [(0x00100020, "LO", patient.other_id), (0x00100021, "LO", "RMC"), (0x00100022, "CS", "TEXT")],
                [
                    (0x00100020, "LO", patient.national_id),
                    (0x00100021, "LO", "SSA"),
                    (0x00100022, "CS", "TEXT"),
                ],
            ),
            undefined_length=True,
        )
        sop_class = spec.sop_class_uid

        elements: list[_Element] = [
            # SOP Common (PS3.3 C.12.1)
            (0x00080005, "CS", "ISO_IR 100"),
            (0x00080008, "CS", image_type),
            (0x00080012, "DA", study_date),
            (0x00080013, "TM", series_time),
            (0x00080014, "UI", _uid(seed, "instance_creator", p, st)),
            (0x00080016, "UI", sop_class),
            (0x00080018, "UI", slots["sop_instance_uid"]),
            (0x00080201, "SH", _TIMEZONE_OFFSET),
            # General Study (C.7.2.1), Patient Study (C.7.2.2)
            (0x00080020, "DA", study_date),
            (0x00080030, "TM", study_time),
            (0x00080050, "SH", study.accession),
            (0x00080090, "PN", study.referring),
            (
                0x00080092,
                "ST",
                f"{draw.integer('ref_house', 1, 999)} CLINIC WAY, {patient.city}, {patient.state}",
            ),
            (0x00080094, "SH", f"+1 800 555 {draw.integer('ref_phone', 100, 199):04d}"),
            (0x00081030, "LO", f"{exam_description} - {patient.family}, {patient.given}"[:64]),
            (0x00081032, "SQ", _Seq((_code(exam_code, "99VEILSYNTH", exam_description),))),
            (0x00081048, "PN", study.referring),
            (0x00081060, "PN", study.reading),
            (0x00081080, "LO", history[:64]),
            (
                0x00081110,
                "SQ",
                _Seq(([(0x00081150, "UI", _STUDY_ROOT_REFERENCE_CLASS), (0x00081155, "UI", study.uid)],)),
            ),
            (0x00081111, "SQ", _Seq(([(0x00081150, "UI", _MPPS_CLASS), (0x00081155, "UI", mpps_uid)],))),
            (0x0020000D, "UI", study.uid),
            (0x00200010, "SH", study.study_id),
            (0x00321032, "PN", study.requesting),
            (0x00321033, "LO", study.institution[0][:64]),
            (0x00321060, "LO", exam_description),
            (0x00321064, "SQ", _Seq((_code(exam_code, "99VEILSYNTH", exam_description),))),
            (0x00380010, "LO", study.admission_id),
            (
                0x00380300,
                "LO",
                f"WARD {draw.integer('ward', 1, 9)}{draw.choice('wing', 'ABC')} BED {draw.integer('bed', 1, 30)}",
            ),
            (0x00102180, "SH", patient.draw.choice("occupation", _OCCUPATIONS)),
            (
                0x001021B0,
                "LT",
                (
                    f"{patient.family}, {patient.given} {patient.middle}. DOB {dob_iso}. MRN {patient.patient_id}. "
                    f"History of {history}. Prior imaging at {institution}."
                ),
            ),
            (0x00101010, "AS", _age(dob, study.date)),
            (0x00101020, "DS", _decimal(patient.height_mm)),
            (0x00101030, "DS", str(patient.weight_kg)),
            # Patient (C.7.1.1)
            (0x00100010, "PN", patient.name),
            (0x00100020, "LO", patient.patient_id),
            (0x00100021, "LO", institution_short),
            (0x00100030, "DA", _da(dob)),
            (0x00100040, "CS", patient.sex),
            (0x00101000, "LO", f"{patient.other_id}\\{patient.national_id}"),
            (0x00101001, "PN", f"{patient.family}^{patient.given[:3]}"),
            (0x00101002, "SQ", other_patient_ids),
            (0x00101005, "PN", f"{patient.mother_family}^{patient.given}" if patient.sex == "F" else ""),
            (0x00101040, "LO", patient.address),
            (0x00101060, "PN", f"{patient.mother_family}^{patient.draw.choice('mother', _FEMALE_NAMES)}"),
            (0x00101090, "LO", f"CHART {patient.patient_id}"),
            (0x00102000, "LO", patient.draw.choice("alert", _ALERTS)),
            (0x00102150, "LO", "USA"),
            (0x00102152, "LO", f"{patient.city}, {patient.state}"),
            (0x00102154, "SH", patient.telephone),
            (0x00102160, "SH", patient.draw.choice("ethnic", _ETHNIC_GROUPS)),
            (0x001021A0, "CS", patient.draw.choice("smoking", ("YES", "NO", "UNKNOWN"))),
            (0x001021F0, "LO", patient.draw.choice("religion", _RELIGIONS)),
            (0x00104000, "LT", f"Call {patient.telephone} before scheduling; lives at {patient.street}."),
            # General Series (C.7.3.1)
            (0x00080021, "DA", study_date),
            (0x00080031, "TM", series_time),
            (0x00080060, "CS", modality),
            (0x00081050, "PN", performing),
            (0x00081070, "PN", operator),
            (0x0008103E, "LO", f"{series_description} MRN {patient.patient_id}"),
            (0x00180015, "CS", body_part),
            (0x00181030, "LO", f"{exam_code} {patient.family}"),
            (0x0020000E, "UI", _uid(seed, "series", p, st, se)),
            (0x00200011, "IS", str(se + 1)),
            (0x00200060, "CS", ""),
            (0x00400244, "DA", study_date),
            (0x00400245, "TM", study_time),
            (0x00400253, "SH", f"PPS{draw.integer('pps', 100_000, 999_999)}"),
            (0x00400254, "LO", f"{exam_description} for {patient.family}"[:64]),
            (0x00400260, "SQ", _Seq((_code(exam_code, "99VEILSYNTH", exam_description),))),
            (
                0x00400275,
                "SQ",
                _Seq((request_attributes,), undefined_length=True, undefined_length_items=True),
            ),
            (0x00402016, "LO", f"PLC{draw.integer('placer', 100_000, 999_999)}"),
            (0x00402017, "LO", f"FIL{draw.integer('filler', 100_000, 999_999)}"),
            # General Equipment (C.7.5.1)
            (0x00080070, "LO", manufacturer),
            (0x00080080, "LO", institution),
            (0x00080081, "ST", institution_address),
            (0x00081010, "SH", station),
            (0x00081040, "LO", draw.choice("department", _DEPARTMENTS)),
            (0x00081090, "LO", f"{model_family} {modality} {draw.integer('model', 16, 640)}"),
            (0x00181000, "LO", f"{institution_short}{draw.integer('serial', 10_000, 99_999)}"),
            (
                0x00181020,
                "LO",
                f"{software}{draw.integer('sw_major', 1, 30)}.{draw.integer('sw_minor', 0, 9)}",
            ),
            (0x00181200, "DA", _da(study.date - timedelta(days=draw.integer("calibrated", 1, 60)))),
            (0x00181201, "TM", "063000.000000"),
            # Frame of Reference (C.7.4.1)
            (0x00200052, "UI", _uid(seed, "frame_of_reference", p, st)),
            (0x00201040, "LO", ""),
            # General Image (C.7.6.1), General Acquisition (C.7.10.1)
            (0x00080022, "DA", study_date),
            (0x00080023, "DA", study_date),
            (0x00080032, "TM", slots["acquisition_time"]),
            (0x00080033, "TM", slots["content_time"]),
            (0x0008002A, "DT", slots["acquisition_datetime"]),
            (0x00081140, "SQ", referenced_image),
            (0x00200012, "IS", "1"),
            (0x00200013, "IS", slots["instance_number"]),
            (0x00201002, "IS", str(self.instances)),
            (
                0x00204000,
                "LT",
                (
                    f"Patient {patient.given} {patient.family} (MRN {patient.patient_id}, DOB {dob_us}) "
                    f"tolerated the procedure well. Technologist {operator.split('^')[0]}."
                ),
            ),
            (0x00282110, "CS", "00"),
            (0x00280301, "CS", "NO"),
            # Image Pixel (C.7.6.3)
            (0x00280002, "US", spec.samples_per_pixel),
            (0x00280004, "CS", spec.photometric_interpretation),
            (0x00280010, "US", rows),
            (0x00280011, "US", cols),
            (0x00280100, "US", 16 if spec.samples_per_pixel == 1 else 8),
            (0x00280101, "US", spec.bits_stored),
            (0x00280102, "US", spec.bits_stored - 1),
            (0x00280103, "US", spec.pixel_representation),
            (
                0x7FE00010,
                "OW" if spec.samples_per_pixel == 1 else "OB",
                _Slot("pixel_data", _even(self._pixel_bytes)),
            ),
        ]
        if spec.samples_per_pixel == 3:
            elements.append((0x00280006, "US", 0))
        else:
            window = {"CT": ("40", "400"), "PT": ("5000", "10000"), "NM": ("30000", "60000")}
            center, width = window.get(modality, ("2048", "4096"))
            elements += [(0x00281050, "DS", center), (0x00281051, "DS", width), (0x00281055, "LO", "WINDOW1")]
        if spec.samples_per_pixel == 1 and modality not in ("MR", "MG", "XA", "DX", "CR"):
            elements += [
                (0x00281052, "DS", "0"),
                (0x00281053, "DS", "1" if modality != "PT" else "0.25"),
                (0x00281054, "LO", "HU" if modality == "CT" else "US"),
            ]
        if spec.cross_sectional:
            spacing = _decimal(fov // cols)
            thickness = _decimal(self._slice_spacing)
            elements += [
                (0x00180050, "DS", thickness),
                (0x00180088, "DS", thickness),
                (0x00200032, "DS", slots["image_position"]),
                (0x00200037, "DS", "1\\0\\0\\0\\1\\0"),
                (0x00201041, "DS", slots["slice_location"]),
                (0x00280030, "DS", f"{spacing}\\{spacing}"),
            ]
        if derived:
            source_item: list[_Element] = [
                (0x00081150, "UI", sop_class),
                (0x00081155, "UI", _Slot("source_sop_instance_uid", 44)),
                (
                    0x0040A170,
                    "SQ",
                    _Seq((_code("121322", "DCM", "Source image for image processing operation"),)),
                ),
            ]
            elements += [
                (0x00082111, "ST", f"MPR from series 1 of {patient.family}^{patient.given}"),
                (0x00082112, "SQ", _Seq((source_item,), undefined_length=True, undefined_length_items=True)),
            ]
        elements += _acquisition_elements(modality, draw, body_part, se)
        elements += _private_elements(patient, study, station, series_seconds)
        return elements

    def render(self, instance: int) -> bytes:
        """The Part 10 bytes of one instance (0-based) of this series."""
        seed, p, st, se = self.seed, self.patient, self.study, self.series
        values: dict[str, bytes] = {
            "sop_instance_uid": _fit(_uid(seed, "instance", p, st, se, instance), 44, "UI"),
            "referenced_sop_instance_uid": _fit(
                _uid(seed, "instance", p, st, se, (instance - 1) % self.instances), 44, "UI"
            ),
            "instance_number": _fit(str(instance + 1), self._number_width),
        }
        if se > 0:
            values["source_sop_instance_uid"] = _fit(_uid(seed, "instance", p, st, 0, instance), 44, "UI")
        acquired = self._time_origin + instance * self._time_step
        acquisition_time = _tm(acquired)
        values["acquisition_time"] = _fit(acquisition_time, 14)
        values["content_time"] = _fit(_tm(acquired + 2_000_000), 14)
        values["acquisition_datetime"] = _fit(f"{self._series_date}{acquisition_time}{_TIMEZONE_OFFSET}", 26)
        z = self._z(instance)
        values["image_position"] = self._position_prefix.encode() + z.encode()
        values["slice_location"] = z.encode()
        values["pixel_data"] = self._pixels.instance(instance)

        prefix = bytearray(self._prefix)
        _patch(prefix, self._prefix_slots, values)
        body = bytearray(self._body)
        _patch(body, self._body_slots, values)
        if self._deflate:
            return bytes(prefix) + _deflate_stored(body)
        prefix += body
        return bytes(prefix)


def _patch(buffer: bytearray, slots: tuple[tuple[str, int, int], ...], values: dict[str, bytes]) -> None:
    """Write each slot's value, padded with spaces (text) or a NUL (pixel data) to the slot's width."""
    for name, offset, width in slots:
        value = values[name]
        pad = b"\x00" if name == "pixel_data" else b" "
        buffer[offset : offset + width] = value + pad * (width - len(value))


@lru_cache(maxsize=4)
def _grid(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column index arrays (read-only, shared by every series of one image size)."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.int32)
    y.setflags(write=False)
    x.setflags(write=False)
    return y, x


class _PixelSource:
    """Native pixel data: a per-series gradient and stripe pattern, a sphere's cross-section, seeded noise."""

    def __init__(
        self,
        seed: int,
        patient: int,
        study: int,
        series: int,
        spec: _ModalitySpec,
        rows: int,
        cols: int,
        instances: int,
        *,
        big_endian: bool,
    ) -> None:
        draw = _Draw(seed, "pixels", patient, study, series)
        self._key = (seed, patient, study, series)
        self._rows, self._cols, self._instances = rows, cols, instances
        self._rgb = spec.samples_per_pixel == 3
        if self._rgb:
            self._low, self._high = 0, 255
        elif spec.pixel_representation:
            self._low, self._high = -1024, (1 << (spec.bits_stored - 1)) - 1
        else:
            self._low, self._high = 0, (1 << spec.bits_stored) - 1
        span = self._high - self._low
        y, x = _grid(rows, cols)
        period = draw.integer("period", 4, 16)
        gradient = (x * (span // 6)) // max(cols, 1) + (y * (span // 6)) // max(rows, 1)
        stripes = ((x // period + y // period) & 1) * (span // 24)
        # int32 throughout: at most 2 * 8192**2 for distances, 65535 plus noise for values.
        self._base = (self._low + span // 16 + gradient + stripes).astype(np.int32)
        centre_row = rows // 2 + draw.integer("centre_row", -rows // 8, rows // 8)
        centre_col = cols // 2 + draw.integer("centre_col", -cols // 8, cols // 8)
        self._distance2 = (y - centre_row) ** 2 + (x - centre_col) ** 2
        self._radius = max(rows, cols) * 3 // 8
        self._feature = span // 3
        self._noise_scale = max(span // 48, 1)
        if self._rgb:
            self._dtype = np.dtype(np.uint8)
        else:
            code = "i2" if spec.pixel_representation else "u2"
            self._dtype = np.dtype((">" if big_endian else "<") + code)

    def instance(self, instance: int) -> bytes:
        """The Pixel Data value of one instance (unpadded)."""
        # A sphere sliced through its centre at the middle instance: the disc grows then shrinks along the series.
        half = max(self._instances // 2, 1)
        dz = (instance - self._instances // 2) * self._radius // half
        radius2 = self._radius * self._radius - dz * dz
        key = "\x1f".join(["veil-synth-noise", *map(str, self._key), str(instance)]).encode()
        noise = np.frombuffer(hashlib.shake_128(key).digest(self._rows * self._cols), dtype=np.uint8)
        noise = noise.reshape(self._rows, self._cols).astype(np.int32)
        image = noise * self._noise_scale
        image >>= 3
        image += self._base
        np.add(image, self._feature, out=image, where=self._distance2 <= radius2)
        np.clip(image, self._low, self._high, out=image)
        if self._rgb:
            red = image
            green = np.flip(image, axis=1)
            blue = (noise * 4) & 0xFF
            pixels = np.stack([red, green, blue], axis=-1).astype(np.uint8)
        else:
            pixels = image.astype(self._dtype)
        data: bytes = pixels.tobytes()
        return data


# --------------------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------------------


def _check_arguments(modality: str, rows: int, cols: int, counts: dict[str, int]) -> None:
    if modality not in _SPECS:
        raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, not {modality!r}")
    for name, value in {"rows": rows, "cols": cols}.items():
        if not 1 <= value <= _MAX_DIMENSION:
            raise ValueError(f"{name} must be between 1 and {_MAX_DIMENSION}, not {value}")
    for name, value in counts.items():
        if value < 0:
            raise ValueError(f"{name} must not be negative, not {value}")


@lru_cache(maxsize=8)
def _cached_template(
    seed: int, patient: int, study: int, series: int, instances: int, modality: str, rows: int, cols: int
) -> _SeriesTemplate:
    return _SeriesTemplate(
        seed=seed,
        patient=patient,
        study=study,
        series=series,
        instances_per_series=instances,
        modality=modality,
        rows=rows,
        cols=cols,
    )


def instance_bytes(
    *,
    patient: int = 0,
    study: int = 0,
    series: int = 0,
    instance: int = 0,
    instances_per_series: int = 1,
    modality: str = "CT",
    rows: int = 64,
    cols: int = 64,
    seed: int = 0,
) -> bytes:
    """One file of the archive, in memory: the same bytes :func:`write_archive` writes for these 0-based indices.

    A few recent series templates are cached, so looping over the instances of a series is cheap.
    """
    _check_arguments(modality, rows, cols, {"patient": patient, "study": study, "series": series})
    if not 0 <= instance < instances_per_series:
        raise ValueError(f"instance must be in [0, {instances_per_series}), not {instance}")
    template = _cached_template(seed, patient, study, series, instances_per_series, modality, rows, cols)
    return template.render(instance)


def _series_templates(
    *,
    patients: int,
    studies_per_patient: int,
    series_per_study: int,
    instances_per_series: int,
    modality: str,
    rows: int,
    cols: int,
    seed: int,
) -> Iterator[tuple[PurePosixPath, _SeriesTemplate]]:
    """Each series' folder (relative to the archive root) and template, in archive order, one at a time."""
    _check_arguments(
        modality,
        rows,
        cols,
        {
            "patients": patients,
            "studies_per_patient": studies_per_patient,
            "series_per_study": series_per_study,
            "instances_per_series": instances_per_series,
        },
    )
    if instances_per_series == 0:
        return
    width_patient = max(4, len(str(patients)))
    width_study = max(2, len(str(studies_per_patient)))
    width_series = max(2, len(str(series_per_study)))
    for p in range(patients):
        for st in range(studies_per_patient):
            for se in range(series_per_study):
                folder = PurePosixPath(
                    f"p{p + 1:0{width_patient}d}",
                    f"s{st + 1:0{width_study}d}",
                    f"se{se + 1:0{width_series}d}",
                )
                template = _SeriesTemplate(
                    seed=seed,
                    patient=p,
                    study=st,
                    series=se,
                    instances_per_series=instances_per_series,
                    modality=modality,
                    rows=rows,
                    cols=cols,
                )
                yield folder, template


def _instance_name(instance: int, instances_per_series: int) -> str:
    return f"i{instance + 1:0{max(4, len(str(instances_per_series)))}d}.dcm"


def iter_archive(
    *,
    patients: int,
    studies_per_patient: int = 1,
    series_per_study: int = 1,
    instances_per_series: int = 1,
    modality: str = "CT",
    rows: int = 64,
    cols: int = 64,
    seed: int = 0,
) -> Iterator[tuple[PurePosixPath, bytes]]:
    """Yield ``(relative path, file bytes)`` for every file of the archive, streaming, without touching disk."""
    for folder, template in _series_templates(
        patients=patients,
        studies_per_patient=studies_per_patient,
        series_per_study=series_per_study,
        instances_per_series=instances_per_series,
        modality=modality,
        rows=rows,
        cols=cols,
        seed=seed,
    ):
        for i in range(instances_per_series):
            yield folder / _instance_name(i, instances_per_series), template.render(i)


def write_archive(
    out: Path,
    *,
    patients: int,
    studies_per_patient: int = 1,
    series_per_study: int = 1,
    instances_per_series: int = 1,
    modality: str = "CT",
    rows: int = 64,
    cols: int = 64,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Write a synthetic archive under ``out`` (created as needed; existing files are overwritten).

    Streams: one series template and one file are held at a time, so memory does not grow with the archive.
    ``progress``, when given, is called after each file with the number of files written so far.
    """
    out = Path(out)
    files = total_bytes = 0
    per_transfer_syntax: dict[str, int] = {}
    for folder, template in _series_templates(
        patients=patients,
        studies_per_patient=studies_per_patient,
        series_per_study=series_per_study,
        instances_per_series=instances_per_series,
        modality=modality,
        rows=rows,
        cols=cols,
        seed=seed,
    ):
        directory = out.joinpath(folder)
        os.makedirs(directory, exist_ok=True)
        for i in range(instances_per_series):
            data = template.render(i)
            with open(directory / _instance_name(i, instances_per_series), "wb") as handle:
                handle.write(data)
            files += 1
            total_bytes += len(data)
            if progress is not None:
                progress(files)
        syntax = template.transfer_syntax
        per_transfer_syntax[syntax] = per_transfer_syntax.get(syntax, 0) + instances_per_series
    return SynthSummary(
        out=out,
        files=files,
        bytes=total_bytes,
        patients=patients,
        studies=patients * studies_per_patient,
        series=patients * studies_per_patient * series_per_study if instances_per_series else 0,
        transfer_syntaxes=tuple(sorted(per_transfer_syntax.items())),
    )
