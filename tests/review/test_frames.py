"""Frames to PNG for the review UI: windows, the Modality LUT, MONOCHROME1, colour, frames, projections, and
clear errors for files that cannot be shown."""

from __future__ import annotations

import copy
import io

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from veil.review import frames
from veil.review.frames import FrameError, Window


def grey(values: np.ndarray, **extra: object) -> Dataset:
    """A MONOCHROME2 dataset of 16-bit unsigned ``values`` (frames, rows, columns) or (rows, columns)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPInstanceUID = generate_uid()
    if values.ndim == 3:
        ds.NumberOfFrames = values.shape[0]
    ds.Rows, ds.Columns = values.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = values.astype(np.uint16).tobytes()
    for name, value in extra.items():
        setattr(ds, name, value)
    return ds


def decoded(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_the_linear_window_of_ps3_3() -> None:
    ramp = np.arange(0, 1001, dtype=np.uint16).reshape(1, 1001)
    image = frames.render(grey(ramp), window=(500.0, 200.0))
    assert image[0, :400].max() == 0 and image[0, 600:].min() == 255
    assert 120 <= image[0, 500] <= 135
    assert np.all(np.diff(image[0].astype(int)) >= 0)


def test_presets_the_file_window_first_and_full_by_default() -> None:
    ramp = np.arange(0, 100, dtype=np.uint16).reshape(10, 10)
    plain = grey(ramp)
    assert [w.name for w in frames.windows(plain)][:2] == ["full", "auto"]
    assert frames.render(plain).max() == 255, "the default shows the maximum (burned-in text) at full white"
    windowed = grey(ramp, WindowCenter=20, WindowWidth=10, Modality="CT")
    names = [w.name for w in frames.windows(windowed)]
    assert names[0] == "file" and {"brain", "lung", "bone"} <= set(names)
    assert frames.render(windowed, window="bone").shape == (10, 10)
    with pytest.raises(FrameError, match="unknown window"):
        frames.render(windowed, window="nope")


def test_rescale_is_applied_before_the_window() -> None:
    ramp = np.arange(0, 100, dtype=np.uint16).reshape(10, 10)
    shifted = frames.frame_array(grey(ramp, RescaleSlope=1, RescaleIntercept=-1000, Modality="CT"))
    assert shifted.min() == -1000 and shifted.max() == -901
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    assert frames.frame_array(ct).min() < 0 <= int(ct.pixel_array.min()) + 0, "CT_small's intercept is applied"
    assert decoded(frames.render_png(ct)).shape == (128, 128)


def test_monochrome1_is_shown_inverted() -> None:
    ramp = np.arange(0, 100, dtype=np.uint16).reshape(10, 10)
    two = frames.render(grey(ramp))
    one = frames.render(grey(ramp, PhotometricInterpretation="MONOCHROME1"))
    assert np.array_equal(one, 255 - two)


def test_colour_rgb_and_ybr_render_alike() -> None:
    rgb = pydicom.dcmread(get_testdata_file("SC_rgb_small_odd.dcm"))
    image = frames.render(rgb)
    assert image.shape == (rgb.Rows, rgb.Columns, 3) and image.dtype == np.uint8
    from pydicom.pixels import convert_color_space

    ybr = copy.deepcopy(rgb)
    ybr.PixelData = convert_color_space(rgb.pixel_array, "RGB", "YBR_FULL").astype(np.uint8).tobytes()
    ybr.PhotometricInterpretation = "YBR_FULL"
    back = frames.render(ybr)
    assert np.abs(back.astype(int) - image.astype(int)).max() <= 3
    assert decoded(frames.render_png(ybr)).shape == (rgb.Rows, rgb.Columns, 3)


def test_a_compressed_file_decodes() -> None:
    path = get_testdata_file("JPEG2000.dcm") or get_testdata_file("MR_small_RLE.dcm")
    assert path is not None
    image = frames.render(frames.read_dataset(path))
    assert image.ndim in (2, 3) and image.size > 0


def test_frames_are_chosen_and_checked() -> None:
    stack = np.zeros((3, 8, 8), dtype=np.uint16)
    for i in range(3):
        stack[i, i, :] = 1000
    ds = grey(stack)
    assert frames.frame_count(ds) == 3
    rows = [int(np.argmax(frames.frame_array(ds, i).max(axis=1))) for i in range(3)]
    assert rows == [0, 1, 2]
    with pytest.raises(FrameError, match="out of range"):
        frames.frame_array(ds, 3)


def test_projection_shows_what_any_slice_shows() -> None:
    slices = [np.full((16, 16), 100, dtype=np.uint16) for _ in range(3)]
    slices[1][2:6, 2:6] = 1000  # bright on one slice
    slices[2][10:14, 10:14] = 0  # dark on another
    series = [grey(s) for s in slices] + [grey(np.zeros((4, 4), dtype=np.uint16))]  # another size: skipped
    top = frames.projection(series, "max")
    assert top.shape == (16, 16) and top[3, 3] == 255 and top[12, 12] == 0
    bottom = frames.projection(series, "min")
    assert bottom[12, 12] == 0 and bottom[3, 3] == bottom[0, 0]
    assert decoded(frames.projection_png(series, max_side=8)).shape == (8, 8)
    with pytest.raises(FrameError):
        frames.projection(series, "mean")


def test_files_that_cannot_be_shown_raise_frame_error(tmp_path: object) -> None:
    with pytest.raises(FrameError, match="no pixel data"):
        frames.read_dataset(get_testdata_file("rtplan.dcm"))
    whole = open(get_testdata_file("CT_small.dcm"), "rb").read()
    with pytest.raises(FrameError):
        frames.render(frames.read_dataset(whole[: len(whole) // 2]))
    with pytest.raises(FrameError):
        frames.read_dataset(b"not dicom at all")
    assert frames.render(grey(np.zeros((2, 2), np.uint16)), window=Window("w", 0, 1)).shape == (2, 2)


def test_compressed_ybr_frames_come_out_rgb() -> None:
    from pydicom.pixels import convert_color_space, pixel_array

    path = get_testdata_file("examples_ybr_color.dcm")
    if path is None:
        pytest.skip("pydicom's examples_ybr_color.dcm is not installed")
    ds = frames.read_dataset(path)
    image = frames.render(ds, frame=5).astype(int)
    stored = pixel_array(ds, index=5, as_rgb=False)  # as stored: YBR
    expected = convert_color_space(stored, "YBR_FULL", "RGB").astype(int)
    assert image.shape == (240, 320, 3)
    assert np.abs(image - expected).mean() < 2, "shown as RGB"
    assert np.abs(image - stored.astype(int)).mean() > 10, "not the YBR values as they are stored"
