"""Table E.1-1 against the compiled recipes: for every attribute row (public, non-repeating) the Plan rule of
``ps3.15-basic``, ``research`` and ``hipaa-safe-harbor`` is the table's action for that recipe's options, as the
fail-closed resolution of compound codes says (recipes/README.md); then the native core, run on a file holding
every attribute at top level and inside a sequence item, writes what that rule means.

The expected actions are computed here from the table, independently of ``scripts/gen_recipes.py``.
"""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import pydicom
import pytest
from plans import SHIFT_DAYS, keyed_id, keyed_uid
from pydicom.dataelem import RawDataElement

from veil.core.dictionary import dictionary_entry
from veil.core.plan import (
    DUMMY_VALUES,
    STANDARD_UID_PREFIX,
    Action,
    Plan,
    Rule,
    clamp_age_value,
    shift_date_value,
)
from veil.recipes import compile_recipe, load_recipe
from veil.recipes.freetext import CLEANABLE_VRS, clean_element

A = Action
STANDARD = Path(__file__).resolve().parents[3] / "shared" / "standard"
TABLE = STANDARD / "ps3.15_2026d_table_E.1-1.json"
DATE_COLUMNS = {"retain_longitudinal_full_dates", "retain_longitudinal_modified_dates"}

pytestmark = pytest.mark.skipif(not TABLE.is_file(), reason=f"Table E.1-1 not found at {TABLE}")

# Each recipe: the option columns it applies (in order) and its own rules by tag, as written in its YAML.
RECIPES = {
    "ps3.15-basic": ([], {}),
    "research": (
        [
            "retain_longitudinal_modified_dates",
            "retain_patient_characteristics",
            "retain_safe_private",
            "clean_descriptors",
            "clean_structured_content",
            "clean_graphics",
        ],
        {
            0x00100020: A.PSEUDO,  # PatientID
            0x00101000: A.PSEUDO,  # OtherPatientIDs
            0x00080050: A.PSEUDO,  # AccessionNumber
            0x00200010: A.PSEUDO,  # StudyID
            0x00380010: A.PSEUDO,  # AdmissionID
            0x00401001: A.PSEUDO,  # RequestedProcedureID
            0x00400009: A.PSEUDO,  # ScheduledProcedureStepID
            0x00400253: A.PSEUDO,  # PerformedProcedureStepID
            0x00402016: A.PSEUDO,  # PlacerOrderNumberImagingServiceRequest
            0x00402017: A.PSEUDO,  # FillerOrderNumberImagingServiceRequest
            0x00101010: A.AGE,  # PatientAge
            0x0072005F: A.AGE,  # SelectorASValue
            0x00102180: A.REMOVE,  # Occupation: removed, not cleaned (a quasi-identifier; since 1.3)
            # Basic empties these Type 3 references (an empty sequence is invalid); research walks them with
            # the UIDs remapped, hipaa removes them.
            0x00081110: A.RECURSE,  # ReferencedStudySequence
            0x00081111: A.RECURSE,  # ReferencedPerformedProcedureStepSequence
        },
    ),
    "hipaa-safe-harbor": (
        ["retain_patient_characteristics", "retain_longitudinal_modified_dates", "clean_descriptors"],
        {
            0x00101010: A.AGE,  # PatientAge
            0x0072005F: A.AGE,  # SelectorASValue
            0x00102180: A.REMOVE,  # Occupation: removed, not cleaned (a quasi-identifier; since 1.3)
            0x30080105: A.REMOVE,  # SourceSerialNumber
            0x0018700A: A.REMOVE,  # DetectorID
            0x3010002D: A.REMOVE,  # DeviceLabel
            0x00081110: A.REMOVE,  # ReferencedStudySequence
            0x00081111: A.REMOVE,  # ReferencedPerformedProcedureStepSequence
        },
    ),
}


def table_rows() -> list[tuple[int, str, dict]]:
    """(tag, first-choice VR, row) for every public, non-repeating attribute row outside group 0002."""
    rows = json.loads(TABLE.read_text(encoding="utf-8"))["rows"]
    out = []
    for row in rows:
        text = row["tag"]
        if "x" in text.lower() or "gggg" in text or text.startswith("(0002,"):
            continue
        tag = int(text[1:5] + text[6:10], 16)
        entry = dictionary_entry(tag)
        assert entry is not None, f"{text} {row['name']}: VR unknown to the dictionary and its supplement"
        out.append((tag, entry[0].split(" or ")[0], row))
    return out


def basic_code_action(code: str, vr: str) -> Action:
    """Table E.1-1a, fail closed for the IOD-dependent codes."""
    if code == "X":
        return A.REMOVE
    if code == "Z":
        return A.EMPTY
    if code == "U":
        return A.UID
    if code in ("D", "X/D", "X/Z/D", "Z/D"):
        return A.UID if vr == "UI" else A.EMPTY if vr == "SQ" else A.DUMMY
    if code == "X/Z":
        return A.EMPTY
    if code == "X/Z/U*":
        return A.UID if vr == "UI" else A.RECURSE if vr == "SQ" else A.EMPTY
    raise AssertionError(code)


def option_code_action(column: str, code: str, vr: str, basic: Action) -> Action:
    if code == "K":
        return A.RECURSE if vr == "SQ" else A.KEEP
    assert code == "C"
    if column in DATE_COLUMNS:
        return {"DA": A.SHIFT, "DT": A.SHIFT, "TM": A.KEEP}.get(vr, basic)
    if vr == "SQ":
        return A.RECURSE
    return A.CALL if vr in CLEANABLE_VRS else basic


def expected_action(recipe: str, tag: int, vr: str, row: dict) -> Action:
    columns, own = RECIPES[recipe]
    if tag in own:
        return own[tag]
    basic = basic_code_action(row["basic_profile"], vr)
    action = basic
    for column in columns:
        code = row["options"].get(column)
        if code:
            action = option_code_action(column, code, vr, basic)
    return action


@pytest.fixture(scope="module")
def rows() -> list[tuple[int, str, dict]]:
    return table_rows()


@pytest.fixture(scope="module")
def compiled_plans() -> dict[str, Plan]:
    return {name: compile_recipe(load_recipe(name)).plan for name in RECIPES}


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_each_table_row_compiles_to_the_tables_action(recipe: str, rows, compiled_plans) -> None:
    plan = compiled_plans[recipe]
    wrong = []
    for tag, vr, row in rows:
        want = expected_action(recipe, tag, vr, row)
        got = plan.rule_for_public(tag, vr).action
        if got != want:
            wrong.append(
                f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {row['name']} {vr}: {got.name}, want {want.name}"
            )
    assert len(rows) > 600
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("recipe", list(RECIPES))
def test_repeating_groups_private_attributes_and_unnamed_elements(recipe: str, compiled_plans) -> None:
    plan = compiled_plans[recipe]
    graphics = recipe == "research"
    assert plan.rule_for_public(0x60023000, "OW").action == A.REMOVE  # Overlay Data: X (clean-graphics: C)
    assert plan.rule_for_public(0x60024000, "LT").action == (
        A.CALL if graphics else A.REMOVE
    )  # Overlay Comments
    assert plan.rule_for_public(0x60020010, "US").action == A.REMOVE  # the rest of the overlay plane
    assert plan.rule_for_public(0x50000005, "US").action == A.REMOVE  # curve data (50xx,xxxx)
    assert plan.default_private == A.REMOVE  # "(gggg,eeee) where gggg is odd": X
    assert plan.rule_for_public(0x00540016, "SQ").action == A.RECURSE  # a sequence the table does not name
    assert (
        plan.rule_for_public(0x00080090, "PN").action == A.EMPTY
    )  # ReferringPhysicianName is in the table...
    assert plan.rule_for_public(0x00142006, "PN").action == A.REMOVE  # ...EvaluatorName is not: vr PN
    assert plan.rule_for_public(0x00280010, "US").action == A.KEEP  # Rows
    safe = plan.rule_for_private(0x7053, "Philips PET Private Group", 0x00).action
    assert safe == (A.KEEP if recipe == "research" else A.REMOVE)


# --- the native core on a file holding every table attribute ---------------------------------------------

CONTAINER = 0x00540016  # RadiopharmaceuticalInformationSequence: not in Table E.1-1, walked by default
INNER = 0x00080100  # CodeValue, kept: marks a walked item
SKIP_GROUPS = {0x0000, 0xFFFA, 0xFFFC}  # command elements, signatures and trailing padding: not in data sets
LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT", "SV", "UV"}
TEXT = {
    "AE": b"STATION1",
    "AS": b"095Y",
    "CS": b"VALUE 12",
    "DA": b"20200131",
    "DS": b"1.5",
    "DT": b"20200131123000",
    "IS": b"7",
    "LO": b"Dr Smith 12345 chest",
    "LT": b"Dr Smith 12345 chest",
    "PN": b"Doe^John",
    "SH": b"Dr Smith 1234",
    "ST": b"Dr Smith 12345 chest",
    "TM": b"123000",
    "UC": b"Dr Smith 12345 chest",
    "UI": b"1.2.826.0.1.3680043.2.1125.1",
    "UR": b"http://example.org/x",
    "UT": b"Dr Smith 12345 chest",
}
BINARY_SIZE = {"AT": 4, "FL": 4, "FD": 8, "SL": 4, "SS": 2, "SV": 8, "UL": 4, "US": 2, "UV": 8}


def value_for(vr: str) -> bytes:
    if vr in TEXT:
        value = TEXT[vr]
        return value + (b"\x00" if vr == "UI" else b" ") * (len(value) & 1)
    if vr in BINARY_SIZE:
        return bytes(range(1, BINARY_SIZE[vr] + 1))
    return b"\x01\x02\x03\x04\x05\x06\x07\x08"  # OB OW OF OD OL OV UN


def element(tag: int, vr: str, value: bytes) -> bytes:
    head = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr.encode()
    if vr in LONG_VRS:
        return head + struct.pack("<HI", 0, len(value)) + value
    return head + struct.pack("<H", len(value)) + value


def item(body: bytes) -> bytes:
    return struct.pack("<HHI", 0xFFFE, 0xE000, len(body)) + body


def data_set(rows, depth: int) -> bytes:
    elems: list[tuple[int, bytes]] = []
    for tag, vr, _ in rows:
        if vr == "SQ":
            value = item(element(INNER, "SH", b"CODE01")) if depth < 2 else b""
        else:
            value = value_for(vr)
        elems.append((tag, element(tag, vr, value)))
    if depth == 0:
        elems.append((0x00080016, element(0x00080016, "UI", b"1.2.840.10008.5.1.4.1.1.7\x00")))
        elems.append((CONTAINER, element(CONTAINER, "SQ", item(data_set(rows, depth + 1)))))
    return b"".join(e for _, e in sorted(elems))


def dicom_file(rows) -> bytes:
    meta_elems = [
        element(0x00020001, "OB", b"\x00\x01"),
        element(0x00020002, "UI", b"1.2.840.10008.5.1.4.1.1.7\x00"),
        element(0x00020003, "UI", value_for("UI")),
        element(0x00020010, "UI", b"1.2.840.10008.1.2.1\x00"),
    ]
    body = b"".join(meta_elems)
    meta = element(0x00020000, "UL", struct.pack("<I", len(body))) + body
    return b"\x00" * 128 + b"DICM" + meta + data_set(rows, 0)


def stripped(value: bytes) -> bytes:
    return value.rstrip(b" \x00")


def check(rule: Rule, tag: int, vr: str, original: bytes, elem) -> str | None:
    """Why ``elem`` (None when absent) is not what ``rule`` makes of ``original``; None when it is."""
    action = rule.action
    if vr == "SQ":
        items = None if elem is None else len(elem)
        want = {A.REMOVE: None, A.KEEP: 1, A.RECURSE: 1}.get(action, 0)
        return None if items == want else f"{items} items, want {want}"
    if action == A.REMOVE or (action == A.RECURSE and vr != "SQ"):
        return None if elem is None else "present, want removed"
    if elem is None:
        if action == A.CALL and clean_element(tag, vr, original) is None:
            return None
        return "removed"
    if isinstance(elem, RawDataElement) or elem.value in (None, b"", ""):
        got = bytes(elem.value or b"")
    else:
        return f"not raw: {elem!r}"
    text = stripped(original).decode("ascii")
    if action == A.KEEP:
        want = original
    elif action == A.EMPTY:
        want = b""
    elif action == A.DUMMY:
        dummy = DUMMY_VALUES[vr]
        want = dummy.encode() if isinstance(dummy, str) else dummy
    elif action == A.REPLACE:
        want = rule.value.encode() if isinstance(rule.value, str) else rule.value
    elif action == A.UID:
        want = b"\\".join(
            c if c.startswith(STANDARD_UID_PREFIX.encode()) else keyed_uid(c)
            for c in stripped(original).split(b"\\")
        )
    elif action == A.PSEUDO:
        want = keyed_id(stripped(original))
    elif action == A.SHIFT:
        shifted = shift_date_value(text, vr, SHIFT_DAYS) if vr in ("DA", "DT") else None
        want = b"" if shifted is None else shifted.encode()
    elif action == A.AGE:
        want = (clamp_age_value(text, 90) or "").encode()
    elif action == A.CALL:
        want = clean_element(tag, vr, original) or b""
    else:
        return f"unexpected action {action.name}"
    if action == A.KEEP:
        return None if got == want else f"{got!r}, want {want!r}"
    return None if stripped(got) == stripped(want) else f"{got!r}, want {want!r}"


@pytest.mark.parametrize("recipe", ["ps3.15-basic", "research"])
def test_core_output_follows_the_recipe_at_top_level_and_in_a_sequence(
    recipe: str, rows, compiled_plans
) -> None:
    from veil.core import _core as core

    plan = compiled_plans[recipe]
    rows = [(tag, vr, row) for tag, vr, row in rows if tag >> 16 not in SKIP_GROUPS]
    assert CONTAINER not in {tag for tag, _, _ in rows}
    data = dicom_file(rows)
    result = core.Rewriter(plan, keyed_uid, keyed_id).rewrite(data, SHIFT_DAYS, f"<{recipe}>")
    out = pydicom.dcmread(io.BytesIO(result.tobytes()))
    container = out[CONTAINER].value
    assert len(container) == 1
    wrong = []
    for where, ds in (("top", out), ("item", container[0])):
        for tag, vr, row in rows:
            rule = plan.rule_for_public(tag, vr)
            elem = (ds[tag].value if tag in ds else None) if vr == "SQ" else ds.get_item(tag)
            problem = check(rule, tag, vr, value_for(vr) if vr != "SQ" else b"", elem)
            if problem:
                wrong.append(
                    f"{where} ({tag >> 16:04X},{tag & 0xFFFF:04X}) {row['name']} {vr} {rule.action.name}: "
                    f"{problem}"
                )
    assert not wrong, "\n".join(wrong[:40])
    # The File Meta names the new SOP Instance UID (PS3.10 7.1).
    assert (
        out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID != stripped(value_for("UI")).decode()
    )
