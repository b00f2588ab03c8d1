"""Fixtures of the network tests: two real Orthancs shared by the session (a source PACS and a destination),
and a small study to send."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from orthanc import Orthanc, available
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

pytest.importorskip("pynetdicom")
if not available():
    pytest.skip("no Orthanc (make test installs Debian's orthanc)", allow_module_level=True)

PATIENT = "Brannock^Ilsevel"


def write_study(folder: Path, count: int, *, patient_id: str = "PAT-5531") -> list[Path]:
    """``count`` CT instances of one new study (copies of pydicom's CT_small with new UIDs)."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    paths = []
    for i in range(count):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.PatientName, ds.PatientID = PATIENT, patient_id
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = i + 1
        path = folder / f"ct{i:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def orthancs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Orthanc, Orthanc]]:
    root = tmp_path_factory.mktemp("orthanc")
    source = Orthanc(root / "source", "SOURCEPACS")
    try:
        target = Orthanc(root / "target", "RESEARCH")
    except BaseException:
        source.stop()
        raise
    try:
        yield source, target
    finally:
        source.stop()
        target.stop()


@pytest.fixture
def clean_orthancs(orthancs: tuple[Orthanc, Orthanc]) -> tuple[Orthanc, Orthanc]:
    for o in orthancs:
        o.clear()
    return orthancs
