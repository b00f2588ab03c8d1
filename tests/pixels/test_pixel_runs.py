"""Burned-in text policy inside `veil run`: rules redact, at-risk images are quarantined or flagged, the
audit records which instances had their pixels cleaned."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from test_pixels import make_file, make_pixels

from veil import audit
from veil.cli.main import EXIT_OK, EXIT_QUARANTINED, main
from veil.pixels.layout import PixelLayout

LAYOUT = PixelLayout(rows=32, columns=48, samples_per_pixel=1, bits_allocated=16)


def site_recipe(tmp_path, pixels: str) -> str:
    path = tmp_path / "site.yml"
    path.write_text('name: site\nversion: "1"\nextends: research\nrules: []\npixels:\n' + pixels)
    return str(path)


@pytest.fixture()
def inputs(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    arr = make_pixels(LAYOUT, seed=1)
    (src / "acme.dcm").write_bytes(make_file(LAYOUT, arr, Manufacturer="ACME", Modality="OT", PatientID="P1"))
    (src / "other.dcm").write_bytes(make_file(LAYOUT, arr, Manufacturer="OTHER", Modality="OT", PatientID="P2"))
    key = tmp_path / "key"
    main(["keygen", str(key)])
    return src, key, arr


def pixels_of(path) -> np.ndarray:
    return pydicom.dcmread(path).pixel_array


def test_a_rule_redacts_its_region_and_leaves_every_other_pixel(inputs, tmp_path) -> None:
    src, key, arr = inputs
    arr = arr.reshape(LAYOUT.rows, LAYOUT.columns)  # one frame, one sample
    recipe = site_recipe(tmp_path, "  at_risk: flag\n  rules:\n"
                                   "    - {match: {Manufacturer: ACM*}, regions: [[0, 0, 10, 5]]}\n")
    out = tmp_path / "out"
    assert main(["run", str(src), str(out), "--recipe", recipe, "--key", str(key)]) == EXIT_OK
    redacted = pixels_of(out / "acme.dcm")
    assert (redacted[:5, :10] == 0).all()
    mask = np.ones(arr.shape, bool)
    mask[:5, :10] = False
    assert (redacted[mask] == arr[mask]).all()
    assert (pixels_of(out / "other.dcm") == arr).all()  # at risk, flagged: kept as it was
    ds = pydicom.dcmread(out / "acme.dcm")
    assert ds.BurnedInAnnotation == "NO"
    assert "113101" in {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
    table = audit.read_audit(out).to_pylist()
    assert sorted(row["pixel_redaction"] for row in table) == [False, True]


def test_at_risk_images_no_rule_names_are_quarantined_when_the_policy_says_so(inputs, tmp_path) -> None:
    src, key, _ = inputs
    recipe = site_recipe(tmp_path, "  at_risk: quarantine\n  rules:\n"
                                   "    - {match: {Manufacturer: ACME}, regions: [[0, 0, 4, 4]]}\n")
    out = tmp_path / "out"
    assert main(["run", str(src), str(out), "--recipe", recipe, "--key", str(key)]) == EXIT_QUARANTINED
    assert (out / "acme.dcm").exists() and not (out / "other.dcm").exists()


def test_redact_all_blanks_the_whole_image(inputs, tmp_path) -> None:
    src, key, _ = inputs
    recipe = site_recipe(tmp_path, "  at_risk: redact-all\n")
    out = tmp_path / "out"
    assert main(["run", str(src), str(out), "--recipe", recipe, "--key", str(key)]) == EXIT_OK
    assert (pixels_of(out / "other.dcm") == 0).all()


@pytest.mark.ocr
@pytest.mark.parametrize(("text", "left"), [("all", set()), ("identifiers", {"ABDOMEN"})])
def test_detect_finds_the_patients_name_burned_in_and_removes_it(tmp_path, text, left) -> None:
    """The text detector finds every line; ``text: all`` (research) blanks each one no safe annotation
    explains, ``text: identifiers`` only those matching the file's values and identifier patterns."""
    from veil.pixels import ocr, textdetect

    if not ocr.available() or not textdetect.available():
        pytest.skip("tesseract-ocr / pytesseract or the text detector not installed")
    from test_ocr import planted, words

    arr = planted(8)  # "JOHN DOE", "ID 12345678", a date and "ABDOMEN" drawn into the image
    layout = PixelLayout(rows=arr.shape[1], columns=arr.shape[2], samples_per_pixel=1, bits_allocated=8)
    src = tmp_path / "in"
    src.mkdir()
    (src / "sc.dcm").write_bytes(
        make_file(layout, arr, Modality="SC", PatientName="DOE^JOHN", PatientID="12345678")
    )
    key = tmp_path / "key"
    main(["keygen", str(key)])
    recipe = site_recipe(tmp_path, f"  at_risk: detect\n  text: {text}\n")
    out = tmp_path / "out"
    assert main(["run", str(src), str(out), "--recipe", recipe, "--key", str(key)]) == EXIT_OK
    assert words(pixels_of(out / "sc.dcm")[None]) & {"JOHN", "DOE", "12345678", "ABDOMEN"} == left
    assert audit.read_audit(out).column("pixel_redaction").to_pylist() == [True]


# --- the audit's pixel records ----------------------------------------------------------------------------


def test_pixel_records_link_to_their_audit_rows_and_show_the_image_after(inputs, tmp_path, capsys) -> None:
    src, key, arr = inputs
    recipe = site_recipe(tmp_path, "  at_risk: flag\n  rules:\n"
                                   "    - {match: {Manufacturer: ACM*}, regions: [[0, 0, 10, 5]]}\n")
    out = tmp_path / "out"
    assert main(["run", str(src), str(out), "--recipe", recipe, "--key", str(key)]) == EXIT_OK
    records = audit.read_pixel_records(out)
    assert list(records) == [0] and len(records[0]) == 1
    (record,) = records[0]
    row = audit.read_audit(out).to_pylist()[record.row]
    assert row["output_path"] == "acme.dcm" and row["pixel_redaction"]
    assert record.boxes == ((-1, 0, 0, 10, 5),) and (record.rows, record.columns) == (LAYOUT.rows, LAYOUT.columns)
    # The thumbnail is the output image (48x32: no shrinking needed), stretched to 8 bits: the box is black.
    after = pixels_of(out / "acme.dcm").astype(np.float64)
    expected = ((after - after.min()) * (255.0 / (after.max() - after.min()))).astype(np.uint8)
    assert record.thumbnail is not None and np.array_equal(record.thumbnail, expected)
    review = audit.review_image(record)
    assert review.shape == (*expected.shape, 3) and (review[0, :11] == (255, 0, 0)).all()  # the box, outlined
    capsys.readouterr()
    assert main(["audit", str(out)]) == EXIT_OK
    text = capsys.readouterr().out
    assert "1 instances redacted (burned-in text), 1 with boxes and thumbnails in .veil/audit/pixels.zarr" in text


def test_a_shard_rewritten_without_redactions_loses_its_pixel_records(tmp_path) -> None:
    from veil.pixels.redact import Redaction

    def row(pixel_redaction: bool) -> audit.AuditRow:
        return audit.AuditRow("run", 3, "ab" * 16, 1, 1, "x.dcm", "1.2", "OT", "1.3", "1.4", "1.5", "k", "r", "1", "h",
                              "0", (0,) * len(audit.ACTION_NAMES), pixel_redaction, "written", "", 1)

    redaction = Redaction(b"", ((0, 1, 2, 3, 4),), ((5, 6, 7, 8),), np.full((20, 128), 7, np.uint8), 40, 256)
    record = audit.PixelRecord.from_redaction(1, redaction)
    audit.write_shard(tmp_path, 3, [row(False), row(True)], [record])
    (back,) = audit.read_pixel_records(tmp_path, 3)[3]
    assert back == record and np.array_equal(back.thumbnail, redaction.thumbnail)
    with pytest.raises(ValueError, match="no such row"):
        audit.write_shard(tmp_path, 3, [row(False), row(False)], [record])
    audit.write_shard(tmp_path, 3, [row(False)])
    assert audit.read_pixel_records(tmp_path) == {}


@pytest.mark.ocr
def test_detected_text_is_not_in_the_audit_thumbnail(tmp_path) -> None:
    """The audit holds no PHI: the thumbnail is made after redaction, so OCR reads no name or ID in it, nor in
    the review image, while the same image before redaction would show them (the planted words are large)."""
    from veil.pixels import ocr

    if not ocr.available():
        pytest.skip("tesseract-ocr / pytesseract not installed")
    from test_ocr import planted, words

    arr = planted(8)
    layout = PixelLayout(rows=arr.shape[1], columns=arr.shape[2], samples_per_pixel=1, bits_allocated=8)
    src = tmp_path / "in"
    src.mkdir()
    (src / "sc.dcm").write_bytes(make_file(layout, arr, Modality="SC", PatientName="DOE^JOHN", PatientID="12345678"))
    key = tmp_path / "key"
    main(["keygen", str(key)])
    out = tmp_path / "out"
    assert main(["run", str(src), str(out), "--recipe", site_recipe(tmp_path, "  at_risk: detect\n"),
                 "--key", str(key)]) == EXIT_OK
    ((record,),) = audit.read_pixel_records(out).values()
    assert max(record.thumbnail.shape) == 128 and record.boxes
    from PIL import Image

    before = np.asarray(Image.fromarray(arr[0, :, :, 0]).resize(record.thumbnail.shape[::-1], Image.Resampling.BOX))
    assert {"JOHN", "DOE"} & words(before[None])  # a before-thumbnail of this size would leak
    assert not {"JOHN", "DOE", "12345678"} & words(record.thumbnail[None])
    assert not {"JOHN", "DOE", "12345678"} & words(audit.review_image(record)[None])


def _us_file(layout: PixelLayout, arr: np.ndarray, regions: bool, **extra) -> bytes:
    from pydicom.dataset import Dataset

    if regions:
        item = Dataset()
        item.RegionLocationMinX0, item.RegionLocationMinY0, item.RegionLocationMaxX1, item.RegionLocationMaxY1 = 8, 6, 39, 25
        item.RegionSpatialFormat, item.RegionDataType, item.RegionFlags = 1, 1, 0
        extra["SequenceOfUltrasoundRegions"] = [item]
    return make_file(layout, arr, Modality="US", **extra)


def test_ultrasound_without_data_regions_gets_the_at_risk_policy_unless_it_says_no(tmp_path, monkeypatch) -> None:
    """research's ultrasound rule keeps only the data regions (and blanks the text the detector finds in
    them); an image without them is decided as if no rule named it: at risk, the recipe's policy (quarantine
    here), or, where it says NO, pre-filtered and kept where no frame shows text."""
    from veil.pixels import textdetect

    monkeypatch.setattr(textdetect, "prefilter", lambda image, **_: False)  # a text-free image, whatever noise
    monkeypatch.setattr(textdetect, "detect", lambda image, **_: [])
    monkeypatch.setattr(textdetect, "unavailable_reason", lambda: None)
    arr = make_pixels(LAYOUT, seed=2)
    src = tmp_path / "in"
    src.mkdir()
    (src / "regions.dcm").write_bytes(_us_file(LAYOUT, arr, True, BurnedInAnnotation="NO"))
    (src / "unknown.dcm").write_bytes(_us_file(LAYOUT, arr, False, BurnedInAnnotation="YES"))
    (src / "says_no.dcm").write_bytes(_us_file(LAYOUT, arr, False, BurnedInAnnotation="NO"))
    key = tmp_path / "key"
    main(["keygen", str(key)])
    out = tmp_path / "out"
    recipe = site_recipe(tmp_path, "  at_risk: quarantine\n")
    assert main(["run", str(src), str(out), "--recipe", recipe, "--key", str(key), "--workers", "1"]) \
        == EXIT_QUARANTINED
    assert not (out / "unknown.dcm").exists()
    frame = arr.reshape(LAYOUT.rows, LAYOUT.columns)
    assert (pixels_of(out / "says_no.dcm") == frame).all()
    kept = pixels_of(out / "regions.dcm")
    mask = np.zeros(frame.shape, bool)
    mask[6:26, 8:40] = True
    assert (kept[mask] == frame[mask]).all() and (kept[~mask] == 0).all()
    ((record,),) = audit.read_pixel_records(out).values()
    assert record.kept == ((8, 6, 32, 20),) and record.boxes == ()


def test_research_quarantines_an_image_at_risk_when_the_detector_cannot_run(inputs, tmp_path, monkeypatch) -> None:
    """Fail closed: ``research`` detects text in images at risk; without the detector (onnxruntime or its
    model files missing) it cannot, so the image is quarantined with the reason, never written unexamined.
    An image not at risk whose pre-filter sees no text is written as before, its pixels untouched."""
    from veil.pixels import textdetect

    src, key, arr = inputs  # two OT images (at risk, BurnedInAnnotation YES)
    y, x = np.mgrid[: LAYOUT.rows, : LAYOUT.columns]
    smooth = (1000 + 10 * y + 10 * x).astype(np.uint16)[None, :, :, None]  # a text-free CT slice
    (src / "ct.dcm").write_bytes(make_file(LAYOUT, smooth, Modality="CT", BurnedInAnnotation="NO",
                                           SOPClassUID="1.2.840.10008.5.1.4.1.1.2"))
    monkeypatch.setattr(textdetect, "unavailable_reason", lambda: "onnxruntime is not installed")
    out = tmp_path / "out"
    assert main(["run", str(src), str(out), "--recipe", "research", "--key", str(key), "--workers", "1"]) \
        == EXIT_QUARANTINED
    assert sorted(p.name for p in out.glob("*.dcm")) == ["ct.dcm"]
    assert pydicom.dcmread(out / "ct.dcm").PixelData == pydicom.dcmread(src / "ct.dcm").PixelData
    reasons = {row["status"]: row["reason"] for row in audit.read_audit(out).to_pylist()}
    assert "detector, which cannot run: onnxruntime is not installed" in reasons["quarantined"]


def test_the_bytes_api_redacts_as_a_run_does(inputs, tmp_path) -> None:
    """``veil.deidentify_bytes`` under a recipe with pixel rules returns what ``veil run`` writes: the region
    blanked, never the burned-in text; a file the run would quarantine raises instead."""
    import veil

    src, key, arr = inputs
    recipe = site_recipe(tmp_path, "  at_risk: quarantine\n  rules:\n"
                                   "    - {match: {Manufacturer: ACM*}, regions: [[0, 0, 10, 5]]}\n")
    out = tmp_path / "out"
    assert main(["run", str(src / "acme.dcm"), str(out), "--recipe", recipe, "--key", str(key)]) == EXIT_OK
    output = next(p for p in out.rglob("*.dcm") if ".veil" not in p.relative_to(out).parts)
    assert (pixels_of(output)[:5, :10] == 0).all()
    assert veil.deidentify_bytes((src / "acme.dcm").read_bytes(), recipe=recipe, key=key) == output.read_bytes()
    with pytest.raises(veil.MalformedDicom, match="at risk"):
        veil.deidentify_bytes((src / "other.dcm").read_bytes(), recipe=recipe, key=key)
