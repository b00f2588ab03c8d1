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

from veil.cli import main
from veil.keys import load_key
from veil.recipe import compile_recipe
from veil.synth import write_archive
from veil.verify import verify

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
