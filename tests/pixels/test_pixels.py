"""Pixel rules and redaction: every pixel outside the redacted boxes unchanged, every pixel inside the fill value,
on native, RLE and decoded-then-RLE paths; rules parsed with file and line; the batch equals one-by-one."""

from __future__ import annotations

import io
import itertools
import textwrap
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from veil.core.plan import Plan
from veil.errors import MalformedDicom, RecipeError
from veil.pixels.layout import PixelLayout, frames_view
from veil.pixels.policy import at_risk, decide, match_rule
from veil.pixels.redact import (
    CLEAN_PIXEL_DATA_CODE,
    RedactionItem,
    clean_pixel_plan,
    redact_batch,
    redact_file_bytes,
    redact_native,
    ultrasound_data_regions,
)
from veil.recipes import PixelPolicy, load_pixel_rules, load_recipe

# A tiny 3x5 bitmap font: enough to plant "text" whose pixels differ from the background.
_GLYPHS = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001001001001",
    "8": "111101111101111", "9": "111101111001111", "D": "110101101101110", "O": "111101101101111",
    "E": "111100110100111", " ": "000000000000000",
}


def draw_text(image: np.ndarray, text: str, x: int, y: int, scale: int, value: int) -> tuple[int, int, int, int]:
    """Draws text into a (rows, cols[, samples]) array; returns its box (x, y, width, height)."""
    for i, ch in enumerate(text):
        glyph = np.array([int(b) for b in _GLYPHS[ch]], dtype=bool).reshape(5, 3)
        big = np.kron(glyph, np.ones((scale, scale), dtype=bool))
        gx = x + i * 4 * scale
        target = image[y : y + 5 * scale, gx : gx + 3 * scale]
        target[big[: target.shape[0], : target.shape[1]]] = value  # clipped at the image's edge
    return x, y, len(text) * 4 * scale, 5 * scale


def make_pixels(layout: PixelLayout, seed: int = 0) -> np.ndarray:
    """Random frames (F, R, C, S) in the layout's dtype, with text drawn into each frame."""
    rng = np.random.default_rng(seed)
    top = 2**layout.bits_allocated - 1
    shape = (layout.number_of_frames, layout.rows, layout.columns, layout.samples_per_pixel)
    arr = rng.integers(1, top, size=shape, dtype=np.uint64).astype(layout.dtype.newbyteorder("="))
    for f in range(layout.number_of_frames):
        draw_text(arr[f], "DOE 1234", 4, 4, 1, top)
    return arr


def to_bytes(arr: np.ndarray, layout: PixelLayout) -> bytearray:
    """The frames as stored: planar configuration 1 puts each colour plane whole (PS3.3 C.7.6.3.1.3)."""
    data = arr.astype(layout.dtype)
    if layout.samples_per_pixel > 1 and layout.planar_configuration == 1:
        data = data.transpose(0, 3, 1, 2)
    return bytearray(np.ascontiguousarray(data).tobytes())


def inside(layout: PixelLayout, regions, frames=None) -> np.ndarray:
    mask = np.zeros((layout.number_of_frames, layout.rows, layout.columns), dtype=bool)
    chosen = range(layout.number_of_frames) if frames is None else frames
    for f in chosen:
        for x, y, w, h in regions:
            mask[f, max(y, 0) : y + h, max(x, 0) : x + w] = True
    return mask


def assert_redacted(before: np.ndarray, after: np.ndarray, mask: np.ndarray, fill: int) -> None:
    assert np.array_equal(after[~mask], before[~mask]), "a pixel outside the redacted boxes changed"
    assert (after[mask] == fill).all(), "a pixel inside a redacted box is not the fill value"


LAYOUTS = [
    PixelLayout(48, 64, 1, 8),
    PixelLayout(48, 64, 1, 16),
    PixelLayout(48, 64, 1, 16, big_endian=True),
    PixelLayout(48, 64, 1, 32),
    PixelLayout(48, 64, 3, 8, planar_configuration=0),
    PixelLayout(48, 64, 3, 8, planar_configuration=1),
    PixelLayout(48, 64, 3, 16, planar_configuration=1, number_of_frames=3),
    PixelLayout(48, 64, 1, 16, number_of_frames=4),
]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda lay: f"{lay.bits_allocated}b{lay.samples_per_pixel}s"
                         f"p{lay.planar_configuration}f{lay.number_of_frames}{'be' if lay.big_endian else ''}")
def test_native_redaction_blanks_only_the_regions(layout: PixelLayout) -> None:
    before = make_pixels(layout)
    buffer = to_bytes(before, layout)
    regions = [(4, 4, 64, 10), (60, 40, 20, 20), (-5, 30, 10, 3)]  # the last two reach outside the image
    redact_native(buffer, layout, regions, fill=7)
    after = frames_view(buffer, layout)
    assert_redacted(before, after, inside(layout, regions), 7)


def test_listed_frames_only_are_redacted() -> None:
    layout = PixelLayout(32, 32, 1, 16, number_of_frames=5)
    before = make_pixels(layout)
    buffer = to_bytes(before, layout)
    redact_native(buffer, layout, [(0, 0, 16, 8)], frames=(1, 3, 9))  # frame 9 does not exist: ignored
    assert_redacted(before, frames_view(buffer, layout), inside(layout, [(0, 0, 16, 8)], [1, 3]), 0)


def test_keep_regions_blank_everything_else() -> None:
    layout = PixelLayout(40, 60, 3, 8, number_of_frames=2)
    before = make_pixels(layout)
    buffer = to_bytes(before, layout)
    redact_native(buffer, layout, [], keep=[(10, 10, 30, 20)])
    mask = ~inside(layout, [(10, 10, 30, 20)])
    assert_redacted(before, frames_view(buffer, layout), mask, 0)


def test_read_only_and_short_buffers_are_refused() -> None:
    layout = PixelLayout(8, 8, 1, 16)
    with pytest.raises(ValueError):
        redact_native(bytes(128), layout, [(0, 0, 2, 2)])
    with pytest.raises(MalformedDicom):
        redact_native(bytearray(100), layout, [(0, 0, 2, 2)])


def test_batch_equals_each_item_redacted_alone() -> None:
    shapes = [PixelLayout(32, 40, 1, 16, number_of_frames=2), PixelLayout(32, 40, 3, 8, planar_configuration=1)]
    rules = [((2, 2, 10, 10),), ((0, 20, 40, 5), (30, 0, 5, 5))]
    items = []
    for seed, (layout, regions) in enumerate(itertools.product(shapes, rules)):
        for k in range(3):
            raw = bytes(to_bytes(make_pixels(layout, seed * 10 + k), layout))
            items.append(RedactionItem(raw + b"\0" if k == 2 else raw, layout, regions))  # one padded
    out = redact_batch(items)
    assert len(out) == len(items)
    for item, got in zip(items, out, strict=True):
        expected = bytearray(item.pixels)
        redact_native(expected, item.layout, item.regions)
        assert bytes(got) == bytes(expected)


# --- files ----------------------------------------------------------------------------------------------


def make_file(layout: PixelLayout, arr: np.ndarray, syntax=ExplicitVRLittleEndian, **extra) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = layout.rows, layout.columns
    ds.SamplesPerPixel = layout.samples_per_pixel
    ds.PhotometricInterpretation = "RGB" if layout.samples_per_pixel == 3 else "MONOCHROME2"
    if layout.samples_per_pixel == 3:
        ds.PlanarConfiguration = layout.planar_configuration
    ds.BitsAllocated = ds.BitsStored = layout.bits_allocated
    ds.HighBit = layout.bits_allocated - 1
    ds.PixelRepresentation = 0
    if layout.number_of_frames > 1:
        ds.NumberOfFrames = layout.number_of_frames
    ds.BurnedInAnnotation = "YES"
    for k, v in extra.items():
        setattr(ds, k, v)
    ds.PixelData = bytes(to_bytes(arr, layout))
    if syntax == RLELossless:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.compress(RLELossless, encoding_plugin="pydicom")
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def as_frames(ds: Dataset) -> np.ndarray:
    a = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1)) == 1:
        a = a[None]
    return a if a.ndim == 4 else a[..., None]


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless])
@pytest.mark.parametrize("layout", [PixelLayout(40, 50, 1, 8), PixelLayout(40, 50, 1, 16, number_of_frames=3),
                                    PixelLayout(40, 50, 3, 8, number_of_frames=2)], ids=["u8", "u16x3", "rgbx2"])
def test_file_redaction_is_lossless_and_marks_the_output(syntax, layout: PixelLayout) -> None:
    before = make_pixels(layout)
    data = make_file(layout, before, syntax)
    regions = [(4, 4, 64, 10)]
    out = pydicom.dcmread(io.BytesIO(redact_file_bytes(data, regions)))
    assert out.file_meta.TransferSyntaxUID == syntax  # native stays native, RLE stays RLE
    assert_redacted(before, as_frames(out), inside(layout, regions), 0)
    assert out.BurnedInAnnotation == "NO"
    assert [c.CodeValue for c in out.DeidentificationMethodCodeSequence] == [CLEAN_PIXEL_DATA_CODE[0]]


def test_existing_method_codes_are_kept_and_the_clean_pixel_code_added_once() -> None:
    layout = PixelLayout(16, 16)
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = "113100", "DCM", "Basic Profile"
    data = make_file(layout, make_pixels(layout), DeidentificationMethodCodeSequence=[item])
    twice = redact_file_bytes(redact_file_bytes(data, [(0, 0, 4, 4)]), [(0, 0, 4, 4)])
    codes = [c.CodeValue for c in pydicom.dcmread(io.BytesIO(twice)).DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113101"]


@pytest.mark.parametrize("name", ["SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_jpeg_gdcm.dcm", "JPGExtended.dcm",
                                  "JPEG2000.dcm", "MR_small_jpeg_ls_lossless.dcm", "SC_rgb_rle_2frame.dcm"])
def test_compressed_input_is_decoded_redacted_and_written_losslessly(name: str) -> None:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} not available")
    original = pydicom.dcmread(path)
    before = as_frames(original)  # pydicom's decode, YBR converted to RGB as the output will be
    lossy = original.file_meta.TransferSyntaxUID.is_compressed and original.file_meta.TransferSyntaxUID not in (
        "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.5")
    regions = [(2, 3, 10, 5), (20, 20, 8, 8)]
    for output, syntax in (("rle", RLELossless), ("uncompressed", ExplicitVRLittleEndian),
                           ("jpeg-ls", JPEGLSLossless), ("jpeg2000", "1.2.840.10008.1.2.4.90")):
        out = pydicom.dcmread(io.BytesIO(redact_file_bytes(open(path, "rb").read(), regions, output=output)))
        assert out.file_meta.TransferSyntaxUID == syntax
        layout = PixelLayout.from_dataset(out)
        assert_redacted(before, as_frames(out), inside(layout, regions), 0)
        if original.SamplesPerPixel == 3:
            rct = output == "jpeg2000" and out.PhotometricInterpretation == "YBR_RCT"  # reversible: RGB to readers
            assert (out.PhotometricInterpretation == "RGB" or rct) and out.PlanarConfiguration == 0
        assert (out.get("LossyImageCompression") == "01") == lossy
        assert out.SOPInstanceUID == original.SOPInstanceUID


@pytest.mark.filterwarnings("ignore:End of file reached")
def test_undecodable_pixel_data_is_malformed() -> None:
    layout = PixelLayout(16, 16)
    data = bytearray(make_file(layout, make_pixels(layout), RLELossless))
    data[-40:] = b"\xff" * 40  # the RLE segments' bytes run out / overrun
    with pytest.raises(MalformedDicom):
        redact_file_bytes(bytes(data), [(0, 0, 4, 4)])
    with pytest.raises(MalformedDicom):
        redact_file_bytes(b"not dicom at all", [(0, 0, 4, 4)])


def _us_regions_item(x0: int, y0: int, x1: int, y1: int) -> Dataset:
    item = Dataset()
    item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1, y1
    item.RegionSpatialFormat, item.RegionDataType, item.RegionFlags = 1, 1, 0
    return item


def test_ultrasound_regions_keep_only_the_data_regions() -> None:
    layout = PixelLayout(48, 64, 3, 8)
    before = make_pixels(layout)
    data = make_file(layout, before, Modality="US", SequenceOfUltrasoundRegions=[_us_regions_item(10, 12, 49, 39)])
    assert ultrasound_data_regions(data) == ((10, 12, 40, 28),)
    out = pydicom.dcmread(io.BytesIO(redact_file_bytes(data, ultrasound_regions=True)))
    assert_redacted(before, as_frames(out), ~inside(layout, [(10, 12, 40, 28)]), 0)
    without = make_file(layout, before, Modality="US")
    with pytest.raises(MalformedDicom, match="Ultrasound Regions"):
        redact_file_bytes(without, ultrasound_regions=True)


def test_clean_pixel_plan_marks_the_header() -> None:
    plan = Plan(insert=((0x00120062, "CS", "YES"), (0x00120064, "SQ", (((0x00080100, "SH", "113100"),),))))
    insert = dict((tag, value) for tag, _, value in clean_pixel_plan(plan).insert)
    assert insert[0x00280301] == "NO"
    assert [dict((t, v) for t, _, v in item)[0x00080100] for item in insert[0x00120064]] == ["113100", "113101"]


# --- rules ----------------------------------------------------------------------------------------------


def write_recipe(tmp_path, pixels: str) -> str:
    path = tmp_path / "site.yml"
    path.write_text("name: site\nversion: \"1\"\nextends: research\nrules: []\npixels:\n"
                    + textwrap.indent(textwrap.dedent(pixels), "  "))
    return str(path)


US_INFO = {"modality": "US", "manufacturer": "ACME Medical", "manufacturer_model_name": "X9", "rows": 480,
           "columns": 640, "image_type": "ORIGINAL\\PRIMARY", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.6.1",
           "burned_in_annotation": None, "software_versions": "1.0"}


def test_pixels_section_resolves_rules_in_order_with_wildcards(tmp_path) -> None:
    recipe = load_recipe(write_recipe(tmp_path, """
        library: [ultrasound]
        at_risk: quarantine
        rules:
          - {match: {Modality: US, Manufacturer: "acme*", Rows: 480, Columns: 640}, regions: [[0, 0, 640, 40]]}
          - {match: {Modality: [XA, RF]}, regions: [[0, 0, 100, 20]], frames: [0, 2]}
    """))
    policy = recipe.pixels
    assert policy is not None and policy.at_risk == "quarantine"
    rule = match_rule(policy, US_INFO)
    assert rule is not None and rule.regions == ((0, 0, 640, 40),) and rule.source == "site.yml:10"
    other = match_rule(policy, {**US_INFO, "manufacturer": "Other"})
    assert other is not None and other.ultrasound_regions  # the library's generic rule
    xa = match_rule(policy, {"modality": "RF"})
    assert xa is not None and xa.frames == (0, 2)
    assert match_rule(policy, {"modality": "CT"}) is None
    assert recipe.content_hash != load_recipe("research").content_hash


def test_at_risk_policy_applies_to_images_no_rule_matches() -> None:
    policy = PixelPolicy(at_risk="flag")
    assert decide(policy, {"modality": "SC"}).action == "flag"
    # Not at risk by the header: pre-filtered (BurnedInAnnotation NO is a claim, not a proof), or kept where
    # the policy pre-filters nothing or the modality holds no burned-in text (segmentations, dose grids).
    assert decide(policy, {"modality": "OT", "burned_in_annotation": "NO"}).action == "prefilter"
    assert decide(policy, {"modality": "CT", "burned_in_annotation": "YES"}).action == "flag"
    assert decide(policy, {"modality": "CT"}).action == "prefilter"
    assert decide(PixelPolicy(prefilter=False), {"modality": "CT"}).action == "keep"
    assert decide(policy, {"modality": "SEG"}).action == "keep"
    assert at_risk({"modality": "MR", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.7.4"})
    assert decide(PixelPolicy(ultrasound_regions=True), {"modality": "US"}).action == "redact"


def test_shipped_library_loads() -> None:
    rules = load_pixel_rules("ultrasound")
    assert rules and all(r.source.startswith("ultrasound.yml:") for r in rules)


@pytest.mark.parametrize(("pixels", "line", "problem"), [
    ("at_risk: shred\n", 6, "not one of"),
    ("rules:\n  - {match: {Modality: US}, regions: [[0, 0, 10]]}\n", 7, "[x, y, width, height]"),
    ("rules:\n  - {match: {Modality: US}, regions: [[0, 0, 0, 5]]}\n", 7, "width, height > 0"),
    ("rules:\n  - {match: {Modalty: US}, regions: [[0, 0, 5, 5]]}\n", 7, "did you mean 'Modality'"),
    ("rules:\n  - {match: {Modality: US}}\n", 7, "needs regions"),
    ("rules:\n  - {match: {Rows: big}, regions: [[0, 0, 5, 5]]}\n", 7, "whole number"),
    ("rules:\n  - {match: {Modality: US}, regions: [[0, 0, 5, 5]], frames: [1, 1]}\n", 7, "distinct"),
    ("library: [nonesuch]\n", 6, "unknown pixel rule library"),
    ("colour: red\n", 6, "unknown key"),
])
def test_bad_pixel_sections_name_the_line(tmp_path, pixels: str, line: int, problem: str) -> None:
    with pytest.raises(RecipeError) as err:
        load_recipe(write_recipe(tmp_path, pixels))
    assert err.value.line == line and problem in err.value.problem


def test_native_fast_path_after_the_header_rewrite() -> None:
    """The shard path: rewrite with the clean-pixel plan, redact the pixel slice in a batch, write the parts."""
    from rewrite_cases import DEID, KEY

    from veil.pipeline import Deidentifier

    layout = PixelLayout(40, 50, 1, 16, number_of_frames=2)
    before = make_pixels(layout)
    result = Deidentifier(clean_pixel_plan(DEID), KEY).rewrite(make_file(layout, before))
    assert PixelLayout.from_header(result.header) == layout
    (pixels,) = redact_batch([RedactionItem(result.pixels, layout, ((4, 4, 64, 10),))])
    out = pydicom.dcmread(io.BytesIO(bytes(result.header) + bytes(pixels) + bytes(result.trailer)))
    assert out.BurnedInAnnotation == "NO"
    assert CLEAN_PIXEL_DATA_CODE[0] in [c.CodeValue for c in out.DeidentificationMethodCodeSequence]
    assert_redacted(before, as_frames(out), inside(layout, [(4, 4, 64, 10)]), 0)


# --- lossless JPEG-family outputs -------------------------------------------------------------------------

LOSSLESS_OUTPUTS = [("jpeg-ls", "1.2.840.10008.1.2.4.80"), ("jpeg2000", "1.2.840.10008.1.2.4.90")]


@pytest.mark.parametrize(("output", "syntax"), LOSSLESS_OUTPUTS, ids=[o for o, _ in LOSSLESS_OUTPUTS])
@pytest.mark.parametrize("layout", [PixelLayout(40, 50, 1, 8), PixelLayout(40, 50, 1, 16, number_of_frames=3),
                                    PixelLayout(40, 50, 3, 8), PixelLayout(40, 50, 3, 8, number_of_frames=2)],
                         ids=["u8", "u16x3", "rgb", "rgbx2"])
def test_compressed_input_round_trips_through_a_lossless_jpeg_output(output, syntax, layout) -> None:
    before = make_pixels(layout)
    data = make_file(layout, before, RLELossless)
    regions = [(4, 4, 20, 10), (30, 25, 40, 40)]
    out = pydicom.dcmread(io.BytesIO(redact_file_bytes(data, regions, output=output)))
    assert out.file_meta.TransferSyntaxUID == syntax
    assert_redacted(before, as_frames(out), inside(layout, regions), 0)
    assert "LossyImageCompression" not in out  # lossless in, lossless out: no lossy history added
    assert (out.Rows, out.Columns, out.BitsAllocated, out.SamplesPerPixel) == (40, 50, layout.bits_allocated,
                                                                               layout.samples_per_pixel)
    assert int(out.get("NumberOfFrames", 1)) == layout.number_of_frames
    if layout.samples_per_pixel == 3:
        # Colour stays RGB to the reader (JPEG 2000 may store it with the reversible colour transform).
        assert out.PhotometricInterpretation in ("RGB", "YBR_RCT") and out.PlanarConfiguration == 0


@pytest.mark.parametrize(("output", "syntax"), LOSSLESS_OUTPUTS, ids=[o for o, _ in LOSSLESS_OUTPUTS])
def test_a_lossy_input_keeps_its_lossy_history_in_a_lossless_output(output, syntax) -> None:
    path = get_testdata_file("SC_rgb_jpeg_dcmtk.dcm")
    if path is None:
        pytest.skip("SC_rgb_jpeg_dcmtk.dcm not available")
    original = pydicom.dcmread(path)
    before = as_frames(original)
    out = pydicom.dcmread(io.BytesIO(redact_file_bytes(open(path, "rb").read(), [(2, 3, 10, 5)], output=output)))
    assert out.file_meta.TransferSyntaxUID == syntax
    assert out.LossyImageCompression == "01"  # once lossy, always lossy (PS3.3 C.7.6.1.1.5)
    assert out.LossyImageCompressionMethod == original.get("LossyImageCompressionMethod", "ISO_10918_1")
    assert_redacted(before, as_frames(out), inside(PixelLayout.from_dataset(out), [(2, 3, 10, 5)]), 0)


def test_an_encoder_that_is_not_installed_makes_the_file_malformed_not_half_done(monkeypatch) -> None:
    """Where the encoder plugin is missing (pyjpegls not installed) the file is refused, never written
    uncompressed or left as it was without saying so."""
    from veil.pixels.codecs.jpegls import JpegLsEncoder

    monkeypatch.setattr(JpegLsEncoder, "plugin", "not-installed")
    layout = PixelLayout(16, 16, 1, 16)
    data = make_file(layout, make_pixels(layout), RLELossless)
    with pytest.raises(MalformedDicom, match="cannot encode JPEG-LS Lossless"):
        redact_file_bytes(data, [(0, 0, 4, 4)], output="jpeg-ls")


def test_an_encoder_whose_library_is_missing_names_the_package_to_install(monkeypatch) -> None:
    from veil.pixels.codecs.jpeg2000 import Jpeg2000Encoder

    monkeypatch.setattr(Jpeg2000Encoder, "requires", (("pylibjpeg-openjpeg", "veil_test_no_such_module"),))
    layout = PixelLayout(16, 16, 1, 16)
    data = make_file(layout, make_pixels(layout), RLELossless)
    with pytest.raises(MalformedDicom, match=r"cannot encode JPEG 2000 .*needs pylibjpeg-openjpeg"):
        redact_file_bytes(data, [(0, 0, 4, 4)], output="jpeg2000")


def test_each_output_has_a_codec_backend_writing_its_syntax() -> None:
    from veil.pixels.codecs.base import OUTPUTS, encoder
    from veil.recipes.pixelrules import _PIXEL_OUTPUT

    syntaxes = {"rle": RLELossless, "jpeg-ls": JPEGLSLossless, "jpeg2000": "1.2.840.10008.1.2.4.90",
                "uncompressed": ExplicitVRLittleEndian}
    assert OUTPUTS == _PIXEL_OUTPUT and set(OUTPUTS) == set(syntaxes) and PixelPolicy().output in OUTPUTS
    for name in OUTPUTS:
        backend = encoder(name)
        assert backend.output == name and backend.transfer_syntax == syntaxes[name] and not backend.missing()
    with pytest.raises(ValueError, match="one of rle, jpeg-ls, jpeg2000, uncompressed"):
        encoder("jpeg")


def test_a_recipe_selects_the_lossless_output(tmp_path) -> None:
    assert load_recipe(write_recipe(tmp_path, "output: jpeg2000\n")).pixels.output == "jpeg2000"
    with pytest.raises(RecipeError, match="not one of"):
        load_recipe(write_recipe(tmp_path, "output: jpeg\n"))


def test_images_at_risk_include_localisers_fluoroscopy_photographs_and_endoscopy() -> None:
    assert at_risk({"modality": "CT", "image_type": "ORIGINAL\\PRIMARY\\LOCALIZER"})
    assert not at_risk({"modality": "CT", "image_type": "ORIGINAL\\PRIMARY\\AXIAL"})
    assert not at_risk({"modality": "CT", "image_type": "ORIGINAL\\PRIMARY\\LOCALIZER", "burned_in_annotation": "NO"})
    assert at_risk({"modality": "RF"}) and at_risk({"modality": "XC"})
    assert at_risk({"modality": "OT", "sop_class_uid": "1.2.840.10008.5.1.4.1.1.77.1.1.1"})  # video endoscopic
    assert not at_risk({"modality": "MR"}) and not at_risk({"modality": "MG", "burned_in_annotation": None})
    assert at_risk({"modality": "SM"})  # slide labels: the name and accession number photographed


def test_native_ybr_full_422_is_expanded_exactly_and_blanked_black() -> None:
    """Two pixels share one Cb, Cr pair (PS3.3 C.7.6.3.1.2): expanded to YBR_FULL without a colour
    conversion, so every sample outside the box keeps its value, and the box is YBR black (Y 0, Cb Cr 128)."""
    layout = PixelLayout(8, 12, 3, 8)
    rng = np.random.default_rng(5)
    full = rng.integers(0, 256, size=(8, 12, 3), dtype=np.uint8)
    full[:, 1::2, 1:] = full[:, 0::2, 1:]  # chroma shared by each pair of pixels
    packed = np.empty((8, 6, 4), np.uint8)
    packed[..., 0], packed[..., 1] = full[:, 0::2, 0], full[:, 1::2, 0]
    packed[..., 2], packed[..., 3] = full[:, 0::2, 1], full[:, 0::2, 2]
    ds = pydicom.dcmread(io.BytesIO(make_file(layout, full[None])))
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PixelData = packed.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    out = pydicom.dcmread(io.BytesIO(redact_file_bytes(buffer.getvalue(), [(2, 1, 4, 3)])))
    assert out.PhotometricInterpretation == "YBR_FULL" and out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    after = np.frombuffer(out.PixelData, np.uint8).reshape(8, 12, 3)
    mask = inside(layout, [(2, 1, 4, 3)])[0]
    assert np.array_equal(after[~mask], full[~mask])
    assert (after[mask] == (0, 128, 128)).all()


def test_the_modalities_at_risk_are_those_veil_profile_reports() -> None:
    from veil.inventory.profile import BURNED_IN_MODALITIES
    from veil.pixels.policy import AT_RISK_MODALITIES

    assert AT_RISK_MODALITIES == BURNED_IN_MODALITIES


_PIXEL_KEYWORDS = ("SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration", "NumberOfFrames", "Rows",
                   "Columns", "BitsAllocated", "BitsStored", "PixelRepresentation")


def test_the_native_pixel_module_reads_as_pydicom(corpus_files: list[Path], pydicom_files: list[Path]) -> None:
    """The Image Pixel module the burned-in text check reads with the native core is pydicom's reading of the
    same header, on every corpus and pydicom test file both can read that the check looks at (``peek`` finds
    rows and columns: the same top-level walk; int values, the strings stripped)."""
    import io

    import pydicom

    from veil.core._core import peek, pixel_module

    compared = 0
    for path in corpus_files + pydicom_files:
        data = path.read_bytes()
        try:
            info = peek(data, str(path))
            if not info["rows"] or not info["columns"]:
                continue  # check_image looks no further
            ours = pixel_module(data, str(path))
            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, force=True)
            theirs = {k: ds.get(k) for k in _PIXEL_KEYWORDS}
        except Exception:
            continue  # a file one of them refuses: the check then falls back to pydicom's decoding
        if ds.file_meta.get("TransferSyntaxUID") == "1.2.840.10008.1.2.1.99":
            continue  # deflated: pydicom reads it inflated, so does the core; compared below anyway
        for keyword in _PIXEL_KEYWORDS:
            value = theirs[keyword]
            if isinstance(value, int) and not isinstance(value, bool):
                assert ours[keyword] == value, (path.name, keyword)
            elif keyword == "PhotometricInterpretation" and value:
                assert ours[keyword] == str(value).strip(), (path.name, keyword)
            elif keyword == "NumberOfFrames" and value is not None:
                # as text: a malformed count ("1A") fails int() on both readings alike
                assert ours[keyword] == str(value).strip(), (path.name, keyword)
        compared += 1
    assert compared > 150
