"""The native rewriter against the pydicom oracle, on every corpus file and every pydicom test file.

For each file and each Plan of ``plans.py`` either both reject the file (the rewriter raises MalformedDicom, the
reference cannot read it) or the rewriter's output, read back by pydicom without ``force``, equals the reference
element by element: tag, VR, value bytes, sequence structure; Pixel Data byte-identical; File Meta rebuilt.

``EXPECTED_REJECTED`` lists the files both sides reject and why, so that a change in what is accepted (either
way) fails here and is looked at, rather than slipping by.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import pydicom
import pytest
from corpus import file_id
from plans import PLANS, SHIFT_DAYS, keyed_id, keyed_uid
from reference import (
    EXPLICIT_BE,
    PIXEL_DATA,
    Parsed,
    Reject,
    compare,
    expected_meta,
    find,
    read_file,
    reference_view,
)

from veil.core.plan import Plan
from veil.errors import MalformedDicom

# file id -> why it is rejected. Both the rewriter and the reference must reject these, under every Plan.
_TRUNCATED = "truncated: a value length runs past the end of the file"
EXPECTED_REJECTED: dict[str, str] = {
    "corpus/dcm4che/dcm4che-test-data/src/main/resources/3gb-bulk-data-truncated": _TRUNCATED
    + " (Pixel Data)",
    "corpus/dcm4che/dcm4che-test-data/src/main/resources/no_preamble_dicm_in_data": (
        "bare explicit VR data set whose bytes 128-131 happen to be 'DICM': read as preamble + DICM, then garbage"
    ),
    "corpus/fo-dicom/FO-DICOM.Tests/Test Data/FreezePattern.dcm": "an Item tag (FFFE,E000) inside a data set",
    "corpus/fo-dicom/FO-DICOM.Tests/Test Data/GH364.dcm": "an Item tag (FFFE,E000) inside a data set",
    "corpus/fo-dicom/FO-DICOM.Tests/Test Data/GH1339.dcm": "encapsulated Pixel Data without a sequence delimiter",
    "corpus/pydicom-data/emri_small_jpeg_2k_lossless_too_short.dcm": (
        "encapsulated Pixel Data without a sequence delimiter"
    ),
    "corpus/fo-dicom/FO-DICOM.Tests/Test Data/GH179A.dcm": "explicit VR '  ' (two spaces) in (0028,0120)",
    "corpus/fo-dicom/FO-DICOM.Tests/Test Data/GH179B.dcm": "explicit VR '  ' (two spaces) in (0028,0120)",
    "corpus/fo-dicom/FO-DICOM.Tests/Test Data/GH626.dcm": _TRUNCATED + " ((0000,0000) in the data set)",
    "pydicom/MR_truncated.dcm": _TRUNCATED + " (Pixel Data)",
    "pydicom/no_meta.dcm": "a stray byte before a bare data set: no valid first element",
    "pydicom/rtplan_truncated.dcm": _TRUNCATED + " ((300A,00B0))",
    # The reference rejects these; the core accepted them in its later builds (reported as core bugs):
    "pydicom/SC_rgb_jpeg.dcm": "File Meta says explicit VR (JPEG Baseline), the data set is implicit VR",
}
# (file id, plan name) -> why, for files only some Plans reject: a bad sequence is only read when RECURSE
# walks it (KEEP copies a sequence unexamined, REMOVE drops it).
_A170 = "(0040,A170) is SQ in the dictionary but holds CS text in this implicit VR file: not items"
_NOOFFSET = "the last item of (0004,1220) runs past the end of its defined-length sequence"
EXPECTED_REJECTED_BY_PLAN: dict[tuple[str, str], str] = {
    **{
        ("corpus/dcm4che/dcm4che-test-data/src/main/resources/Tag-0040-A170-VR-CS.dcm", name): _A170
        for name in ("keep_all", "basic", "private_masks")
    },
    **{
        ("pydicom/dicomdirtests/DICOMDIR-nooffset", name): _NOOFFSET
        for name in ("keep_all", "basic", "private_masks")
    },
}

META_TAGS = {0x00020000, 0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013}


@pytest.fixture(scope="module")
def rewriters(core):
    return {name: core.Rewriter(plan, keyed_uid, keyed_id) for name, plan in PLANS.items()}


def _strip(value: bytes) -> bytes:
    return value.rstrip(b"\x00 ")


def _check_meta(out: Parsed, parsed: Parsed, elems, result, problems: list[str], where: str) -> None:
    meta = out.meta_raw
    extra = sorted(set(meta) - META_TAGS)
    if extra:
        problems.append(f"{where}: File Meta keeps input elements {[f'{t:08X}' for t in extra]}")
    for tag, value in expected_meta(parsed, elems).items():
        got = meta.get(tag)
        if got is None:
            problems.append(f"{where}: File Meta ({tag >> 16:04X},{tag & 0xFFFF:04X}) missing")
        elif _strip(got) != _strip(value) and tag != 0x00020001 or tag == 0x00020001 and got != value:
            problems.append(
                f"{where}: File Meta ({tag >> 16:04X},{tag & 0xFFFF:04X}) is {got!r}, expected {value!r}"
            )
    if not _strip(meta.get(0x00020012, b"")):
        problems.append(f"{where}: File Meta ImplementationClassUID missing")
    if not meta.get(0x00020013, b"").startswith(b"VEIL"):
        problems.append(
            f"{where}: ImplementationVersionName {meta.get(0x00020013)!r} does not start with VEIL"
        )
    sop_instance = find(out.elems, 0x00080018)
    if sop_instance is not None and isinstance(sop_instance.value, bytes) and _strip(sop_instance.value):
        if _strip(meta.get(0x00020003, b"")) != _strip(sop_instance.value):
            problems.append(f"{where}: MediaStorageSOPInstanceUID != SOPInstanceUID")
        if result.sop_instance_uid != _strip(sop_instance.value).decode("latin-1"):
            problems.append(
                f"{where}: result.sop_instance_uid {result.sop_instance_uid!r} != output SOPInstanceUID"
            )
    else:  # no (or an empty) SOP Instance UID in the output: the File Meta still names the instance (Type 1)
        named = _strip(meta.get(0x00020003, b"")).decode("latin-1")
        if not named or result.sop_instance_uid != named:
            problems.append(
                f"{where}: MediaStorageSOPInstanceUID {named!r} (result {result.sop_instance_uid!r})"
            )
    # The result names the output's own top-level Modality, Study and Series (the audit takes them from it).
    for tag, name in ((0x00080060, "modality"), (0x0020000D, "study_instance_uid"),
                      (0x0020000E, "series_instance_uid")):
        element = find(out.elems, tag)
        value = element.value if element is not None and isinstance(element.value, bytes) else b""
        if getattr(result, name) != _strip(value).decode("latin-1"):
            problems.append(f"{where}: result.{name} {getattr(result, name)!r} != output {_strip(value)!r}")
    if 0x00020000 in meta:
        # PS3.10 7.1: the group length counts every meta element after it; OB uses the 12-byte header.
        body = sum(
            (12 if tag == 0x00020001 else 8) + len(value) for tag, value in meta.items() if tag != 0x00020000
        )
        if int.from_bytes(meta[0x00020000][:4], "little") != body:
            problems.append(f"{where}: FileMetaInformationGroupLength is wrong")


def _check_pixels(data: bytes, parsed: Parsed, out: Parsed, result, problems: list[str], where: str) -> None:
    parts = result.header + (bytes(result.pixels) if result.pixels is not None else b"") + result.trailer
    if parts != result.tobytes():
        problems.append(f"{where}: tobytes() != header + pixels + trailer")
    source = find(parsed.elems, PIXEL_DATA)
    kept = find(out.elems, PIXEL_DATA)
    if source is None:  # Float / Double Float Pixel Data are the pixel slice when there is no Pixel Data
        source = find(parsed.elems, 0x7FE00008) or find(parsed.elems, 0x7FE00009)
        kept = source and find(out.elems, source.tag)
    if result.pixel_range is not None:
        start, stop = result.pixel_range
        if result.pixels is not None and bytes(result.pixels) != data[start:stop]:
            problems.append(f"{where}: result.pixels is not data[{start}:{stop}]")
        if source is None:
            problems.append(f"{where}: pixel_range {result.pixel_range} but the input has no Pixel Data")
    if source is not None and kept is not None and source.value != kept.value:
        # byte-identical, but for the pad byte plan.py adds to a kept value of odd length
        if not (len(source.value) % 2 and kept.value == source.value + b"\x00"):
            problems.append(f"{where}: Pixel Data is not byte-identical")


def _expected_rejection(fid: str, name: str) -> str | None:
    return EXPECTED_REJECTED.get(fid) or EXPECTED_REJECTED_BY_PLAN.get((fid, name))


def check_rewrite(
    data: bytes,
    where: str,
    parsed: Parsed | None,
    reason: str | None,
    plan: Plan,
    rewriter,
    shift_days: int,
    rejection_expected: bool = False,
) -> list[str]:
    """One file under one Plan: the problems found (empty when the rewriter and the reference agree).

    ``parsed``/``reason``: the reference's reading of ``data`` (None and why when it cannot read it).
    ``rejection_expected``: both are meant to reject the file; accepting it then is reported too.
    """
    problems: list[str] = []
    expected = None
    if parsed is not None:
        try:
            _, expected, ctx = reference_view(parsed, plan, keyed_uid, keyed_id, shift_days)
        except Reject as exc:
            reason = exc.reason
    try:
        result = rewriter.rewrite(data, shift_days=shift_days, path=where)
    except MalformedDicom as exc:
        if expected is not None:
            return [f"{where}: rewriter rejects ({exc.reason} at {exc.offset}) a file the reference reads"]
        if not rejection_expected:
            return [
                f"{where}: both reject, not listed in EXPECTED_REJECTED: rewriter {exc.reason!r}; "
                f"reference {reason!r}"
            ]
        return []
    if expected is None:
        return [f"{where}: rewriter accepts a file the reference rejects ({reason})"]
    assert parsed is not None
    if rejection_expected:
        problems.append(f"{where}: listed in EXPECTED_REJECTED but accepted by both")
    # Only REMOVE is compared: the core counts every element an action was applied to, also where the value
    # came out the same (standard UIDs, empty values); the reference counts changed elements.
    removed = ctx.counts.get("REMOVE", 0)
    if result.counts.get("REMOVE", 0) != removed:
        problems.append(
            f"{where}: counts['REMOVE'] {result.counts.get('REMOVE')} != {removed} elements removed"
        )
    output = result.tobytes()
    if rewriter.rewrite(data, shift_days=shift_days, path=where).tobytes() != output:
        problems.append(f"{where}: a second rewrite gives different bytes (output must be a pure function)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            pydicom.dcmread(io.BytesIO(output))
        except OSError as exc:
            # pydicom reads the items of an undefined-length UN in a big endian data set as big endian; they
            # are implicit VR little endian (PS3.5 6.2.2), which read_file below handles.
            if parsed.transfer_syntax != EXPLICIT_BE:
                return problems + [f"{where}: pydicom cannot read the output without force: {exc!r}"]
        except Exception as exc:
            return problems + [f"{where}: pydicom cannot read the output without force: {exc!r}"]
    try:
        out = read_file(output)
    except Reject as exc:
        return problems + [f"{where}: the output is not well formed: {exc.reason}"]
    if not out.preamble:
        problems.append(f"{where}: output has no preamble/DICM")
    if result.transfer_syntax != parsed.transfer_syntax:
        problems.append(
            f"{where}: result.transfer_syntax {result.transfer_syntax} != {parsed.transfer_syntax}"
        )
    if out.transfer_syntax != parsed.transfer_syntax:
        problems.append(f"{where}: output transfer syntax {out.transfer_syntax} != {parsed.transfer_syntax}")
    _check_meta(out, parsed, expected, result, problems, where)
    _check_pixels(data, parsed, out, result, problems, where)
    for diff in compare(expected, out.elems):
        problems.append(f"{where}: {diff}")
    return problems


def test_rewriter_output_equals_reference(dicom_file: Path, rewriters, record_property) -> None:
    """Every Plan on one file: both reject, or the output equals the pydicom reference element by element."""
    fid = file_id(dicom_file)
    data = dicom_file.read_bytes()
    parsed: Parsed | None
    reason = None
    try:
        parsed = read_file(data)
    except Reject as exc:
        parsed, reason = None, exc.reason
        record_property("reference_rejects", reason)
    problems: list[str] = []
    for name, plan in PLANS.items():
        expected = _expected_rejection(fid, name) is not None
        problems += check_rewrite(
            data, f"{fid} [{name}]", parsed, reason, plan, rewriters[name], SHIFT_DAYS, expected
        )
    assert not problems, "\n".join(problems[:40])


@pytest.mark.corpus
def test_expected_rejections_are_listed_files() -> None:
    """Every entry of EXPECTED_REJECTED names a file that exists (a stale entry hides nothing)."""
    from corpus import all_dicom_files

    known = {file_id(p) for p in all_dicom_files()}
    if not any(name.startswith("corpus/") for name in known):
        pytest.skip("no corpus")
    listed = set(EXPECTED_REJECTED) | {fid for fid, _ in EXPECTED_REJECTED_BY_PLAN}
    assert sorted(listed - known) == []
    assert {name for _, name in EXPECTED_REJECTED_BY_PLAN} <= set(PLANS)


META_FALLBACK = {0x00080016: 0x00020002, 0x00080018: 0x00020003}
PEEK_KEYS = {
    "transfer_syntax": None,
    "patient_id": 0x00100020,
    "study_instance_uid": 0x0020000D,
    "series_instance_uid": 0x0020000E,
    "sop_instance_uid": 0x00080018,
    "sop_class_uid": 0x00080016,
    "modality": 0x00080060,
    "study_id": 0x00200010,
    "operators_name": 0x00081070,
    "performing_physician_name": 0x00081050,
    "other_patient_ids": 0x00101000,
    "body_part_examined": 0x00180015,
}


def test_peek_agrees_with_pydicom(dicom_file: Path, core) -> None:
    """peek() reports the original identifiers the reference reads (values stripped of padding)."""
    data = dicom_file.read_bytes()
    try:
        parsed = read_file(data)
    except Reject:
        pytest.skip("reference rejects the file")
    try:
        got = core.peek(data, path=file_id(dicom_file))
    except MalformedDicom as exc:
        pytest.fail(f"peek rejects a file the reference reads: {exc}")
    problems = []
    for key, tag in PEEK_KEYS.items():
        if key not in got:
            problems.append(f"peek() lacks {key}")
            continue
        if tag is None:
            want = parsed.transfer_syntax
        else:
            elem = find(parsed.elems, tag)
            raw = elem.value if elem is not None and isinstance(elem.value, bytes) else None
            want = raw.strip(b" \x00").decode("latin-1") if raw is not None else None
        value = got[key]
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str):
            value = value.strip(" \x00")
        allowed = {want or None}
        if want is None and tag in META_FALLBACK:  # absent from the data set: None or the File Meta's copy
            allowed.add(
                parsed.meta_raw.get(META_FALLBACK[tag], b"").strip(b" \x00").decode("latin-1") or None
            )
        if (value or None) not in allowed:
            problems.append(f"{key}: peek {value!r}, pydicom {want!r}")
    assert not problems, "; ".join(problems)
