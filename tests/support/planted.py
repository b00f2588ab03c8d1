"""A copy of part of the public corpus with synthetic identities planted (issue 13's end-to-end proof).

Each patient (an original Patient ID; a file without one is a patient of its own) gets a made-up identity,
the same in all its files and drawn from a seeded generator: names of the patient, of their mother and of
three physicians, a Patient ID, a birth date, an address, a telephone number and one accession number per
study. The identity is written into the identifying attributes, echoed into free text, into a nested item and
into a private element, and every value written is recorded with its element path and kind.

The planted values live in memory only: :class:`PlantedValue` and :class:`Identity` do not show them in their
repr, and nothing here prints or logs one. Files pydicom cannot read or write back are skipped and counted
(``veil run`` would quarantine them anyway).
"""

from __future__ import annotations

import csv
import hashlib
import random
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from corpus import CORPUS_ROOT
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

__all__ = [
    "Identity",
    "PlantedCorpus",
    "PlantedFile",
    "PlantedValue",
    "build_planted_corpus",
    "categorise_finding",
    "element_text",
    "select_corpus_files",
]

SEED = "veil-issue-13-planted-v1"
MANIFEST = CORPUS_ROOT.parent / "manifest.csv"
MAX_FILES = 60
MAX_BYTES = 1_500_000  # keeps the whole proof (14 recipes, run and verify) within about a minute
PRIVATE_GROUP = 0x0011
PRIVATE_CREATOR = "VEIL PLANTED TEST"
_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"  # a DICOMDIR names files; it carries no patient's image

# Made-up identities drawn from plain lists: common and short names on purpose (LEE, MAY: the coincidences
# verify must judge), accented ones written only into files whose character set can hold them.
_FAMILY = (
    "Okonkwo", "Haverford", "Lindqvist", "Brennan", "Castellano", "Moreau", "Kowalczyk", "Nakamura",
    "Abernathy", "Delacroix", "Fitzgerald", "Ivanova", "Lee", "Pettersen", "Quinlan", "Rasmussen",
    "Sandoval", "Thornbury", "Vasquez", "Whitlock", "Yamamoto", "Zielinski", "Achterberg", "Blackwood",
    "Carmichael", "Dunleavy", "Engstrom", "Gallagher", "Hollister", "Kaczmarek", "Mbeki", "Oyelaran",
)  # fmt: skip
_GIVEN = (
    "Mary", "Jonathan", "Amara", "Wei", "Siobhan", "Tobias", "Priya", "Mateo", "Ingrid", "Olusegun",
    "Harriet", "Dmitri", "Fiona", "Kwame", "Lucinda", "May", "Rafael", "Annelise", "Bartholomew", "Chiara",
    "Desmond", "Evangeline", "Gregor", "Henrietta",
)  # fmt: skip
_GIVEN_ACCENTED = ("Jürgen", "Zoë", "Inés", "Søren", "Björn", "Renée")
_STREETS = ("Juniper", "Harbor", "Wexley", "Orchard", "Millbrook", "Thistle", "Cobalt", "Ashgrove")
_SUFFIXES = ("Street", "Lane", "Road", "Avenue", "Close")
_CITIES = ("Northwick", "Eastbury", "Fallowmere", "Greyhaven", "Pinecrest", "Stonebridge")
_ACCENT_CHARSETS = {"ISO_IR 100", "ISO_IR 192"}


@dataclass(frozen=True)
class PlantedValue:
    """One identity value written into one element of one file (``value`` never shown in a repr)."""

    file: str  # relative path in the planted corpus
    path: str  # element path as verify names it: "(0040,0275)[0](0032,1060)"
    keyword: str
    kind: str  # the kind verify reports: "name", "patient ID", ...
    patient: int  # ordinal of the patient in the planted corpus (1-based)
    value: str = field(repr=False)


@dataclass(frozen=True)
class Identity:
    """A patient's synthetic identity (every field hidden from the repr)."""

    patient: int
    family: str = field(repr=False)
    given: str = field(repr=False)
    maiden: str = field(repr=False)
    mother_family: str = field(repr=False)
    mother_given: str = field(repr=False)
    referring: tuple[str, str] = field(repr=False)
    requesting: tuple[str, str] = field(repr=False)
    reading: tuple[str, str] = field(repr=False)
    scheduled: tuple[str, str] = field(repr=False)
    patient_id: str = field(repr=False)
    birth_date: str = field(repr=False)
    address: str = field(repr=False)
    telephone: str = field(repr=False)

    def words(self) -> set[str]:
        """Every word of the identity, lower case (for checks that a report shows none)."""
        parts = [self.family, self.given, self.maiden, self.mother_family, self.mother_given, self.patient_id]
        parts += [*self.referring, *self.requesting, *self.reading, *self.scheduled, self.birth_date]
        parts += re.split(r"[ ,]+", self.address) + [self.telephone]
        return {p.lower() for p in parts if p}


@dataclass
class PlantedFile:
    rel: str  # in the planted corpus: a neutral name
    origin: str  # the corpus file it was made from (relative to the corpus folder)
    patient: int
    identity: Identity
    values: list[PlantedValue]


@dataclass
class PlantedCorpus:
    root: Path
    files: list[PlantedFile]
    skipped: int  # selected files pydicom could not read or write back
    patients: int

    @property
    def values(self) -> list[PlantedValue]:
        return [v for f in self.files for v in f.values]

    def by_kind(self) -> Counter[str]:
        return Counter(v.kind for v in self.values)

    def identity_of(self, rel: str) -> Identity:
        return next(f.identity for f in self.files if f.rel == rel)

    def all_values(self) -> list[str]:
        """Every distinct planted value (in memory only: for checks that a report shows none)."""
        return sorted({v.value for v in self.values})


def select_corpus_files(limit: int = MAX_FILES) -> list[Path]:
    """Up to ``limit`` corpus files pydicom reads, spread over sources, modalities and character sets: one
    file per source in turn, each from the source's next (modality, character set) group, smallest first."""
    if not MANIFEST.is_file():
        return []
    groups: dict[tuple[str, str, str], list[tuple[int, str]]] = {}
    with open(MANIFEST, newline="") as fh:
        for row in csv.DictReader(fh):
            if row["pydicom_parse_ok"] != "y" or row["sop_class_uid"] == _DIRECTORY_SOP_CLASS:
                continue
            size = int(row["size_bytes"])
            if size > MAX_BYTES:
                continue
            source = row["path"].split("/")[1]
            key = (source, row["modality"], row["specific_character_set"])
            groups.setdefault(key, []).append((size, row["path"]))
    # Round robin over sources, and within a source over its (modality, character set) groups.
    by_source: dict[str, list[list[tuple[int, str]]]] = {}
    for (source, _, _), members in sorted(groups.items()):
        by_source.setdefault(source, []).append(sorted(members))
    turn = dict.fromkeys(by_source, 0)
    chosen: list[str] = []
    while len(chosen) < limit and any(any(q) for q in by_source.values()):
        for source, queues in by_source.items():
            live = [q for q in queues if q]
            if live and len(chosen) < limit:
                chosen.append(live[turn[source] % len(live)].pop(0)[1])
                turn[source] += 1
    root = CORPUS_ROOT.parent
    return [root / p for p in sorted(chosen) if (root / p).is_file()]


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("|".join([SEED, *map(str, parts)]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def _make_identity(patient: int, key: str, accented: bool) -> Identity:
    rng = _rng("patient", key)
    family, maiden, mother_family = rng.sample(_FAMILY, 3)
    given_pool = _GIVEN + (_GIVEN_ACCENTED if accented else ())
    given = rng.choice(given_pool)
    mother_given = rng.choice([g for g in _GIVEN if g != given])
    others = [f for f in _FAMILY if f not in (family, maiden)]
    physicians = [(rng.choice(others), rng.choice(_GIVEN)) for _ in range(4)]
    if rng.random() < 0.5:
        patient_id = str(rng.randrange(10_000_000, 99_999_999))
    else:
        letters = "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(2))
        patient_id = letters + str(rng.randrange(1_000_000, 9_999_999))
    year, month, day = rng.randrange(1931, 2006), rng.randrange(1, 13), rng.randrange(1, 29)
    address = f"{rng.randrange(2, 980)} {rng.choice(_STREETS)} {rng.choice(_SUFFIXES)}, {rng.choice(_CITIES)}"
    telephone = f"+1 {rng.randrange(201, 989)} 555 {rng.randrange(1000, 9999)}"
    return Identity(
        patient=patient,
        family=family,
        given=given,
        maiden=maiden,
        mother_family=mother_family,
        mother_given=mother_given,
        referring=physicians[0],
        requesting=physicians[1],
        reading=physicians[2],
        scheduled=physicians[3],
        patient_id=patient_id,
        birth_date=f"{year:04d}{month:02d}{day:02d}",
        address=address,
        telephone=telephone,
    )


def _tag_path(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _pn(family: str, given: str) -> str:
    return f"{family}^{given}"


def _charset(ds: Dataset) -> str:
    value = ds.get("SpecificCharacterSet", "")
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return "\\".join(str(v) for v in value)
    return str(value)


def _accession(patient_key: str, study: str) -> str:
    rng = _rng("accession", patient_key, study)
    return "RA" + str(rng.randrange(100_000_000, 999_999_999))


def _plant(ds: Dataset, rel: str, identity: Identity, accession: str) -> list[PlantedValue]:
    """Writes the identity into ``ds``; returns what was written where."""
    out: list[PlantedValue] = []
    accented = _charset(ds) in _ACCENT_CHARSETS
    given = identity.given if accented else _ascii(identity.given)

    def put(keyword: str, kind: str, value: str, written: str | None = None) -> None:
        setattr(ds, keyword, written if written is not None else value)
        tag = pydicom.datadict.tag_for_keyword(keyword)
        out.append(PlantedValue(rel, _tag_path(tag), keyword, kind, identity.patient, value))

    # The identifying attributes: one planted value each (a person name is one value, both components).
    put("PatientName", "name", _pn(identity.family, given))
    put("PatientID", "patient ID", identity.patient_id)
    put("PatientBirthDate", "birth date", identity.birth_date)
    put("OtherPatientNames", "name", _pn(identity.maiden, given))
    put("PatientMotherBirthName", "name", _pn(identity.mother_family, identity.mother_given))
    put("ReferringPhysicianName", "name", _pn(*identity.referring))
    put("RequestingPhysician", "name", _pn(*identity.requesting))
    put("NameOfPhysiciansReadingStudy", "name", _pn(*identity.reading))
    put("PatientAddress", "address", identity.address)
    put("PatientTelephoneNumbers", "telephone number", identity.telephone)
    put("AccessionNumber", "accession number", accession)

    # Echoes into free text, one identity value each, beside the clinical words already there.
    description = str(ds.get("StudyDescription", "") or "CT CHEST WO CONTRAST")[:40]
    put("StudyDescription", "name", identity.family, f"{description} {identity.family}")
    put("ImageComments", "patient ID", identity.patient_id, f"pt {identity.patient_id} reviewed, no motion")
    put("PatientComments", "name", identity.mother_given, f"mother {identity.mother_given} called re results")
    referring = identity.referring[0]
    put("AdditionalPatientHistory", "name", referring, f"ref by Dr {referring}, cough 3 wk")

    # A nested item: an order's description naming the patient, and a person name only this item holds.
    item = Dataset()
    item.RequestedProcedureDescription = f"MR KNEE LEFT {given}"
    item.ScheduledPerformingPhysicianName = _pn(*identity.scheduled)
    existing = ds.get("RequestAttributesSequence")
    if existing is None:
        ds.RequestAttributesSequence = Sequence([item])
        index = 0
    else:
        existing.append(item)
        index = len(existing) - 1
    base = f"(0040,0275)[{index}]"
    for path, keyword, value in (
        (base + "(0032,1060)", "RequestedProcedureDescription", given),
        (base + "(0040,0006)", "ScheduledPerformingPhysicianName", _pn(*identity.scheduled)),
    ):
        out.append(PlantedValue(rel, path, keyword, "name", identity.patient, value))

    # A private element (a block with its creator) holding the patient's name.
    block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
    block.add_new(0x10, "LO", _pn(identity.family, given))
    path = _tag_path(block.get_tag(0x10))
    out.append(PlantedValue(rel, path, "", "name", identity.patient, _pn(identity.family, given)))
    return out


def build_planted_corpus(dst: Path, sources: list[Path] | None = None) -> PlantedCorpus:
    """Writes the planted copy of ``sources`` (default :func:`select_corpus_files`) under ``dst``."""
    sources = select_corpus_files() if sources is None else sources
    base = CORPUS_ROOT.parent
    patients: dict[str, Identity] = {}
    accessions: dict[tuple[str, str], str] = {}
    files: list[PlantedFile] = []
    skipped = 0
    sources_order: dict[str, int] = {}
    for number, path in enumerate(sources):
        origin = path.relative_to(base).as_posix()
        # Neutral names: the corpus's folders carry its test projects' names, some of which are also the
        # Institution Name of a corpus file ("FO-DICOM"), and veil's mirror layout would copy them into the
        # outputs' paths. What is under test here is what the planted values become, not those names.
        source = sources_order.setdefault(origin.split("/")[1], len(sources_order))
        rel = f"s{source:02d}/{number:03d}.dcm"
        target = dst / rel
        try:
            ds = pydicom.dcmread(path)
            original_id = str(ds.get("PatientID", "") or "").strip()
            patient_key = original_id or f"file:{origin}"
            identity = patients.get(patient_key)
            if identity is None:
                identity = _make_identity(len(patients) + 1, patient_key, _charset(ds) in _ACCENT_CHARSETS)
            study = str(ds.get("StudyInstanceUID", "") or origin)
            accession = accessions.get((patient_key, study)) or _accession(patient_key, study)
            values = _plant(ds, rel, identity, accession)
            target.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(target, enforce_file_format=True)
            pydicom.dcmread(target)  # written back readable
        except Exception:
            skipped += 1
            target.unlink(missing_ok=True)
            continue
        patients.setdefault(patient_key, identity)
        accessions.setdefault((patient_key, study), accession)
        files.append(PlantedFile(rel, origin, identity.patient, identity, values))
    return PlantedCorpus(dst, files, skipped, len({f.patient for f in files}))


# -- reading findings back, without showing a value --

_STEP = re.compile(r"\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)(?:\[(\d+)\])?")


def element_text(ds: Dataset, path: str) -> str | None:
    """The value at a verify element path as text (None when the path does not resolve)."""
    steps = _STEP.findall(path)
    if not steps or "".join(f"({g},{e})" + (f"[{i}]" if i else "") for g, e, i in steps) != path:
        return None
    current: Dataset = ds
    for n, (group, element, index) in enumerate(steps):
        tag = int(group + element, 16)
        if tag not in current:
            return None
        elem = current[tag]
        if n == len(steps) - 1:
            value = elem.value
            if isinstance(value, bytes):
                return value.decode("latin-1")
            return str(value)
        if elem.VR != "SQ" or not index or int(index) >= len(elem.value):
            return None
        current = elem.value[int(index)]
    return None


def _matches_mask(candidate: str, masked: str) -> bool:
    if len(candidate) != len(masked) or not masked:
        return False
    if len(masked) <= 2:
        return True
    return candidate[0].lower() == masked[0].lower() and candidate[-1].lower() == masked[-1].lower()


def _pieces(value: str) -> set[str]:
    pieces = {value}
    for part in re.split(r"[\^=\\]", value):
        part = part.strip()
        if part:
            pieces.add(part)
            pieces.update(w for w in re.split(r"[ ,]+", part) if w)
    digits = "".join(c for c in value if c.isdigit())
    if len(digits) >= 6:
        pieces.add(digits)
    return pieces


def categorise_finding(
    finding: dict[str, str], text: str | None, planted: PlantedCorpus, own_patient: int | None
) -> str:
    """A category for one leak finding, from the value at its path (never shown): whose planted value the
    element holds (the file's own patient's, another patient's, or none: a value of the original corpus file)
    and whether as a whole word or inside a longer word. Where the report shows a masked value (first and last
    character), only planted values of that shape count."""
    if text is None:
        return "unresolved path"
    folded = text.lower()
    masked = finding.get("value", "")
    found: dict[str, bool] = {}  # owner -> some match is a whole word
    for f in planted.files:
        owner = "own planted identity" if f.patient == own_patient else "another patient's planted identity"
        for value in f.values:
            for piece in _pieces(value.value):
                low = piece.lower()
                if len(low) < 3 or low not in folded or (masked and not _matches_mask(piece, masked)):
                    continue
                for m in re.finditer(re.escape(low), folded):
                    before = folded[m.start() - 1] if m.start() else " "
                    after = folded[m.end()] if m.end() < len(folded) else " "
                    whole = not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_")
                    found[owner] = found.get(owner, False) or whole
    if not found:
        return "not planted (a value of the original corpus file)"
    own = "own planted identity"
    owner = own if own in found else "another patient's planted identity"
    return f"{owner}, {'whole word' if found[owner] else 'inside a longer word'}"
