"""The identifying values of the inputs (:class:`IdentifierSet`), per patient, in memory only, and the
matching rules the leak scan applies to them.

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
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pydicom
from pydicom.dataset import Dataset

from veil.core.dataset import Node, element_bytes, walk_dataset
from veil.core.part10 import PIXEL_DATA_TAGS
from veil.core.plan import STANDARD_UID_PREFIX, Action, Plan, explain_rule

__all__ = [
    "MEDIA_STORAGE_SOP_INSTANCE_UID",
    "PATIENT_ID",
    "PLACEHOLDERS",
    "SOP_INSTANCE_UID",
    "IdentifierSet",
    "Pattern",
    "fold",
    "left_ok",
    "mask_value",
    "right_ok",
]

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

SOP_INSTANCE_UID = 0x00080018
MEDIA_STORAGE_SOP_INSTANCE_UID = 0x00020003
PATIENT_ID = 0x00100020


def mask_value(value: str) -> str:
    """The first and last character, every other one ``*``: enough to recognise, too little to read."""
    if len(value) <= 2:
        return "*" * len(value)
    return value[0] + "*" * (len(value) - 2) + value[-1]


@dataclass
class Pattern:
    """One searched spelling of an identifying value: whose it is, of which kinds, and its boundary rules."""

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


def left_ok(s: str, i: int, rule: str, stream: bool) -> bool:
    """Whether a match starting at i keeps its left boundary rule."""
    if rule == "none" or i <= 0:
        return True
    c = s[i - 1]
    if _same_class(c, rule) and (not stream or _textual(s, i - 2)):
        return False
    if rule == "digit" and c == "." and i >= 2 and _is_digit(s[i - 2]):
        return False  # a decimal or UID component, not a whole number
    return True


def right_ok(s: str, j: int, rule: str, stream: bool) -> bool:
    """Whether a match ending just before j keeps its right boundary rule."""
    if rule == "none" or j >= len(s):
        return True
    c = s[j]
    if _same_class(c, rule) and (not stream or _textual(s, j + 1)):
        return False
    if rule == "digit" and c == "." and j + 1 < len(s) and _is_digit(s[j + 1]):
        return False
    return True


def fold(data: bytes) -> str:
    """Bytes case-folded (ASCII and Latin-1 capitals) as text, one character per byte."""
    return data.translate(_FOLD).decode("latin-1")


class IdentifierSet:
    """The identifying values of the inputs, per patient, held in memory only (never written or logged)."""

    def __init__(self, placeholders: frozenset[str] = PLACEHOLDERS) -> None:
        self.patterns: dict[str, Pattern] = {}
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
                self._register(fold(data), value, kind, patient)

    def _register(self, text: str, display: str, kind: str, patient: int) -> None:
        short = len(text) < _SHORT
        left = _end_rule(text[0], kind, short, False, text)
        right = _end_rule(text[-1], kind, short, True, text)
        found = self.patterns.get(text)
        if found is None:
            self.patterns[text] = Pattern(text, display, {kind}, {patient}, left, right)
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
        if meta is not None and MEDIA_STORAGE_SOP_INSTANCE_UID in meta:
            uid = element_bytes(meta, MEDIA_STORAGE_SOP_INSTANCE_UID).strip(b" \x00").decode("latin-1")
            if self._uids_searched(plan):
                self._add_uid(uid, patient)
        for node in walk_dataset(ds) if nodes is None else nodes:
            self._add_node(node, plan, patient)
        return patient

    def _uids_searched(self, plan: Plan) -> bool:
        return explain_rule(plan, SOP_INSTANCE_UID, "UI").rule.action != Action.KEEP

    def _add_uid(self, uid: str, patient: int) -> None:
        for one in uid.split("\\"):
            one = one.strip(" \x00")
            if one and not one.startswith(STANDARD_UID_PREFIX):
                self.add(one, "UID", patient)

    def _add_node(self, node: Node, plan: Plan, patient: int) -> None:
        if node.sequence or node.tag in PIXEL_DATA_TAGS:
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
            for raw_value in raw.split(b"\\"):
                for raw_group in raw_value.split(b"="):
                    for raw_component in raw_group.split(b"^"):
                        raw_component = raw_component.strip(b" \x00")
                        if len(raw_component) >= _MIN_NAME_LENGTH:
                            self._register(
                                fold(raw_component), raw_component.decode("latin-1"), "name", patient
                            )

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
