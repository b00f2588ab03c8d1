"""``hipaa-safe-harbor`` end to end: `veil verify` finds no identifier of the inputs in its outputs, and free
text the Basic Profile keeps inside walked sequences (a TEXT content item, step comments, an issuer's name)
is cleaned at every depth (in ``research`` as well). The corpus pass of the same recipe is in ``test_research_corpus.py``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from veil.cli.main import main
from veil.core.identity import IDENTITY_TAGS
from veil.core.plan import Action
from veil.keys import load_key
from veil.recipes import compile_recipe
from veil.synth import write_archive
from veil.verification import verify

HIPAA = compile_recipe("hipaa-safe-harbor")
REL = "p0001/s01/se01/i0001.dcm"


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hipaa")
    src, key = root / "in", root / "key"
    write_archive(src, patients=5, series_per_study=2, instances_per_series=2)
    assert main(["keygen", str(key)]) == 0
    return {"root": root, "src": src, "key": key}


def deidentify(src: Path, dst: Path, key: Path, recipe: str = "hipaa-safe-harbor") -> None:
    assert main(["deidentify", str(src), str(dst), "--recipe", recipe, "--key", str(key)]) == 0


def test_verify_finds_no_leak_in_the_hipaa_output_of_a_synth_archive(archive) -> None:
    """The synth archive holds "Patient FAMILY^GIVEN weighs N kg" as a TEXT content item of a Protocol
    Context Sequence inside the Request Attributes Sequence, which clean-descriptors walks."""
    dst = archive["root"] / "out"
    deidentify(archive["src"], dst, archive["key"])
    source = pydicom.dcmread(archive["src"] / REL)
    context = source.RequestAttributesSequence[0].ScheduledProtocolCodeSequence[0].ProtocolContextSequence[0]
    family = str(source.PatientName).split("^")[0]
    assert family in context.TextValue  # the input does hold a name there

    report = verify(archive["src"], dst, recipe=HIPAA, key=load_key(archive["key"]))
    assert [(f.file, f.path, f.kind) for f in report.errors if f.category == "leak"] == []
    assert report.passed, [(f.category, f.path, f.detail) for f in report.errors]
    output = pydicom.dcmread(dst / REL)
    text = output.RequestAttributesSequence[0].ScheduledProtocolCodeSequence[0].ProtocolContextSequence[0]
    assert family not in text.TextValue and "weighs" in text.TextValue  # cleaned, not emptied


def _text_item(text: str) -> Dataset:
    item = Dataset()
    item.ValueType = "TEXT"
    name = Dataset()
    name.CodeValue, name.CodingSchemeDesignator, name.CodeMeaning = "121106", "DCM", "Comment"
    item.ConceptNameCodeSequence = Sequence([name])
    item.TextValue = text
    return item


@pytest.mark.parametrize("recipe", ["hipaa-safe-harbor", "research"])
def test_free_text_in_sequences_basic_walks_is_cleaned_at_every_depth(archive, tmp_path, recipe: str) -> None:
    """Sequences Table E.1-1 does not name are walked by Basic and their unlisted elements kept: under
    Safe Harbor (and research) every free-text VR there is cleaned, and dates in another calendar and
    contact names go."""
    src = tmp_path / "in"
    shutil.copytree(archive["src"], src)
    ds = pydicom.dcmread(src / REL)
    name = str(ds.PatientName)
    family, given = name.split("^")[:2]
    mrn = ds.PatientID
    ds.PatientBirthDateInAlternativeCalendar = "5713-07-14"
    ds.PatientDeathDateInAlternativeCalendar = "5783-01-02"
    protocol = ds.PerformedProtocolCodeSequence[0]  # not in Table E.1-1: walked by Basic
    protocol.ProtocolContextSequence = Sequence([_text_item(f"Pt {name} (MRN {mrn}) brought by {given}")])
    step = Dataset()  # Scheduled Procedure Step Sequence: not in Table E.1-1 either
    step.CommentsOnTheScheduledProcedureStep = f"call {family}, {given} at home"
    step.ContactDisplayName = f"{given} {family}"
    issuer = Dataset()
    issuer.LocalNamespaceEntityID = f"{family} FAMILY PRACTICE"
    ds.RequestAttributesSequence[0].IssuerOfAccessionNumberSequence = Sequence([issuer])  # walked too
    ds.ScheduledProcedureStepSequence = Sequence([step])
    ds.save_as(src / REL)

    dst = tmp_path / "out"
    deidentify(src, dst, archive["key"], recipe)
    report = verify(src, dst, recipe=compile_recipe(recipe), key=load_key(archive["key"]))
    assert [(f.file, f.path, f.kind) for f in report.errors if f.category == "leak"] == []

    output = pydicom.dcmread(dst / REL)
    assert "PatientBirthDateInAlternativeCalendar" not in output
    assert "PatientDeathDateInAlternativeCalendar" not in output
    text = output.PerformedProtocolCodeSequence[0].ProtocolContextSequence[0].TextValue
    assert family not in text and given not in text and mrn not in text and "brought" in text
    step = output.ScheduledProcedureStepSequence[0]
    assert "ContactDisplayName" not in step
    assert (
        family not in step.CommentsOnTheScheduledProcedureStep
        and "home" in step.CommentsOnTheScheduledProcedureStep
    )
    issuer = output.RequestAttributesSequence[0].IssuerOfAccessionNumberSequence[0]
    assert family not in issuer.LocalNamespaceEntityID and "PRACTICE" in issuer.LocalNamespaceEntityID
    raw = (dst / REL).read_bytes()
    assert family.encode() not in raw and given.encode() not in raw and mrn.encode() not in raw


# Coded and technical values the recipes keep by name (tests/test_lo_sh_review.py has the whole review): each
# is planted with digits, which the cleaner would drop.
KEPT_EXACT = (
    "CodeValue", "CodingSchemeDesignator", "CodeMeaning", "CodingSchemeVersion", "Manufacturer",
    "ManufacturerModelName", "SoftwareVersions", "SequenceName", "ConvolutionKernel",
    "PrivateCreatorReference", "StackID", "WindowCenterWidthExplanation",
)  # fmt: skip
# Elements where a person's name or number turns up in practice: cleaned, or removed where nothing is left.
CLEANED_HERE = ("SegmentAlgorithmName", "SegmentLabel", "ContentDescription", "AlgorithmSource", "BeamName")
REMOVED_HERE = ("ComponentWelderIDs", "BreedRegistrationNumber", "PrinterName", "ProductLotIdentifier")
# Radiopharmaceutical Information Sequence: Table E.1-1 does not name it, Basic walks it.
CONTAINER = 0x00540016


def _unlisted_lo_sh() -> list[tuple[int, str]]:
    """(tag, VR) of the dictionary's public LO and SH elements that Table E.1-1 does not list (no rule of the
    Basic Profile names them), outside the command and File Meta groups."""
    basic = compile_recipe("ps3.15-basic").plan
    return [
        (tag, entry[0])
        for tag, entry in pydicom.datadict.DicomDictionary.items()
        if entry[0] in ("LO", "SH")
        and tag >> 16 not in (0x0000, 0x0002)
        and tag not in basic.tags
        and not any(tag & mask == value for mask, value, _ in basic.masks)
    ]


@pytest.mark.parametrize("recipe", ["hipaa-safe-harbor", "research"])
def test_names_and_ids_in_lo_and_sh_elements_the_table_does_not_list_are_gone(
    archive, tmp_path, recipe: str
) -> None:
    """Every LO and SH element Table E.1-1 does not list is planted at top level and in an item of a walked
    sequence: codes ("99VEIL-12.3_A") where the recipe keeps the element, and must come out byte for byte; the
    patient's name and number everywhere else ("Dr FAMILY MRN liver"; SH: the number), and must come out of
    none of them. The elements of KEPT_EXACT, CLEANED_HERE and REMOVED_HERE are planted so whatever the recipe
    says, so a recipe that kept everything (Basic) or cleaned every LO and SH fails."""
    src = tmp_path / "in" / REL
    src.parent.mkdir(parents=True)
    ds = pydicom.dcmread(archive["src"] / REL)
    family, mrn = str(ds.PatientName).split("^")[0], str(ds.PatientID)
    plan = compile_recipe(recipe).plan
    elements = _unlisted_lo_sh()
    kept_exact = {pydicom.datadict.tag_for_keyword(k) for k in KEPT_EXACT}
    identifying = {pydicom.datadict.tag_for_keyword(k) for k in CLEANED_HERE + REMOVED_HERE}
    code = "99VEIL-12.3_A"
    planted = {}
    for tag, vr in elements:
        keep = tag in kept_exact or (
            tag not in identifying and plan.rule_for_public(tag, vr).action == Action.KEEP
        )
        # An identity attribute (Device ID, the retired order numbers: veil.core.identity) gets the name and
        # number alone: its words are the file's identity words, which the cleaner removes everywhere.
        identity = tag in IDENTITY_TAGS
        planted[tag] = code if keep else mrn if vr == "SH" or identity else f"Dr {family} {mrn} liver"
    item = Dataset()
    for target in (ds, item):
        for tag, vr in elements:
            target.add_new(tag, vr, planted[tag])
    ds.add_new(CONTAINER, "SQ", Sequence([item]))
    ds.save_as(src)

    dst = tmp_path / "out"
    deidentify(tmp_path / "in", dst, archive["key"], recipe)
    raw = (dst / REL).read_bytes()
    assert family.encode() not in raw and mrn.encode() not in raw

    output = pydicom.dcmread(dst / REL)
    wrong = []
    for where, target in (("top", output), ("item", output[CONTAINER].value[0])):
        for tag, vr in elements:
            keyword = pydicom.datadict.keyword_for_tag(tag)
            elem = target.get_item(tag)
            value = None if elem is None else bytes(elem.value or b"")
            if planted[tag] == code:
                ok = value == (code + " ").encode()  # byte for byte (padded to even length as written)
            elif keyword in REMOVED_HERE:
                ok = value is None
            elif keyword in CLEANED_HERE:
                ok = value is not None and b"liver" in value  # cleaned, not emptied
            else:
                ok = True  # whatever the recipe does, the name and number are gone: the raw check above
            if not ok:
                wrong.append(f"{where} {keyword} {plan.rule_for_public(tag, vr).action.name}: {value!r}")
    assert not wrong, "\n".join(wrong)
