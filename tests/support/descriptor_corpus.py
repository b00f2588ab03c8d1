"""A descriptor test corpus made from the shared corpus: every distinct descriptor-like string (descriptions,
comments, protocol names, reasons, SR text values, ... at any depth) with synthetic identifiers injected.

Issue 13, "Done when" 1: after cleaning, every injected identifier is gone, and at least the share of original
clinical tokens that the old cleaner kept is kept. :func:`descriptors` reads the corpus with pydicom (no
native core); :func:`cases` injects, deterministically (seeded), into every descriptor one identifier of each
kind: a name of the file's patient with a joiner (``AX_Doe``, ``Doe-Smith``, ``J.Doe``, ``DOE^JOHN``,
``Dr. Brown``), another person's name the header does not
hold (``mother Mary``), an MRN- or accession-like ID,
a date in several spellings, a phone number, an address and an age. Each case carries the file's identity as
the pipeline would see it: the file's own values (``veil.core.identity.identity_from_dataset``) plus the
injected values the header would hold (the patient's name and ID, the address and phone), never the other
person's name, which only the allow-list can remove.

:func:`old_clean_text` is the deny-list cleaner veil shipped before issue 13 (``git show`` of
``src/veil/recipes/freetext.py`` before the change), copied here verbatim but for its file words being passed
in: the kept-token share of the new cleaner is compared with it. It is test code, never imported by veil.
All names, IDs, dates, phones and addresses here are synthetic.
"""

from __future__ import annotations

import random
import re
import unicodedata
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from veil.core.identity import FileIdentity, split_words

__all__ = [
    "DESCRIPTOR_KEYWORDS",
    "Case",
    "Descriptor",
    "Injected",
    "cases",
    "clinical_tokens",
    "descriptors",
    "kept_tokens",
    "leaked",
    "old_clean_text",
    "old_file_words",
]

#: Descriptor-like attributes, at any depth (beside every text attribute whose keyword ends with Description,
#: Comments or Comment).
DESCRIPTOR_KEYWORDS = frozenset({
    "StudyDescription", "SeriesDescription", "ProtocolName", "ImageComments",
    "PerformedProcedureStepDescription", "RequestedProcedureDescription", "ScheduledProcedureStepDescription",
    "AdmittingDiagnosesDescription",
    "ReasonForStudy", "ReasonForTheRequestedProcedure", "ReasonForTheImagingServiceRequest", "ReasonForVisit",
    "AdditionalPatientHistory", "PatientComments", "StudyComments", "MedicalAlerts", "Allergies",
    "ContrastBolusAgent", "RequestedContrastAgent", "BodyPartExamined", "ClinicalTrialSeriesDescription",
    "ClinicalTrialTimePointDescription", "FrameComments", "ImagingServiceRequestComments",
    "RequestedProcedureComments", "CommentsOnThePerformedProcedureStep", "AcquisitionComments",
    "DerivationDescription", "AcquisitionDeviceProcessingDescription", "TextValue", "Impressions",
    "InterpretationText", "SpecialNeeds", "PatientState", "PreMedication", "TreatmentSite", "ROIName",
    "ROIDescription", "StructureSetLabel", "StructureSetName", "RTPlanLabel", "RTPlanName",
})  # fmt: skip
_TEXT_VRS = frozenset({"LO", "LT", "SH", "ST", "UT", "UC"})
_TOKENS = re.compile(rb"[\s\\,;:()\[\]{}<>\"|=]+")


@dataclass(frozen=True)
class Descriptor:
    """One distinct descriptor value as stored (padding stripped), with the identity of its file."""

    keyword: str
    value: bytes
    identity: FileIdentity


@dataclass(frozen=True)
class Injected:
    """A synthetic identifier: the text written into a descriptor, the words that must not survive cleaning,
    and the (kind, value) pairs the file's header would hold (empty: only the allow-list removes it)."""

    kind: str
    text: bytes
    leak_words: tuple[bytes, ...]
    header: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class Case:
    descriptor: Descriptor
    injected: Injected
    value: bytes  # the descriptor with the identifier injected
    identity: FileIdentity  # the file's identity plus the injected header values


def _is_descriptor(keyword: str, vr: str) -> bool:
    if keyword in DESCRIPTOR_KEYWORDS:
        return True
    return vr in _TEXT_VRS and keyword.endswith(("Description", "Comments", "Comment"))


def descriptors(root: Path) -> list[Descriptor]:
    """Every distinct descriptor-like value of the corpus under ``root`` (first file wins), in file order."""
    import pydicom

    from veil.core.dataset import walk_dataset
    from veil.core.identity import identity_from_dataset

    found: dict[bytes, Descriptor] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
                identity = identity_from_dataset(ds)
                for node in walk_dataset(ds):
                    if node.sequence or not _is_descriptor(node.keyword, node.vr):
                        continue
                    value = node.value_bytes().strip(b" \x00")
                    if value and value not in found:
                        found[value] = Descriptor(node.keyword, value, identity)
        except Exception:  # noqa: BLE001 - a file pydicom cannot read adds nothing
            continue
    return list(found.values())


# --- synthetic identifiers ----------------------------------------------------------------------------------

# The patient's names (the header holds them): some are vocabulary words (Brown, White, Young), which only
# the file's identity can remove.
_FIRST = ["John", "Maria", "Wei", "Fatima", "Olivia", "Luca", "Aisha", "Pieter"]
_LAST = ["Doe", "Smith", "Brown", "White", "Kowalski", "Garcia", "Nakamura", "Okafor", "Young", "Moreau"]
# Another person's names (not in the header): only the allow-list can remove them.
_OTHER_FIRST = ["Mary", "Sandra", "Giovanni", "Haruto", "Svetlana", "Dmitri", "Ingrid", "Keisha"]
_OTHER_LAST = ["Kowalczyk", "Nguyen", "Abernathy", "Oyelaran", "Lindqvist", "Papadopoulos", "Szabo",
               "Halvorsen"]
_STREETS = ["Maple", "Cedar", "Harbor", "Oak", "Willow"]
_CITIES = ["Springfield", "Riverton", "Lakewood", "Fairview", "Brookhaven"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]  # fmt: skip


def _words(*texts: str) -> tuple[bytes, ...]:
    return tuple(w for text in texts for w in split_words(text))


def _name(rng: random.Random) -> Injected:
    first, last, last2 = rng.choice(_FIRST), rng.choice(_LAST), rng.choice(_LAST)
    forms = [
        (f"AX_{last}", (last,)),
        (f"{last}-{last2}", (last, last2)),
        (f"{first[0]}.{last}", (last,)),
        (f"{first} {last}", (first, last)),
        (f"{last.upper()}^{first.upper()}", (first, last)),
        (f"{last}, {first}", (first, last)),
        (f"Dr. {last}", (last,)),
        (f"Mr {last}", (last,)),
        (f"seen by {first} {last}", (first, last)),
    ]
    text, leaks = rng.choice(forms)
    header = (
        ("name", f"{last.upper()}^{first.upper()}".encode()),
        ("name", f"{last2.upper()}^{first.upper()}".encode()),  # e.g. Other Patient Names
    )
    return Injected("name", text.encode(), _words(*leaks), header)


def _other_person(rng: random.Random) -> Injected:
    first, last = rng.choice(_OTHER_FIRST), rng.choice(_OTHER_LAST)
    forms = [
        (f"mother {first}", (first,)),
        (f"{first} {last}", (first, last)),
        (f"ref {last}", (last,)),
        (f"{last.upper()}", (last,)),
        (f"per {first}", (first,)),
    ]
    text, leaks = rng.choice(forms)
    return Injected("other person", text.encode(), _words(*leaks))


def _identifier(rng: random.Random) -> Injected:
    digits = "".join(rng.choice("0123456789") for _ in range(rng.choice((6, 7, 8))))
    letters = "".join(rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") for _ in range(2))
    forms = [
        (f"MRN {digits}", f"{digits}", "patient ID"),
        (f"ID:{letters}{digits}", f"{letters}{digits}", "patient ID"),
        (f"{digits}", f"{digits}", "patient ID"),
        (f"acc {letters[0]}{digits}", f"{letters[0]}{digits}", "accession number"),
        (f"{letters}-{digits}", f"{letters}-{digits}", "accession number"),
    ]
    text, value, kind = rng.choice(forms)
    return Injected("ID", text.encode(), _words(value) + (digits.encode(),), ((kind, value.encode()),))


def _date(rng: random.Random) -> Injected:
    year, month, day = rng.randint(1930, 2024), rng.randint(1, 12), rng.randint(1, 28)
    name = _MONTHS[month - 1]
    forms = [
        f"{year}-{month:02d}-{day:02d}",
        f"{day:02d}/{month:02d}/{year}",
        f"{day}.{month}.{year % 100:02d}",
        f"{year}{month:02d}{day:02d}",
        f"{day} {name} {year}",
        f"{name[:3]} {day}, {year}",
        f"{day:02d}-{name[:3]}-{year}",
        f"on {month}/{day}/{year}",
    ]
    text = rng.choice(forms)
    leaks = tuple(w for w in _words(text) if w not in (b"on",))
    return Injected("date", text.encode(), leaks)


def _phone(rng: random.Random) -> Injected:
    a, b, c = rng.randint(200, 999), rng.randint(100, 999), rng.randint(1000, 9999)
    forms = [f"tel {a}-{b}-{c}", f"({a}) {b}-{c}", f"+1 {a} {b} {c}", f"{a}{b}{c}", f"phone {b}-{c}"]
    text = rng.choice(forms)
    value = f"({a}) {b}-{c}"
    leaks = tuple(w for w in _words(text) if w not in (b"tel", b"phone"))
    return Injected("phone", text.encode(), leaks, (("telephone number", value.encode()),))


def _address(rng: random.Random) -> Injected:
    number, street, city = rng.randint(2, 999), rng.choice(_STREETS), rng.choice(_CITIES)
    zipcode = rng.randint(10000, 99999)
    forms = [
        f"{number} {street} Street, {city}", f"lives in {city}", f"{street} St {number}", f"{city} {zipcode}",
    ]
    text = rng.choice(forms)
    value = f"{number} {street} Street^^{city}^^{zipcode}"
    generic = {b"street", b"st", b"lives", b"in"}
    leaks = tuple(w for w in _words(text) if w not in generic)
    return Injected("address", text.encode(), leaks, (("address", value.encode()),))


def _age(rng: random.Random) -> Injected:
    age = rng.randint(18, 99)
    forms = [f"{age} yo", f"{age:03d}Y", f"{age}-year-old", f"aged {age}", f"{age}y", f"{age} years old"]
    text = rng.choice(forms)
    leaks = tuple(w for w in _words(text) if w not in (b"aged", b"years", b"old", b"year"))
    return Injected("age", text.encode(), leaks)


_INJECTORS: tuple[Callable[[random.Random], Injected], ...] = (
    _name, _other_person, _identifier, _date, _phone, _address, _age,
)  # fmt: skip


def _with_header(identity: FileIdentity, header: Sequence[tuple[str, bytes]]) -> FileIdentity:
    if not header:
        return identity
    words = set(identity.words)
    for _, value in header:
        words.update(split_words(value))
    values = tuple(sorted(set(identity.values) | set(header)))
    return FileIdentity(values, frozenset(words), identity.device_words)


def _insert(value: bytes, text: bytes, rng: random.Random) -> bytes:
    spaces = [m.start() for m in re.finditer(rb" ", value)]
    where = rng.choice(("start", "end", "middle") if spaces else ("start", "end"))
    if where == "start":
        return text + b" " + value
    if where == "end":
        return value + b" " + text
    at = rng.choice(spaces)
    return value[:at] + b" " + text + value[at:]


def cases(found: Iterable[Descriptor], seed: int = 13) -> list[Case]:
    """Every descriptor with one identifier of each kind injected (at its start, end or a space inside)."""
    rng = random.Random(seed)
    out = []
    for descriptor in found:
        for injector in _INJECTORS:
            injected = injector(rng)
            value = _insert(descriptor.value, injected.text, rng)
            out.append(Case(descriptor, injected, value, _with_header(descriptor.identity, injected.header)))
    return out


# --- measures -----------------------------------------------------------------------------------------------


def leaked(case: Case, cleaned: bytes) -> list[bytes]:
    """The injected words still in ``cleaned`` (words the original descriptor holds itself not counted)."""
    own = set(split_words(case.descriptor.value))
    out = set(split_words(cleaned)) | {w.lower() for w in re.findall(rb"[A-Za-z0-9]+", cleaned)}
    return [w for w in case.injected.leak_words if w not in own and w in out]


def clinical_tokens(descriptor: Descriptor) -> list[bytes]:
    """The original tokens of a descriptor (split at white space and separators) that are not themselves
    identity values of its file (``Anonymous``, a patient's name in a description are not clinical)."""
    tokens = [t for t in _TOKENS.split(descriptor.value) if t]
    return [t for t in tokens if not set(split_words(t)) & descriptor.identity.words]


def kept_tokens(descriptor: Descriptor, cleaned: bytes) -> tuple[int, int]:
    """(clinical tokens of the descriptor found unchanged in ``cleaned``, clinical tokens)."""
    original = Counter(clinical_tokens(descriptor))
    after = Counter(t for t in _TOKENS.split(cleaned) if t)
    return sum((original & after).values()), sum(original.values())


# --- the old cleaner (git show HEAD~:src/veil/recipes/freetext.py), kept for comparison only ---------

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


def old_file_words(values: Iterable[str | bytes | None]) -> frozenset[bytes]:
    """The words the old ``file_identifiers`` made of a file's identifying values (its rule 7)."""
    words: set[bytes] = set()
    for value in values:
        if not value:
            continue
        raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        for piece in re.split(rb"[\s\\^,;:()\[\]{}<>\"|=]+", raw):
            core = _core(piece).lower()
            if len(core) >= 2:
                words.add(core)
    return frozenset(words)


def old_clean_text(value: bytes, file_words: frozenset[bytes] = frozenset()) -> bytes | None:
    """The deny-list cleaner of HEAD before issue 13, verbatim but for ``file_words`` passed in (it read them
    from a ContextVar set by its file_identifiers)."""
    if b"\x1b" in value or _BAD_CONTROL.search(value.rstrip(b"\x00")):
        return None
    value = value.rstrip(b" \x00")
    try:
        value.decode("utf-8")
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
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
