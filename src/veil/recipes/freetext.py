"""The allow-list free-text cleaner: the callback behind the recipe action ``clean`` (Plan action CALL).

PS3.15 E.3.5 (Clean Descriptors Option) asks for descriptions and comments to be replaced by values "of
similar meaning known not to contain identifying information". A deny-list (digits, titles, the file's own
names) cannot know every name, occupation or placeholder someone types, so the cleaner keeps only what it can
show to be safe: words of veil's clinical and technical vocabulary (:mod:`veil.recipes.vocabulary`, extended by the
recipe's ``vocabulary:`` list), number, unit and shorthand patterns, and the words of the file's own device
names; and never a word of the file's own identity values (:mod:`veil.core.identity`).

**Tokens.** The value is split into tokens at white space, backslash and ``, ; : ( ) [ ] { } < > " | =``;
the separators are kept, so multi-valued elements keep their value count. A token is split into parts at the
joiners ``_ - / . ^`` (a ``.`` between two digits is a decimal point, not a joiner). A part's core is the part
without ``. ' - / ! ? * # + & %`` at its ends; matching is case-insensitive and accent-folded.

**A token goes whole** when

1. it holds ``@`` (e-mail), or is a URL (``scheme://...`` or ``www....`` up to the next space or backslash,
   found before the value is split: ``:`` and ``/`` would cut it);
2. it holds a date in any spelling (``2024-01-31``, ``31/01/2024``, ``31.1.24``, ``20240131``, ``3Mar2024``);
3. it holds an age (``045Y`` as DICOM AS writes it, ``45y``, ``45yo``, ``45yrs``, ``6mo``, ``78-year-old``);
4. two or more of its parts are all digits (``555-1234``, ``256/0/8``; ``L4-L5`` and ``0-15cm`` stay);
5. it holds ``^`` (the DICOM person-name separator) and any of its parts is not kept (``DOE^JOHN`` goes
   whole; ``Head^Routine`` stays).

**A part is kept** when its core is not a word of the file's identity values (:func:`file_identity`) and it

a. is empty (punctuation only, such as ``+`` or ``&``) or a single ASCII letter (``L``, ``R``, ``C+``);
b. is a number or shorthand: up to 3 digits (and the token ``2000`` after ``JPEG``), a decimal (``0.625``),
   a number with a unit (``5mm 120kV 3.0T 10cm 2mAs 1500ms 35sl``), an ordinal (``2nd``), a size
   (``512x512``), a b-value (``b1000``), a weighting (``T1 T2 T1W T2W PD``), a spine level (``C1-C8 T1-T12
   L1-L5 S1-S5``), ``2D 3D 4D``, or a bare unit; a number is judged by these patterns only;
c. is a word of the file's own Manufacturer, ManufacturerModelName or SoftwareVersions (``FileIdentity``
   device words), or
d. is a vocabulary word (``known``; a word with a non-ASCII letter only when the value is valid UTF-8: other
   character sets cannot be judged from the bytes and their non-ASCII words go).

A token whose parts are all kept is written unchanged; otherwise the kept parts are re-joined with the joiner
that stood before each of them, and joiners left at the ends are trimmed (``AX_Doe`` -> ``AX``; ``J.Doe``
goes, its initial with it: a single letter joined by ``.`` to a removed part is an initial).

**Across tokens** (date, age, identifier and name context) these tokens go too:

6. a full month name other than ``May`` (an element of a date, HIPAA 164.514(b)(2)(i)(C)); a short month name
   (``Jan`` ... ``Dec``, ``Sept``) next to a token with a digit; and any token with a digit next to a month
   name that goes (``3 March 2024``, ``Mar 3rd``);
7. a number of up to 3 digits followed by an age word (``45 yo``, ``60 ANOS``, ``45 years old``), and a
   number after ``age`` or ``aged``;
8. a run of tokens made of digits (and ``+ - . /``), apart only by spaces or parentheses, holding 7 digits or
   more (``555 014 2399``, ``(555) 014-2399``; ``(255,128,128)`` stays);
9. after a real title (``Dr Mr Mrs Ms Miss Mx Prof Doctor Professor Sir Dame Rev`` written in mixed case, or
   followed by ``.``), up to three following name-like tokens (a capitalised word, an all-capitals word, an
   initial) even when they are vocabulary words (``Dr. Brown``, ``Mr White``); an all-capitals title without
   a dot is a modality or a word (``MR KNEE WO CONTRAST``, ``PT CT WHOLE BODY``, ``DR CHEST``, ``MS``);
10. after a role word (``by Patient Physician Doctor Nurse Tech Technologist Radiologist Surgeon Referring
    Attending Signed Name``), up to three following capitalised words or initials (``by FBP`` stays);
11. after an identifier label (``MRN ID Nr # Acc Accession``), the next token, whatever it is.

A value with an ISO 2022 escape (``ESC``) or a control character other than TAB, LF, FF, CR cannot be split
safely and is removed whole (the callback returns None). Non-text VRs are removed (None); a PN value is
removed (a name has no clinical words). A value with nothing removed is returned unchanged (trailing padding
stripped); after a removal, runs of spaces are folded and the ends trimmed, and when every token goes the
element is kept with a zero-length value, or, for the few text attributes that are Type 1 where they appear
(:data:`REQUIRED_TEXT`: TextValue, UniversalEntityID, SegmentLabel), with the dummy ``REMOVED``.

The pipeline sets the file's identity with :func:`file_identity` (a ``ContextVar``, per file, in memory only);
without it the allow-list alone decides. :class:`Cleaner` is the picklable Plan callback compiled from a
recipe (its vocabulary extension travels to process-pool and Ray workers).
"""

from __future__ import annotations

import contextlib
import functools
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from veil.recipes.values import CLEANABLE_VRS

if TYPE_CHECKING:
    from veil.core.identity import FileIdentity

__all__ = [
    "CLEANABLE_VRS",
    "REMOVED_TEXT",
    "REQUIRED_TEXT",
    "Cleaner",
    "clean_element",
    "clean_text",
    "file_identifiers",
    "file_identity",
]


class _Known(Protocol):
    def known(self, word: bytes | str) -> bool: ...


@dataclass(frozen=True)
class _FileWords:
    identity: frozenset[bytes] = frozenset()  # folded words of the file's identity values
    device: frozenset[bytes] = frozenset()  # folded words of the file's device names


# The current file's words; set per file by file_identity() or file_identifiers().
_NO_FILE = _FileWords()
_FILE: ContextVar[_FileWords] = ContextVar("veil_freetext_file_words", default=_NO_FILE)  # noqa: B039


_SPLIT = re.compile(rb"([\s\\,;:()\[\]{}<>\"|=]+)")
# Joiners inside a token; a "." between two digits is a decimal point.
_JOIN = re.compile(rb"([_\-/^]|(?<!\d)\.|\.(?!\d))")
_STRIP = b".'-/!?*#+&%"
_URL = re.compile(rb"(?:\b[a-z][a-z0-9+.\-]*://|\bwww\.)[^\s\\]*", re.IGNORECASE)
_BAD_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_MONTH = (
    rb"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sept?(?:ember)?"
    rb"|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DATE = re.compile(
    rb"(?<!\d)(?:"
    rb"(?:1[89]|20)\d\d[-/._]\d{1,2}[-/._]\d{1,2}"  # 2024-01-31, 2024/1/31
    rb"|\d{1,2}[-/._]\d{1,2}[-/._]\d{2,4}"  # 31/01/2024, 31.1.24, 1-31-24
    rb"|(?:1[89]|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"  # 20240131 (DA, and DT's start)
    rb"|\d{1,2}[-/._]?" + _MONTH + rb"[a-z]*[-/._]?(?:\d{2,4})?"  # 3Mar2024, 03-mar-24, 3march
    rb"|" + _MONTH + rb"[a-z]*[-/._]?\d{1,2}(?:st|nd|rd|th)?[-/._]\d{2,4}"  # Mar-3-2024
    rb")(?!\d)",
    re.IGNORECASE,
)
_AGE = re.compile(
    rb"(?<![a-z0-9])(?:\d{3}[dwmy]|\d{1,3}[-_]?(?:y|yo|yr|yrs|years?|mo|mos|months?|wk|wks|weeks?)"
    rb"(?:[-_]?old)?)(?![a-z0-9])",
    re.IGNORECASE,
)
_UNITS = (
    rb"(?:mm|cm|m|um|nm|km|ml|cc|l|dl|kv|kvp|v|mv|ma|mas|s|ms|sec|min|h|hr|hrs|hz|khz|mhz|t|mt|g|kg|mg|ug|mcg"
    rb"|mbq|gbq|kbq|bq|mci|uci|ci|gy|cgy|mgy|sv|msv|usv|deg|x|fps|bpm|mmhg|mmol|hu|ppm|sl|e|ch|px|rad|d|dir"
    rb"|b|bit|bits|k|kb|mb|gb|lp)"
)
_SHORTHAND = re.compile(
    rb"(?:\d{1,3}|\d{0,4}\.\d{1,6})"  # numbers of up to 3 digits, decimals
    rb"|(?:\d{1,4}|\d{0,4}\.\d{1,6})" + _UNITS +  # 5mm 120kV 3.0T 0.5mm 2mAs 1500ms
    rb"|" + _UNITS +  # a bare unit
    rb"|\d{1,2}(?:st|nd|rd|th)"  # ordinals
    rb"|\d{1,4}(?:x\d{1,4}){1,3}"  # sizes: 512x512, 23x38x3
    rb"|b\d{1,4}"  # b-values
    rb"|t[12]w?|t1rho|t2\*?|pdw?"  # weightings
    rb"|c[1-8]|t(?:[1-9]|1[0-2])|l[1-5]|s[1-5]"  # spine levels
    rb"|[234]d",
    re.IGNORECASE,
)
_ALL_DIGITS = re.compile(rb"\d+(?:\.\d+)?")
_FULL_MONTHS = {
    b"january", b"february", b"march", b"april", b"june", b"july", b"august", b"september", b"october",
    b"november", b"december",
}  # fmt: skip
_SHORT_MONTHS = {
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"sept", b"oct", b"nov", b"dec",
}  # fmt: skip
_TITLES = {
    b"dr", b"mr", b"mrs", b"ms", b"miss", b"mx", b"prof", b"doctor", b"professor", b"sir", b"dame", b"rev",
}  # fmt: skip
_ROLES = {
    b"by", b"patient", b"physician", b"doctor", b"nurse", b"tech", b"technologist", b"radiologist",
    b"surgeon", b"referring", b"attending", b"signed", b"name",
}  # fmt: skip
_ID_LABELS = {b"mrn", b"id", b"nr", b"#", b"acc", b"accession"}
_AGE_WORDS = {
    b"y", b"yo", b"yr", b"yrs", b"year", b"years", b"ans", b"anos", b"jahre", b"j", b"jr", b"jaar",
    b"anni", b"lat", b"old", b"years-old", b"year-old",
}  # fmt: skip
_AGE_LABELS = {b"age", b"aged", b"alter", b"edad", b"eta", b"leeftijd"}  # accents folded (âge, età)
_DIGIT_RUN = re.compile(rb"[\d+\-./]+")
_RUN_GAP = re.compile(rb"[\s()]+")  # what may stand between the tokens of one number (not "," nor "\\")
_DIGIT_RUN_LIMIT = 7  # a phone number without its area code has 7 digits


def _fold(core: bytes, utf8: bool) -> bytes:
    """Lower case, accents folded (``Müller`` -> ``muller``), as :func:`veil.core.identity.split_words`."""
    if core.isascii():
        return core.lower()
    text = core.decode("utf-8") if utf8 else core.decode("latin-1")
    text = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in text if not unicodedata.combining(ch)).encode("utf-8")


def _edge_stripped(words: Iterable[bytes]) -> frozenset[bytes]:
    """Identity words as parts are compared with them: also without punctuation at the ends (``(555)``)."""
    out: set[bytes] = set()
    for word in words:
        out.add(word)
        core = word.strip(_STRIP + b"()[]{}<>\"|:")
        if core:
            out.add(core)
    return frozenset(out)


@contextlib.contextmanager
def file_identity(identity: FileIdentity) -> Iterator[None]:
    """Within the block, the words of ``identity`` (a :class:`veil.core.identity.FileIdentity`) are removed
    wherever they appear in cleaned text, and the words of its device names may be kept."""
    state = _FileWords(_edge_stripped(identity.words), _edge_stripped(identity.device_words))
    token = _FILE.set(state)
    try:
        yield
    finally:
        _FILE.reset(token)


@contextlib.contextmanager
def file_identifiers(values: Iterable[str | bytes | None]) -> Iterator[None]:
    """Within the block, the words of ``values`` (split by :func:`veil.core.identity.split_words`) are removed
    wherever they appear in cleaned text; no device words. Prefer :func:`file_identity`."""
    from veil.core.identity import split_words

    words: set[bytes] = set()
    for value in values:
        if value:
            words.update(split_words(value))
    token = _FILE.set(_FileWords(_edge_stripped(words), frozenset()))
    try:
        yield
    finally:
        _FILE.reset(token)


@functools.cache
def _default_known() -> Callable[[bytes | str], bool]:
    from veil.recipes import vocabulary  # loaded on first use (the pipeline imports freetext alone)

    return vocabulary.known


def _has_digit(token: bytes) -> bool:
    return any(48 <= b <= 57 for b in token)


class _Judge:
    """Decides parts and tokens of one value (the vocabulary, the file's words, the value's encoding)."""

    __slots__ = ("known", "identity", "device", "utf8")

    def __init__(self, known: Callable[[bytes | str], bool], words: _FileWords, utf8: bool) -> None:
        self.known = known
        self.identity = words.identity
        self.device = words.device
        self.utf8 = utf8

    def part_kept(self, part: bytes) -> bool:
        core = part.strip(_STRIP)
        if not core:
            return True
        if not core.isascii() and not self.utf8:
            return False  # another character set: its non-ASCII words cannot be judged
        folded = _fold(core, self.utf8)
        if folded in self.identity:
            return False
        if len(core) == 1 and core.isalpha() and core.isascii():
            return True
        if core.isascii() and _SHORTHAND.fullmatch(core):
            return True
        if _ALL_DIGITS.fullmatch(core):
            return False  # a number is never a vocabulary or device word
        if folded in self.device:
            return True
        word = core.decode("utf-8") if not core.isascii() else core.decode("ascii")
        if self.known(word):
            return True
        return word.lower().endswith("'s") and len(word) > 3 and self.known(word[:-2])

    def token(self, token: bytes) -> bytes:
        """The token with its unknown parts removed (b"" when it goes whole)."""
        lower = token.lower()
        if b"@" in token or b"://" in token or lower.startswith(b"www."):
            return b""
        if _has_digit(token) and (_DATE.search(token) or _AGE.search(token)):
            return b""
        pieces = _JOIN.split(token)  # part, joiner, part, ...
        parts = pieces[0::2]
        if sum(1 for p in parts if _ALL_DIGITS.fullmatch(p)) >= 2:
            return b""
        kept = [self.part_kept(p) for p in parts]
        if all(kept):
            return token
        if b"^" in token:
            return b""
        # An initial joined by "." to a removed part goes with it (J.Doe).
        for n, part in enumerate(parts):
            if kept[n] and len(part) == 1 and part.isalpha():
                after = n + 1 < len(parts) and not kept[n + 1] and pieces[2 * n + 1] == b"."
                before = n > 0 and not kept[n - 1] and pieces[2 * n - 1] == b"."
                if after or before:
                    kept[n] = False
        out = b""
        for n, part in enumerate(parts):
            if not kept[n] or not part:
                continue
            if out:
                out += pieces[2 * n - 1] if n > 0 else b""
            out += part
        return out.strip(b"_-/.^")


def _name_like(token: bytes, all_caps: bool) -> bool:
    core = token.strip(b".'-")
    if re.fullmatch(rb"[A-Z]\.?", token):
        return True  # an initial
    letters = core.replace(b"'", b"").replace(b"-", b"")
    if len(letters) < 2 or not letters.isalpha():
        return False
    if core[:1].isupper() and any(97 <= b <= 122 for b in letters):
        return True  # capitalised
    return all_caps and letters.isupper()


def _real_title(token: bytes) -> bool:
    core = token.rstrip(b".")
    if core.lower() not in _TITLES:
        return False
    return token.endswith(b".") or (core[:1].isupper() and core[1:].islower())


def clean_text(value: bytes, vocabulary: _Known | None = None) -> bytes | None:
    """The value with every part not known to be safe removed (rules in the module docstring); None to remove
    the element. ``vocabulary``: a :class:`veil.recipes.vocabulary.Vocabulary` (default: the shipped one)."""
    if b"\x1b" in value or _BAD_CONTROL.search(value.rstrip(b"\x00")):
        return None
    value = value.rstrip(b" \x00")
    try:
        value.decode("utf-8")
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
    value, urls = _URL.subn(b"", value)
    known = vocabulary.known if vocabulary is not None else _default_known()
    judge = _Judge(known, _FILE.get(), utf8)
    pieces = _SPLIT.split(value)
    tokens = [i for i in range(0, len(pieces), 2) if pieces[i]]
    out = {i: judge.token(pieces[i]) for i in tokens}
    for n, i in enumerate(tokens[1:]):
        if pieces[i] == b"2000" and pieces[tokens[n]].lower() == b"jpeg" and b"2000" not in judge.identity:
            out[i] = pieces[i]  # JPEG 2000, a name in the DICOM dictionary (a 4-digit number otherwise goes)
    drop: set[int] = {i for i in tokens if not out[i]}
    _context(pieces, tokens, drop, utf8)
    if not urls and not drop and all(out[i] == pieces[i] for i in tokens):
        return value
    kept = b"".join(b"" if i in drop else out.get(i, piece) for i, piece in enumerate(pieces))
    # Removal leaves runs of separators: fold repeated spaces, trim the ends.
    return re.sub(rb" {2,}", b" ", kept).strip(b" ")


def _context(pieces: list[bytes], tokens: list[int], drop: set[int], utf8: bool) -> None:
    """Rules 6 to 11: tokens that go because of their neighbours (dates, ages, numbers, titles, labels)."""
    lowers = [_fold(pieces[i].strip(_STRIP), utf8) for i in tokens]
    count = len(tokens)
    for n, i in enumerate(tokens):
        token, lower = pieces[i], lowers[n]
        # 6: month names and the numbers beside them.
        month = lower in _FULL_MONTHS
        if not month and lower in _SHORT_MONTHS:
            month = any(_has_digit(pieces[tokens[m]]) for m in (n - 1, n + 1) if 0 <= m < count)
        if month:
            drop.add(i)
            for m in (n - 2, n - 1, n + 1, n + 2):
                if 0 <= m < count and _has_digit(pieces[tokens[m]]):
                    if abs(m - n) == 1 or _has_digit(pieces[tokens[(m + n) // 2]]):
                        drop.add(tokens[m])
        # 7: ages in words.
        if re.fullmatch(rb"\d{1,3}", lower) and n + 1 < count and lowers[n + 1] in _AGE_WORDS:
            drop.update(tokens[n : n + 2])
            if n + 2 < count and lowers[n + 2] == b"old":
                drop.add(tokens[n + 2])
        if lower in _AGE_LABELS and n + 1 < count and _has_digit(pieces[tokens[n + 1]]):
            drop.add(tokens[n + 1])
        # 11: the value after an identifier label.
        if lower in _ID_LABELS or token.strip() == b"#":
            if n + 1 < count:
                drop.add(tokens[n + 1])
        # 9 and 10: names after a real title or a role word.
        title = _real_title(token)
        if title or lower in _ROLES:
            for m in range(n + 1, min(n + 4, count)):
                nxt = pieces[tokens[m]]
                if not _name_like(nxt, all_caps=title) or lowers[m] in _TITLES or lowers[m] in _ROLES:
                    break
                drop.add(tokens[m])
    # 8: runs of number tokens that together hold a phone or ID number.
    run: list[int] = []
    for n in range(count + 1):
        if n < count and _DIGIT_RUN.fullmatch(pieces[tokens[n]]) and _has_digit(pieces[tokens[n]]):
            if not run or _RUN_GAP.fullmatch(pieces[tokens[n] - 1]):
                run.append(tokens[n])
                continue
        if sum(sum(1 for b in pieces[i] if 48 <= b <= 57) for i in run) >= _DIGIT_RUN_LIMIT:
            drop.update(run)
        run = []


#: Text attributes that are Type 1 (or 1C) in the objects that carry them: where cleaning removes every word
#: of such a value, the dummy :data:`REMOVED_TEXT` is written instead of an empty value (PS3.15 E.1.1: a dummy
#: for Type 1). TextValue in an SR content item or an acquisition context item (PS3.3 C.17.3, TID 1000 TEXT),
#: UniversalEntityID of the HL7v2 Hierarchic Designator Macro (PS3.3 10.14, 1C), Segment Label (PS3.3 C.8.20.2).
REQUIRED_TEXT = frozenset({0x0040A160, 0x00400032, 0x00620005})
REMOVED_TEXT = b"REMOVED"


class Cleaner:
    """The Plan callback for ``clean``: ``(tag, vr, value) -> bytes | None``, with the shipped vocabulary
    extended by ``extra`` words (a recipe's ``vocabulary:`` list). Picklable (only the words travel; the
    vocabulary is rebuilt where it is first used) and compared by its words: compiled Plans compare equal."""

    __slots__ = ("extra", "_vocabulary")

    def __init__(self, extra: Iterable[str] = ()) -> None:
        self.extra: tuple[str, ...] = tuple(dict.fromkeys(extra))
        self._vocabulary: _Known | None = None

    @property
    def vocabulary(self) -> _Known | None:
        """The vocabulary with the extension (None: the shipped default)."""
        if self.extra and self._vocabulary is None:
            from veil.recipes.vocabulary import Vocabulary

            self._vocabulary = Vocabulary(self.extra)
        return self._vocabulary

    def __call__(self, tag: int, vr: str, value: bytes) -> bytes | None:
        if vr not in CLEANABLE_VRS:
            return None
        cleaned = clean_text(bytes(value), self.vocabulary)
        if cleaned == b"" and tag in REQUIRED_TEXT and bytes(value).strip(b" \x00"):
            return REMOVED_TEXT  # a Type 1 value left empty would make the object invalid (PS3.15 E.1.1 D)
        return cleaned

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cleaner) and other.extra == self.extra

    def __hash__(self) -> int:
        return hash((Cleaner, self.extra))

    def __repr__(self) -> str:
        return f"Cleaner({len(self.extra)} extra words)"

    def __reduce__(self) -> str | tuple[Any, ...]:
        if self is clean_element:
            return "clean_element"  # the module's default instance stays the same object after a round trip
        return (Cleaner, (self.extra,))


#: The Plan callback with the shipped vocabulary (what recipes without a ``vocabulary:`` list compile to).
clean_element = Cleaner()
