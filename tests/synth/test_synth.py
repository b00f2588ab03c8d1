"""Tests of the synthetic archive generator: validity against pydicom, layout, determinism, UIDs, references,
sequences, private blocks, pixel formats and bounded memory."""

from __future__ import annotations

import hashlib
import io
import os
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import config
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from veil import synth

SHAPE = {"patients": 3, "studies_per_patient": 2, "series_per_study": 2, "instances_per_series": 3}
FILES = 3 * 2 * 2 * 3


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, synth.SynthSummary]:
    out = tmp_path_factory.mktemp("archive")
    return out, synth.write_archive(out, seed=11, **SHAPE)


@pytest.fixture(scope="module")
def datasets(archive: tuple[Path, synth.SynthSummary]) -> dict[str, Dataset]:
    out, _ = archive
    return {path.relative_to(out).as_posix(): pydicom.dcmread(path) for path in sorted(out.rglob("*.dcm"))}


@pytest.fixture()
def strict_reading():
    """pydicom raises on any value that breaks its VR rules, and warnings are errors."""
    before = config.settings.reading_validation_mode
    config.settings.reading_validation_mode = config.RAISE
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield
    config.settings.reading_validation_mode = before


def _read(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))  # no force: the preamble, prefix and meta must be right


def _body_offset(data: bytes) -> int:
    """Where the data set starts, from the File Meta Information Group Length (PS3.10 7.1)."""
    assert data[:128] == bytes(128) and data[128:132] == b"DICM"
    assert data[132:140] == b"\x02\x00\x00\x00UL\x04\x00"
    (group_length,) = struct.unpack("<I", data[140:144])
    return 144 + group_length


# --- layout and validity ---------------------------------------------------------------------------------------


def test_archive_has_the_expected_layout_and_counts(archive: tuple[Path, synth.SynthSummary]) -> None:
    out, summary = archive
    paths = sorted(path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file())
    expected = sorted(
        f"p{p:04d}/s{s:02d}/se{se:02d}/i{i:04d}.dcm"
        for p in range(1, 4)
        for s in range(1, 3)
        for se in range(1, 3)
        for i in range(1, 4)
    )
    assert paths == expected
    assert (summary.files, summary.patients, summary.studies, summary.series) == (FILES, 3, 6, 12)
    assert summary.bytes == sum((out / path).stat().st_size for path in paths)
    assert summary.out == out
    assert sum(count for _, count in summary.transfer_syntaxes) == FILES


def _meta_groups(data: bytes, end: int) -> list[int]:
    """Walk the explicit VR little endian File Meta from after its group length to ``end``; return the groups."""
    position, groups = 144, []
    while position < end:
        group, vr = struct.unpack("<H", data[position : position + 2])[0], data[position + 4 : position + 6]
        if vr in (b"OB", b"OW", b"UN", b"UT", b"SQ", b"UC", b"UR"):
            header, (length,) = 12, struct.unpack("<I", data[position + 8 : position + 12])
        else:
            header, (length,) = 8, struct.unpack("<H", data[position + 6 : position + 8])
        groups.append(group)
        position += header + length
    assert position == end  # the group length lands exactly on an element boundary
    return groups


def test_every_file_is_part10_with_a_consistent_file_meta(archive: tuple[Path, synth.SynthSummary]) -> None:
    out, _ = archive
    for path in sorted(out.rglob("*.dcm")):
        data = path.read_bytes()
        end = _body_offset(data)
        assert set(_meta_groups(data, end)) == {0x0002}
        ds = pydicom.dcmread(path)
        meta = ds.file_meta
        assert meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert meta.MediaStorageSOPClassUID == ds.SOPClassUID
        assert meta.TransferSyntaxUID in (
            synth.EXPLICIT_VR_LITTLE_ENDIAN,
            synth.IMPLICIT_VR_LITTLE_ENDIAN,
            synth.EXPLICIT_VR_BIG_ENDIAN,
            synth.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        )


@pytest.mark.parametrize("modality", synth.MODALITIES)
def test_headers_follow_vr_rules_in_every_modality_and_transfer_syntax(modality: str, strict_reading) -> None:
    # Series (0,0,0), (3,0,0), (15,0,0), (31,0,0) give the four transfer syntaxes; (0,0,1) is a derived series.
    seen = set()
    for patient, series in ((0, 0), (3, 0), (15, 0), (31, 0), (0, 1)):
        data = synth.instance_bytes(
            patient=patient, series=series, instance=1, instances_per_series=3, modality=modality, seed=4
        )
        ds = _read(data)
        seen.add(ds.file_meta.TransferSyntaxUID)
        for element in ds.iterall():
            _ = element.value  # converting each raw element runs pydicom's validation
        assert ds.Modality == modality
    assert len(seen) == 4


@pytest.mark.parametrize("modality", ["CT", "US"])
def test_pydicom_reencodes_each_body_byte_for_byte(modality: str) -> None:
    """pydicom is the oracle: writing back what it read, in the same transfer syntax, gives our exact bytes."""
    for patient in (0, 3, 15, 31):
        data = synth.instance_bytes(
            patient=patient, series=1, instance=0, instances_per_series=2, modality=modality
        )
        ds = _read(data)
        syntax = ds.file_meta.TransferSyntaxUID
        body = data[_body_offset(data) :]
        if syntax == synth.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
            body = zlib.decompress(body, -zlib.MAX_WBITS)
        fp = DicomBytesIO()
        fp.is_little_endian = syntax != synth.EXPLICIT_VR_BIG_ENDIAN
        fp.is_implicit_VR = syntax == synth.IMPLICIT_VR_LITTLE_ENDIAN
        write_dataset(fp, ds)
        assert fp.getvalue() == body, syntax.name


@pytest.mark.parametrize("modality", ["CT", "MR", "US"])
def test_deflated_stream_is_complete_and_padded_to_even_length(modality: str) -> None:
    """PS3.5 A.5: the deflated bit stream ends the file, with one trailing NULL byte where it is odd."""
    data = synth.instance_bytes(patient=31, series=0, instance=0, instances_per_series=2, modality=modality)
    assert _read(data).file_meta.TransferSyntaxUID == synth.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
    stream = data[_body_offset(data) :]
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflater.decompress(stream)
    assert inflater.eof and inflater.unused_data in (b"", b"\x00")
    assert len(stream) % 2 == 0


def test_ct_header_is_rich(datasets: dict[str, Dataset]) -> None:
    ds = next(iter(datasets.values()))
    assert len(ds) >= 140
    for keyword in (
        "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge", "PatientAddress",
        "PatientTelephoneNumbers", "OtherPatientIDsSequence", "AccessionNumber", "StudyID", "StudyDate",
        "StudyTime", "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime", "ContentDate",
        "ContentTime", "AcquisitionDateTime", "InstitutionName", "InstitutionAddress", "StationName",
        "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName", "DeviceSerialNumber",
        "Manufacturer", "ManufacturerModelName", "SoftwareVersions", "StudyDescription", "SeriesDescription",
        "ImageComments", "AdditionalPatientHistory", "KVP", "SliceThickness", "PixelSpacing",
        "ImagePositionPatient", "ImageOrientationPatient", "RescaleSlope", "RescaleIntercept", "WindowCenter",
        "WindowWidth", "FrameOfReferenceUID",
    ):  # fmt: skip
        assert keyword in ds, keyword
    assert len(str(ds.PatientName).split("^")) == 3


def test_free_text_repeats_the_patients_identifiers(datasets: dict[str, Dataset]) -> None:
    for ds in datasets.values():
        family, given_name = ds.PatientName.family_name, ds.PatientName.given_name
        birth = ds.PatientBirthDate
        assert family in ds.StudyDescription and given_name in ds.StudyDescription
        assert ds.PatientID in ds.SeriesDescription
        assert family in ds.ImageComments and ds.PatientID in ds.ImageComments
        assert f"{birth[4:6]}/{birth[6:8]}/{birth[:4]}" in ds.ImageComments
        assert f"{birth[:4]}-{birth[4:6]}-{birth[6:8]}" in ds.AdditionalPatientHistory
        assert ds.PatientID in ds.AdditionalPatientHistory and family in ds.AdditionalPatientHistory


# --- determinism -----------------------------------------------------------------------------------------------


def _archive_bytes(out: Path) -> dict[str, bytes]:
    return {path.relative_to(out).as_posix(): path.read_bytes() for path in sorted(out.rglob("*.dcm"))}


def test_same_arguments_give_byte_identical_archives(tmp_path: Path) -> None:
    shape = {"patients": 2, "series_per_study": 4, "instances_per_series": 2, "seed": 3}
    synth.write_archive(tmp_path / "a", **shape)
    synth.write_archive(tmp_path / "b", **shape)
    first, second = _archive_bytes(tmp_path / "a"), _archive_bytes(tmp_path / "b")
    assert len(first) == 16 and first == second


def test_a_different_seed_changes_every_file(tmp_path: Path) -> None:
    synth.write_archive(tmp_path / "a", patients=2, instances_per_series=3, seed=1)
    synth.write_archive(tmp_path / "b", patients=2, instances_per_series=3, seed=2)
    first, second = _archive_bytes(tmp_path / "a"), _archive_bytes(tmp_path / "b")
    assert first.keys() == second.keys()
    assert all(first[name] != second[name] for name in first)
    assert (
        _read(first["p0001/s01/se01/i0001.dcm"]).PatientID
        != _read(second["p0001/s01/se01/i0001.dcm"]).PatientID
    )


def test_output_does_not_depend_on_hash_randomisation() -> None:
    code = (
        "import hashlib\nfrom veil import synth\n"
        "print(hashlib.sha256(b''.join(d for _, d in synth.iter_archive(patients=4, instances_per_series=2,"
        " modality='MR', seed=9))).hexdigest())"
    )
    here = hashlib.sha256(
        b"".join(
            data for _, data in synth.iter_archive(patients=4, instances_per_series=2, modality="MR", seed=9)
        )
    ).hexdigest()
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=os.pathsep.join(sys.path))
    there = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert there.stdout.strip() == here


def test_instance_bytes_equals_the_file_written(archive: tuple[Path, synth.SynthSummary]) -> None:
    out, _ = archive
    data = synth.instance_bytes(patient=2, study=1, series=0, instance=2, instances_per_series=3, seed=11)
    assert data == (out / "p0003/s02/se01/i0003.dcm").read_bytes()


def test_iter_archive_yields_the_files_write_archive_writes(archive: tuple[Path, synth.SynthSummary]) -> None:
    out, _ = archive
    streamed = {path.as_posix(): data for path, data in synth.iter_archive(seed=11, **SHAPE)}
    assert streamed == _archive_bytes(out)


# --- UIDs and references ---------------------------------------------------------------------------------------


def test_uids_are_shared_within_a_series_and_study_and_distinct_across(datasets: dict[str, Dataset]) -> None:
    by_series: dict[str, set[tuple[str, str]]] = defaultdict(set)
    by_study: dict[str, set[tuple[str, str]]] = defaultdict(set)
    instance_uids = []
    for name, ds in datasets.items():
        patient, study, series, _ = name.split("/")
        by_series[f"{patient}/{study}/{series}"].add((ds.SeriesInstanceUID, ds.StudyInstanceUID))
        by_study[f"{patient}/{study}"].add((ds.StudyInstanceUID, ds.FrameOfReferenceUID))
        instance_uids.append(ds.SOPInstanceUID)
    assert all(len(uids) == 1 for uids in by_series.values())
    assert all(len(uids) == 1 for uids in by_study.values())
    assert len({uids.pop()[0] for uids in by_series.values()}) == len(by_series)
    assert len({uids.pop()[0] for uids in by_study.values()}) == len(by_study)
    assert len(set(instance_uids)) == len(instance_uids) == FILES
    assert all(uid.startswith("2.25.") and len(uid) == 43 for uid in instance_uids)


def test_references_resolve_to_instances_in_the_archive(datasets: dict[str, Dataset]) -> None:
    instances = {ds.SOPInstanceUID: (name, ds.SOPClassUID) for name, ds in datasets.items()}
    studies = {ds.StudyInstanceUID for ds in datasets.values()}
    sources = 0
    for name, ds in datasets.items():
        (reference,) = ds.ReferencedImageSequence
        target, sop_class = instances[reference.ReferencedSOPInstanceUID]
        assert sop_class == reference.ReferencedSOPClassUID
        assert target.rsplit("/", 1)[0] == name.rsplit("/", 1)[0]  # the previous instance of the same series
        assert ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID in studies
        for source in ds.get("SourceImageSequence", []):
            target, _ = instances[source.ReferencedSOPInstanceUID]
            assert target.split("/")[:2] == name.split("/")[:2]
            sources += 1
    assert sources > 0


# --- transfer syntaxes -----------------------------------------------------------------------------------------


def test_transfer_syntax_mix_is_mostly_explicit_little_endian() -> None:
    counts = Counter(
        synth.series_transfer_syntax(p, s, se) for p in range(64) for s in range(2) for se in range(4)
    )
    total = sum(counts.values())
    assert synth.series_transfer_syntax(0, 0, 0) == synth.EXPLICIT_VR_LITTLE_ENDIAN
    assert counts[synth.EXPLICIT_VR_LITTLE_ENDIAN] == total * 3 // 4
    assert counts[synth.IMPLICIT_VR_LITTLE_ENDIAN] > total // 8
    assert 0 < counts[synth.EXPLICIT_VR_BIG_ENDIAN] < total // 16
    assert 0 < counts[synth.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN] < total // 16


def test_archive_files_use_their_series_transfer_syntax(tmp_path: Path) -> None:
    summary = synth.write_archive(tmp_path, patients=32, rows=8, cols=8)
    for p in range(32):
        ds = pydicom.dcmread(tmp_path / f"p{p + 1:04d}/s01/se01/i0001.dcm")
        assert ds.file_meta.TransferSyntaxUID == synth.series_transfer_syntax(p, 0, 0)
    assert dict(summary.transfer_syntaxes) == {
        synth.EXPLICIT_VR_LITTLE_ENDIAN: 24,
        synth.IMPLICIT_VR_LITTLE_ENDIAN: 6,
        synth.EXPLICIT_VR_BIG_ENDIAN: 1,
        synth.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN: 1,
    }


# --- sequences and private blocks ------------------------------------------------------------------------------


def test_undefined_length_and_nested_sequences_are_present() -> None:
    data = synth.instance_bytes(series=1, instance=0, instances_per_series=2)  # explicit VR little endian
    # (0010,1002) SQ with undefined length, and a Request Attributes item with undefined length.
    assert b"\x10\x00\x02\x10SQ\x00\x00\xff\xff\xff\xff" in data
    assert b"\x40\x00\x75\x02SQ\x00\x00\xff\xff\xff\xff\xfe\xff\x00\xe0\xff\xff\xff\xff" in data
    ds = _read(data)
    assert ds["OtherPatientIDsSequence"].is_undefined_length
    assert not ds["ReferencedImageSequence"].is_undefined_length
    request = ds.RequestAttributesSequence[0]
    assert request.is_undefined_length_sequence_item
    context = request.ScheduledProtocolCodeSequence[0].ProtocolContextSequence[0]
    assert context.ConceptNameCodeSequence[0].CodeValue == "121106"  # four levels deep
    assert ds.SourceImageSequence[0].PurposeOfReferenceCodeSequence[0].CodingSchemeDesignator == "DCM"


def _text(value: str | bytes) -> str:
    """A private text value: pydicom gives UN bytes when the file is implicit VR and the creator is unknown."""
    return value.decode("latin-1").rstrip(" \x00") if isinstance(value, bytes) else value


def test_private_blocks_have_creators_and_carry_identifying_values(datasets: dict[str, Dataset]) -> None:
    for ds in datasets.values():
        explicit = ds.file_meta.TransferSyntaxUID != synth.IMPLICIT_VR_LITTLE_ENDIAN
        gems = ds.private_block(0x0009, "VEILSYNTH_GEMS_LIKE")
        assert _text(gems[0x01].value) == str(ds.PatientName)
        assert _text(gems[0x02].value) == ds.PatientID
        acquisition = ds.private_block(0x0019, "VEILSYNTH_ACQ_PARAMS")
        assert acquisition[0x02].VR == ("SL" if explicit else "UN")
        csa = ds.private_block(0x0029, "VEILSYNTH_CSA_LIKE")
        assert csa[0x10].VR == ("OB" if explicit else "UN") and csa[0x20].value.startswith(b"SV10")
        assert ds.PatientID.encode() in csa[0x20].value
        assert _text(ds.private_block(0x0029, "VEILSYNTH_MEDCOM_LIKE")[0x34].value) == "DB TO DICOM"
        nested = gems[0x40].value[0]  # an undefined length private SQ is read as SQ even in implicit VR
        assert _text(nested.private_block(0x0009, "VEILSYNTH_GEMS_LIKE")[0x01].value).startswith(
            ds.PatientName.family_name
        )
        _assert_private_elements_have_creators(ds)


def _assert_private_elements_have_creators(ds: Dataset) -> None:
    """Every private data element (gggg,xxee) has its creator (gggg,00xx) in the same data set (PS3.5 7.8.1)."""
    creators = {creator for _, creator in synth.PRIVATE_CREATORS}
    for element in ds:
        tag = element.tag
        if tag.is_private and tag.element >= 0x1000:
            creator = ds.get((tag.group, tag.element >> 8))
            assert creator is not None and creator.value in creators, tag
        if element.VR == "SQ":
            for item in element.value:
                _assert_private_elements_have_creators(item)


def test_some_patients_are_older_than_89() -> None:
    ages = [_read(synth.instance_bytes(patient=p, rows=4, cols=4)).PatientAge for p in range(60)]
    assert any(age.endswith("Y") and int(age[:3]) > 89 for age in ages)
    assert all(len(age) == 4 and age[3] in "MY" for age in ages)


# --- pixels ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("modality", "dtype", "shape"),
    [("CT", np.int16, (40, 24)), ("MR", np.uint16, (40, 24)), ("US", np.uint8, (40, 24, 3))],
)
def test_pixel_data_has_the_modalitys_format(modality: str, dtype: type, shape: tuple[int, ...]) -> None:
    for patient in (0, 15):  # little and big endian
        ds = _read(synth.instance_bytes(patient=patient, modality=modality, rows=40, cols=24))
        pixels = ds.pixel_array
        assert pixels.shape == shape and pixels.dtype.type is np.dtype(dtype).type
        assert pixels.min() < pixels.max()
        assert (ds.BitsAllocated, ds.SamplesPerPixel) == ((16, 1) if dtype is not np.uint8 else (8, 3))
        if dtype is np.uint8:
            assert ds.PhotometricInterpretation == "RGB" and ds.PlanarConfiguration == 0
        else:
            assert ds.BitsStored == 12 and ds.PixelRepresentation == (dtype is np.int16)


def test_instances_of_a_series_have_different_pixels() -> None:
    first, second = (
        _read(synth.instance_bytes(instance=i, instances_per_series=2)).pixel_array for i in (0, 1)
    )
    assert not np.array_equal(first, second)


# --- arguments, progress, properties, memory -------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [{"modality": "XX"}, {"rows": 0}, {"cols": 9000}, {"patients": -1}, {"instances_per_series": -2}],
)
def test_invalid_arguments_are_refused(tmp_path: Path, arguments: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        synth.write_archive(tmp_path, **{"patients": 1, **arguments})  # type: ignore[arg-type]


def test_progress_is_called_with_the_running_file_count(tmp_path: Path) -> None:
    seen: list[int] = []
    summary = synth.write_archive(tmp_path, patients=2, instances_per_series=3, progress=seen.append)
    assert seen == list(range(1, 7)) and summary.files == 6


def test_empty_archive_writes_nothing(tmp_path: Path) -> None:
    summary = synth.write_archive(tmp_path / "out", patients=2, instances_per_series=0)
    assert summary.files == 0 and summary.series == 0 and not list(tmp_path.rglob("*.dcm"))


@settings(max_examples=20, deadline=None)
@given(
    patient=st.integers(0, 10**6),
    study=st.integers(0, 50),
    series=st.integers(0, 50),
    instances=st.integers(1, 2000),
    data=st.data(),
)
def test_any_instance_reads_back_with_its_own_identity(
    patient: int, study: int, series: int, instances: int, data: st.DataObject
) -> None:
    instance = data.draw(st.integers(0, instances - 1))
    modality = data.draw(st.sampled_from(synth.MODALITIES))
    ds = _read(
        synth.instance_bytes(
            patient=patient, study=study, series=series, instance=instance, instances_per_series=instances,
            modality=modality, rows=6, cols=5,
        )
    )  # fmt: skip
    assert int(ds.InstanceNumber) == instance + 1
    assert ds.file_meta.TransferSyntaxUID == synth.series_transfer_syntax(patient, study, series)
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.Rows == 6 and ds.Columns == 5


def test_writing_3000_files_keeps_traced_memory_small(tmp_path: Path) -> None:
    tracemalloc.start()
    try:
        summary = synth.write_archive(tmp_path, patients=30, series_per_study=2, instances_per_series=50)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.files == 3000
    assert peak < 5 * 1024 * 1024  # measured: about 0.25 MB; holding every file would take over 40 MB
