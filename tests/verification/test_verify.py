"""`veil verify`: the leak scan finds planted identifiers and names their element paths, passes veil's own
output, checks references, kept attributes and accounting, and writes a report that never shows a value."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import stat
import zlib
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from veil.cli.main import EXIT_FATAL, EXIT_FINDINGS, EXIT_OK, add_parsers, main
from veil.core.part10 import ParseError, read_part10, walk_elements
from veil.keys import KeyedFunctions, generate_key_file, load_key
from veil.recipes import compile_recipe
from veil.synth import instance_bytes, write_archive
from veil.verification import (
    HIPAA_IDENTIFIERS,
    IdentifierSet,
    LeakScanner,
    inflated_copy,
    mask_value,
    scan_regions,
    verify,
    write_report,
)

RESEARCH = compile_recipe("research")
KINDS = {"name", "patient ID", "accession number", "birth date"}


def run_proof(*argv: str) -> int:
    """Runs one of the `veil` commands through the CLI's own parser."""
    parser = argparse.ArgumentParser(prog="veil")
    sub = parser.add_subparsers(dest="command", required=True)
    handlers = add_parsers(sub)
    args = parser.parse_args(list(argv))
    return handlers[args.command](args)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> dict[str, Path]:
    """A small archive (explicit VR LE, plus one implicit VR, one big endian and one deflated series) and
    veil's research output of it, made once for the module."""
    root = tmp_path_factory.mktemp("verify")
    src, dst, key = root / "in", root / "out", root / "key"
    write_archive(src, patients=2, series_per_study=2, instances_per_series=3)
    extra = src / "extra"
    extra.mkdir()
    # n = patient + study + series: 3 -> implicit VR LE, 15 -> explicit VR BE, 31 -> deflated (synth docs).
    for patient in (3, 15, 31):
        for instance in range(2):
            data = instance_bytes(patient=patient, instance=instance, instances_per_series=2)
            (extra / f"p{patient}_{instance}.dcm").write_bytes(data)
    assert main(["keygen", str(key)]) == 0
    assert main(["deidentify", str(src), str(dst), "--recipe", "research", "--key", str(key)]) == 0
    return {"root": root, "src": src, "dst": dst, "key": key}


def copy_outputs(archive: dict[str, Path], name: str) -> Path:
    target = archive["root"] / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(archive["dst"], target)
    return target


def original(archive: dict[str, Path], rel: str) -> pydicom.Dataset:
    return pydicom.dcmread(archive["src"] / rel)


def test_verify_passes_on_veils_own_output_and_writes_both_reports(archive, tmp_path, capsys) -> None:
    report_path = tmp_path / "report.md"
    rc = run_proof(
        "verify",
        str(archive["src"]),
        str(archive["dst"]),
        "--key",
        str(archive["key"]),
        "--report",
        str(report_path),
    )
    out = capsys.readouterr().out
    assert rc == EXIT_OK, out
    assert "verify: PASS" in out and "files/s" in out
    data = json.loads(report_path.with_suffix(".json").read_text())
    assert data["verdict"] == "pass" and data["findings"] == []
    assert data["counts"]["inputs"] == data["counts"]["outputs"] == 18
    assert data["counts"]["patients"] == 5 and data["counts"]["patterns"] > 100
    assert data["counts"]["references_checked"] > 0 and data["counts"]["kept_compared"] > 0
    assert data["files_per_second"] > 0
    assert data["key_id"] == load_key(archive["key"]).key_id
    assert data["recipe"] == f"research {RESEARCH.recipe.version}"
    assert len(data["hipaa_safe_harbor"]) == 18 == len(HIPAA_IDENTIFIERS)
    markdown = report_path.read_text()
    assert "**Verdict: PASS**" in markdown and "HIPAA Safe Harbor checklist" in markdown
    # Coincidences are listed as notes, never as failures (a family name that is also an Ethnic Group).
    assert all(n["severity"] == "note" for n in data["notes_findings"])


def test_verify_of_an_undeidentified_copy_finds_identifiers_and_exits_4(archive, capsys) -> None:
    copy = archive["root"] / "copy-of-inputs"
    if not copy.exists():
        shutil.copytree(archive["src"], copy)
    report = verify(archive["src"], copy, recipe=RESEARCH, key=load_key(archive["key"]))
    assert report.exit_code == EXIT_FINDINGS
    rel = "p0001/s01/se01/i0001.dcm"
    errors = [f for f in report.errors if f.category == "leak" and f.file == rel]
    leaks = {(f.path, kind) for f in errors for kind in f.kind.split(", ")}
    for expected in [
        ("(0010,0010)", "name"),
        ("(0010,0020)", "patient ID"),
        ("(0010,0030)", "birth date"),
        ("(0008,0050)", "accession number"),
        ("(0010,2154)", "telephone number"),
        ("(0008,1010)", "station name"),
        ("(0008,0018)", "UID"),
        ("(0009,1001)", "name"),  # private
        ("(0040,0275)[0](0008,0050)", "accession number"),  # nested
        ("(0029,1020)", "name"),  # private OB blob (a CSA-like header)
    ]:
        assert expected in leaks, expected
    integrity = {f.detail for f in report.errors if f.category == "integrity"}
    assert "original instance UID survives though the recipe remaps UIDs" in integrity
    assert run_proof("verify", str(archive["src"]), str(copy), "--key", str(archive["key"])) == EXIT_FINDINGS
    assert "verify: FAIL" in capsys.readouterr().out


def test_planted_single_leaks_are_each_named_with_their_element_path(archive) -> None:
    """A private element, a nested item, a free-text echo and a deflated file, one leak each."""
    planted = copy_outputs(archive, "planted")
    first = original(archive, "p0001/s01/se01/i0001.dcm")
    second = original(archive, "p0002/s01/se01/i0001.dcm")
    family = str(first.PatientName).split("^")[0]

    ds = pydicom.dcmread(planted / "p0001/s01/se01/i0002.dcm")
    ds.private_block(0x0011, "LEAKTEST", create=True).add_new(0x01, "LO", f"{family}^X")
    ds.save_as(planted / "p0001/s01/se01/i0002.dcm")

    ds = pydicom.dcmread(planted / "p0001/s01/se02/i0003.dcm")
    ds.ReferencedImageSequence[0].AccessionNumber = first.AccessionNumber
    ds.save_as(planted / "p0001/s01/se02/i0003.dcm")

    ds = pydicom.dcmread(planted / "p0002/s01/se01/i0003.dcm")
    ds.ImageComments = f"seen today, mrn {second.PatientID.lower()}; ok"
    ds.save_as(planted / "p0002/s01/se01/i0003.dcm")

    deflated = planted / "p0002/s01/se02/i0001.dcm"
    ds = pydicom.dcmread(deflated)
    ds.PatientComments = (
        f"DOB {second.PatientBirthDate[6:]}.{second.PatientBirthDate[4:6]}.{second.PatientBirthDate[:4]}"
    )
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(deflated, enforce_file_format=True)
    assert second.PatientBirthDate[:4].encode() not in deflated.read_bytes()[400:]  # compressed on disk
    assert read_part10(deflated.read_bytes()).deflated

    report = verify(archive["src"], planted, recipe=RESEARCH, key=load_key(archive["key"]))
    found = {(f.file, f.path, kind) for f in report.errors for kind in f.kind.split(", ") if kind in KINDS}
    assert len(report.errors) == 4
    assert found == {
        ("p0001/s01/se01/i0002.dcm", "(0011,1001)", "name"),
        ("p0001/s01/se02/i0003.dcm", "(0008,1140)[0](0008,0050)", "accession number"),
        ("p0002/s01/se01/i0003.dcm", "(0020,4000)", "patient ID"),
        ("p0002/s01/se02/i0001.dcm", "(0010,4000)", "birth date"),
    }, found
    assert all(f.category == "leak" for f in report.errors)
    assert report.exit_code == EXIT_FINDINGS


def test_report_shows_no_value_not_even_masked(archive, tmp_path) -> None:
    copy = copy_outputs(archive, "masked")
    first = original(archive, "p0001/s01/se01/i0001.dcm")
    name = str(first.PatientName)
    ds = pydicom.dcmread(copy / "p0001/s01/se01/i0001.dcm")
    ds.StudyComments = f"{name} {first.PatientID}"
    ds.save_as(copy / "p0001/s01/se01/i0001.dcm")
    report = verify(archive["src"], copy, recipe=RESEARCH, key=load_key(archive["key"]))
    for suffix in (".md", ".html"):
        for path in write_report(report, tmp_path / f"r{suffix}"):
            text = path.read_text()
            assert first.PatientID not in text and name.split("^")[0] not in text
            assert mask_value(first.PatientID) not in text and mask_value(name.split("^")[0]) not in text
    assert "<table>" in (tmp_path / "r.html").read_text()
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["findings"] and all("value" not in f for f in data["findings"] + data["notes_findings"])
    assert {f["path"] for f in data["findings"]} >= {"(0032,4000)"}


def test_references_accounting_and_keys_are_checked(archive) -> None:
    broken = copy_outputs(archive, "broken")
    key = load_key(archive["key"])
    # A dangling reference.
    ds = pydicom.dcmread(broken / "p0001/s01/se01/i0002.dcm")
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "2.25.1"
    ds.save_as(broken / "p0001/s01/se01/i0002.dcm")
    # MediaStorageSOPInstanceUID differing from SOPInstanceUID.
    ds = pydicom.dcmread(broken / "p0001/s01/se02/i0001.dcm")
    ds.file_meta.MediaStorageSOPInstanceUID = "2.25.2"
    ds.save_as(broken / "p0001/s01/se02/i0001.dcm")
    # A kept attribute changed.
    ds = pydicom.dcmread(broken / "p0002/s01/se01/i0002.dcm")
    ds.Manufacturer = "SOMEONE ELSE"
    ds.save_as(broken / "p0002/s01/se01/i0002.dcm")
    # An output that is missing, and one that is missing but accounted for by an audit record.
    (broken / "p0002/s01/se02/i0003.dcm").unlink()
    (broken / "p0002/s01/se02/i0002.dcm").unlink()
    import pyarrow as pa
    import pyarrow.parquet as pq

    from veil.audit import input_digest

    # veil run names an input by the keyed digest of its relative path (32 hex digits of it).
    digest = input_digest(key, "p0002/s01/se02/i0002.dcm")[:32]
    (broken / ".veil" / "audit").mkdir(parents=True, exist_ok=True)  # deidentify writes the audit of veil run
    pq.write_table(
        pa.table(
            {"status": ["quarantined"], "reason": ["test"], "input_digest": [digest], "output_path": [""]}
        ),
        broken / ".veil" / "audit" / "part-00000000.parquet",
    )

    # dciodvfy off: this test counts the findings of veil's own checks, whatever is installed.
    report = verify(archive["src"], broken, recipe=RESEARCH, key=key, dciodvfy_sample=0)
    found = {(f.category, f.file, f.path, f.detail) for f in report.errors}
    assert (
        "integrity",
        "p0001/s01/se01/i0002.dcm",
        "(0008,1140)[0](0008,1155)",
        "dangling reference: resolves to no output instance",
    ) in found
    assert (
        "integrity",
        "p0001/s01/se02/i0001.dcm",
        "(0002,0003)",
        "MediaStorageSOPInstanceUID differs from SOPInstanceUID",
    ) in found
    assert ("kept attribute", "p0002/s01/se01/i0002.dcm", "(0008,0070)", "value changed") in found
    assert ("integrity", "p0002/s01/se02/i0003.dcm", "", "input has no output and no audit record") in found
    assert not any(f.file == "p0002/s01/se02/i0002.dcm" for f in report.errors)
    assert report.counts["inputs_without_output_accounted_by_audit"] == 1
    assert report.counts["inputs_without_output_unaccounted"] == 1
    assert len(report.errors) == 4, report.errors

    # Under another key no UID is the keyed UID of its original.
    other = archive["root"] / "other-key"
    if not other.exists():
        assert main(["keygen", str(other)]) == 0
    wrong = verify(archive["src"], archive["dst"], recipe=RESEARCH, key=load_key(other))
    assert any("not the keyed UIDs" in f.detail for f in wrong.errors)


def test_dciodvfy_is_optional_and_new_errors_are_findings(archive, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    report = verify(archive["src"], archive["dst"], recipe=RESEARCH, key=load_key(archive["key"]))
    assert report.dciodvfy.startswith("dciodvfy not available") and report.passed
    # A stand-in dciodvfy: an error only for files under the output directory, with a value in it.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dciodvfy"
    fake.write_text(
        '#!/bin/sh\ncase "$1" in\n  *"/out/"*) echo \'Error - Missing attribute Type 1 <Doe^John> = JOHN\' >&2;;\n'
        "  *) echo 'Warning - something' >&2;;\nesac\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    report = verify(
        archive["src"], archive["dst"], recipe=RESEARCH, key=load_key(archive["key"]), dciodvfy_sample=3
    )
    conformance = [f for f in report.errors if f.category == "conformance"]
    assert len(conformance) == 3 and report.dciodvfy.startswith("checked 3 of 18 pairs")
    assert all("John" not in f.detail and "JOHN" not in f.detail for f in conformance)


def test_dciodvfy_errors_name_their_element_and_an_emptied_sequence_is_a_note(
    archive, tmp_path, monkeypatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dciodvfy"
    items0 = "Error - Bad Sequence number of Items 0 (1-n Required by Module definition)"
    fake.write_text(
        "#!/bin/sh\necho 'Error - Missing attribute Type 2 Required Element=<StudyID> Module=<GeneralStudy>' >&2\n"
        'case "$1" in\n  *"/out/"*)\n'
        f"    echo '{items0} Element=<InstitutionCodeSequence> Module=<GeneralEquipment>' >&2\n"
        f"    echo '{items0} Element=<ReferencedStudySequence> Module=<GeneralStudy>' >&2\n"
        "    echo 'Error - Missing attribute Type 2 Required Element=<StudyDate> Module=<GeneralStudy>' >&2\n"
        "    echo 'Error - Bad value Element=<Doe^John> Module=<JOHN DOE>' >&2;;\nesac\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    report = verify(
        archive["src"], archive["dst"], recipe=RESEARCH, key=load_key(archive["key"]), dciodvfy_sample=1
    )
    errors = [f.detail for f in report.errors if f.category == "conformance"]
    notes = [f.detail for f in report.findings if f.category == "conformance" and f.severity == "note"]
    # Research empties InstitutionCodeSequence (PS3.5 7.4.6 allows zero items) but walks ReferencedStudySequence.
    assert notes == [
        f"dciodvfy: {items0} Element=<InstitutionCodeSequence> Module=<GeneralEquipment> (the recipe empties "
        "InstitutionCodeSequence; PS3.5 7.4.5 and 7.4.6 allow a Type 2 or Type 3 sequence with zero items)"
    ]
    assert sorted(errors) == [
        f"dciodvfy: {items0} Element=<ReferencedStudySequence> Module=<GeneralStudy>",
        "dciodvfy: Error - Bad value Element=<…> Module=<…>",
        # The input's complaint about StudyID does not hide the output's about StudyDate.
        "dciodvfy: Error - Missing attribute Type 2 Required Element=<StudyDate> Module=<GeneralStudy>",
    ]
    assert report.dciodvfy.startswith("checked 1 of 18 pairs: 3 errors the inputs did not have; 1 complaints")


def test_deflated_files_reach_dciodvfy_as_inflated_copies_that_are_then_removed(
    archive, tmp_path, monkeypatch
) -> None:
    # A stand-in dciodvfy that logs each path it is given and, like Debian's, reports noise that depends on the
    # compressed bytes of any file still deflated.
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    fake = bin_dir / "dciodvfy"
    fake.write_text(
        f'#!/bin/sh\necho "$1" >> "{log}"\n'
        'if grep -qF \'1.2.840.10008.1.2.1.99\' "$1"; then echo "Error - read $(md5sum < "$1")" >&2; fi\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    report = verify(
        archive["src"], archive["dst"], recipe=RESEARCH, key=load_key(archive["key"]), dciodvfy_sample=18
    )
    assert [f for f in report.errors if f.category == "conformance"] == []
    assert report.dciodvfy.startswith("checked 18 of 18 pairs: 0 errors the inputs did not have")
    deflated = sorted(
        str(p.relative_to(archive["dst"]))
        for p in archive["dst"].rglob("*.dcm")
        if read_part10(p.read_bytes()).deflated
    )
    assert deflated == ["extra/p31_0.dcm", "extra/p31_1.dcm"]
    through = "2 deflated pairs checked through inflated Explicit VR Little Endian copies: "
    assert through + ", ".join(deflated) in report.dciodvfy
    calls = log.read_text().split()
    assert len(calls) == 36  # input and output of each pair
    copies = [c for c in calls if not c.startswith((str(archive["src"]), str(archive["dst"])))]
    assert len(copies) == 2 * len(deflated)  # input and output of each deflated pair
    assert not any(Path(c).exists() or Path(c).parent.exists() for c in copies)


def test_inflated_copy_is_the_same_file_in_explicit_vr_little_endian(archive) -> None:
    data = (archive["src"] / "extra/p31_0.dcm").read_bytes()
    copy = inflated_copy(data)
    deflated, explicit = pydicom.dcmread(io.BytesIO(data)), pydicom.dcmread(io.BytesIO(copy))
    assert explicit.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert explicit == deflated and copy[:128] == data[:128]
    meta_end = read_part10(copy).meta_end
    assert explicit.file_meta.FileMetaInformationGroupLength == meta_end - 144
    for tag in deflated.file_meta.keys() - {0x00020000, 0x00020010}:
        assert explicit.file_meta[tag] == deflated.file_meta[tag]
    assert copy[meta_end:] == read_part10(data).dataset  # the inflated data set, byte for byte
    with pytest.raises(ParseError, match="not deflated"):
        inflated_copy((archive["src"] / "extra/p3_0.dcm").read_bytes())


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
def test_dciodvfy_finds_nothing_new_in_deflated_outputs_under_twenty_keys(tmp_path) -> None:
    """The same deflated inputs under 20 keys: different UIDs, so different deflated bytes each time."""
    src = tmp_path / "in"
    src.mkdir()
    for instance in range(2):  # patient 31: a deflated series (synth docs)
        data = instance_bytes(patient=31, instance=instance, instances_per_series=2)
        (src / f"i{instance}.dcm").write_bytes(data)
    odd_streams = 0
    for n in range(20):
        key, dst = tmp_path / f"key{n}", tmp_path / f"out{n}"
        assert main(["keygen", str(key)]) == 0
        assert main(["deidentify", str(src), str(dst), "--recipe", "research", "--key", str(key)]) == 0
        for output in dst.glob("*.dcm"):
            data = output.read_bytes()
            part = read_part10(data)
            assert part.deflated and (len(data) - part.meta_end) % 2 == 0  # padded to even (PS3.5 A.5)
            odd_streams += len(zlib.compress(bytes(part.dataset), 6, wbits=-15)) % 2
        report = verify(src, dst, recipe=RESEARCH, key=load_key(key), dciodvfy_sample=2)
        conformance = [f.detail for f in report.errors if f.category == "conformance"]
        assert conformance == [], (n, conformance)
        assert report.dciodvfy.startswith("checked 2 of 2 pairs: 0 errors"), report.dciodvfy
        assert "2 deflated pairs checked through inflated" in report.dciodvfy
        # Short name parts match only as whole tokens, so a keyed pseudonym that happens to spell one under
        # this key is no finding: the verdict no longer depends on the key.
        assert report.passed, (n, [(f.path, f.kind, f.detail) for f in report.errors])
    assert odd_streams > 0  # some raw streams were odd, so the padding was exercised too


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) is not installed")
@pytest.mark.parametrize("recipe", ["research", "ps3.15-basic", "hipaa-safe-harbor"])
def test_veil_run_outputs_have_no_new_dciodvfy_errors(archive, tmp_path, recipe: str) -> None:
    """Every pair of the archive (all four transfer syntaxes), through `veil run`, checked by dciodvfy."""
    dst = tmp_path / "out"
    assert main(["run", str(archive["src"]), str(dst), "--recipe", recipe, "--key", str(archive["key"])]) == 0
    report = verify(
        archive["src"], dst, recipe=compile_recipe(recipe), key=load_key(archive["key"]), dciodvfy_sample=18
    )
    assert [f.detail for f in report.errors if f.category == "conformance"] == []
    assert report.dciodvfy.startswith("checked 18 of 18 pairs: 0 errors the inputs did not have"), (
        report.dciodvfy
    )
    assert "2 deflated pairs checked through inflated" in report.dciodvfy
    # What Basic empties (X/Z, X/Z/D sequences) dciodvfy calls errors; PS3.5 7.4.6 allows it: notes.
    noted = {f.keyword for f in report.findings if f.category == "conformance" and f.severity == "note"}
    assert noted == (
        {"ReferencedStudySequence", "ReferencedPerformedProcedureStepSequence"}
        if recipe == "ps3.15-basic"
        else set()
    )


def test_missing_key_is_fatal(archive, monkeypatch, capsys) -> None:
    monkeypatch.delenv("VEIL_KEY", raising=False)
    assert run_proof("verify", str(archive["src"]), str(archive["dst"])) == EXIT_FATAL
    assert "no key" in capsys.readouterr().err


# --- the scan itself ---------------------------------------------------------------------------------------


def scanner_for(*values: tuple[str, str]) -> LeakScanner:
    identifiers = IdentifierSet()
    for value, kind in values:
        identifiers.add(value, kind, 1)
    return LeakScanner(identifiers)


def test_boundary_rules_keep_numbers_and_short_names_whole() -> None:
    scan = scanner_for(("LEE", "name"), ("1234", "study ID"), ("17593133", "patient ID"), ("JOHNSON", "name"))

    def hits(text: str) -> set[str]:
        return {key for key, _ in scan.search_text(text.lower())}

    assert hits("sleep lee^john") == {"lee"}
    assert hits("uid 2.25.1234 and 91234 and 1234.5") == set()
    assert hits("MRN17593133. and (1234)") == {"17593133", "1234"}
    assert hits("JOHNSONVILLE") == {"johnson"}  # long values match anywhere


def test_short_name_parts_match_only_as_whole_tokens() -> None:
    """A 3-4 character name part inside a random alphanumeric run (a keyed pseudonym) is chance, not a
    leak; standing alone it is one. Longer name parts are found inside longer runs as before."""
    scan = scanner_for(("OKAFOR", "name"), ("RIC", "name"), ("ANNA", "name"), ("DAVIS", "name"))

    def hits(text: str, stream: bool = False) -> set[str]:
        return {key for key, _ in scan.search_text(text.lower(), stream=stream)}

    assert hits("RIC6EAEJIDWYPQBZ") == set()  # PerformedProcedureStepID pseudonym under some key
    assert hits("\x10\x00RIC6EAEJIDWYPQBZ@\x00", stream=True) == set()
    assert hits("Q2ANNA7XZ") == hits("QANNA") == hits("ANNA7") == set()
    assert hits("Dr RIC said") == hits("^RIC^") == hits("RIC") == {"ric"}
    assert hits("\x06\x00RIC\x00", stream=True) == {"ric"}  # a whole value between tag bytes
    assert hits("OKAFOR^RIC") == {"okafor", "ric"}
    assert hits("7XOKAFOR2Q") == {"okafor"}  # long name parts match anywhere
    assert hits("4DAVIS7Q") == {"davis"}  # a 5-letter part inside an alphanumeric run


def test_a_value_of_several_kinds_is_searched_under_the_loosest_rule() -> None:
    """``ANN7`` as a name part wants whole tokens, as an ID only no digit after it: found wherever either
    kind would be found, whichever was registered first."""
    assert {key for key, _ in scanner_for(("ANN7", "name")).search_text("ann7x")} == set()
    for order in ((("ANN7", "name"), ("ANN7", "study ID")), (("ANN7", "study ID"), ("ANN7", "name"))):
        scan = scanner_for(*order)
        assert {key for key, _ in scan.search_text("ann7x lane")} == {"ann7"}
        assert {key for key, _ in scan.search_text("hann7 ann77")} == set()


def test_a_pseudonym_spelling_a_short_name_part_is_no_finding_but_the_name_alone_is(
    archive, tmp_path
) -> None:
    """End to end: patient 1 is named OKAFOR^RIC; a research output whose PerformedProcedureStepID pseudonym
    begins with RIC passes, the same output with ^RIC^ in a comment does not."""
    src = tmp_path / "in"
    shutil.copytree(archive["src"], src)
    rel = "p0001/s01/se01/i0001.dcm"
    ds = pydicom.dcmread(src / rel)
    ds.PatientName = "OKAFOR^RIC"
    ds.save_as(src / rel)
    dst = copy_outputs(archive, "pseudonym-spells-a-name")
    out = pydicom.dcmread(dst / rel)
    out.PerformedProcedureStepID = "RIC6EAEJIDWYPQBZ"
    out.save_as(dst / rel)
    report = verify(src, dst, recipe=RESEARCH, key=load_key(archive["key"]))
    assert report.passed, [(f.path, f.kind, f.detail) for f in report.errors]

    out.ImageComments = "reviewed with ^RIC^ today"
    out.save_as(dst / rel)
    report = verify(src, dst, recipe=RESEARCH, key=load_key(archive["key"]))
    assert {(f.file, f.path, f.kind) for f in report.errors} == {(rel, "(0020,4000)", "name")}


def test_values_next_to_tag_bytes_are_found_in_a_stream() -> None:
    """The byte after a value may be the next tag's group (0x0038 is '8'): not a digit of the value."""
    scan = scanner_for(("ADM8421036", "admission ID"))
    stream = "\x08\x00adm8421036" + "8\x00\x00\x03lo"
    assert [k for k, _ in scan.search_text(stream, stream=True)] == ["adm8421036"]
    assert [k for k, _ in scan.search_text("adm84210368")] == []


def test_placeholders_and_short_values_are_not_searched() -> None:
    identifiers = IdentifierSet()
    for value in ("ANONYMOUS", "UNKNOWN", "ABC", "0000", "XXXXXX"):
        identifiers.add(value, "patient ID", 1)
    identifiers.add("LEE", "name", 1)
    assert set(identifiers.patterns) == {"lee"}


def test_the_scan_skips_only_the_top_level_pixel_data() -> None:
    data = bytearray(instance_bytes(patient=0, instances_per_series=1, rows=16, cols=16))
    part = read_part10(bytes(data))
    pixel = next(e for e in walk_elements(part, nested=False) if e.tag == 0x7FE00010)
    data[pixel.value : pixel.value + 8] = b"ZQXWVUTS"
    scan = scanner_for(("ZQXWVUTS", "name"))
    matches, problem = scan.scan(bytes(data))
    assert matches == [] and problem is None
    regions, _ = scan_regions(bytes(data))
    assert sum(r.stop - r.start for r in regions) == len(data) - (pixel.end - pixel.value)


def test_a_file_the_walker_cannot_follow_is_searched_whole() -> None:
    scan = scanner_for(("SECRETNAME", "name"))
    matches, problem = scan.scan(b"\x00" * 128 + b"DICM" + b"\x08\x00\x10\x00LO\xff\x00secretname")
    assert problem and [m.pattern for m in matches] == ["secretname"]


def test_keyed_uid_check_agrees_with_the_keyed_functions(archive) -> None:
    functions = KeyedFunctions(load_key(archive["key"]), **RESEARCH.key_parameters)
    before = original(archive, "p0001/s01/se01/i0001.dcm")
    after = pydicom.dcmread(archive["dst"] / "p0001/s01/se01/i0001.dcm")
    assert after.SOPInstanceUID == functions.uid(before.SOPInstanceUID.encode()).decode()


CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "public"


@pytest.mark.corpus
@pytest.mark.skipif(not CORPUS.is_dir(), reason="the shared corpus is not beside the repository")
def test_the_tag_walker_finds_the_elements_pydicom_finds_across_the_corpus() -> None:
    """Differential: element paths from the byte walker equal pydicom's wherever both can read the file; a
    file the walker cannot follow is searched whole, never skipped."""
    import io
    import warnings

    from veil.core.dataset import walk_dataset
    from veil.core.part10 import ParseError

    compared = 0
    for path in sorted(p for p in CORPUS.rglob("*") if p.is_file()):
        data = path.read_bytes()
        regions, problem = scan_regions(data)
        if problem:
            assert sum(r.stop - r.start for r in regions) >= len(data) - 132
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = [n.path for n in walk_dataset(pydicom.dcmread(io.BytesIO(data), force=True))]
        except Exception:
            continue
        part = read_part10(data)
        try:
            found = [e.path for e in walk_elements(part)]
        except ParseError:
            continue
        assert found == expected, path
        compared += 1
    assert compared > 100


def test_outputs_under_another_layout_pair_through_the_audit(archive) -> None:
    """`veil run --layout study` names outputs by new UIDs; the audit row's output_path pairs them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from veil.audit import input_digest

    moved = copy_outputs(archive, "moved")
    key = load_key(archive["key"])
    rel = "p0001/s01/se02/i0002.dcm"
    new_rel = "2.25.1/2.25.2/2.25.3.dcm"
    (moved / new_rel).parent.mkdir(parents=True)
    (moved / rel).rename(moved / new_rel)
    (moved / ".veil" / "audit").mkdir(parents=True, exist_ok=True)  # deidentify writes the audit of veil run
    pq.write_table(
        pa.table(
            {
                "status": ["written"],
                "reason": [""],
                "input_digest": [input_digest(key, rel)],
                "output_path": [new_rel],
            }
        ),
        moved / ".veil" / "audit" / "part-00000000.parquet",
    )
    report = verify(archive["src"], moved, recipe=RESEARCH, key=key)
    assert report.passed, report.errors
    assert report.counts["references_checked"] > 0 and not any("no input" in n for n in report.notes)


def _pseudonym_findings(report) -> list:  # type: ignore[no-untyped-def]
    return [f for f in report.findings if f.keyword == "PatientID"]


def test_patient_id_pseudonyms_are_checked_against_the_key(archive) -> None:
    key = load_key(archive["key"])
    clean = verify(archive["src"], archive["dst"], recipe="research", key=key, dciodvfy_sample=0)
    assert _pseudonym_findings(clean) == []
    assert any("Patient ID pseudonyms: 5 patients" in n and "0 wrong" in n for n in clean.notes), clean.notes
    # One file of the first patient given the second patient's pseudonym: split, shared and wrong.
    broken = copy_outputs(archive, "swapped-pseudonym")
    other = pydicom.dcmread(broken / "p0002/s01/se01/i0001.dcm").PatientID
    ds = pydicom.dcmread(broken / "p0001/s01/se01/i0001.dcm")
    assert ds.PatientID != other
    ds.PatientID = other
    ds.save_as(broken / "p0001/s01/se01/i0001.dcm")
    report = verify(archive["src"], broken, recipe="research", key=key, dciodvfy_sample=0)
    details = sorted(f.detail for f in _pseudonym_findings(report))
    assert details == [
        "Patient ID is not the keyed pseudonym of its original under key id " + key.key_id,
        "a patient's files carry more than one pseudonym",
        "one pseudonym is carried by files of different patients",
    ]
    blob = json.dumps(report.to_dict())
    assert original(archive, "p0001/s01/se01/i0001.dcm").PatientID not in blob  # no original in the report


def test_counter_pseudonyms_are_checked_against_the_reidentification_table(tmp_path) -> None:
    from veil.engine import RunOptions, run
    from veil.keys.reid import ReidTableError
    from veil.recipes import compile_recipe, load_recipe

    src, dst, table = tmp_path / "in", tmp_path / "out", tmp_path / "run.reid"
    write_archive(src, patients=3, series_per_study=1, instances_per_series=2, seed=4)
    key_file = tmp_path / "key"
    key = generate_key_file(key_file)
    recipe_path = Path(__file__).parents[1] / "data" / "recipes" / "subject-counters.yml"
    compiled = compile_recipe(load_recipe(recipe_path))
    run(RunOptions(src=str(src), dst=str(dst), reid_table=str(table)), compiled, key)
    report = verify(src, dst, recipe=compiled, key=key, dciodvfy_sample=0, reid_table=table)
    assert _pseudonym_findings(report) == []
    assert any("3 patients" in n and "checked against the re-identification table, 0 wrong" in n
               for n in report.notes), report.notes
    without = verify(src, dst, recipe=compiled, key=key, dciodvfy_sample=0)
    assert any("give --reid-table" in n for n in without.notes)
    # Two patients' numbers exchanged in all their files: consistent-looking, but the table says otherwise.
    outputs = {p: pydicom.dcmread(p) for p in sorted(dst.rglob("*.dcm")) if ".veil" not in p.parts}
    numbers = sorted({ds.PatientID for ds in outputs.values()})
    assert len(numbers) == 3
    exchange = {numbers[0]: numbers[1], numbers[1]: numbers[0]}
    for path, ds in outputs.items():
        if ds.PatientID in exchange:
            ds.PatientID = exchange[ds.PatientID]
            ds.save_as(path)
    report = verify(src, dst, recipe=compiled, key=key, dciodvfy_sample=0, reid_table=table)
    wrong = [f for f in _pseudonym_findings(report) if "re-identification table's" in f.detail]
    assert len(wrong) == 4 and len(_pseudonym_findings(report)) == 4  # 2 files a patient; no split, no share
    command = ["verify", str(src), str(dst), "--key", str(key_file), "--recipe", str(recipe_path),
               "--dciodvfy-sample", "0"]
    assert run_proof(*command, "--reid-table", str(table)) == EXIT_FINDINGS
    assert run_proof(*command) == EXIT_OK  # without the table, the exchange is consistent-looking
    with pytest.raises(ReidTableError):
        verify(src, dst, recipe=compiled, key=key, dciodvfy_sample=0, reid_table=key_file)  # not a table
