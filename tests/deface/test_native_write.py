"""The fast pieces of the series step: axis-aligned resampling against scipy's general path, the marks the
core writes for a defaced series against pydicom's marking, the defaced voxels written over uncompressed
Pixel Data in place (stored bits kept where nothing changed), and the header-only selection."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from scipy import ndimage

from veil.deface.grid import Volume
from veil.deface.select import candidate
from veil.deface.series import Assembled, mark, marking, native_frames, splice
from veil.keys import Key, KeyedFunctions
from veil.pipeline import Deidentifier
from veil.recipes import DefacePolicy, compile_recipe, load_recipe


@pytest.mark.parametrize("seed", range(8))
def test_axis_aligned_sampling_matches_scipy(seed: int) -> None:
    """Every axis order, flip and scale, nearest and linear, constant and nearest-edge outside: the values
    scipy's general affine_transform gives (the fast path reads each output axis from one input axis)."""
    from veil.deface.grid import sample

    rng = np.random.default_rng(seed)
    values = rng.standard_normal((23, 31, 17)).astype(np.float32)
    matrix = np.zeros((3, 3))
    for j, i in enumerate(rng.permutation(3)):
        matrix[i, j] = rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 2.5)
    offset = rng.uniform(-4.0, 30.0, 3)
    shape = (19, 26, 14)
    for order in (0, 1):
        for cval in (-7.0, None):
            want = ndimage.affine_transform(values, matrix, offset=offset, output_shape=shape, order=order,
                                            mode="nearest" if cval is None else "constant",
                                            cval=0.0 if cval is None else cval, prefilter=False)
            got = sample(values, matrix, offset, shape, order, cval)
            assert got.shape == shape
            np.testing.assert_allclose(got, want, atol=1e-5)
    # An oblique mapping takes the general path: the same answer by construction, checked for its shape.
    tilted = matrix + 0.05
    assert sample(values, tilted, offset, shape, 1, 0.0).shape == shape


def _worker(recipe: str = "research") -> Deidentifier:
    compiled = compile_recipe(load_recipe(recipe))
    return Deidentifier(compiled.plan, KeyedFunctions(Key(b"k" * 32), **compiled.key_parameters))


def _codes(ds: Dataset) -> list[str]:
    return [str(item.CodeValue) for item in ds.DeidentificationMethodCodeSequence]


def test_core_marking_is_pydicoms_marking() -> None:
    """The series step's marked rewrite writes what ``mark`` does to a data set: RecognizableVisualFeatures
    NO and 113102 after the profile's codes, once, whatever the input said."""
    worker = _worker()
    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    source.RecognizableVisualFeatures = "YES"
    out = io.BytesIO()
    source.save_as(out)
    data = out.getvalue()
    marker = worker.marked(marking(worker.plan.insert))
    assert worker.marked(marking(worker.plan.insert)) is marker  # made once
    assert worker.marked(worker.plan.insert) is worker
    assert marking(marking(worker.plan.insert)) == marking(worker.plan.insert)
    by_core = pydicom.dcmread(io.BytesIO(marker.rewritten(data).data))
    by_pydicom = pydicom.dcmread(io.BytesIO(worker.rewritten(data).data))
    assert "113102" not in _codes(by_pydicom) and by_pydicom.RecognizableVisualFeatures == "YES"
    mark(by_pydicom)
    assert by_core.RecognizableVisualFeatures == by_pydicom.RecognizableVisualFeatures == "NO"
    assert _codes(by_core) == _codes(by_pydicom)
    assert _codes(by_core)[0] == "113100" and _codes(by_core).count("113102") == 1
    assert [str(i.CodeMeaning) for i in by_core.DeidentificationMethodCodeSequence] == [
        str(i.CodeMeaning) for i in by_pydicom.DeidentificationMethodCodeSequence]
    # Everything else is the plain rewrite's: the pixels and the identity.
    assert by_core.PixelData == by_pydicom.PixelData
    assert by_core.SOPInstanceUID == by_pydicom.SOPInstanceUID


def _twelve_bit(raw: np.ndarray) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows, ds.Columns = raw.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 1
    ds.PixelData = raw.astype("<u2").tobytes()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_native_frames_read_the_stored_bits_and_splice_keeps_the_rest() -> None:
    """Signed 12-bit pixels with other bits set above them: read as their 12-bit values; the voxels the
    method changes get the new value, every other voxel keeps its stored 16 bits."""
    values = np.array([[-1000, -1, 0], [5, 2047, -2048]], np.int16)
    raw = (values.astype(np.int32) & 0x0FFF) | 0xA000  # the unused high bits hold something else
    data = _twelve_bit(raw)
    ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    start = data.rindex(b"\xe0\x7f\x10\x00") + 12
    at = (start, start + raw.size * 2)
    frames = native_frames([ds], [data], [at])
    assert frames is not None
    np.testing.assert_array_equal(frames[0][0], values)
    volume = Volume(frames[0].copy(), np.eye(4), "CT")
    assembled = Assembled(volume, [(0, 0)], [False], [""])
    defaced = volume.data.copy()
    defaced[0, 0, 1] = -1000
    new = splice([data], [at], assembled, defaced)[0]
    assert len(new) == len(data) and new[:start] == data[:start]
    stored = np.frombuffer(new, "<u2", raw.size, start).reshape(raw.shape)
    expected = raw.astype(np.uint16).copy()
    expected[0, 1] = np.array(-1000, np.int16).view(np.uint16)
    np.testing.assert_array_equal(stored, expected)
    # Unchanged voxels: the same bytes; a series that is not one plain image each: not read here.
    assert splice([data], [at], assembled, volume.data)[0] == data
    assert native_frames([ds], [data], [None]) is None
    ds.NumberOfFrames = 2
    assert native_frames([ds], [data], [at]) is None


def _header(tmp_path: Path, name: str, **values: object) -> str:
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    for keyword, value in values.items():
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    path = tmp_path / name
    ds.save_as(path)
    return str(path)


def test_selection_reads_the_header_with_the_core(tmp_path: Path) -> None:
    policy = DefacePolicy()
    head = candidate(_header(tmp_path, "head", BodyPartExamined="HEAD"), policy)
    assert head is not None and head.why == "body part"
    ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    assert head.series == f"{ds.StudyInstanceUID}\\{ds.SeriesInstanceUID}"
    unknown = candidate(_header(tmp_path, "unknown", BodyPartExamined=None), policy)
    assert unknown is not None and unknown.why == "check"
    assert candidate(_header(tmp_path, "chest", BodyPartExamined="CHEST"), policy) is None
    assert candidate(_header(tmp_path, "scout", BodyPartExamined="HEAD",
                            ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"]), policy) is None
    assert candidate(_header(tmp_path, "colour", BodyPartExamined="HEAD", SamplesPerPixel=3), policy) is None
    assert candidate(_header(tmp_path, "us", BodyPartExamined="HEAD", Modality="US"), policy) is None
    skip = DefacePolicy(unknown_body_part="skip")
    assert candidate(_header(tmp_path, "unknown2", BodyPartExamined=None), skip) is None
    broken = tmp_path / "broken"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 40)
    assert candidate(str(broken), policy) is None
    assert candidate(str(tmp_path / "missing"), policy) is None
