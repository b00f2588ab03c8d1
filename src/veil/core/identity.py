"""One identity model for the cleaner, verify and ``veil inspect``: the values that identify the patient of one
file, gathered at every depth, and the words they split into.

A file's identity values are every person name (VR PN) at any depth, and the identifier, address, telephone,
institution, station, device serial, birth date and UID attributes of :data:`IDENTITY_KEYWORDS` at any depth
(PS3.15 E.1-1 lists them among the attributes to remove or replace). The pipeline builds a
:class:`FileIdentity` from the native walk (``veil.core._core.identity_values``, no pydicom); verify and the
preview build it from a pydicom data set with :func:`identity_from_dataset`. Both go through
:func:`identity_from_values`, so the two agree by construction (a test holds them equal on the corpus).

This module is pure Python and never imports the native core (verify uses it); pydicom is imported only by
:func:`identity_from_dataset`, through ``veil.core.dataset``. Values are held in memory only: never log them.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from veil.core.dictionary import dictionary_entry

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = [
    "DEVICE_TAGS",
    "EMPTY_IDENTITY",
    "IDENTITY_KEYWORDS",
    "IDENTITY_TAGS",
    "JOINERS",
    "NAME",
    "FileIdentity",
    "identity_from_dataset",
    "identity_from_values",
    "split_words",
]

#: The kind of every person name (any element of VR PN, public or private, at any depth).
NAME = "name"

#: Attributes whose values identify (beside every PN): (tag, keyword, the kind of identity value they hold). The
#: tags are written out (a test checks each against the dictionary): the dictionary is not read to start a run.
_IDENTITY: tuple[tuple[int, str, str], ...] = (
    (0x00100020, "PatientID", "patient ID"),
    (0x00101000, "OtherPatientIDs", "other patient ID"),
    (0x00101090, "MedicalRecordLocator", "medical record locator"),
    (0x00080050, "AccessionNumber", "accession number"),
    (0x00200010, "StudyID", "study ID"),
    (0x00380010, "AdmissionID", "admission ID"),
    (0x00380060, "ServiceEpisodeID", "service episode ID"),
    (0x00401001, "RequestedProcedureID", "requested procedure ID"),
    (0x00400009, "ScheduledProcedureStepID", "scheduled procedure step ID"),
    (0x00400253, "PerformedProcedureStepID", "performed procedure step ID"),
    (0x00402016, "PlacerOrderNumberImagingServiceRequest", "order number"),
    (0x00402017, "FillerOrderNumberImagingServiceRequest", "order number"),
    (0x00402006, "PlacerOrderNumberImagingServiceRequestRetired", "order number"),
    (0x00402007, "FillerOrderNumberImagingServiceRequestRetired", "order number"),
    (0x00401006, "PlacerOrderNumberProcedure", "order number"),
    (0x00401007, "FillerOrderNumberProcedure", "order number"),
    (0x00100030, "PatientBirthDate", "birth date"),
    (0x00101040, "PatientAddress", "address"),
    (0x00080081, "InstitutionAddress", "address"),
    (0x00080092, "ReferringPhysicianAddress", "address"),
    (0x00401102, "PersonAddress", "address"),
    (0x00102154, "PatientTelephoneNumbers", "telephone number"),
    (0x00080094, "ReferringPhysicianTelephoneNumbers", "telephone number"),
    (0x00401103, "PersonTelephoneNumbers", "telephone number"),
    (0x00102155, "PatientTelecomInformation", "telecom information"),
    (0x00080080, "InstitutionName", "institution name"),
    (0x00081010, "StationName", "station name"),
    (0x00181000, "DeviceSerialNumber", "device serial number"),
    (0x30080105, "SourceSerialNumber", "device serial number"),
    (0x0018700A, "DetectorID", "device serial number"),
    (0x00181008, "GantryID", "device serial number"),
    (0x00181003, "DeviceID", "device serial number"),
    (0x00080018, "SOPInstanceUID", "UID"),
    (0x0020000E, "SeriesInstanceUID", "UID"),
    (0x0020000D, "StudyInstanceUID", "UID"),
    (0x00200052, "FrameOfReferenceUID", "UID"),
    (0x00020003, "MediaStorageSOPInstanceUID", "UID"),
)
#: keyword -> the kind of identity value it holds.
IDENTITY_KEYWORDS: dict[str, str] = {keyword: kind for _, keyword, kind in _IDENTITY}
#: tag -> (keyword, kind) of :data:`IDENTITY_KEYWORDS`.
IDENTITY_TAGS: dict[int, tuple[str, str]] = {tag: (keyword, kind) for tag, keyword, kind in _IDENTITY}

_UID = "UID"
_KINDS: dict[int, str] = {tag: kind for tag, (_, kind) in IDENTITY_TAGS.items()}

#: Manufacturer, ManufacturerModelName, SoftwareVersions: the device's own names (not identity values; their
#: words may be kept in free text, PS3.15 E.3.5 leaves device descriptions).
DEVICE_TAGS: frozenset[int] = frozenset({0x00080070, 0x00081090, 0x00181020})

#: The characters that join the words of a value (beside white space, the value separator ``\\`` and the
#: PN component-group separator ``=``): ``AX_Doe``, ``Doe-Smith``, ``J.Doe``, ``Doe^John``, ``Doe, J``.
JOINERS = b" _-/.^,;"

_SPLIT = re.compile(r"[\s\x00_\-/.^,;\\=]+")
_SPLIT_ASCII = re.compile(rb"[\s\x00_\-/.^,;\\=]+")


def _decode(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


def _fold(text: str) -> str:
    """Lower case, accents folded away (``Müller`` -> ``muller``); scripts without an ASCII form stay as they are."""
    text = text.casefold()
    if text.isascii():
        return text
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _text_words(text: str) -> tuple[bytes, ...]:
    seen: dict[bytes, None] = {}
    for part in _SPLIT.split(_fold(text)):
        word = part.encode("utf-8")
        if len(word) >= 2:
            seen.setdefault(word, None)
    return tuple(seen)


# Values repeat from file to file (a series shares its patient, institution and device): each value is split once
# per worker. The cache lives in this process's memory only, as the core's own per-value caches do.
@lru_cache(maxsize=16384)
def _value_words(value: bytes) -> tuple[bytes, ...]:
    if value.isascii():
        return tuple(dict.fromkeys(w for w in _SPLIT_ASCII.split(value.lower()) if len(w) >= 2))
    return _text_words(_decode(value))


def split_words(value: bytes | str) -> list[bytes]:
    """The words of a value, lower-cased and accent-folded (UTF-8 bytes), split at white space, the joiners
    ``_ - / . ^ , ;``, the value separator ``\\`` and ``=``; words shorter than 2 bytes dropped, first
    occurrence order kept, no duplicates. Bytes are read as UTF-8 where they are UTF-8, else as Latin-1.
    Compare words only with words made by this function."""
    if isinstance(value, str):
        return list(_value_words(value.encode("ascii")) if value.isascii() else _text_words(value))
    return list(_value_words(bytes(value)))


@dataclass(frozen=True)
class FileIdentity:
    """The identity of one file: ``values`` (kind, value as stored, stripped; sorted, no duplicates), their
    ``words`` (see :func:`split_words`; UID values add none: their numeric components are not words a person
    writes) and the ``device_words`` of its Manufacturer, ManufacturerModelName and SoftwareVersions."""

    values: tuple[tuple[str, bytes], ...] = ()
    words: frozenset[bytes] = frozenset()
    device_words: frozenset[bytes] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.values)

    def counts(self) -> dict[str, int]:
        """How many values of each kind (for reports: counts, never values)."""
        return dict(Counter(kind for kind, _ in self.values))

    def word_kinds(self) -> dict[bytes, frozenset[str]]:
        """Each word and the kinds of the values it comes from (to name the kind of a match, not its value)."""
        kinds: dict[bytes, set[str]] = {}
        for kind, value in self.values:
            if kind == _UID:
                continue
            for word in split_words(value):
                kinds.setdefault(word, set()).add(kind)
        return {word: frozenset(found) for word, found in kinds.items()}


EMPTY_IDENTITY = FileIdentity()


def _pn(tag: int) -> bool:
    if (tag >> 16) & 1:
        return False  # a private element's VR is known only where it is written (explicit VR): pass it
    entry = dictionary_entry(tag)
    return entry is not None and entry[0] == "PN"


def identity_from_values(pairs: Iterable[tuple[int, bytes] | tuple[int, str, bytes]]) -> FileIdentity:
    """The identity of a file from ``(tag, value)`` or ``(tag, vr, value)`` tuples, as
    ``veil.core._core.identity_values`` returns them (PN from the VR where given, else from the dictionary).
    Tags that are neither identity nor device tags nor PN are ignored; empty values too."""
    values: set[tuple[str, bytes]] = set()  # every value but UIDs
    uids: set[bytes] = set()
    device: set[bytes] = set()
    kinds = _KINDS
    for one in pairs:
        if len(one) == 3:
            tag, vr, raw = one
        else:
            tag, raw = one
            vr = "PN" if _pn(tag) else ""
        value = raw.strip(b" \x00")
        if not value:
            continue
        kind = kinds.get(tag)
        if kind == _UID:
            uids.add(value)
        elif kind is not None:
            values.add((kind, value))
        elif vr == "PN":
            values.add((NAME, value))
        elif tag in DEVICE_TAGS:
            device.update(_value_words(value))
    others = frozenset(values)
    ordered = tuple(sorted(values.union((_UID, uid) for uid in uids)))
    return FileIdentity(ordered, _words_of(others), frozenset(device))


# The files of a series share every value but their UIDs: their words are made once.
@lru_cache(maxsize=1024)
def _words_of(values: frozenset[tuple[str, bytes]]) -> frozenset[bytes]:
    words: set[bytes] = set()
    for _, value in values:
        words.update(_value_words(value))
    return frozenset(words)


_FIRST_PIXEL_DATA_TAG = 0x7FE00008
_MEDIA_STORAGE_SOP_INSTANCE_UID = 0x00020003


def identity_from_dataset(ds: Dataset) -> FileIdentity:
    """The identity of a pydicom data set, every depth walked with ``veil.core.dataset.walk_dataset`` (the
    File Meta's MediaStorageSOPInstanceUID included, the top-level Pixel Data not read)."""
    from veil.core.dataset import element_bytes, walk_dataset

    triples: list[tuple[int, str, bytes]] = []
    meta = getattr(ds, "file_meta", None)
    if meta is not None and _MEDIA_STORAGE_SOP_INSTANCE_UID in meta:
        uid = element_bytes(meta, _MEDIA_STORAGE_SOP_INSTANCE_UID)
        triples.append((_MEDIA_STORAGE_SOP_INSTANCE_UID, "UI", uid))
    for node in walk_dataset(ds):
        if node.depth == 0 and node.tag >= _FIRST_PIXEL_DATA_TAG:
            break  # the native walk stops at the top-level Pixel Data (7FE0,0008/0009/0010): so does this one
        if node.sequence:
            continue
        if node.vr == "PN" or node.tag in IDENTITY_TAGS or node.tag in DEVICE_TAGS:
            triples.append((node.tag, node.vr, node.value_bytes()))
    return identity_from_values(triples)
