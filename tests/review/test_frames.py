"""Frames to PNG for the review UI: windows, the Modality LUT, MONOCHROME1, colour, frames, projections, and
clear errors for files that cannot be shown. Real files come from pydicom's bundled test data (never downloaded)."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, convert_color_space, pixel_array
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from veil.review import frames
from veil.review.frames import FrameError, Window


def data(name: str) -> Dataset:
    """One of the test files bundled with pydicom, read with :func:`frames.read_dataset`."""
    path = get_testdata_file(name, download=False)
    assert path is not None, f"{name} is not bundled with this pydicom"
    return frames.read_dataset(path)


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
    assert image[0, :401].max() == 0 and image[0, 600:].min() == 255
    assert 126 <= image[0, 500] <= 130
    assert np.all(np.diff(image[0].astype(int)) >= 0)
    full = frames.render(grey(ramp), window="full")
    assert full[0, 0] == 0 and full[0, 4] > 0 and full[0, 1000] == 255, "min to black, max to white"


def test_presets_the_file_window_first_and_full_by_default() -> None:
    ramp = np.arange(0, 100, dtype=np.uint16).reshape(10, 10)
    plain = grey(ramp)
    assert [w.name for w in frames.windows(plain)] == ["full", "auto"]
    assert frames.render(plain).max() == 255, "the default shows the maximum (burned-in text) at full white"
    windowed = grey(ramp, WindowCenter=[20, 60], WindowWidth=[10, 30], Modality="CT")
    presets = frames.windows(windowed)
    assert presets[0] == Window("file", 20.0, 10.0)
    assert {"brain", "soft tissue", "lung", "bone", "auto", "full"} <= {w.name for w in presets}
    assert frames.render(windowed)[1, 5] == 0 and frames.render(windowed)[2, 5] == 255  # 15 and 25
    assert frames.render(windowed, window="bone").shape == (10, 10)
    with pytest.raises(FrameError, match="unknown window"):
        frames.render(windowed, window="nope")
    assert not frames.windows(data("SC_rgb_rle.dcm")), "no window applies to colour"


def test_rescale_is_applied_before_the_window() -> None:
    ramp = np.arange(0, 100, dtype=np.uint16).reshape(10, 10)
    shifted = frames.frame_array(grey(ramp, RescaleSlope=1, RescaleIntercept=-1000, Modality="CT"))
    assert shifted.dtype == np.float32 and shifted.min() == -1000 and shifted.max() == -901
    ct = data("CT_small.dcm")
    stored = pixel_array(ct).astype(np.float64)
    expected = stored * float(ct.RescaleSlope) + float(ct.RescaleIntercept)
    assert float(ct.RescaleIntercept) != 0 and np.allclose(frames.frame_array(ct), expected)
    assert decoded(frames.render_png(ct)).shape == (ct.Rows, ct.Columns)
    assert decoded(frames.render_png(get_testdata_file("MR_small.dcm", download=False))).shape == (64, 64)


def test_an_enhanced_image_keeps_rescale_and_window_in_its_functional_groups() -> None:
    stack = np.stack([np.full((4, 4), 10), np.full((4, 4), 20)]).astype(np.uint16)
    ds = grey(stack)
    ds.SharedFunctionalGroupsSequence = [Dataset()]
    ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence = [Dataset()]
    ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0].RescaleSlope = 2
    ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0].RescaleIntercept = -5
    ds.SharedFunctionalGroupsSequence[0].FrameVOILUTSequence = [Dataset()]
    ds.SharedFunctionalGroupsSequence[0].FrameVOILUTSequence[0].WindowCenter = 30
    ds.SharedFunctionalGroupsSequence[0].FrameVOILUTSequence[0].WindowWidth = 40
    assert frames.frame_array(ds, 1).max() == 35
    assert frames.windows(ds)[0] == Window("file", 30.0, 40.0)


def test_monochrome1_is_shown_inverted() -> None:
    ct = data("CT_small.dcm")
    inverted = copy.deepcopy(ct)
    inverted.PhotometricInterpretation = "MONOCHROME1"
    for window in (None, "lung", (40.0, 400.0)):
        two, one = frames.render(ct, window=window), frames.render(inverted, window=window)
        assert np.array_equal(one, 255 - two) and two.min() != two.max()


def test_ybr_renders_as_its_rgb_twin() -> None:
    rgb = frames.render(data("SC_rgb_rle.dcm")).astype(int)
    assert rgb.shape == (100, 100, 3) and rgb.std() > 20
    # pydicom already turns YBR_FULL_422, native (upsampled) or JPEG, into RGB: it must not be converted twice.
    for twin in ("SC_ybr_full_422_uncompressed.dcm", "SC_rgb_dcmtk_+eb+cy+s2.dcm"):
        assert np.abs(frames.render(data(twin)).astype(int) - rgb).mean() < 2, twin
    ybr = data("SC_rgb_rle.dcm")
    ybr.PixelData = convert_color_space(pixel_array(ybr), "RGB", "YBR_FULL").astype(np.uint8).tobytes()
    ybr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ybr.PhotometricInterpretation = "YBR_FULL"
    assert np.abs(frames.render(ybr).astype(int) - rgb).max() <= 3
    assert decoded(frames.render_png(ybr)).shape == (100, 100, 3)
    assert frames.render(data("SC_rgb_rle_16bit.dcm")).dtype == np.uint8


def test_compressed_ybr_frames_come_out_rgb(monkeypatch: pytest.MonkeyPatch) -> None:
    import pydicom.pixels

    ds = data("examples_ybr_color.dcm")
    asked: list[Any] = []
    real = pydicom.pixels.pixel_array

    def spy(*args: Any, **kwargs: Any) -> Any:
        asked.append(kwargs["index"])
        return real(*args, **kwargs)

    monkeypatch.setattr(pydicom.pixels, "pixel_array", spy)
    image = frames.render(ds, frame=5).astype(int)
    assert asked == [5], "only the frame shown is decoded"
    stored = real(ds, index=5, as_rgb=False)  # as stored: YBR
    expected = convert_color_space(stored, "YBR_FULL", "RGB").astype(int)
    assert image.shape == (240, 320, 3)
    assert np.abs(image - expected).mean() < 2, "shown as RGB"
    assert np.abs(image - stored.astype(int)).mean() > 10, "not the YBR values as they are stored"


def test_palette_colour_goes_through_its_lut() -> None:
    ds = data("examples_palette.dcm")
    image = frames.render(ds)
    lut = apply_color_lut(pixel_array(ds), ds)
    assert image.shape == (ds.Rows, ds.Columns, 3) and lut.dtype == np.uint16
    assert np.array_equal(image, (lut >> 8).astype(np.uint8))
    assert np.abs(image[..., 0].astype(int) - image[..., 2]).max() > 50, "colour, not grey"


def test_a_compressed_file_decodes_as_its_uncompressed_twin() -> None:
    plain = frames.frame_array(data("MR_small.dcm"))
    for name in ("MR_small_jp2klossless.dcm", "MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm"):
        assert np.array_equal(frames.frame_array(data(name)), plain), name
    assert frames.render(data("JPEG2000.dcm")).shape == (1024, 256)


def test_frames_are_chosen_and_checked() -> None:
    stack = np.zeros((3, 8, 8), dtype=np.uint16)
    for i in range(3):
        stack[i, i, :] = 1000
    ds = grey(stack)
    assert frames.frame_count(ds) == 3 and frames.frame_count(data("CT_small.dcm")) == 1
    rows = [int(np.argmax(frames.frame_array(ds, i).max(axis=1))) for i in range(3)]
    assert rows == [0, 1, 2]
    for bad in (3, -1):
        with pytest.raises(FrameError, match="out of range"):
            frames.frame_array(ds, bad)
    cine = data("examples_ybr_color.dcm")
    assert frames.frame_count(cine) == 30
    assert not np.array_equal(frames.render(cine, 0), frames.render(cine, 29))
    with pytest.raises(FrameError, match="out of range"):
        frames.render_png(cine, 30)


def test_projection_shows_what_any_slice_shows() -> None:
    slices = [np.full((16, 16), 100, dtype=np.uint16) for _ in range(3)]
    slices[1][2:6, 2:6] = 1000  # bright on one slice
    slices[2][10:14, 10:14] = 0  # dark on another
    scout = grey(np.full((4, 4), 5000, dtype=np.uint16))  # another size: skipped
    series = [grey(s) for s in slices] + [scout]
    top = frames.projection(series, "max")
    assert top.shape == (16, 16) and top[3, 3] == 255 and top[12, 12] == 0 and top[0, 0] < 255
    bottom = frames.projection(series, "min")
    assert bottom[12, 12] == 0 and bottom[3, 3] == bottom[0, 0] == 255
    one_file = frames.projection([grey(np.stack(slices))], "max")
    assert np.array_equal(one_file, top), "a multi-frame file is a series too"
    assert decoded(frames.projection_png(series, max_side=8)).shape == (8, 8)
    mono1 = [grey(s, PhotometricInterpretation="MONOCHROME1") for s in slices]
    assert np.array_equal(frames.projection(mono1, "max"), 255 - top)
    with pytest.raises(FrameError):
        frames.projection(series, "mean")
    with pytest.raises(FrameError):
        frames.projection([], "max")


def test_projection_takes_the_most_common_size_counting_frames() -> None:
    cine = grey(np.stack([np.eye(8) * 100 * (i + 1) for i in range(3)]))  # 3 frames of 8 x 8
    singles = [grey(np.ones((16, 16)) * 900) for _ in range(2)]
    assert frames.projection(singles + [cine]).shape == (8, 8)
    colour = frames.projection([data("SC_rgb_rle.dcm"), data("SC_rgb_rle_2frame.dcm")], "min")
    assert colour.shape == (100, 100) and colour.min() == 0 and colour.max() == 255
    broken = grey(np.zeros((8, 8)))
    broken.PixelData = b"\0" * 10
    with pytest.raises(FrameError, match="could be decoded"):
        frames.projection([broken])


def test_files_that_cannot_be_shown_raise_frame_error(tmp_path: Path) -> None:
    with pytest.raises(FrameError, match="no pixel data"):
        frames.read_dataset(get_testdata_file("rtplan.dcm", download=False))
    with pytest.raises(FrameError, match="cannot decode"):
        frames.render(data("MR_truncated.dcm"))
    with pytest.raises(FrameError, match="cannot read the file: FileNotFoundError"):
        frames.read_dataset(tmp_path / "absent.dcm")
    for name in ("CT_small.dcm", "examples_ybr_color.dcm"):
        whole = Path(get_testdata_file(name, download=False)).read_bytes()
        failed = []
        for cut in (0, 10, 131, 700, len(whole) // 2, len(whole) - 3):
            try:  # a PNG or a FrameError, never another exception type, wherever the file ends
                ds = frames.read_dataset(whole[:cut])
                assert decoded(frames.render_png(ds, frames.frame_count(ds) - 1)).size > 0
            except FrameError:
                failed.append(cut)
        assert failed[:5] == [0, 10, 131, 700, len(whole) // 2], name
    with pytest.raises(FrameError):
        frames.read_dataset(b"not dicom at all")
    with pytest.raises(FrameError, match="8-bit"):
        frames.png_bytes(np.zeros((2, 2), np.float32))
    with pytest.raises(FrameError, match="width"):
        frames.render(grey(np.zeros((2, 2))), window=(0.0, 0.0))
    assert frames.render(grey(np.zeros((2, 2), np.uint16)), window=Window("w", 0, 1)).shape == (2, 2)
