"""Defacing in a run (veil.engine.series): head series set aside by the per-file pass and defaced as one
volume; what is not a head, or not a volume, left as the rest of the recipe says; a head series that cannot be
defaced quarantined; the audit's record of each series; a second run byte-identical; resume; verify."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import heads
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from veil.api import deidentify
from veil.audit import deface_dir, read_audit, read_pixel_records
from veil.keys import Key
from veil.verification import verify

pytestmark = pytest.mark.heavy  # seconds a case: run by make test, left out of make test-fast

RECIPE = """name: research-defaced
version: "1"
extends: research
options: [clean-recognizable-visual-features]
rules: []
"""


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deface")
    src = root / "src"
    robex = heads.robex()
    heads.write_series(heads.stack(robex, "MR"), src / "head_mr")
    heads.write_series(heads.stack(heads.mean(), "CT", tilt=12, spacing=1.5), src / "head_ct_enhanced", enhanced=True)
    heads.write_series(heads.stack(robex, "CT", spacing=2.0), src / "head_ct_rle",
                       syntax=pydicom.uid.RLELossless)
    heads.write_series(heads.stack(robex, "MR", size=(10, 150, 116)), src / "head_short")
    gap = heads.write_series(heads.stack(robex, "MR", spacing=2.0), src / "head_gap")
    gap[len(gap) // 2].unlink()  # a slice missing from the middle: the volume cannot be trusted
    heads.write_series(heads.stack(robex, "CT", spacing=2.0), src / "chest", body_part="CHEST")
    shutil.copy(get_testdata_file("CT_small.dcm"), src / "ct_small.dcm")
    (root / "recipe.yml").write_text(RECIPE)
    return root


def _run(root: Path, dst: str, workers: int = 1) -> Path:
    out = root / dst
    deidentify(root / "src", out, recipe=root / "recipe.yml", key=Key(b"k" * 32), workers=workers)
    return out


@pytest.fixture(scope="module")
def run(archive: Path) -> Path:
    return _run(archive, "dst")


def _series(dst: Path) -> dict[str, dict[str, object]]:
    records = [json.loads(p.read_text()) for p in sorted(deface_dir(dst).glob("series-*.json"))]
    return {str(r["files"]) + ":" + str(r.get("slices", r.get("reason", ""))): r for r in records}


def _codes(ds: pydicom.Dataset) -> set[str]:
    return {str(c.CodeValue) for c in ds.get("DeidentificationMethodCodeSequence", [])}


def test_head_series_defaced_and_marked(archive: Path, run: Path) -> None:
    for folder in ("head_mr", "head_ct_enhanced", "head_ct_rle"):
        files = sorted((run / folder).glob("*.dcm"))
        inputs = sorted((archive / "src" / folder).glob("*.dcm"))
        assert len(files) == len(inputs)
        changed = 0
        for out_path, in_path in zip(files, inputs, strict=True):
            ds, before = pydicom.dcmread(out_path), pydicom.dcmread(in_path)
            assert ds.RecognizableVisualFeatures == "NO"
            assert {"113100", "113102"} <= _codes(ds)
            assert str(ds.PatientName) != heads.PATIENT_NAME
            changed += int(not np.array_equal(ds.pixel_array, before.pixel_array))
        assert changed > 0
    rle = pydicom.dcmread(sorted((run / "head_ct_rle").glob("*.dcm"))[0])
    assert rle.file_meta.TransferSyntaxUID == pydicom.uid.RLELossless  # re-encoded losslessly, as it came


def test_the_face_is_gone_from_the_written_series(run: Path) -> None:
    s = heads.stack(heads.robex(), "MR")
    data, _ = heads.read_stack(sorted((run / "head_mr").glob("*.dcm")))
    assert np.count_nonzero((data != s.data) & s.face) / np.count_nonzero(s.face) >= 0.95
    assert np.array_equal(data[s.brain], s.data[s.brain])


def test_other_series_untouched(archive: Path, run: Path) -> None:
    for folder in ("head_short", "chest"):
        for path in sorted((run / folder).glob("*.dcm")):
            ds = pydicom.dcmread(path)
            assert "113102" not in _codes(ds) and "RecognizableVisualFeatures" not in ds
            original = pydicom.dcmread(archive / "src" / folder / path.name)
            assert np.array_equal(ds.pixel_array, original.pixel_array)
    assert (run / "ct_small.dcm").exists()
    records = [json.loads(p.read_text()) for p in deface_dir(run).glob("series-*.json")]
    untouched = [r for r in records if r["status"] == "untouched"]
    assert any("fewer than 20" in r["reason"] for r in untouched)  # head_short and CT_small
    assert not any(r.get("files") == 40 for r in records if r["status"] == "defaced")


def test_head_series_that_cannot_be_defaced_is_quarantined(run: Path) -> None:
    assert not (run / "head_gap").exists()
    audit = read_audit(run).to_pylist()
    gap = [r for r in audit if r["status"] == "quarantined"]
    assert gap and all("deface: the slices are not evenly spaced" in r["reason"] for r in gap)
    assert len(gap) == len(list((run.parent / "src" / "head_gap").glob("*.dcm")))


def test_audit_records_each_series(archive: Path, run: Path) -> None:
    audit = read_audit(run).to_pylist()
    inputs = [p for p in (archive / "src").rglob("*") if p.is_file()]
    assert len(audit) == len(inputs)  # every input has exactly one row, set aside or not
    defaced = [json.loads(p.read_text()) for p in deface_dir(run).glob("series-*.json")]
    defaced = [r for r in defaced if r["status"] == "defaced"]
    assert len(defaced) == 3
    for r in defaced:
        assert r["method"].startswith("veil-deface") and 0.05 < r["head_fraction_removed"] < 0.6
        assert len(r["plane_normal_lps"]) == 3 and r["atlas_fit"] > 0.85 and r["voxels_changed"] > 0
        text = json.dumps(r)
        assert heads.PATIENT_ID not in text and "FACEMAN" not in text
    records = [rec for recs in read_pixel_records(run).values() for rec in recs]
    rendered = [rec for rec in records if "deface" in rec.source]
    assert len(rendered) == 3
    for rec in rendered:
        assert rec.thumbnail is not None and rec.thumbnail.max() > 0
        assert rec.before is None and rec.before_sealed  # the rendering with the face: sealed, never in clear
    opened = [rec for recs in read_pixel_records(run, key=Key(b"k" * 32)).values() for rec in recs
              if "deface" in rec.source]
    assert all(rec.before is not None and rec.before.max() > 0 for rec in opened)


def test_second_run_is_byte_identical(archive: Path, run: Path) -> None:
    again = _run(archive, "dst-again", workers=2)  # and on the process pool: the series tasks go through it too
    first = {p.relative_to(run): p.read_bytes() for p in run.rglob("*.dcm") if ".veil" not in p.parts}
    second = {p.relative_to(again): p.read_bytes() for p in again.rglob("*.dcm") if ".veil" not in p.parts}
    assert first == second and len(first) > 300


def test_resume_redoes_a_series_cut_short(archive: Path, run: Path, tmp_path: Path) -> None:
    dst = tmp_path / "dst"
    shutil.copytree(run, dst)
    series = [json.loads(p.read_text()) | {"path": p} for p in sorted(deface_dir(dst).glob("series-*.json"))]
    mr = next(r for r in series if r.get("modality") == "MR" and r["status"] == "defaced")
    number = int(mr["path"].stem.split("-")[1])
    part = dst / ".veil" / "audit" / f"part-{number:08d}.parquet"
    part.unlink()  # as if killed before the series' audit part
    written = sorted((dst / "head_mr").glob("*.dcm"))
    written[0].write_bytes(written[0].read_bytes()[:1000])  # one output cut short
    written[1].unlink()
    deidentify(archive / "src", dst, recipe=archive / "recipe.yml", key=Key(b"k" * 32), workers=1, resume=True)
    for path in sorted((run / "head_mr").glob("*.dcm")):
        assert (dst / "head_mr" / path.name).read_bytes() == path.read_bytes()
    assert part.exists() and len(read_audit(dst)) == len(read_audit(run))


def test_verify_passes_and_catches_a_false_claim(archive: Path, run: Path, tmp_path: Path) -> None:
    key = Key(b"k" * 32)
    report = verify(archive / "src", run, recipe=archive / "recipe.yml", key=key)
    assert report.passed, [f.to_dict() for f in report.findings if f.severity == "error"]
    assert report.counts["defaced_series_checked"] == 3
    # Outputs that say RecognizableVisualFeatures NO over the input's own pixels: verify says so.
    dst = tmp_path / "dst"
    shutil.copytree(run, dst)
    for path in (dst / "head_mr").glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.PixelData = pydicom.dcmread(archive / "src" / "head_mr" / path.name).PixelData
        ds.save_as(path)
    report = verify(archive / "src", dst, recipe=archive / "recipe.yml", key=key)
    false = [f for f in report.findings if f.keyword == "RecognizableVisualFeatures"]
    assert len(false) == 1 and "none of the" in false[0].detail
    assert not report.passed


def test_change_records_cover_series_tasks(archive: Path, tmp_path: Path) -> None:
    """``--change-records``: the files of series tasks get theirs as every other written file; a defaced one's
    shows the defacing marks the core inserted, a series left as it is has none."""
    from veil.audit.changes import read_changes

    src = tmp_path / "src"
    for name in ("head_mr", "head_short"):
        shutil.copytree(archive / "src" / name, src / name)
    dst = tmp_path / "dst"
    summary = deidentify(src, dst, recipe=archive / "recipe.yml", key=Key(b"k" * 32), workers=1,
                         change_records=True)
    audit = read_audit(dst).to_pylist()
    recorded = {(c.shard, c.row): c for recs in read_changes(dst).values() for c in recs}
    rows_in_shard: dict[int, int] = {}
    codes: dict[str, set[str]] = {"head_mr": set(), "head_short": set()}
    written = 0
    for row in audit:
        shard = int(row["shard"])
        index = rows_in_shard.get(shard, 0)
        rows_in_shard[shard] = index + 1
        if row["status"] != "written":
            continue
        written += 1
        elements = {e.keyword: e for e in recorded[(shard, index)].elements}
        assert "ERROR" not in {e.action for e in elements.values()}
        marked = elements.get("RecognizableVisualFeatures")
        if "head_mr" in str(row["output_path"]):
            assert marked is not None and marked.present_after and marked.after == "NO"
        else:
            assert marked is None or marked.after != "NO"
        codes[str(row["output_path"]).split("/")[-2]].add(elements["DeidentificationMethodCodeSequence"].after)
    assert written == summary.totals.written == len(recorded)
    # One code more on the defaced series (113102), shown as the sequence's item count.
    (defaced,), (plain,) = codes["head_mr"], codes["head_short"]
    assert int(defaced.strip("<> items")) == int(plain.strip("<> items")) + 1
