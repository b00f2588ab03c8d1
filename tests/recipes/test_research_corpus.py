"""The ``research`` recipe over the whole shared corpus: what a research data set must guarantee, per file.

Every corpus file goes once through ``research`` with a fixed test key (a module-scoped fixture shares the
outputs); the oracle is pydicom, reading both sides. Checked:

1. no original instance UID survives: every non-standard UI value of the input (all depths) is absent from
   the output bytes, and the top-level SOP Instance, Study, Series and Frame of Reference UIDs are new UIDs;
2. references stay whole: the same original UID becomes the same new UID in every file, so references
   that resolved inside the input corpus resolve to the corresponding outputs;
3. every date of a patient moves by one whole-day offset (PS3.15 E.3.6): intervals are kept;
4. no identifying value of the file (names, IDs, birth date, institution, addresses, phone, station,
   serial) appears anywhere in the output header bytes, including private, nested and UN elements and the
   inflated data set of a deflated file;
5. technical attributes and Pixel Data are unchanged, except where ``research``'s pixel policy redacts
   burned-in text: there every pixel outside the recorded boxes is unchanged (corpus_pixels.py);
6. the output is deterministic for a key, and another key gives other pseudonyms and UIDs.

Checks 1 (no original UID) and 4 (no identifying value) run on a second pass through ``hipaa-safe-harbor``
as well: they hold for any recipe that removes identifiers.

Files the core refuses (``MalformedDicom``) are skipped here; ``test_differential.py`` covers them.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import re
import struct
import warnings
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import pytest
from corpus import CORPUS_ROOT, corpus_file_list
from corpus_pixels import unchanged_outside_and_blank_inside
from pydicom.charset import encode_string
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless

from veil.core.plan import STANDARD_UID_PREFIX
from veil.errors import MalformedDicom
from veil.keys import Key, KeyedFunctions
from veil.pipeline import Deidentifier
from veil.recipes import compile_recipe, load_recipe

pytestmark = pytest.mark.corpus

TEST_KEY = Key(bytes(range(32)))
OTHER_KEY = Key(bytes(range(32, 64)))
MIN_PROCESSED = 290

PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # Pixel Data, Float and Double Float Pixel Data
DEFLATED = "1.2.840.10008.1.2.1.99"
INSTANCE_UIDS = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID")
INSTANCE_UID_PEEK = dict(
    zip(
        INSTANCE_UIDS,
        ("sop_instance_uid", "study_instance_uid", "series_instance_uid", "frame_of_reference_uid"),
        strict=True,
    )
)
# UIDs that name a kind of object or an encoding, the same in every file of that kind at every site: they
# identify no patient, study or instance, and ``research`` keeps them (a private SOP class stays readable).
CLASS_UIDS = frozenset(
    pydicom.datadict.tag_for_keyword(k)
    for k in (
        "SOPClassUID", "MediaStorageSOPClassUID", "ReferencedSOPClassUID", "ReferencedSOPClassUIDInFile",
        "RelatedGeneralSOPClassUID", "OriginalSpecializedSOPClassUID", "SOPClassesInStudy",
        "TransferSyntaxUID", "ReferencedTransferSyntaxUIDInFile",
    )
)  # fmt: skip

# The file's identifying values searched for in its output, and what kind each is.
IDENTIFYING = {
    "PatientName": "patient name",
    "PatientID": "patient id",
    "OtherPatientIDs": "other patient id",
    "PatientBirthDate": "birth date",
    "AccessionNumber": "accession number",
    "InstitutionName": "institution name",
    "InstitutionAddress": "institution address",
    "ReferringPhysicianName": "referring physician name",
    "PerformingPhysicianName": "performing physician name",
    "OperatorsName": "operator name",
    "PatientAddress": "patient address",
    "PatientTelephoneNumbers": "patient telephone",
    "StationName": "station name",
    "DeviceSerialNumber": "device serial number",
}
# Values that identify nobody: placeholders test files and anonymisers write, and veil's own dummy values.
# A value equal to one of these (case-insensitively, after stripping) is not searched for.
PLACEHOLDERS = frozenset(
    {
        "ANONYMOUS",
        "ANONYMIZED",
        "ANONYMISED",
        "ANON",
        "UNKNOWN",
        "NONE",
        "NULL",
        "TEST",
        "PATIENT",
        "DOCTOR",
        "N/A",
        "NA",
    }
)
MIN_VALUE_LENGTH = 4  # shorter IDs and serials ("1", "CT") match everywhere by chance
MIN_NAME_COMPONENT_LENGTH = 3
PERSON_NAMES = frozenset(
    {"patient name", "referring physician name", "performing physician name", "operator name"}
)
# The core's peek of the top level, for a file pydicom cannot read: peek key -> kind.
PEEKED = {
    "patient_name": "patient name",
    "referring_physician_name": "referring physician name",
    "patient_id": "patient id",
    "patient_birth_date": "birth date",
    "accession_number": "accession number",
    "institution_name": "institution name",
    "station_name": "station name",
    "patient_address": "patient address",
    "patient_telephone_numbers": "patient telephone",
}
# Kept descriptions of the product and the image, at any depth, that name no person or site: vendor and
# model (Table E.1-1 keeps them) and the image and frame type terms (ORIGINAL\PRIMARY\PERFUSION). Test files
# reuse such words as names ("TOSHIBA" as institution, "Perfusion" as patient name); a value found only there
# tells nothing the kept technical description does not, so occurrences there are not counted.
DESCRIPTIVE = frozenset(
    pydicom.datadict.tag_for_keyword(k)
    for k in ("Manufacturer", "ManufacturerModelName", "ImageType", "FrameType")
)

TECHNICAL = (
    "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "SamplesPerPixel",
    "PhotometricInterpretation", "PixelSpacing", "SliceThickness", "ImagePositionPatient",
    "ImageOrientationPatient", "RescaleSlope", "RescaleIntercept", "KVP", "RepetitionTime", "EchoTime",
    "NumberOfFrames", "Modality", "SOPClassUID",
)  # fmt: skip

# Cases that need a change outside the recipes and free-text cleaner; (test, file) -> reason. Each is
# a strict xfail: it fails loudly once fixed, so the entry is removed with the fix.
KNOWN: dict[tuple[str, str], str] = {}

Path_ = tuple[Any, ...]  # an element path: (tag, item index, tag, ..., tag)


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Corpus files hold values pydicom warns about (over-long SH, odd UIDs); the oracle reads them as is."""
    settings = pydicom.config.settings
    saved = settings.reading_validation_mode
    settings.reading_validation_mode = pydicom.config.IGNORE
    try:
        yield
    finally:
        settings.reading_validation_mode = saved


def _path_text(path: Path_) -> str:
    parts = []
    for i, p in enumerate(path):
        parts.append(f"[{p}]" if i % 2 else f"({p >> 16:04X},{p & 0xFFFF:04X})")
    return "".join(parts)


@dataclass
class Element:
    """One element of a walked data set: its VR as pydicom reads it, its value and its raw bytes if known."""

    vr: str
    value: Any
    raw: bytes | None


def _walk(ds: Dataset, prefix: Path_ = ()) -> Iterator[tuple[Path_, Element]]:
    """Every element of ``ds`` at every depth, items of sequences included, with its path."""
    for tag in list(ds.keys()):
        item = ds.get_item(tag)
        raw = item.value if isinstance(item, RawDataElement) and isinstance(item.value, bytes) else None
        try:
            elem = ds[tag]
        except Exception:  # a value pydicom cannot convert: keep what the bytes say
            yield (*prefix, int(tag)), Element("UN", raw, raw)
            continue
        path = (*prefix, int(tag))
        yield path, Element(elem.VR, elem.value, raw)
        if elem.VR == "SQ" and elem.value is not None:
            for index, child in enumerate(elem.value):
                yield from _walk(child, (*path, index))


def _values(value: Any) -> list[str]:
    """The values of a multi-valued text element, as strings."""
    if value is None or isinstance(value, bytes):
        return []
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return [str(v) for v in value]
    return [str(value)]


def _pixel_span(ds: Dataset) -> tuple[int, int] | None:
    """Offsets of the top-level pixel value in the bytes pydicom read the data set from (inflated if so)."""
    for tag in PIXEL_TAGS:
        if tag in ds:
            item = ds.get_item(tag)
            if isinstance(item, RawDataElement) and item.value is not None:
                return item.value_tell, item.value_tell + len(item.value)
    return None


def _data_set_offset(data: bytes) -> int:
    """Where the data set starts after preamble and File Meta (explicit VR little endian, group 0002)."""
    if data[128:132] != b"DICM":
        return 0
    pos = 132
    while pos + 8 <= len(data) and data[pos : pos + 2] == b"\x02\x00":
        vr = data[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR", b"OD", b"OF", b"OL", b"OV"):
            pos += 12 + struct.unpack_from("<I", data, pos + 8)[0]
        else:
            pos += 8 + struct.unpack_from("<H", data, pos + 6)[0]
    return pos


@dataclass(repr=False)
class Case:
    """One corpus file and its research output, read back by pydicom (None where pydicom cannot)."""

    name: str
    source: bytes
    output: bytes
    header: bytes  # the output without the top-level pixel value; for a deflated file, meta + inflated set
    source_ds: Dataset | None
    output_ds: Dataset | None
    peek_source: dict[str, Any]
    peek_output: dict[str, Any]
    source_elements: dict[Path_, Element] = field(default_factory=dict)
    output_elements: dict[Path_, Element] = field(default_factory=dict)
    shift_days: int = 0

    def __repr__(self) -> str:  # a failure report shows the file, never megabytes of it
        return f"Case({self.name!r})"

    @property
    def patient_id(self) -> str:
        return (self.peek_source.get("patient_id") or "").strip(" \x00")


@dataclass(repr=False)
class Run:
    cases: dict[str, Case]
    refused: dict[str, str]
    deidentifier: Deidentifier
    functions: KeyedFunctions

    def __repr__(self) -> str:
        return f"Run({len(self.cases)} files written, {len(self.refused)} refused)"


def _searchable_header(output: bytes, output_ds: Dataset | None, parts: Any) -> bytes:
    """Everything of the output but the top-level pixel value: inflated where the data set is deflated."""
    if output_ds is None:  # pydicom cannot read it: trust the core's split of header and pixel tail
        return bytes(parts.header) + bytes(parts.trailer)
    transfer_syntax = str(output_ds.file_meta.get("TransferSyntaxUID", "")) if output_ds.file_meta else ""
    span = _pixel_span(output_ds)
    if transfer_syntax == DEFLATED:
        start = _data_set_offset(output)
        inflated = zlib.decompressobj(-15).decompress(output[start:])
        if span is not None:
            inflated = inflated[: span[0]] + inflated[span[1] :]
        return output[:start] + inflated
    if span is None:
        return output
    return output[: span[0]] + output[span[1] :]


def _read(data: bytes) -> Dataset | None:
    try:
        with _quiet_pydicom():
            return pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception:
        return None


def _deidentifier(key: Key, recipe: str | Path = "research") -> tuple[Deidentifier, KeyedFunctions]:
    compiled = compile_recipe(load_recipe(recipe))
    functions = KeyedFunctions(key, **compiled.key_parameters)
    return Deidentifier(compiled.plan, functions), functions


def _elements(ds: Dataset | None) -> dict[Path_, Element]:
    if ds is None:
        return {}
    with _quiet_pydicom():
        found = dict(_walk(ds))
        if ds.file_meta:
            found.update(_walk(ds.file_meta))
    return found


def run_corpus(key: Key, recipe: str | Path = "research") -> Run:
    """Every corpus file through ``recipe`` once, read back by pydicom."""
    from veil.core._core import peek

    worker, functions = _deidentifier(key, recipe)
    cases: dict[str, Case] = {}
    refused: dict[str, str] = {}
    for path in corpus_file_list():
        name = path.relative_to(CORPUS_ROOT).as_posix()
        source = path.read_bytes()
        try:
            result = worker.rewrite(source, str(path))
        except MalformedDicom as exc:
            refused[name] = exc.reason
            continue
        output = result.tobytes()
        source_ds = _read(source)
        output_ds = _read(output)
        case = Case(
            name=name,
            source=source,
            output=output,
            header=_searchable_header(output, output_ds, result),
            source_ds=source_ds,
            output_ds=output_ds,
            peek_source=peek(source, str(path)),
            peek_output=peek(output, name),
        )
        case.source_elements = _elements(source_ds)
        case.output_elements = _elements(output_ds)
        case.shift_days = functions.date_shift(case.patient_id)
        cases[name] = case
    return Run(cases, refused, worker, functions)


@pytest.fixture(scope="module")
def research(corpus_root: Path) -> Run:
    """Every corpus file through ``research`` once, with the test key, shared by every test here."""
    return run_corpus(TEST_KEY)


@pytest.fixture(scope="module")
def hipaa_safe_harbor(corpus_root: Path) -> Run:
    """Every corpus file through ``hipaa-safe-harbor`` once, with the test key: the checks that hold for any
    recipe that removes identifiers (no identifying value, no original UID) run on it too."""
    return run_corpus(TEST_KEY, "hipaa-safe-harbor")


# Recipe -> the module fixture holding its run of the corpus.
RUNS = {"research": "research", "hipaa-safe-harbor": "hipaa_safe_harbor"}


def _corpus_params(test: str) -> list[Any]:
    """One parameter per corpus file, the KNOWN cases of ``test`` marked as strict xfails."""
    params = []
    for path in corpus_file_list():
        name = path.relative_to(CORPUS_ROOT).as_posix()
        reason = KNOWN.get((test, name))
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        params.append(pytest.param(name, marks=marks, id=name))
    return params


def _case(run: Run, name: str) -> Case:
    if name in run.refused:
        pytest.skip(f"refused by the core ({run.refused[name]}); covered by test_differential.py")
    return run.cases[name]


# --- counts --------------------------------------------------------------------------------------------------


def test_research_processes_nearly_all_of_the_corpus(research: Run) -> None:
    total = len(research.cases) + len(research.refused)
    assert total == len(corpus_file_list())
    assert len(research.cases) >= MIN_PROCESSED, sorted(research.refused)
    unread = [c.name for c in research.cases.values() if c.source_ds is None]
    assert len(unread) <= 2, f"pydicom, the oracle, cannot read: {unread}"


# --- 1. no original UID --------------------------------------------------------------------------------------

_UID_TEXT = re.compile(rb"UI(..)([0-9.]{2,64})")


def _source_uids(case: Case) -> dict[str, str]:
    """Every non-standard instance UID value of the input at every depth (class UIDs left out), with where
    it is; explicit-VR ``UI`` elements found in the bytes add those of a file pydicom cannot read."""
    found: dict[str, str] = {}
    classes = {
        uid
        for path, elem in case.source_elements.items()
        if path[-1] in CLASS_UIDS
        for uid in _uid_values(elem)
    }
    for path, elem in case.source_elements.items():
        if elem.vr != "UI" or path[-1] in CLASS_UIDS:
            continue
        for uid in _values(elem.value):
            uid = uid.strip(" \x00")
            if uid and not uid.startswith(STANDARD_UID_PREFIX):
                found.setdefault(uid, _path_text(path))
    if case.source_ds is None:
        for match in _UID_TEXT.finditer(case.source):
            for order in ("<H", ">H"):
                length = struct.unpack(order, match.group(1))[0]
                value = case.source[match.end(1) : match.end(1) + length].rstrip(b"\x00 ")
                if re.fullmatch(rb"[0-9]+(\.[0-9]+)+", value) and not value.startswith(b"1.2.840.10008."):
                    found.setdefault(value.decode("ascii"), f"offset {match.start()}")
    for key in ("sop_class_uid", "transfer_syntax"):
        classes.add((case.peek_source.get(key) or "").strip(" \x00"))
    for key in ("sop_instance_uid", "study_instance_uid", "series_instance_uid", "frame_of_reference_uid"):
        uid = (case.peek_source.get(key) or "").strip(" \x00")
        if uid and not uid.startswith(STANDARD_UID_PREFIX):
            found.setdefault(uid, key)
    return {uid: where for uid, where in found.items() if uid not in classes}


def _uid_tokens(data: bytes) -> frozenset[bytes]:
    """Every maximal run of digits and dots in ``data``: a UID occurs in the bytes as a whole UID (not as part
    of a longer one) exactly when it is one of these. UIDs are ASCII (PS3.5 9.1) in every character set."""
    return frozenset(re.findall(rb"[0-9.]+", data))


def _surviving_uids(case: Case) -> list[str]:
    """The input's instance UIDs found in the output bytes or in its header (inflated where deflated); a
    malformed UI value that is not digits and dots is looked for as plain bytes."""
    tokens = _uid_tokens(case.header) | _uid_tokens(case.output)
    found = []
    for uid, where in sorted(_source_uids(case).items(), key=lambda kv: kv[1]):
        raw = uid.encode("utf-8")
        numeric = re.fullmatch(rb"[0-9.]+", raw) is not None
        if raw in tokens if numeric else raw in case.header or raw in case.output:
            found.append(f"{where}: {uid}")
    return found


@pytest.mark.parametrize("recipe", list(RUNS))
@pytest.mark.parametrize("name", _corpus_params("uids"))
def test_no_original_uid_survives(request: pytest.FixtureRequest, recipe: str, name: str) -> None:
    case = _case(request.getfixturevalue(RUNS[recipe]), name)
    leaks = _surviving_uids(case)
    assert not leaks, f"{name}: original UIDs in the output:\n" + "\n".join(leaks)


@pytest.mark.parametrize("name", _corpus_params("instance-uids"))
def test_instance_series_study_and_frame_of_reference_uids_are_new(research: Run, name: str) -> None:
    case = _case(research, name)
    problems = []
    for keyword, key in INSTANCE_UID_PEEK.items():
        before = (case.peek_source.get(key) or "").strip(" \x00")
        after = (case.peek_output.get(key) or "").strip(" \x00")
        if not before or before.startswith(STANDARD_UID_PREFIX):
            continue
        if after == before or not re.fullmatch(r"2\.25\.[1-9][0-9]*", after) or len(after) > 64:
            problems.append(f"{keyword}: {before!r} -> {after!r}")
        elif after != research.functions.uid(before.encode("ascii")).decode("ascii"):
            problems.append(f"{keyword}: {after!r} is not the keyed UID of the original")
    assert not problems, f"{name}: " + "; ".join(problems)


# --- 2. references --------------------------------------------------------------------------------------------


def _uid_values(elem: Element) -> list[str]:
    return [v.strip(" \x00") for v in _values(elem.value)] if elem.vr == "UI" else []


def test_each_original_uid_has_one_new_uid_in_every_file(research: Run) -> None:
    """The same original UID becomes the same new UID wherever it is, in every file (keyed, stateless).

    The File Meta group is left out: the core rebuilds it from the rewritten data set (its Media Storage SOP
    Instance UID is the data set's new SOP Instance UID even where the input's two disagreed), which
    ``test_file_meta_agrees_with_the_data_set`` checks."""
    seen: dict[str, dict[str, str]] = defaultdict(dict)  # original -> new -> first place
    for case in research.cases.values():
        for path, elem in case.source_elements.items():
            out = case.output_elements.get(path)
            if out is None or out.vr != "UI" or path[0] >> 16 == 0x0002:
                continue
            before, after = _uid_values(elem), _uid_values(out)
            if len(before) != len(after):
                continue
            for b, a in zip(before, after, strict=True):
                if b and not b.startswith(STANDARD_UID_PREFIX):
                    seen[b].setdefault(a, f"{case.name} {_path_text(path)}")
    split = {uid: places for uid, places in seen.items() if len(places) > 1}
    assert not split, "one original UID, several new ones:\n" + "\n".join(
        f"{uid}: {places}" for uid, places in sorted(split.items())
    )
    assert len(seen) > 1000  # the corpus holds thousands of UIDs: the check saw them


@pytest.mark.parametrize("name", _corpus_params("meta"))
def test_file_meta_agrees_with_the_data_set(research: Run, name: str) -> None:
    case = _case(research, name)
    if case.output_ds is None:
        pytest.skip("pydicom cannot read this file")
    meta, ds = case.output_ds.file_meta, case.output_ds
    if ds.get("SOPInstanceUID"):  # else (a DICOMDIR, a bare test file) the meta's own UID, keyed
        assert meta.get("MediaStorageSOPInstanceUID") == ds.SOPInstanceUID
    if ds.get("SOPClassUID"):
        assert meta.get("MediaStorageSOPClassUID") == ds.SOPClassUID


def test_references_that_resolve_in_the_corpus_resolve_in_the_output(research: Run) -> None:
    """A UID a file refers to that is another corpus file's instance, series, study or frame of reference
    UID is, in the output, that file's new UID: references within the output set resolve. A reference the
    recipe removes (Basic Profile: Referenced Study Sequence X/Z, private elements X) leaves nothing to
    resolve; the count of those kept across files must stay high."""
    mapping: dict[str, str] = {}  # original top-level UID -> its output file's UID
    owners: dict[str, str] = {}
    conflicts = []
    for case in research.cases.values():
        if case.source_ds is None or case.output_ds is None:
            continue
        for keyword in INSTANCE_UIDS:
            before = str(case.source_ds.get(keyword, "") or "").strip(" \x00")
            after = str(case.output_ds.get(keyword, "") or "").strip(" \x00")
            if not before or before.startswith(STANDARD_UID_PREFIX):
                continue
            if mapping.setdefault(before, after) != after:
                conflicts.append(
                    f"{keyword} {before}: {mapping[before]} ({owners[before]}) != {after} ({case.name})"
                )
            owners.setdefault(before, case.name)
    assert not conflicts, "\n".join(conflicts)

    own_identity = {(tag,) for tag in (0x00080018, 0x0020000D, 0x0020000E, 0x00200052, 0x00020003)}
    across_files = 0
    broken = []
    for case in research.cases.values():
        for path, elem in case.source_elements.items():
            if elem.vr != "UI" or path in own_identity:
                continue  # a file's own identity is the map itself
            hits = [(i, uid) for i, uid in enumerate(_uid_values(elem)) if uid in mapping]
            if not hits:
                continue
            out = case.output_elements.get(path)
            if out is None:
                continue
            after = _uid_values(out)
            for i, uid in hits:
                new = after[i] if i < len(after) else None
                if new != mapping[uid]:
                    broken.append(
                        f"{case.name} {_path_text(path)}: {uid} -> {new}, its target is {mapping[uid]}"
                    )
            across_files += sum(owners[uid] != case.name for _, uid in hits)
    assert not broken, "references that no longer resolve:\n" + "\n".join(broken)
    # SEG, SR, presentation states and multi-file series of the corpus refer to each other 414 times.
    assert across_files >= 300


# --- 3. dates ---------------------------------------------------------------------------------------------------


def _date_of(value: str, vr: str) -> tuple[datetime.date, str] | None:
    """The full date of one DA or DT value and, for DT, the rest (time and offset); None when partial."""
    value = value.strip(" \x00")
    head = value[:8]
    if len(head) != 8 or not head.isdigit() or (vr == "DA" and len(value) != 8):
        return None
    try:
        return datetime.date(int(head[:4]), int(head[4:6]), int(head[6:8])), value[8:]
    except ValueError:
        return None


def _date_shifts(case: Case) -> list[tuple[str, int, str]]:
    """(element path, days moved, problem) for every kept full date of the file."""
    found = []
    for path, elem in case.source_elements.items():
        if elem.vr not in ("DA", "DT"):
            continue
        out = case.output_elements.get(path)
        if out is None:
            continue
        before, after = _values(elem.value), _values(out.value)
        if len(before) != len(after):
            continue  # emptied (Basic Z) or a value the core could not parse
        for b, a in zip(before, after, strict=True):
            if "-" in b.strip(" \x00")[1:8]:
                continue  # a range (query keys only): each end moves, tested in test_rewrite
            old, new = _date_of(b, elem.vr), _date_of(a, elem.vr)
            if old is None or new is None:
                continue
            problem = "" if old[1] == new[1] else f"time of day changed: {b!r} -> {a!r}"
            found.append((_path_text(path), (new[0] - old[0]).days, problem))
    return found


@pytest.mark.parametrize("name", _corpus_params("dates"))
def test_every_date_of_the_file_moves_by_the_same_whole_days(research: Run, name: str) -> None:
    case = _case(research, name)
    shifts = _date_shifts(case)
    lo, hi = compile_recipe(load_recipe("research")).shift_range or (0, 0)
    problems = [f"{where}: {problem}" for where, _, problem in shifts if problem]
    problems += [
        f"{where}: moved {days} days, the patient's offset is {case.shift_days}"
        for where, days, _ in shifts
        if days != case.shift_days
    ]
    assert lo <= case.shift_days <= hi and case.shift_days != 0
    assert not problems, f"{name}:\n" + "\n".join(problems)


def test_date_offset_is_the_same_for_all_files_of_a_patient(research: Run) -> None:
    by_patient: dict[str, set[int]] = defaultdict(set)
    dated = 0
    for case in research.cases.values():
        for _, days, _ in _date_shifts(case):
            by_patient[case.patient_id].add(days)
            dated += 1
    several = {pid: sorted(days) for pid, days in by_patient.items() if len(days) > 1}
    assert not several, f"patients whose dates moved by different offsets: {several}"
    assert dated > 500 and len(by_patient) > 20  # the check saw the corpus's dates


# --- 4. identifying values -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Needle:
    kind: str
    text: str
    forms: tuple[bytes, ...]  # the byte strings searched for: the file's own encoding, and UTF-8


def _placeholder(text: str) -> bool:
    """A value that identifies nobody: a listed placeholder, one repeated character (``00000``, ``XXXX``), or
    a run of consecutive digits from 0 or 1 (``1234``, ``123456``), the test files' stand-ins for an ID."""
    upper = text.upper()
    if upper in PLACEHOLDERS or len(set(upper)) == 1:
        return True
    return text.isdigit() and text in "0123456789" and text[0] in "01"


def _encodings(ds: Dataset | None) -> list[str]:
    charset = ds.get("SpecificCharacterSet") if ds is not None else None
    return pydicom.charset.convert_encodings(charset) if charset else ["iso8859"]


def _forms(text: str, encodings: list[str]) -> tuple[bytes, ...]:
    """UTF-8 and the file's own encoding (pydicom warns, then writes ``?``, for a character it cannot
    encode: such a lossy form is not searched for)."""
    forms = {text.encode("utf-8")}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with contextlib.suppress(Exception):
            forms.add(encode_string(text, encodings))
    return tuple(sorted(forms))


def _birth_date_spellings(value: str) -> list[str]:
    if len(value) != 8 or not value.isdigit():
        return [value]
    y, m, d = value[:4], value[4:6], value[6:]
    return [value, f"{y}-{m}-{d}", f"{d}/{m}/{y}", f"{m}/{d}/{y}", f"{d}.{m}.{y}"]


def _needles(case: Case) -> list[Needle]:
    """The file's identifying values at every depth: person-name components of three characters or more,
    other values of four or more (stripped), placeholders left out."""
    by_tag = {pydicom.datadict.tag_for_keyword(k): (k, kind) for k, kind in IDENTIFYING.items()}
    found: list[tuple[str, str]] = []
    for path, elem in case.source_elements.items():
        entry = by_tag.get(path[-1])
        if entry is None or elem.value is None or isinstance(elem.value, bytes):
            continue
        keyword, kind = entry
        for value in _values(elem.value):
            if kind in PERSON_NAMES:
                found += [(kind, c) for group in value.split("=") for c in group.split("^")]
            elif keyword == "PatientBirthDate":
                found += [(kind, s) for s in _birth_date_spellings(value.strip(" \x00"))]
            else:
                found.append((kind, value))
    if case.source_ds is None:  # pydicom cannot read it: the core's own peek of the top level
        for key, kind in PEEKED.items():
            value = case.peek_source.get(key) or ""
            if kind in PERSON_NAMES:
                found += [(kind, c) for c in re.split(r"[=^\\]", value)]
            elif kind == "birth date":
                found += [(kind, s) for s in _birth_date_spellings(value)]
            else:
                found += [(kind, v) for v in value.split("\\")]
    texts: dict[str, str] = {}
    for kind, text in found:
        text = text.strip(" \x00")
        least = MIN_NAME_COMPONENT_LENGTH if kind in PERSON_NAMES else MIN_VALUE_LENGTH
        if len(text) >= least and not _placeholder(text):
            texts.setdefault(text, kind)
    encodings = _encodings(case.source_ds)
    return [Needle(kind, text, _forms(text, encodings)) for text, kind in texts.items()]


def _pattern(form: bytes) -> re.Pattern[bytes]:
    """``form`` as a whole word: not continued by a letter where it ends in a letter, nor by a digit where it
    ends in a digit, so ``DOE`` is found in ``DOE^JOHN`` and ``12345`` in ``MRN12345``, but a name ``LEE`` is
    not found in ``SLEEP`` nor an ID ``111`` in the code ``113111``."""
    before = rb"(?<![A-Za-z])" if form[:1].isalpha() else rb"(?<![0-9])" if form[:1].isdigit() else b""
    after = rb"(?![A-Za-z])" if form[-1:].isalpha() else rb"(?![0-9])" if form[-1:].isdigit() else b""
    return re.compile(before + re.escape(form) + after, re.IGNORECASE if form.isascii() else 0)


def _element_bytes(elem: Element) -> bytes:
    if elem.raw is not None:
        return elem.raw
    if isinstance(elem.value, bytes):
        return elem.value
    return "\\".join(_values(elem.value)).encode("utf-8", "replace")


def _leaks(case: Case) -> list[str]:
    """Each identifying value found in the output header, with the element paths that hold it. Occurrences
    inside the kept product and image descriptions (DESCRIPTIVE) are not counted."""
    leaks = []
    for needle in _needles(case):
        for form in needle.forms:
            pattern = _pattern(form)
            total = len(pattern.findall(case.header))
            if not total:
                continue
            places: list[str] = []
            excused = 0
            for path, elem in case.output_elements.items():
                if elem.vr == "SQ" or len(path) == 1 and path[0] in PIXEL_TAGS:
                    continue
                hits = len(pattern.findall(_element_bytes(elem)))
                if path[-1] in DESCRIPTIVE:
                    excused += hits
                elif hits:
                    places.append(_path_text(path))
            if total > excused:
                where = ", ".join(places) or "header bytes outside any element pydicom reads"
                leaks.append(f"{needle.kind} {needle.text!r} at {where}")
                break
    return leaks


@pytest.mark.parametrize("recipe", list(RUNS))
@pytest.mark.parametrize("name", _corpus_params("identifying"))
def test_no_identifying_value_of_the_file_is_in_the_output(
    request: pytest.FixtureRequest, recipe: str, name: str
) -> None:
    case = _case(request.getfixturevalue(RUNS[recipe]), name)
    leaks = _leaks(case)
    assert not leaks, f"{name}:\n" + "\n".join(leaks)


# --- 5. technical attributes -----------------------------------------------------------------------------------


def _raw_pixels(ds: Dataset, pad: bool = False) -> dict[int, bytes]:
    """The pixel values; with ``pad``, an odd-length one padded as the core writes it (PS3.5 7.1.1: values
    have even length; veil.core.plan: a kept value of odd length gets one padding byte)."""
    pixels = {tag: ds[tag].value or b"" for tag in PIXEL_TAGS if tag in ds}
    return {tag: v + b"\x00" if pad and len(v) % 2 else v for tag, v in pixels.items()}


# What a redaction may change in the pixel module: a compressed input is written in the recipe's lossless
# syntax, decoded colour as RGB, native YBR_FULL_422 expanded to YBR_FULL (veil.pixels.redact_file).
LOSSLESS_OUTPUTS = (RLELossless, JPEGLSLossless, JPEG2000Lossless, ExplicitVRLittleEndian)
_REDACTION_PHOTOMETRIC = {"YBR_FULL_422": ("RGB", "YBR_FULL"), "YBR_FULL": ("RGB",), "YBR_ICT": ("RGB",),
                          "YBR_RCT": ("RGB",)}


@pytest.mark.parametrize("name", _corpus_params("technical"))
def test_technical_attributes_and_pixel_data_are_unchanged(research: Run, research_pixels, name: str) -> None:
    """Pixel Data is byte-identical, except in the images ``research``'s pixel policy redacts (burned-in
    text): there every pixel outside the recorded boxes equals the decoded input and each box is blank.
    An image it quarantines yields no output at all, with its reason recorded."""
    case = _case(research, name)
    pixel_case = research_pixels.get(name)
    if pixel_case is not None and pixel_case.outcome == "quarantined":
        assert pixel_case.reason, f"{name}: quarantined without a reason"
        return
    redacted = pixel_case is not None and pixel_case.outcome == "redacted"
    if case.source_ds is None or case.output_ds is None:
        assert not redacted, f"{name}: redacted although pydicom cannot read it"
        assert case.peek_output["rows"] == case.peek_source["rows"]
        assert case.peek_output["sop_class_uid"] == case.peek_source["sop_class_uid"]
        pytest.skip("pydicom cannot read this file; the core's peek agrees on rows and SOP class")
    src, out = case.source_ds, case.output_ds
    changed = []
    with _quiet_pydicom():
        if redacted:
            out = _read(pixel_case.redaction.data)
            assert out is not None, f"{name}: the redacted output does not read back"
            changed.extend(unchanged_outside_and_blank_inside(pixel_case))
            if out.get("BurnedInAnnotation") != "NO":
                changed.append("a redacted output does not say BurnedInAnnotation NO")
        for keyword in TECHNICAL:
            if keyword in src and (keyword not in out or out[keyword].value != src[keyword].value):
                allowed = _REDACTION_PHOTOMETRIC.get(str(src[keyword].value), ())
                if redacted and keyword == "PhotometricInterpretation" and out.get(keyword) in allowed:
                    continue
                changed.append(f"{keyword}: {src[keyword].value!r} -> {out.get(keyword)!r}")
        src_ts = src.file_meta.get("TransferSyntaxUID") if src.file_meta else None
        out_ts = out.file_meta.get("TransferSyntaxUID") if out.file_meta else None
        if src_ts and src_ts != out_ts and not (redacted and src_ts.is_compressed and out_ts in LOSSLESS_OUTPUTS):
            changed.append(f"TransferSyntaxUID: {src_ts} -> {out_ts}")
        if not redacted and _raw_pixels(src, pad=True) != _raw_pixels(out):
            changed.append("Pixel Data bytes differ")
    assert not changed, f"{name}: " + "; ".join(changed)


# --- 6. determinism and keys ------------------------------------------------------------------------------------


def test_running_twice_gives_the_same_bytes(research: Run) -> None:
    again, _ = _deidentifier(TEST_KEY)
    differ = [
        case.name
        for case in research.cases.values()
        if again.deidentify_bytes(case.source, case.name) != case.output
        or research.deidentifier.deidentify_bytes(case.source, case.name) != case.output
    ]
    assert not differ, differ


def test_another_key_gives_other_pseudonyms_and_uids(research: Run) -> None:
    from veil.core._core import peek

    other, _ = _deidentifier(OTHER_KEY)
    same = []
    compared_ids = 0
    for case in research.cases.values():
        mine = case.peek_output
        theirs = peek(other.deidentify_bytes(case.source, case.name), case.name)
        if case.patient_id:
            compared_ids += 1
            if theirs["patient_id"] == mine["patient_id"]:
                same.append(f"{case.name}: PatientID {mine['patient_id']!r}")
        for key in ("sop_instance_uid", "study_instance_uid", "series_instance_uid"):
            if mine[key] and not mine[key].startswith(STANDARD_UID_PREFIX) and theirs[key] == mine[key]:
                same.append(f"{case.name}: {key} {mine[key]!r}")
    assert not same, "\n".join(same)
    assert compared_ids > 250
