"""`veil verify` agrees with the cleaner and judges coincidences (issue 13).

- Verify searches exactly the words of the one identity model (`veil.core.identity`): the words it searches
  for a file are that file's `FileIdentity.words` less placeholders, too-short words and what the recipe keeps.
- A match of the output's own patient's value that stands as a token (`_` separates tokens) is an error,
  vocabulary words included; a match of other patients' values is an error only when 5 characters or more, a
  whole word with `_` a word character, not a vocabulary word, not a word of the input set's device names and
  not inside a URL; everything else is a note, still listed.
- A finding names the element path and the kinds of identity value; never the value, not even masked.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from veil.core.identity import identity_from_dataset, identity_from_values
from veil.keys import generate_key_file
from veil.recipes import compile_recipe, load_recipe
from veil.verification import Finding, IdentifierSet, LeakScanner, verify, write_report
from veil.verification.identifiers import fold, mask_value, token_bounded, word_bounded
from veil.verification.leaks import FILE_NAME

RESEARCH = compile_recipe("research")
OWN, OTHER = 1, 2

PATIENT_NAME, INSTITUTION_NAME, STATION_NAME, PATIENT_ID = 0x00100010, 0x00080080, 0x00081010, 0x00100020
MANUFACTURER, MODEL, SOFTWARE = 0x00080070, 0x00081090, 0x00181020


def scanner(
    own: list[tuple[int, bytes]], other: list[tuple[int, bytes]] = (), known: frozenset[str] = frozenset()
) -> LeakScanner:
    """A scanner over two patients' identities (tag, value); ``known`` stands for the vocabulary."""
    identifiers = IdentifierSet()
    identifiers.add_identity(identity_from_values(own), OWN)
    if other:
        identifiers.add_identity(identity_from_values(other), OTHER)
    return LeakScanner(identifiers, known=lambda word: word.lower() in known)


def verdict(scan: LeakScanner, text: str, patient: int = OWN, **kw) -> str:
    """'error', 'note' or '' (no match) for one value of an output of ``patient``."""
    found = scan.judge_text(fold(text.encode("latin-1")), patient, **kw)
    return "" if found is None else ("error" if found[0] else "note")


# -- the boundaries --


def test_token_and_word_boundaries() -> None:
    s = "siemens_ris t2_tse_tra dr ris mrn17593133 ris6q"
    at = s.index
    assert token_bounded(s, at("ris"), at("ris") + 3)  # "_" separates tokens
    assert not word_bounded(s, at("ris"), at("ris") + 3)  # ... but is a word character
    assert token_bounded(s, at("tse"), at("tse") + 3) and not word_bounded(s, at("tse"), at("tse") + 3)
    i = s.index("ris", at("dr"))
    assert token_bounded(s, i, i + 3) and word_bounded(s, i, i + 3)
    i = at("17593133")
    assert token_bounded(s, i, i + 8) and not word_bounded(s, i, i + 8)  # an ID glued to a label
    i = at("ris6q")
    assert not token_bounded(s, i, i + 3)  # a short value inside an alphanumeric run (a pseudonym)


# -- the rules, one by one --


def test_own_patients_short_token_is_an_error() -> None:
    scan = scanner([(PATIENT_NAME, b"RIS^MAY")])
    assert verdict(scan, "SIEMENS_RIS") == "error"
    assert verdict(scan, "seen by May today") == "error"
    assert verdict(scan, "RIS6QZXW") == ""  # not a token: not even a match


def test_other_patients_short_token_is_a_note() -> None:
    scan = scanner([(PATIENT_NAME, b"OKAFOR^AMARA")], [(PATIENT_NAME, b"RIS^MAY")])
    assert verdict(scan, "seen by May today") == "note"
    assert verdict(scan, "SIEMENS RIS") == "note"
    assert verdict(scan, "seen by May today", patient=OTHER) == "error"


def test_underscore_is_a_word_character_for_other_patients_only() -> None:
    scan = scanner([(PATIENT_NAME, b"OKAFOR^AMARA")], [(PATIENT_NAME, b"TSEBALLO^PRIYA")])
    assert verdict(scan, "AX_TSEBALLO") == "note"
    assert verdict(scan, "AX TSEBALLO") == "error"
    assert verdict(scan, "AX_Okafor") == "error"  # the output's own patient: "_" separates tokens
    assert verdict(scan, "t2_tse_tra") == ""


def test_a_long_value_inside_a_longer_word_is_a_note() -> None:
    scan = scanner([(PATIENT_NAME, b"OKAFOR^AMARA")], [(PATIENT_NAME, b"SLICER^JOHN")])
    assert verdict(scan, "slicereditor 4.10") == "note"
    assert verdict(scan, "OkaforVille") == "note"  # own patient, but not a token of its own


def test_other_patients_vocabulary_word_is_a_note_the_own_patients_an_error() -> None:
    vocabulary = frozenset({"brown", "white"})
    scan = scanner([(PATIENT_NAME, b"OKAFOR^AMARA")], [(PATIENT_NAME, b"BROWN^JOHN")], vocabulary)
    assert verdict(scan, "BROWN STAIN") == "note"
    assert verdict(scan, "BROWN STAIN", patient=OTHER) == "error"  # a patient named BROWN


def test_a_token_of_the_input_sets_device_names_is_a_note() -> None:
    scan = scanner(
        [(PATIENT_NAME, b"OKAFOR^AMARA"), (MANUFACTURER, b"Philips"), (MODEL, b"Ingenia Elition")],
        [(PATIENT_NAME, b"INGENIA^MARY")],
    )
    assert verdict(scan, "Ingenia 3T") == "note"  # a word of the input set's device names


def test_a_long_other_patients_whole_word_outside_the_vocabulary_is_an_error() -> None:
    scan = scanner([(PATIENT_NAME, b"OKAFOR^AMARA")], [(PATIENT_NAME, b"HAVERFORD^JONATHAN")])
    assert verdict(scan, "CT CHEST HAVERFORD") == "error"
    assert verdict(scan, "haverford-smith") == "error"


def test_a_content_creators_name_inside_a_url_is_a_note() -> None:
    scan = scanner([(PATIENT_NAME, b"OKAFOR^AMARA")], [(0x00700084, b"Fedorov^Andriy")])
    assert verdict(scan, "https://github.com/fedorov/dcmqi") == "note"
    assert verdict(scan, "report by fedorov") == "error"
    own = scanner([(0x00700084, b"Fedorov^Andriy")])
    assert verdict(own, "https://github.com/fedorov/dcmqi") == "error"


def test_another_patients_number_inside_a_date_is_a_note() -> None:
    scan = scanner([(PATIENT_NAME, b"OKAFOR^AMARA")], [(0x00100030, b"19510213")])
    assert verdict(scan, "19510213", vr="DA") == "note"
    assert verdict(scan, "dob 19510213", vr="LO") == "error"
    assert verdict(scan, "p1/19510213.dcm", vr=FILE_NAME) == "note"  # files are numbered


def test_a_kept_attributes_whole_value_or_binary_data_is_a_note() -> None:
    scan = scanner([(PATIENT_NAME, b"WHITE^AMARA"), (INSTITUTION_NAME, b"XYZ")])
    assert verdict(scan, "WHITE", vr="CS", kept=True) == "note"  # an Ethnic Group the recipe keeps
    assert verdict(scan, "ASIAN\\WHITE", vr="CS", kept=True) == "note"
    assert verdict(scan, "\x00\x00mntrRGB XYZ \x07", vr="OB", kept=True) == "note"  # an ICC profile
    assert verdict(scan, "WHITE MATTER", vr="LO", kept=True) == "error"


def test_the_own_patients_vocabulary_word_is_a_note_only_in_an_attribute_the_recipe_keeps() -> None:
    scan = scanner([(INSTITUTION_NAME, b"Northwick Imaging Centre")], known=frozenset({"imaging"}))
    assert verdict(scan, "Imaging Measurement Report", vr="LO", kept=True) == "note"  # a code meaning
    assert verdict(scan, "Imaging Measurement Report", vr="LO") == "error"  # a cleaned description
    assert verdict(scan, "Northwick Measurement Report", vr="LO", kept=True) == "error"


# -- no value in a finding --


def test_a_finding_has_no_value_field() -> None:
    assert "value" not in {f.name for f in dataclasses.fields(Finding)}
    finding = Finding("leak", "a.dcm", "(0010,0010)", "PatientName", "name", "a value of its own patient")
    assert "value" not in finding.to_dict() and not hasattr(finding, "value")


def _dataset(name: str, patient_id: str, description: str) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = name, patient_id, "OT"
    ds.Manufacturer = "Slicer Editor"
    ds.StudyDescription = description
    return ds


def test_each_element_gives_one_finding_naming_path_and_kinds_never_the_value(tmp_path: Path) -> None:
    src, dst = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for n, (name, pid) in enumerate((("Haverford-Smith^Jonathan", "HX8812734"), ("Ris^May", "QQ5501923"))):
        _dataset(name, pid, "CT CHEST").save_as(src / f"{n}.dcm", enforce_file_format=True)
    shutil.copytree(src, dst)
    first = pydicom.dcmread(dst / "0.dcm")
    first.StudyDescription = "CT CHEST Haverford ris AX_Jonathan"  # own name twice, another's short name
    first.SeriesDescription = "slicereditor MAY"  # a software name, another's short name: notes
    first.save_as(dst / "0.dcm", enforce_file_format=True)
    key = generate_key_file(tmp_path / "key")
    report = verify(src, dst, recipe=RESEARCH, key=key, dciodvfy_sample=0)
    leaks = [f for f in report.findings if f.category == "leak" and f.file == "0.dcm"]
    by_path = {f.path: f for f in leaks}
    assert len(by_path) == len(leaks)  # one finding per element
    assert by_path["(0008,1030)"].severity == "error" and by_path["(0008,1030)"].kind == "name"
    assert by_path["(0008,103E)"].severity == "note"
    assert by_path["(0010,0010)"].severity == "error" and by_path["(0010,0020)"].kind == "patient ID"
    for path in write_report(report, tmp_path / "report.md") + write_report(report, tmp_path / "r.html"):
        text = path.read_text().lower()
        for value in ("haverford", "jonathan", "hx8812734", "qq5501923"):
            assert value not in text and mask_value(value) not in text
    data = json.loads((tmp_path / "report.json").read_text())
    assert all(set(f) == {"category", "severity", "file", "path", "keyword", "kind", "detail"}
               for f in data["findings"] + data["notes_findings"])  # fmt: skip


# -- verify and clean agree by construction --


def searched_words_agree(ds: Dataset, plan) -> None:
    identifiers = IdentifierSet()
    identifiers.add_dataset(ds, plan)
    identity = identity_from_dataset(ds)
    if identifiers.retained:
        return  # compared by test_words_the_recipe_keeps_are_not_searched
    expected = {w for w in identity.words if not identifiers.ignored_word(w)}
    assert identifiers.words == expected
    assert len(expected) <= len(identity.words)
    for word in expected:  # each one searched, as a token of its own
        assert fold(word) in identifiers.patterns
        scan = LeakScanner(identifiers)
        assert fold(word) in {k for k, _ in scan.search_text(" " + fold(word) + " ")}


def test_the_words_verify_searches_are_the_identity_models_on_pydicom_files(pydicom_files) -> None:
    checked = 0
    for path in pydicom_files:
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception:
            continue
        searched_words_agree(ds, RESEARCH.plan)
        checked += 1
    assert checked > 50


@pytest.mark.corpus
def test_the_words_verify_searches_are_the_identity_models_on_the_corpus(corpus_files) -> None:
    checked = 0
    for path in corpus_files:
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception:
            continue
        searched_words_agree(ds, RESEARCH.plan)
        checked += 1
    assert checked > 100


def test_placeholders_short_words_and_short_numbers_are_not_searched() -> None:
    identifiers = IdentifierSet()
    identity = identity_from_values(
        [(PATIENT_NAME, b"ANONYMOUS^Jo^Okafor-Li"), (0x00101040, b"12 Juniper Street, 555 014 2399")]
    )
    identifiers.add_identity(identity, OWN)
    assert identifiers.words == {b"okafor", b"juniper", b"street"}
    assert identity.words >= identifiers.words | {b"anonymous", b"jo", b"li", b"12", b"555"}


def test_words_the_recipe_keeps_are_not_searched(tmp_path: Path) -> None:
    recipe = tmp_path / "keep-institution.yml"
    recipe.write_text(
        'name: keep-institution\nversion: "1.0"\nedition: 2026d\ndescription: "basic, institution kept"\n'
        "extends: ps3.15-basic\noptions: [retain-institution-identity]\nrules: []\n"
    )
    plan = compile_recipe(load_recipe(recipe)).plan
    ds = _dataset("Okafor^Amara", "HX8812734", "CT CHEST")
    ds.InstitutionName = "Northwick Infirmary"
    identifiers = IdentifierSet()
    identifiers.add_dataset(ds, plan)
    assert identifiers.retained["InstitutionName"] == 1
    assert b"northwick" in identity_from_dataset(ds).words and b"northwick" not in identifiers.words
    assert {b"okafor", b"amara", b"hx8812734"} <= identifiers.words
    assert identifiers.device_words == {b"slicer", b"editor"}
