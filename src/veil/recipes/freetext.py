"""A conservative free-text cleaner: the callback behind the recipe action ``clean`` (Plan action CALL).

PS3.15 E.3.5 (Clean Descriptors Option) asks for descriptions and comments to be replaced by values "of similar
meaning known not to contain identifying information". The native core hands the callback one element at a
time, ``(tag, vr, value)``, so the cleaner cannot compare against the file's own names and IDs. It therefore
works from the shape of the text alone and errs towards removal: it keeps clinical words and drops every token
that could carry an identity.

The value is split into tokens at ASCII separators (white space, backslash, ``, ; : ( ) [ ] { } < > " | =``);
separators are kept, so multi-valued elements keep their value count. A token is **removed** when

1. it holds a byte outside printable ASCII, unless the whole value is valid UTF-8 and every such character is a
   Latin letter (so ``Schädel`` in UTF-8 stays; any other character set, which cannot be identified from the
   bytes alone, loses its non-ASCII words);
2. it holds ``@`` (e-mail), ``://`` or begins with ``www.`` (URL), or holds ``^`` (a DICOM person name);
3. it holds a digit: dates in every spelling (``2024-01-31``, ``31/01/2024``, ``31.1.24``), times, phone
   numbers, MRN-, accession- and order-number-like tokens, ages, house numbers, postcodes. The only digit
   tokens kept are clinical shorthand, where every ``-``, ``/`` or ``_`` separated part with a digit is one of
   ``T1 T2 T1W T2W`` (weighting), ``C1-C8 T1-T12 L1-L5 S1-S5`` (spine levels), ``2D 3D 4D``, ``B0``, or a field
   strength ``0.2T-0.9T 1.5T 1T-9T`` (so ``T1_MPRAGE`` and ``L4-L5`` stay, ``b1000`` and ``5mm`` go);
4. it is a month name (``January``, ``Sept``...) next to a token with a digit, or a full month name other than
   ``May`` anywhere (an element of a date, HIPAA 164.514(b)(2)(i)(C));
5. it follows a title or role word (``Dr Mr Mrs Ms Miss Mx Prof Doctor Professor Patient Pt Name Physician
   Nurse Tech Technologist Radiologist Surgeon Referring Attending Signed``): up to three following name-like
   tokens go (a capitalised word, an all-capitals word, or an initial such as ``J.``); after ``by`` only
   capitalised words and initials go (``by FBP`` stays, ``by John Smith`` does not);
6. it follows an identifier label (``MRN ID Nr # Acc Accession``): the next token goes whatever it is.

7. it equals (case-insensitively) a word of the file's own identifying values, when the caller has set them
   with :func:`file_identifiers` (e.g. the pipeline, from a peek at PatientName and PatientID); without that,
   a bare name such as ``CHEST PE - LEE, JOSEPH`` cannot be told from clinical words and stays.

A value with an ISO 2022 escape (``ESC``) or a control character other than TAB, LF, FF, CR cannot be split
safely and is removed whole (the callback returns None). Non-text VRs are removed (None); a PN value is removed
(a name has no clinical words). When every token goes, the element is kept with a zero-length value.
"""

from __future__ import annotations

import contextlib
import re
import unicodedata
from collections.abc import Iterable, Iterator
from contextvars import ContextVar

__all__ = ["clean_element", "clean_text", "file_identifiers", "CLEANABLE_VRS"]

# Words of the current file's own identifying values (lower case); set per file by file_identifiers().
_FILE_WORDS: ContextVar[frozenset[bytes]] = ContextVar("veil_freetext_file_words", default=frozenset())

# Text VRs the cleaner works on; everything else is removed by the callback (fail closed).
CLEANABLE_VRS = frozenset({"AE", "CS", "LO", "LT", "SH", "ST", "UC", "UT"})

_SPLIT = re.compile(rb"([\s\\,;:()\[\]{}<>\"|=]+)")
_PARTS = re.compile(rb"[-/_]")
_STRIP = b".'-/!?*#+&"
_CLINICAL = re.compile(
    rb"(?:[Tt][12][Ww]?|[Cc][1-8]|[Tt](?:[1-9]|1[0-2])|[Ll][1-5]|[Ss][1-5]|[234][Dd]|[Bb]0"
    rb"|0\.[2-9][Tt]|1\.5[Tt]|[1-9][Tt])"
)
_MONTHS_FULL = {
    b"january",
    b"february",
    b"march",
    b"april",
    b"june",
    b"july",
    b"august",
    b"september",
    b"october",
    b"november",
    b"december",
}
_MONTHS_SHORT = {
    b"jan",
    b"feb",
    b"mar",
    b"apr",
    b"may",
    b"jun",
    b"jul",
    b"aug",
    b"sep",
    b"sept",
    b"oct",
    b"nov",
    b"dec",
}
_TITLES = {
    b"dr",
    b"mr",
    b"mrs",
    b"ms",
    b"miss",
    b"mx",
    b"prof",
    b"doctor",
    b"professor",
    b"patient",
    b"pt",
    b"name",
    b"physician",
    b"nurse",
    b"tech",
    b"technologist",
    b"radiologist",
    b"surgeon",
    b"referring",
    b"attending",
    b"signed",
}
_ID_LABELS = {b"mrn", b"id", b"nr", b"#", b"acc", b"accession"}
_BAD_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0e-\x1f\x7f]")


def _core(token: bytes) -> bytes:
    return token.strip(_STRIP)


def _has_digit(token: bytes) -> bool:
    return any(48 <= b <= 57 for b in token)


def _clinical_digits(token: bytes) -> bool:
    core = _core(token)
    if _CLINICAL.fullmatch(core):
        return True
    parts = [p for p in _PARTS.split(core) if p]
    return bool(parts) and all(_CLINICAL.fullmatch(p) for p in parts if _has_digit(p))


def _latin_letters_only(token: bytes) -> bool:
    text = token.decode("utf-8")
    for ch in text:
        if ord(ch) < 128:
            continue
        if not (unicodedata.category(ch).startswith("L") and unicodedata.name(ch, "").startswith("LATIN")):
            return False
    return True


def _capitalised(core: bytes) -> bool:
    letters = core.replace(b"'", b"").replace(b"-", b"")
    return (
        len(letters) >= 2
        and letters.isalpha()
        and core[:1].isupper()
        and any(97 <= b <= 122 for b in letters)
    )


def _initial(token: bytes) -> bool:
    return re.fullmatch(rb"[A-Z]\.?", token) is not None


def _all_caps_word(core: bytes) -> bool:
    return len(core) >= 2 and core.replace(b"'", b"").replace(b"-", b"").isalpha() and core.isupper()


@contextlib.contextmanager
def file_identifiers(values: Iterable[str | bytes | None]) -> Iterator[None]:
    """Within the block, words of ``values`` (names split at ``^``, spaces, commas...) are removed wherever they
    appear in cleaned text (rule 7). Words shorter than two characters are ignored."""
    words: set[bytes] = set()
    for value in values:
        if not value:
            continue
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        for piece in re.split(rb"[\s\\^,;:()\[\]{}<>\"|=]+", raw):
            core = _core(piece).lower()
            if len(core) >= 2:
                words.add(core)
    token = _FILE_WORDS.set(frozenset(words))
    try:
        yield
    finally:
        _FILE_WORDS.reset(token)


def clean_text(value: bytes) -> bytes | None:
    """The value with every identifier-like token removed (rules in the module docstring); None to remove."""
    if b"\x1b" in value or _BAD_CONTROL.search(value.rstrip(b"\x00")):
        return None
    value = value.rstrip(b" \x00")
    try:
        value.decode("utf-8")
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
    file_words = _FILE_WORDS.get()
    pieces = _SPLIT.split(value)
    tokens = [i for i in range(0, len(pieces), 2) if pieces[i]]
    drop: set[int] = set()
    for n, i in enumerate(tokens):
        token = pieces[i]
        core = _core(token)
        lower = core.lower()
        if lower in file_words:
            drop.add(i)
        elif any(b >= 0x80 for b in token) and not (utf8 and _latin_letters_only(token)):
            drop.add(i)
        elif b"@" in token or b"://" in token or lower.startswith(b"www.") or b"^" in token:
            drop.add(i)
        elif _has_digit(token) and not _clinical_digits(token):
            drop.add(i)
        elif lower in _MONTHS_FULL:
            drop.add(i)
        elif lower in _MONTHS_SHORT:
            neighbours = [pieces[tokens[m]] for m in (n - 1, n + 1) if 0 <= m < len(tokens)]
            if any(_has_digit(t) for t in neighbours):
                drop.add(i)
        # Words after a title, role or label (rules 5 and 6).
        if lower in _ID_LABELS or token.strip() == b"#":
            if n + 1 < len(tokens):
                drop.add(tokens[n + 1])
        elif lower in _TITLES or lower == b"by":
            for m in range(n + 1, min(n + 4, len(tokens))):
                nxt = pieces[tokens[m]]
                nxt_core = _core(nxt)
                name_like = _capitalised(nxt_core) or _initial(nxt)
                if lower != b"by":
                    name_like = name_like or _all_caps_word(nxt_core)
                if not name_like or nxt_core.lower() in _TITLES:
                    break
                drop.add(tokens[m])
    kept = b"".join(b"" if i in drop else piece for i, piece in enumerate(pieces))
    # Removal leaves runs of separators: fold repeated spaces, trim the ends.
    kept = re.sub(rb" {2,}", b" ", kept).strip(b" ")
    return kept


def clean_element(tag: int, vr: str, value: bytes) -> bytes | None:
    """The Plan callback for ``clean``: cleaned text for text VRs, None (remove) for anything else."""
    if vr not in CLEANABLE_VRS:
        return None
    return clean_text(bytes(value))
