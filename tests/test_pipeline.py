"""One file end to end: atomic output, pixel tail copied by the kernel, bad input quarantined with no output."""

from __future__ import annotations

import datetime
import io
import os

import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from test_rewrite import DEID, KEY, encode, make_dataset
from veil.pipeline import Deidentifier
from veil.plan import Action, Plan, Rule
from veil.synth import instance_bytes

# DEID without its free-text callback is native: the core does the whole file.
NATIVE = Plan(
    tags={0x00100010: Rule(Action.DUMMY), 0x00100020: Rule(Action.PSEUDO), 0x00080080: Rule(Action.REMOVE)},
    vr_defaults={"SQ": Action.RECURSE, "UI": Action.UID, "DA": Action.SHIFT, "DT": Action.SHIFT,
                 "PN": Action.REMOVE},
    default_public=Action.KEEP,
    default_private=Action.REMOVE,
)


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


@pytest.mark.parametrize("syntax,encapsulated", [
    (ImplicitVRLittleEndian, False), (ExplicitVRLittleEndian, False), (ExplicitVRBigEndian, False),
    (DeflatedExplicitVRLittleEndian, False), (ExplicitVRLittleEndian, True),
])
def test_native_mapped_path_writes_what_the_read_path_writes(tmp_path, monkeypatch, syntax, encapsulated) -> None:
    """The core's own path for a large file (mapped, header rewritten from the mapping, the Pixel Data value
    copied by the kernel, then the elements after it) gives the bytes of the in-memory rewrite, for every
    transfer syntax, with a trailer after the pixels (Data Set Trailing Padding)."""
    import veil.pipeline as pipeline

    ds = make_dataset()
    ds.PixelData = bytes(range(256)) * 64
    if encapsulated:
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([bytes(range(200)) * 40, bytes(300)])
        ds["PixelData"].is_undefined_length = True
    ds.add_new(0xFFFCFFFC, "OB", b"\x00" * 64)
    src = tmp_path / "in.dcm"
    src.write_bytes(encode(ds, syntax))
    worker = Deidentifier(NATIVE, KEY)
    assert worker.native
    expected = worker.deidentify_bytes(src.read_bytes())
    monkeypatch.setattr(pipeline, "SMALL_FILE", 0)  # every file mapped
    outcome = worker.deidentify_file(src, tmp_path / "out" / "mapped.dcm")
    assert outcome.status == "written", outcome.reason
    assert (tmp_path / "out" / "mapped.dcm").read_bytes() == expected
    assert outcome.output_bytes == len(expected) and outcome.input_bytes == src.stat().st_size
    assert os.listdir(tmp_path / "out") == ["mapped.dcm"]
    result, size, written = worker.native_file(str(src), str(tmp_path / "out" / "again.dcm"))
    assert result.pixels is None  # no view of the unmapped input survives
    assert written == len(expected) and size == src.stat().st_size
    if syntax != DeflatedExplicitVRLittleEndian:
        assert result.pixel_range is not None


def test_native_mapped_path_refuses_a_truncated_file_and_writes_nothing(tmp_path, monkeypatch) -> None:
    import veil.pipeline as pipeline

    ds = make_dataset()
    ds.PixelData = bytes(4096)
    data = encode(ds)
    (tmp_path / "cut.dcm").write_bytes(data[:-100])  # the Pixel Data value runs past the end
    monkeypatch.setattr(pipeline, "SMALL_FILE", 0)
    outcome = Deidentifier(NATIVE, KEY).deidentify_file(tmp_path / "cut.dcm", tmp_path / "out" / "cut.dcm")
    assert outcome.status == "quarantined" and "past the end" in outcome.reason
    assert not (tmp_path / "out").exists() or os.listdir(tmp_path / "out") == []


def test_native_path_makes_missing_folders_and_refuses_a_file_in_the_way(tmp_path, monkeypatch) -> None:
    src = tmp_path / "in.dcm"
    src.write_bytes(encode(make_dataset()))
    worker = Deidentifier(NATIVE, KEY)
    out = tmp_path / "out" / "a" / "b" / "x.dcm"
    assert worker.deidentify_file(src, out).status == "written" and out.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.dcm"]
    (tmp_path / "out" / "blocked").write_text("a file where a folder should be")
    outcome = worker.deidentify_file(src, tmp_path / "out" / "blocked" / "y.dcm")
    assert outcome.status == "quarantined" and "NotADirectoryError" in outcome.reason
    monkeypatch.chdir(tmp_path / "out")
    assert worker.deidentify_file(src, "relative.dcm").status == "written"
    assert (tmp_path / "out" / "relative.dcm").read_bytes() == out.read_bytes()
