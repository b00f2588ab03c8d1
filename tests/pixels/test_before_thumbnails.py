"""Before-redaction thumbnails in the audit: sealed with a key derived from the project key, readable with it
only, tamper-evident, absent from keyless runs; `veil audit DST --review OUTDIR [--key]` writes PNGs."""

from __future__ import annotations

import os
import stat

import numpy as np
import pydicom
import pytest
import zarr
from PIL import Image
from test_pixel_runs import LAYOUT, site_recipe
from test_pixels import make_file, make_pixels

from veil import audit
from veil.cli.main import EXIT_FATAL, EXIT_OK, EXIT_USAGE, main
from veil.errors import AuditError, KeyError_
from veil.keys import load_key
from veil.pixels.layout import PixelLayout

RULE = "  at_risk: flag\n  rules:\n    - {match: {Manufacturer: ACM*}, regions: [[0, 0, 10, 5]]}\n"
SHARD = "shard-00000000"


def stretched(frame: np.ndarray) -> np.ndarray:
    """As the audit's thumbnails are made (no shrinking for images under 128 px): 8 bits, min to max."""
    frame = frame.astype(np.float64)
    return ((frame - frame.min()) * (255.0 / (frame.max() - frame.min()))).astype(np.uint8)


@pytest.fixture()
def redacted_run(tmp_path, monkeypatch):
    """A run with a project key over one image a rule redacts ([0, 0, 10, 5]) and one it leaves."""
    monkeypatch.delenv("VEIL_KEY", raising=False)
    src = tmp_path / "in"
    src.mkdir()
    arr = make_pixels(LAYOUT, seed=1)
    (src / "acme.dcm").write_bytes(make_file(LAYOUT, arr, Manufacturer="ACME", Modality="OT", PatientID="P1"))
    (src / "other.dcm").write_bytes(make_file(LAYOUT, arr, Manufacturer="OTHER", Modality="OT", PatientID="P2"))
    key = tmp_path / "key"
    main(["keygen", str(key)])
    out = tmp_path / "out"
    assert main(["run", str(src), str(out), "--recipe", site_recipe(tmp_path, RULE), "--key", str(key)]) == EXIT_OK
    return out, key, arr.reshape(LAYOUT.rows, LAYOUT.columns)


def store_group(out):
    return zarr.open_group(audit.pixels_path(out) / SHARD, mode="r")


def test_the_before_thumbnail_comes_back_with_the_key_and_differs_from_after_in_the_box(redacted_run) -> None:
    out, key_file, frame = redacted_run
    ((record,),) = audit.read_pixel_records(out, key=load_key(key_file)).values()
    assert record.before_sealed
    assert record.before is not None and np.array_equal(record.before, stretched(frame))
    after = pydicom.dcmread(out / "acme.dcm").pixel_array
    assert np.array_equal(record.thumbnail, stretched(after))
    assert (record.thumbnail[:5, :10] == 0).all() and (record.before[:5, :10] != record.thumbnail[:5, :10]).any()
    review = audit.review_image(record)
    width = record.before.shape[1]
    assert review.shape == (LAYOUT.rows, 2 * width + 4, 3)
    assert (review[0, :11] == (255, 0, 0)).all() and (review[0, width + 4 : width + 15] == (255, 0, 0)).all()
    assert (review[8:, 11:width] == stretched(frame)[8:, 11:, None]).all()  # the before half is the before image
    # Without the key: the after thumbnail only, as before this change.
    ((plain,),) = audit.read_pixel_records(out).values()
    assert plain.before is None and plain.before_sealed and audit.review_image(plain).shape == (*after.shape, 3)


def test_the_store_holds_no_before_pixels_in_clear(redacted_run) -> None:
    out, key_file, frame = redacted_run
    before = stretched(frame)
    group = store_group(out)
    assert group.attrs["before_thumbnails"] == "sealed"
    assert group["before_sealed"].shape[1] == 12 + 4 + 128 * 128 + 16
    # Neither the decoded arrays nor the files on disk (compressed or not) carry a run of the before image.
    probes = [before[r, 10:].tobytes() for r in range(0, 5)]  # rows through the box, right of the box: 38 bytes
    probes += [before[:5, :10].tobytes(), before[2, :10].tobytes() + before[2, 10:20].tobytes()]
    arrays = [np.asarray(group[name][:]).tobytes() for name in group.array_keys()]
    files = [p.read_bytes() for p in audit.pixels_path(out).rglob("*") if p.is_file()]
    for probe in probes:
        assert not any(probe in blob for blob in arrays + files)
    # The blob's payload bytes are not the image: nothing like it, correlation near zero.
    payload = np.asarray(group["before_sealed"][0])[16 : 16 + 128 * 128].reshape(128, 128)
    as_image = payload[: before.shape[0], : before.shape[1]].astype(np.float64)
    assert abs(np.corrcoef(as_image.ravel(), before.astype(np.float64).ravel())[0, 1]) < 0.2


def test_a_wrong_key_raises_and_returns_nothing(redacted_run, tmp_path) -> None:
    out, _, _ = redacted_run
    other = tmp_path / "other.key"
    main(["keygen", str(other)])
    with pytest.raises(KeyError_, match="sealed with key"):
        audit.read_pixel_records(out, key=load_key(other))


def test_a_modified_blob_fails_authentication(redacted_run) -> None:
    out, key_file, _ = redacted_run
    group = zarr.open_group(audit.pixels_path(out) / SHARD, mode="r+")
    blob = np.asarray(group["before_sealed"][:])
    blob[0, 500] ^= 0x01
    group["before_sealed"][...] = blob
    with pytest.raises(AuditError, match="fails authentication"):
        audit.read_pixel_records(out, key=load_key(key_file))


def test_a_blob_moved_to_another_row_fails_authentication(tmp_path) -> None:
    from veil.keys import Key
    from veil.pixels.redact import Redaction

    key = Key(bytes(range(32)))

    def row(i: int) -> audit.AuditRow:
        return audit.AuditRow("run", 2, f"{i:02x}" * 16, 1, 1, f"{i}.dcm", "1.2", "OT", "1.3", "1.4", "1.5",
                              key.key_id, "r", "1", "h", "0", (0,) * len(audit.ACTION_NAMES), True, "written", "", 1)

    images = [np.full((4, 6), v, np.uint8) for v in (10, 200)]
    records = [audit.PixelRecord.from_redaction(i, Redaction(b"", ((0, 0, 0, 1, 1),), (), np.zeros((4, 6), np.uint8),
                                                             4, 6, before=images[i])) for i in range(2)]
    audit.write_shard(tmp_path, 2, [row(0), row(1)], records, audit.before_thumbnail_key(key.subkey("audit")))
    opened = audit.read_pixel_records(tmp_path, 2, key)[2]
    assert [r.before.tolist() for r in opened] == [i.tolist() for i in images]
    group = zarr.open_group(audit.pixels_path(tmp_path) / "shard-00000002", mode="r+")
    blobs = np.asarray(group["before_sealed"][:])
    group["before_sealed"][...] = blobs[::-1]  # each valid, in the other's row
    with pytest.raises(AuditError, match="row 0: sealed before-thumbnail fails authentication"):
        audit.read_pixel_records(tmp_path, 2, key)
    with pytest.raises(ValueError, match="project key"):  # a keyless run's rows cannot have sealed thumbnails
        audit.write_shard(tmp_path, 2, [row(0)._replace(key_id="")], records[:1], bytes(32))


def test_a_keyless_run_stores_no_before_thumbnail(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("VEIL_KEY", raising=False)
    src = tmp_path / "in"
    src.mkdir()
    (src / "acme.dcm").write_bytes(make_file(LAYOUT, make_pixels(LAYOUT, seed=3), Manufacturer="ACME", Modality="OT"))
    recipe = tmp_path / "nokey.yml"
    recipe.write_text('name: nokey\nversion: "1"\nedition: 2026d\ndefaults: {public: keep, private: remove}\n'
                      'rules: [{vr: PN, action: remove}]\npixels:\n' + RULE)
    out = tmp_path / "out"
    assert main(["run", str(src), str(out), "--recipe", str(recipe)]) == EXIT_OK
    assert audit.read_audit(out).column("key_id").to_pylist() == [""]
    group = store_group(out)
    assert group.attrs["before_thumbnails"] == "omitted" and "no project key" in group.attrs["reason"]
    assert "before_sealed" not in group
    key = tmp_path / "key"
    main(["keygen", str(key)])
    ((record,),) = audit.read_pixel_records(out, key=load_key(key)).values()
    assert record.before is None and not record.before_sealed and record.thumbnail is not None
    summary = audit.summarize(out)
    assert (summary.pixel_records, summary.pixel_before_sealed) == (1, 0)


@pytest.mark.ocr
def test_planted_name_is_unreadable_in_the_store_and_readable_with_the_key(tmp_path, monkeypatch) -> None:
    from veil.pixels import ocr

    if not ocr.available():
        pytest.skip("tesseract-ocr / pytesseract not installed")
    from test_ocr import planted, words

    monkeypatch.delenv("VEIL_KEY", raising=False)
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
    names = {"JOHN", "DOE", "12345678"}
    group = store_group(out)
    blob = np.asarray(group["before_sealed"][0])
    rows, columns = np.asarray(group["size"][0])[2:]
    for start in (0, 12, 16):  # the stored bytes read as an image, at any plausible offset
        as_image = blob[start : start + rows * columns].reshape(rows, columns)
        assert not names & words(as_image[None])
    ((record,),) = audit.read_pixel_records(out, key=load_key(key)).values()
    assert {"JOHN", "DOE"} <= words(record.before[None])  # the key shows what was removed
    assert not names & words(record.thumbnail[None])
    # The before thumbnail's rows through the redacted text are nowhere in the store's bytes.
    text_rows = [record.before[r].tobytes() for r in range(record.before.shape[0])
                 if record.before[r].max() > 100 and (record.before[r] != record.thumbnail[r]).any()]
    assert len(text_rows) >= 10
    stored = [np.asarray(group[name][:]).tobytes() for name in group.array_keys()]
    stored += [p.read_bytes() for p in audit.pixels_path(out).rglob("*") if p.is_file()]
    assert not any(row in blob for row in text_rows for blob in stored)


# --- veil audit DST --review OUTDIR ------------------------------------------------------------------------


def test_review_writes_before_and_after_pngs_private_to_their_owner(redacted_run, tmp_path, capsys) -> None:
    out, key, frame = redacted_run
    review = tmp_path / "review"
    assert main(["audit", str(out), "--review", str(review), "--key", str(key)]) == EXIT_OK
    assert stat.S_IMODE(review.stat().st_mode) == 0o700
    (png,) = sorted(review.iterdir())
    assert png.name == "shard-00000000-row-00000000.png"  # the acme.dcm row; no name, path or UID
    assert stat.S_IMODE(png.stat().st_mode) == 0o600
    image = np.asarray(Image.open(png))
    assert image.shape == (LAYOUT.rows, 2 * LAYOUT.columns + 4, 3)
    assert (image[8:, 11 : LAYOUT.columns, 0] == stretched(frame)[8:, 11:]).all()
    assert "1 review images (before | after" in capsys.readouterr().out
    # Without the key: after only, and a note that a sealed before-image exists.
    after_only = tmp_path / "after-only"
    assert main(["audit", str(out), "--review", str(after_only)]) == EXIT_OK
    (png,) = after_only.iterdir()
    assert np.asarray(Image.open(png)).shape == (LAYOUT.rows, LAYOUT.columns, 3)
    assert stat.S_IMODE(png.stat().st_mode) == 0o600
    assert "give --key KEYFILE" in capsys.readouterr().out
    assert main(["audit", str(out)]) == EXIT_OK
    assert "1 with the image before redaction sealed" in capsys.readouterr().out


def test_review_refuses_a_folder_inside_dst_and_a_wrong_key(redacted_run, tmp_path, capsys) -> None:
    out, key, _ = redacted_run
    for inside in (out, out / "review", out / ".veil" / "review"):
        assert main(["audit", str(out), "--review", str(inside), "--key", str(key)]) == EXIT_USAGE
        assert "must be outside DST" in capsys.readouterr().err
    assert not (out / "review").exists() and not (out / ".veil" / "review").exists()
    link = tmp_path / "link"
    os.symlink(out, link)
    assert main(["audit", str(out), "--review", str(link / "r"), "--key", str(key)]) == EXIT_USAGE
    assert not (out / "r").exists()
    assert main(["audit", str(out), "--key", str(key)]) == EXIT_USAGE
    other = tmp_path / "other.key"
    main(["keygen", str(other)])
    assert main(["audit", str(out), "--review", str(tmp_path / "rv"), "--key", str(other)]) == EXIT_FATAL
    assert "sealed with key" in capsys.readouterr().err
    assert not (tmp_path / "rv").exists()


def test_the_audit_records_what_found_each_redaction(redacted_run) -> None:
    out, _, _ = redacted_run
    ((record,),) = audit.read_pixel_records(out).values()
    assert record.source.startswith("pixel rule"), record.source


# --- custodian mode and purged stores ----------------------------------------------------------------------


PASSPHRASE = "correct horse battery"


@pytest.fixture()
def custodian_run(tmp_path, monkeypatch):
    """The redacted run of `redacted_run`, sealed to a custodian public key (with change records too)."""
    from veil.keys.custodian import generate_custodian

    monkeypatch.delenv("VEIL_KEY", raising=False)
    tmp_path = tmp_path / "custodian-run"
    src = tmp_path / "in"
    src.mkdir(parents=True)
    arr = make_pixels(LAYOUT, seed=1)
    (src / "acme.dcm").write_bytes(make_file(LAYOUT, arr, Manufacturer="ACME", Modality="OT", PatientID="P1"))
    public, private, _ = generate_custodian("officer", tmp_path, PASSPHRASE)
    key = tmp_path / "key"
    main(["keygen", str(key)])
    out = tmp_path / "out"
    assert main(["run", str(src), str(out), "--recipe", site_recipe(tmp_path, RULE), "--key", str(key),
                 "--custodian-public", str(public), "--change-records"]) == EXIT_OK
    return out, key, private, arr.reshape(LAYOUT.rows, LAYOUT.columns)


def test_custodian_mode_seals_before_thumbnails_to_the_custodian_only(custodian_run) -> None:
    from veil.keys.custodian import load_custodian_private

    out, key_file, private_file, frame = custodian_run
    group = store_group(out)
    private = load_custodian_private(private_file, PASSPHRASE)
    assert group.attrs["before_thumbnails"] == "sealed-custodian"
    assert group.attrs["custodian_key_id"] == private.key_id and "wrapped_key" in group.attrs
    ((record,),) = audit.read_pixel_records(out, key=private).values()
    assert record.before_sealed and np.array_equal(record.before, stretched(frame))
    with pytest.raises(KeyError_, match="custodian key"):
        audit.read_pixel_records(out, key=load_key(key_file))  # the run key cannot open them
    ((plain,),) = audit.read_pixel_records(out).values()
    assert plain.before is None and plain.before_sealed
    before = stretched(frame)
    files = [p.read_bytes() for p in audit.pixels_path(out).rglob("*") if p.is_file()]
    assert not any(before[r, 10:].tobytes() in blob for r in range(5) for blob in files)


def test_a_custodian_key_cannot_open_single_user_before_thumbnails(redacted_run, tmp_path) -> None:
    from veil.keys.custodian import generate_custodian, load_custodian_private

    out, _, _ = redacted_run
    _, private, _ = generate_custodian("other", tmp_path, PASSPHRASE)
    with pytest.raises(KeyError_, match="single-user"):
        audit.read_pixel_records(out, key=load_custodian_private(private, PASSPHRASE))


def test_a_wrapped_key_moved_to_another_shard_fails(tmp_path) -> None:
    from veil.keys.custodian import generate_custodian, load_custodian_private, load_custodian_public
    from veil.pixels.redact import Redaction

    public_file, private_file, _ = generate_custodian("officer", tmp_path, PASSPHRASE)
    public, private = load_custodian_public(public_file), load_custodian_private(private_file, PASSPHRASE)
    row = audit.AuditRow("run", 0, "ab" * 16, 1, 1, "0.dcm", "1.2", "OT", "1.3", "1.4", "1.5", "", "r", "1", "h",
                         "0", (0,) * len(audit.ACTION_NAMES), True, "written", "", 1)
    image = np.full((4, 6), 90, np.uint8)
    record = audit.PixelRecord.from_redaction(0, Redaction(b"", ((0, 0, 0, 1, 1),), (), np.zeros((4, 6), np.uint8),
                                                           4, 6, before=image))
    for shard in (0, 1):  # a keyless run (no key id) can still seal to a custodian
        audit.write_shard(tmp_path, shard, [row._replace(shard=shard)], [record], public)
    ((opened,),) = audit.read_pixel_records(tmp_path, 1, private).values()
    assert np.array_equal(opened.before, image)
    first = zarr.open_group(audit.pixels_path(tmp_path) / "shard-00000000", mode="r")
    second = zarr.open_group(audit.pixels_path(tmp_path) / "shard-00000001", mode="r+")
    second.attrs["wrapped_key"] = first.attrs["wrapped_key"]
    with pytest.raises(AuditError, match="wrapped before-thumbnail key"):
        audit.read_pixel_records(tmp_path, 1, private)


@pytest.mark.parametrize("mode", ["single-user", "custodian"])
def test_a_purged_store_reads_without_before_images(mode, request) -> None:
    from veil.keys.custodian import load_custodian_private

    if mode == "single-user":
        out, key_file, _ = request.getfixturevalue("redacted_run")
        key = load_key(key_file)
    else:
        out, _, private_file, _ = request.getfixturevalue("custodian_run")
        key = load_custodian_private(private_file, PASSPHRASE)
    group = zarr.open_group(audit.pixels_path(out) / SHARD, mode="r+")
    del group["before_sealed"]  # as `veil audit --purge` does
    group.attrs["before_thumbnails"] = "purged"
    for opener in (None, key):
        ((record,),) = audit.read_pixel_records(out, key=opener).values()
        assert record.before is None and not record.before_sealed and record.thumbnail is not None
    assert audit.summarize(out).pixel_before_sealed == 0
    # A state that does not match the arrays is refused.
    group.attrs["before_thumbnails"] = "sealed"
    with pytest.raises(AuditError, match="does not match"):
        audit.read_pixel_records(out)
