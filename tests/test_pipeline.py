"""One file end to end: atomic output, pixel tail copied by the kernel, bad input quarantined with no output."""

from __future__ import annotations

import datetime
import io
import os

import pydicom

from test_rewrite import DEID, KEY, encode, make_dataset
from veil.pipeline import Deidentifier
from veil.synth import instance_bytes


def test_deidentify_file_writes_a_readable_output_with_the_same_pixels(tmp_path) -> None:
    src = tmp_path / "in.dcm"
    src.write_bytes(instance_bytes(modality="CT", rows=32, cols=32, seed=3))
    outcome = Deidentifier(DEID, KEY).deidentify_file(src, tmp_path / "out" / "a.dcm")
    assert outcome.status == "written"
    original = pydicom.dcmread(src)
    out = pydicom.dcmread(tmp_path / "out" / "a.dcm")
    assert out.PixelData == original.PixelData
    assert out.SOPInstanceUID == outcome.sop_instance_uid != original.SOPInstanceUID
    assert outcome.output_bytes == (tmp_path / "out" / "a.dcm").stat().st_size
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.dcm"]  # no temporary file left


def test_file_output_equals_in_memory_output(tmp_path) -> None:
    data = encode(make_dataset())
    (tmp_path / "in.dcm").write_bytes(data)
    worker = Deidentifier(DEID, KEY)
    worker.deidentify_file(tmp_path / "in.dcm", tmp_path / "out.dcm")
    assert (tmp_path / "out.dcm").read_bytes() == worker.deidentify_bytes(data)


def test_date_shift_comes_from_the_patient_id() -> None:
    worker = Deidentifier(DEID, KEY)
    days = KEY.date_shift("MRN0001")
    out = pydicom.dcmread(io.BytesIO(worker.deidentify_bytes(encode(make_dataset()))))
    expected = (datetime.date(2024, 1, 2) + datetime.timedelta(days=days)).strftime("%Y%m%d")
    assert out.StudyDate == expected


def test_bad_file_is_quarantined_and_leaves_no_output(tmp_path) -> None:
    data = encode(make_dataset())
    (tmp_path / "bad.dcm").write_bytes(data[:-3])
    (tmp_path / "empty.dcm").write_bytes(b"")
    worker = Deidentifier(DEID, KEY)
    for name in ("bad.dcm", "empty.dcm", "missing.dcm"):
        outcome = worker.deidentify_file(tmp_path / name, tmp_path / "out" / name)
        assert outcome.status == "quarantined" and outcome.reason
        assert not (tmp_path / "out" / name).exists()
    if (tmp_path / "out").exists():
        assert os.listdir(tmp_path / "out") == []


def test_mapped_path_with_kernel_copy_writes_the_same_bytes(tmp_path, monkeypatch) -> None:
    import veil.pipeline as pipeline

    src = tmp_path / "in.dcm"
    src.write_bytes(instance_bytes(modality="CT", rows=64, cols=64, seed=4))
    worker = Deidentifier(DEID, KEY)
    worker.deidentify_file(src, tmp_path / "read.dcm")
    monkeypatch.setattr(pipeline, "SMALL_FILE", 0)  # every file mapped, pixels by copy_file_range
    worker.deidentify_file(src, tmp_path / "mapped.dcm")
    assert (tmp_path / "mapped.dcm").read_bytes() == (tmp_path / "read.dcm").read_bytes()
