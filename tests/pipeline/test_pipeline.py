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
from rewrite_cases import DEID, KEY, encode, make_dataset

from veil.core.plan import Action, Plan, Rule
from veil.pipeline import Deidentifier
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


def _large(syntax: str, *, sop_instance: bool = True, trailer: bool = True) -> bytes:
    ds = make_dataset()
    ds.Rows = ds.Columns = 256
    ds.PixelData = bytes(range(256)) * 512  # 128 KiB: past the head the core reads
    if trailer:
        ds.add_new(0xFFFCFFFC, "OB", b"\x00" * 64)
    if sop_instance:
        return encode(ds, syntax)
    # No SOP Instance UID in the data set or the File Meta (old ACR-NEMA style): the core names the output
    # by a digest of the whole input.
    from pydicom.dataset import FileMetaDataset

    del ds.SOPInstanceUID
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.TransferSyntaxUID = syntax
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=False, implicit_vr=syntax == ImplicitVRLittleEndian,
               little_endian=syntax != ExplicitVRBigEndian)
    return buf.getvalue()


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian])
@pytest.mark.parametrize("variant", ["plain", "no trailer", "no SOP Instance UID", "pixels replaced"])
def test_large_file_rewritten_around_its_pixels_writes_what_the_whole_file_gives(
    tmp_path, monkeypatch, syntax, variant
) -> None:
    """A large file is rewritten from its head and the bytes after its Pixel Data value (the value itself
    is only copied by the kernel); where that cannot be done (no SOP Instance UID: the output is named by a
    digest of the whole input; an action that replaces the pixels) the core maps the file. Every way gives
    the bytes of the in-memory rewrite."""
    from veil.core import _core

    data = _large(syntax, sop_instance=variant != "no SOP Instance UID", trailer=variant != "no trailer")
    plan = NATIVE
    if variant == "pixels replaced":
        plan = Plan(tags={**NATIVE.tags, 0x7FE00010: Rule(Action.EMPTY)}, vr_defaults=NATIVE.vr_defaults,
                    default_public=Action.KEEP, default_private=Action.REMOVE)
    src = tmp_path / "in.dcm"
    src.write_bytes(data)
    worker = Deidentifier(plan, KEY)
    expected = worker.deidentify_bytes(data)
    result, size, written = worker.native_file(str(src), str(tmp_path / "around.dcm"))
    assert (tmp_path / "around.dcm").read_bytes() == expected and written == len(expected) and size == len(data)
    assert result.pixels is None
    monkeypatch.setattr(_core, "HEAD_BYTES", 0)  # no head: the core maps every large file
    worker.native_file(str(src), str(tmp_path / "mapped.dcm"))
    assert (tmp_path / "mapped.dcm").read_bytes() == expected


def test_large_file_whose_pixels_run_past_its_end_is_refused_with_the_mapped_reason(tmp_path) -> None:
    data = _large(ExplicitVRLittleEndian, trailer=False)
    (tmp_path / "cut.dcm").write_bytes(data[:-1000])
    outcome = Deidentifier(NATIVE, KEY).deidentify_file(tmp_path / "cut.dcm", tmp_path / "out" / "cut.dcm")
    assert outcome.status == "quarantined" and "runs past the end" in outcome.reason
    assert not (tmp_path / "out" / "cut.dcm").exists()


_BASIC_WORKER: list[Deidentifier] = []


def _basic_worker() -> Deidentifier:
    if not _BASIC_WORKER:
        from veil.keys import Key, KeyedFunctions
        from veil.recipes import compile_recipe

        compiled = compile_recipe("ps3.15-basic")
        _BASIC_WORKER.append(Deidentifier(compiled.plan, KeyedFunctions(Key(bytes(range(32))),
                                                                        **compiled.key_parameters)))
    return _BASIC_WORKER[0]


def test_every_way_the_core_writes_a_file_gives_the_same_bytes(dicom_file, tmp_path, monkeypatch) -> None:
    """Each corpus and pydicom test file through ps3.15-basic (the core's own path): read whole, rewritten
    around its pixels from head and tail, or mapped, the output is the in-memory rewrite's, and a file the
    core refuses is refused every way, with nothing written."""
    from veil import pipeline as pipeline_module
    from veil.core import _core
    from veil.errors import VeilError

    worker = _basic_worker()
    assert worker.native
    data = dicom_file.read_bytes()
    try:
        expected: bytes | None = worker.deidentify_bytes(data, str(dicom_file))
    except VeilError:
        expected = None
    monkeypatch.setattr(pipeline_module, "SMALL_FILE", 0)  # every file takes the large-file path
    for label, head in (("around", _core.HEAD_BYTES), ("mapped", 0)):
        monkeypatch.setattr(_core, "HEAD_BYTES", head)
        out = tmp_path / label / "out.dcm"
        outcome = worker.deidentify_file(dicom_file, out)
        if expected is None:
            assert outcome.status == "quarantined", label
            assert not out.exists()
        else:
            assert outcome.status == "written", (label, outcome.reason)
            assert out.read_bytes() == expected, label


def test_damaged_large_files_give_what_the_whole_file_gives(tmp_path, monkeypatch) -> None:
    """Random damage to a large file's head (bytes flipped) and length (cut short): rewritten around its
    pixels, it is written exactly as the in-memory rewrite writes it, or refused as that refuses it."""
    import random

    from veil import pipeline as pipeline_module
    from veil.errors import VeilError

    monkeypatch.setattr(pipeline_module, "SMALL_FILE", 0)
    rng = random.Random(20261125)
    worker = Deidentifier(NATIVE, KEY)
    base = _large(ExplicitVRLittleEndian)
    pixels_at = base.index(bytes(range(256)) * 4)
    outcomes = {"written": 0, "quarantined": 0}
    for i in range(300):
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(0, pixels_at + 16)] = rng.randrange(256)
        if rng.random() < 0.3:
            del data[rng.randrange(pixels_at - 64, len(data)):]
        data = bytes(data)
        try:
            expected: bytes | None = worker.deidentify_bytes(data)
        except VeilError:
            expected = None
        (tmp_path / "in.dcm").write_bytes(data)
        out = tmp_path / f"{i}.dcm"
        outcome = worker.deidentify_file(tmp_path / "in.dcm", out)
        outcomes[outcome.status] += 1
        if expected is None:
            assert outcome.status == "quarantined" and not out.exists(), i
        else:
            assert outcome.status == "written" and out.read_bytes() == expected, (i, outcome.reason)
    assert outcomes["written"] > 30 and outcomes["quarantined"] > 30  # both kinds were tried
