"""The identifying values of the inputs (:class:`IdentifierSet`), per patient, in memory only, and the
matching rules the leak scan applies to them.

**What is searched** comes from the one identity model, :mod:`veil.core.identity` (the cleaner uses the same):
the values of every person name at any depth and of the attributes of ``IDENTITY_KEYWORDS`` at any depth,
and their words (:func:`~veil.core.identity.split_words`: split at spaces and the joiners ``_ - / . ^ , ;``).
So verify searches every word the cleaner removes (:attr:`IdentifierSet.words`, a test holds them equal),
each in the spellings it may take in an output (as written, Latin-1 and UTF-8, accent-folded). Beside the
words: each person-name component whole, each other value whole, a birth date in several spellings, the
digits of a telephone number or an ID written with separators, and the instance, series, study and frame of
reference UIDs of the top level (a nested UID is a reference: its target's own UID is searched).

Not searched: the values of elements the recipe keeps (counted in :attr:`IdentifierSet.retained`), words
shorter than 3 characters, words without a letter of fewer than 6 digits (a house number, a part of a
telephone number: the whole number is searched), placeholder words (:data:`PLACEHOLDERS`, a placeholder cut
short to fit its VR such as ``ANONYMOU``, the Plan's dummy values and the recipe's replacement values, a
single repeated character, zeros) and person-name components without a letter.

**Search boundaries** (which matches exist at all):

* A value that begins or ends with a digit must not touch another digit there (``1234`` is not found in
  ``91234`` nor in a decimal or UID component such as ``2.25.1234``): a leaked number is a whole number.
  An 8-digit birth date may be followed by digits (a date time).
* A value shorter than 6 characters that begins or ends with a letter must not touch another letter there
  (``LEE`` is not found in ``SLEEP``); longer values match anywhere.
* A name component or word shorter than 5 characters is a whole token or nothing: it must not touch a letter
  or a digit at either end (``RIC`` is found in ``Dr RIC said`` and ``^RIC^``, not inside a keyed pseudonym
  such as ``RIC6EAEJIDWYPQBZ``, where three or four base32 characters spell some name by chance).
* A UID must not touch a digit or a dot (``1.2.3`` is not found in ``1.2.34``).

How a match is judged (an error or a note) is :mod:`veil.verification.leaks`'s: :func:`token_bounded` and
:func:`word_bounded` are the two boundaries it asks about.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from pydicom.dataset import Dataset

from veil.core.dataset import Node, element_bytes, walk_dataset
from veil.core.identity import (
    DEVICE_TAGS,
    IDENTITY_TAGS,
    NAME,
    FileIdentity,
    identity_from_values,
    split_words,
)
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
    "token_bounded",
    "word_bounded",
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

_MIN_LENGTH = 4  # a whole value (not a name component)
_MIN_NAME_LENGTH = 3  # a name component
_MIN_WORD = 3  # a word of a value (bytes)
_MIN_NUMBER_WORD = 6  # a word without a letter: digits
_SHORT = 6  # letter ends of values shorter than this must be word boundaries
_SHORT_NAME = 5  # both ends of name components and words shorter than this must be token boundaries

_UID = "UID"
_BIRTH_DATE = "birth date"
_FIRST_PIXEL_DATA_TAG = 0x7FE00008  # the identity walk stops at the top-level (7FE0,0008/0009/0010)

# The separators split_words splits at (veil.core.identity): the pieces of a value as written, one word each.
_PIECES = re.compile(r"[\s\x00_\-/.^,;\\=]+")
_PIECES_BYTES = re.compile(rb"[\s\x00_\-/.^,;\\=]+")

# Byte-level case folding applied alike to patterns and to the bytes searched: ASCII and Latin-1 capitals.
_FOLD = bytes.maketrans(
    bytes(range(0x41, 0x5B)) + bytes(b for b in range(0xC0, 0xDF) if b != 0xD7),
    bytes(range(0x61, 0x7B)) + bytes(b for b in range(0xE0, 0xFF) if b != 0xF7),
)

SOP_INSTANCE_UID = 0x00080018
MEDIA_STORAGE_SOP_INSTANCE_UID = 0x00020003
PATIENT_ID = 0x00100020


def mask_value(value: str) -> str:
    """The first and last character, every other one ``*`` (for file names shown in the report)."""
    if len(value) <= 2:
        return "*" * len(value)
    return value[0] + "*" * (len(value) - 2) + value[-1]


@dataclass
class Pattern:
    """One searched spelling of an identifying value: whose it is, of which kinds, and its boundary rules.
    It holds the folded text searched for only: reports name its kinds, never the text."""

    text: str  # folded, as searched
    kinds: set[str]
    patients: set[int]
    left: str  # boundary rule: "none" | "digit" | "letter" | "uid" | "token"
    right: str


def _is_digit(ch: str) -> bool:
    return "0" <= ch <= "9"


def _is_letter(ch: str) -> bool:
    # After folding: ASCII letters; bytes above 0x7F are Latin-1 letters or parts of a UTF-8 character.
    return "a" <= ch <= "z" or (ch >= "\x80" and ch not in "\xd7\xf7")


def _same_class(ch: str, rule: str) -> bool:
    if rule == "digit":
        return _is_digit(ch)
    if rule == "letter":
        return "a" <= ch <= "z"  # the search rules as before: other characters never extend a word
    if rule == "token":
        return "a" <= ch <= "z" or _is_digit(ch)
    return _is_digit(ch) or ch == "."  # "uid"


# How much a boundary rule lets through: where one value is registered under several kinds, it is searched
# under the loosest of their rules at each end (found if any of its kinds would be found).
_LOOSENESS = {"none": 2, "digit": 1, "letter": 1, "uid": 1, "token": 0}


def _end_rule(ch: str, kind: str, short: bool, right: bool, text: str) -> str:
    """The boundary rule at one end of a value (see the module docstring)."""
    if kind == _UID:
        return "uid"
    if kind == NAME and len(text) < _SHORT_NAME:
        return "token"
    if _is_digit(ch):
        if right and kind == _BIRTH_DATE and len(text) == 8 and text.isdigit():
            return "none"  # a date followed by a time is a date time
        return "digit"
    if "a" <= ch <= "z":
        if len(text) < _SHORT_NAME:
            return "token"  # a short word inside an alphanumeric run (a pseudonym) is chance
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


def _neighbour(s: str, k: int, step: int, stream: bool) -> str:
    """The character next to a match (``k`` is its index), or "" at an edge or (in a byte stream) where the
    neighbour is a tag or length byte rather than text."""
    if not 0 <= k < len(s):
        return ""
    if stream and not _textual(s, k + step):
        return ""
    return s[k]


def token_bounded(s: str, i: int, j: int, stream: bool = False) -> bool:
    """Whether ``s[i:j]`` stands as a token of its own: a match shorter than 5 characters touches no letter
    or digit; a longer one no letter at a letter end and no digit (or decimal point) at a digit end. Every
    other character, ``_`` included, separates tokens (``AX_Doe``, ``Doe-Smith``, ``J.Doe``,
    ``MRN17593133``)."""
    short = j - i < _SHORT_NAME
    for k, step, edge in ((i - 1, -1, s[i]), (j, 1, s[j - 1])):
        c = _neighbour(s, k, step, stream)
        if not c:
            continue
        if short:
            if _is_letter(c) or _is_digit(c):
                return False
        elif _is_letter(edge) and _is_letter(c):
            return False
        elif _is_digit(edge) and (
            _is_digit(c) or (c == "." and _is_digit(_neighbour(s, k + step, step, stream) or "x"))
        ):
            return False
    return True


def word_bounded(s: str, i: int, j: int, stream: bool = False) -> bool:
    """Whether ``s[i:j]`` is a whole word with ``_`` a word character, as a regular expression's ``\\b``
    (``RIS`` is not a word of ``SIEMENS_RIS``, nor ``TSE`` of ``t2_tse_tra``)."""
    for k, step in ((i - 1, -1), (j, 1)):
        c = _neighbour(s, k, step, stream)
        if c and (_is_letter(c) or _is_digit(c) or c == "_"):
            return False
    return True


def fold(data: bytes) -> str:
    """Bytes case-folded (ASCII and Latin-1 capitals) as text, one character per byte."""
    return data.translate(_FOLD).decode("latin-1")


def _text(raw: bytes) -> str:
    """The value as text: UTF-8 where the bytes are UTF-8, else Latin-1 (the raw bytes are registered as
    well, so other character sets are still found byte for byte)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _encodings(spellings: set[str]) -> set[bytes]:
    out: set[bytes] = set()
    for spelling in spellings:
        for codec in ("latin-1", "utf-8"):
            try:
                out.add(spelling.encode(codec))
            except UnicodeEncodeError:
                pass
    return out


class IdentifierSet:
    """The identifying values of the inputs, per patient, held in memory only (never written or logged)."""

    def __init__(self, placeholders: frozenset[str] = PLACEHOLDERS) -> None:
        self.patterns: dict[str, Pattern] = {}
        self.patients: dict[str, int] = {}  # original PatientID -> ordinal (1-based); never reported
        self.values_by_kind: Counter[str] = Counter()
        self.retained: Counter[str] = Counter()  # keywords not searched because the recipe keeps them
        self.words: set[bytes] = set()  # every identity word searched (split_words form)
        self.device_words: set[bytes] = set()  # words of every input's Manufacturer, model, software names
        self._placeholders = {p.upper() for p in placeholders}
        self._placeholder_words = {w for p in placeholders for w in split_words(p)}
        self._long_placeholders = [p for p in self._placeholders if len(p) >= 8]
        self._seen: set[tuple[str, bytes]] = set()
        self._done: set[tuple[str, bytes, int]] = set()
        self._anonymous = 0

    def patient(self, patient_id: str) -> int:
        """The ordinal of a patient; a file without a Patient ID (or with a placeholder) is a patient of its
        own: files of unrelated people are not judged as one patient's."""
        if self.ignored(patient_id, 1):
            self._anonymous += 1
            patient_id = f"\x00{self._anonymous}"
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

    def ignored_word(self, word: bytes) -> bool:
        """Whether a word of an identity value (split_words form) is not searched (see the module
        docstring)."""
        text = word.decode("utf-8", "replace")
        if len(word) < _MIN_WORD or word in self._placeholder_words or self.ignored(text, 1):
            return True
        if not any(c.isalpha() for c in text):
            return sum(c.isdigit() for c in text) < _MIN_NUMBER_WORD
        return False

    def add(self, value: str, kind: str, patient: int, raw: bytes | None = None) -> None:
        """Adds one value (already split into the pieces to search) in its useful spellings and encodings."""
        value = value.strip(" \x00\t\r\n")
        minimum = _MIN_NAME_LENGTH if kind == NAME else _MIN_LENGTH
        if self.ignored(value, minimum) or (kind == NAME and not any(c.isalpha() for c in value)):
            return  # a name component without a letter (a number in a name field) is no name
        spellings = {value}
        if not value.isascii():
            spellings |= {value.upper(), value.lower()}
        encoded = _encodings(spellings)
        if raw:
            encoded.add(raw.strip(b" \x00"))
        for data in encoded:
            if data:
                self._register(fold(data), kind, patient)

    def _register(self, text: str, kind: str, patient: int) -> None:
        short = len(text) < _SHORT
        left = _end_rule(text[0], kind, short, False, text)
        right = _end_rule(text[-1], kind, short, True, text)
        found = self.patterns.get(text)
        if found is None:
            self.patterns[text] = Pattern(text, {kind}, {patient}, left, right)
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
        patient_id = element_bytes(ds, PATIENT_ID).strip(b" \x00").decode("latin-1")
        patient = self.patient(patient_id)
        self.add_identity(self.searched_identity(ds, plan, nodes), patient)
        return patient

    def searched_identity(self, ds: Dataset, plan: Plan, nodes: list[Node] | None = None) -> FileIdentity:
        """The identity of one input (:mod:`veil.core.identity`, walked as ``identity_from_dataset`` walks)
        less what the recipe keeps (counted in :attr:`retained`) and less nested UIDs (references)."""
        triples: list[tuple[int, str, bytes]] = []
        meta = getattr(ds, "file_meta", None)
        if meta is not None and MEDIA_STORAGE_SOP_INSTANCE_UID in meta and self._uids_searched(plan):
            triples.append(
                (MEDIA_STORAGE_SOP_INSTANCE_UID, "UI", element_bytes(meta, MEDIA_STORAGE_SOP_INSTANCE_UID))
            )
        for node in walk_dataset(ds) if nodes is None else nodes:
            if node.depth == 0 and node.tag >= _FIRST_PIXEL_DATA_TAG:
                break
            if node.sequence:
                continue
            if node.tag in DEVICE_TAGS:
                triples.append((node.tag, node.vr, node.value_bytes()))  # device words, never searched
                continue
            known = IDENTITY_TAGS.get(node.tag)
            if node.vr != "PN" and known is None:
                continue
            if known is not None and known[1] == _UID and node.depth > 0:
                continue  # references: their targets' own UIDs are gathered from the targets
            if explain_rule(plan, node.tag, node.vr, node.creator).rule.action == Action.KEEP:
                self.retained[known[0] if known else (node.keyword or node.path[-11:])] += 1
                continue
            triples.append((node.tag, node.vr, node.value_bytes()))
        return identity_from_values(triples)

    def _uids_searched(self, plan: Plan) -> bool:
        return explain_rule(plan, SOP_INSTANCE_UID, "UI").rule.action != Action.KEEP

    def add_identity(self, identity: FileIdentity, patient: int) -> None:
        """Registers every value of ``identity`` (the searched part of one file's) and its words."""
        self.device_words.update(identity.device_words)
        for kind, raw in identity.values:
            if (kind, raw) not in self._seen:
                self._seen.add((kind, raw))
                self.values_by_kind[kind] += 1
            text = _text(raw)
            if kind == _UID:
                self._add_uid(text, patient)
                continue
            if (kind, raw, patient) in self._done:
                continue  # the files of a series share their values
            self._done.add((kind, raw, patient))
            if kind == NAME:
                self._add_name(text, raw, patient)
            else:
                self._add_whole(text, kind, patient)
            self._add_words(text, raw, kind, patient)

    def _add_words(self, text: str, raw: bytes, kind: str, patient: int) -> None:
        """Each word of a value (as split_words makes it), in the spellings of its piece as written."""
        value_words = set(split_words(raw))
        for piece in _PIECES.split(text):
            for word in split_words(piece):
                if word not in value_words or self.ignored_word(word):
                    continue
                self.words.add(word)
                spellings = {piece, piece.lower(), piece.upper(), word.decode("utf-8", "replace")}
                for data in _encodings(spellings) | {word}:
                    if data:
                        self._register(fold(data), kind, patient)
        if not raw.isascii():  # the pieces as written in another character set (ISO 2022 escapes)
            for piece_bytes in _PIECES_BYTES.split(raw):
                if len(piece_bytes) >= _MIN_WORD:
                    for word in split_words(piece_bytes):
                        if word in value_words and not self.ignored_word(word):
                            self._register(fold(piece_bytes), kind, patient)

    def _add_uid(self, uid: str, patient: int) -> None:
        for one in uid.split("\\"):
            one = one.strip(" \x00")
            if one and not one.startswith(STANDARD_UID_PREFIX):
                self.add(one, _UID, patient)

    def _add_whole(self, text: str, kind: str, patient: int) -> None:
        """A value other than a name, whole, with the spellings of its kind."""
        if kind == _BIRTH_DATE:
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

    def _add_name(self, text: str, raw: bytes, patient: int) -> None:
        """Each component of a person name, whole (its words are added with every value's)."""
        for value in text.split("\\"):
            for group in value.split("="):
                for component in group.split("^"):
                    if component.strip():
                        self.add(component, NAME, patient)
        # The raw components as written (other character sets, ISO 2022 escapes).
        if not raw.isascii():
            for raw_value in raw.split(b"\\"):
                for raw_group in raw_value.split(b"="):
                    for raw_component in raw_group.split(b"^"):
                        raw_component = raw_component.strip(b" \x00")
                        if len(raw_component) >= _MIN_NAME_LENGTH:
                            self._register(fold(raw_component), NAME, patient)

    def _add_date(self, value: str, patient: int) -> None:
        if len(value) != 8 or not value.isdigit():
            self.add(value, _BIRTH_DATE, patient)
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
            self.add(spelling, _BIRTH_DATE, patient)

    def __len__(self) -> int:
        return len(self.patterns)
