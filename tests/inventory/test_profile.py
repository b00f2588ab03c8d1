"""`veil profile`: per-file inventory, archive counts, Parquet tables and images at risk of burned-in text."""

from __future__ import annotations

import argparse
import io
import json

import pyarrow.parquet as pq
import pydicom
import pytest

from veil.cli.main import EXIT_OK, add_parsers
from veil.inventory.profile import aggregate, profile_archive, profile_file
from veil.synth import IMPLICIT_VR_LITTLE_ENDIAN, instance_bytes, write_archive


def run_proof(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="veil")
    sub = parser.add_subparsers(dest="command", required=True)
    handlers = add_parsers(sub)
    args = parser.parse_args(list(argv))
    return handlers[args.command](args)


def with_burned_in(data: bytes, value: str | None) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    if value is None:
        del ds.BurnedInAnnotation
    else:
        ds.BurnedInAnnotation = value
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """12 CT files, plus 2 US and 1 CT with burned-in text questions, plus one file that is not DICOM."""
    root = tmp_path_factory.mktemp("profile") / "in"
    write_archive(root, patients=2, series_per_study=2, instances_per_series=3)
    extra = root / "extra"
    extra.mkdir()
    us = instance_bytes(modality="US", rows=32, cols=48)
    (extra / "us-absent.dcm").write_bytes(with_burned_in(us, None))
    (extra / "us-no.dcm").write_bytes(us)
    (extra / "ct-yes.dcm").write_bytes(with_burned_in(instance_bytes(modality="CT", rows=32, cols=32), "YES"))
    (extra / "notes.txt").write_bytes(b"not a DICOM file")
    return root


def test_profile_file_lists_every_tag_and_private_creator() -> None:
    data = instance_bytes(patient=0, series=3, instances_per_series=2)  # implicit VR little endian
    record = profile_file(data, "a.dcm")
    assert record["error"] is None and record["transfer_syntax"] == IMPLICIT_VR_LITTLE_ENDIAN
    assert record["modality"] == "CT" and record["rows"] == 64 and not record["burned_in_risk"]
    tags = record["tags"]
    assert tags["(0010,0010)"] == 1 and tags["(0008,0100)"] >= 4  # code values in several sequences
    assert tags['(0009,"VEILSYNTH_GEMS_LIKE",01)'] == 2  # top level and in its own private sequence
    assert tags['(0029,"VEILSYNTH_MEDCOM_LIKE",34)'] == 1
    assert record["private_creators"] == [
        '(0009,"VEILSYNTH_GEMS_LIKE")',
        '(0019,"VEILSYNTH_ACQ_PARAMS")',
        '(0029,"VEILSYNTH_CSA_LIKE")',
        '(0029,"VEILSYNTH_MEDCOM_LIKE")',
    ]
    reference = pydicom.dcmread(io.BytesIO(data))
    public = {f"({e.tag.group:04X},{e.tag.element:04X})" for e in reference.iterall() if not e.tag.is_private}
    assert public == {t for t in tags if '"' not in t}


def test_profile_archive_counts_and_parquet_tables(archive, tmp_path) -> None:
    out = tmp_path / "tables"
    profile = profile_archive(archive, out)
    assert profile.files == 16 and sum(profile.errors.values()) == 1
    assert profile.modalities == {"CT": 13, "US": 2}
    assert profile.private_creators['(0019,"VEILSYNTH_ACQ_PARAMS")'] == 15
    assert profile.tag_files["(0010,0010)"] == 15
    assert set(profile.burned_in.values()) == {1} and len(profile.burned_in) == 2
    us = next(signature for signature in profile.burned_in if signature[0] == "US")
    assert us[3:] == (32, 48) and us[1] and us[2]  # Modality, Manufacturer, Model Name, Rows, Columns
    modalities = sorted(signature[0] for signature in profile.burned_in)
    assert modalities == ["CT", "US"]  # CT marked YES; US with the attribute absent (not US marked NO)
    files = pq.read_table(out / "files.parquet")
    assert files.num_rows == 16 and "tags" in files.column_names
    tags = {row["tag"]: row for row in pq.read_table(out / "tags.parquet").to_pylist()}
    assert tags["(0010,0010)"]["keyword"] == "PatientName" and tags["(0010,0010)"]["files"] == 15
    risk = pq.read_table(out / "burned_in_risk.parquet").to_pylist()
    assert sorted(r["modality"] for r in risk) == ["CT", "US"]
    counts = pq.read_table(out / "counts.parquet").to_pylist()
    assert {"category": "modality", "value": "US", "files": 2} in counts
    assert {r["creator"] for r in pq.read_table(out / "private_creators.parquet").to_pylist()} == {
        "VEILSYNTH_GEMS_LIKE",
        "VEILSYNTH_ACQ_PARAMS",
        "VEILSYNTH_CSA_LIKE",
        "VEILSYNTH_MEDCOM_LIKE",
    }


def test_partial_profiles_merge_to_the_whole(archive) -> None:
    records = [profile_file(p.read_bytes(), str(p)) for p in sorted(archive.rglob("*")) if p.is_file()]
    whole = aggregate(records)
    left, right = aggregate(records[:5]), aggregate(records[5:])
    merged = left.merge(right)
    assert merged.to_dict() == whole.to_dict() and merged.tag_elements == whole.tag_elements


def test_profile_command_prints_a_summary(archive, tmp_path, capsys) -> None:
    assert run_proof("profile", str(archive), "--out", str(tmp_path / "t")) == EXIT_OK
    out = capsys.readouterr().out
    assert (
        "profile: 16 files" in out
        and "CT Image Storage" in out
        and "at risk of burned-in text (2 files)" in out
    )
    assert run_proof("profile", str(archive), "--out", str(tmp_path / "t"), "--json") == EXIT_OK
    assert json.loads(capsys.readouterr().out)["modalities"] == {"CT": 13, "US": 2}


@pytest.mark.cluster
def test_profile_on_a_pool_and_on_ray_equals_the_in_process_profile(tmp_path) -> None:
    import pyarrow.parquet as pq

    from veil.inventory.profile import profile_archive
    from veil.synth import write_archive

    src = tmp_path / "in"
    write_archive(src, patients=3, series_per_study=2, instances_per_series=100, seed=2)  # 600 files, 3 shards
    local = profile_archive(src, tmp_path / "local")
    pooled = profile_archive(src, tmp_path / "pool", workers=2)
    assert pooled.to_dict() == local.to_dict()
    rows = pq.read_table(tmp_path / "pool" / "files.parquet").num_rows
    assert rows == pq.read_table(tmp_path / "local" / "files.parquet").num_rows == 600
    ray = pytest.importorskip("ray")
    try:
        on_ray = profile_archive(src, tmp_path / "ray", workers=2, ray=True)
    finally:
        ray.shutdown()
    assert on_ray.to_dict() == local.to_dict()
    assert pq.read_table(tmp_path / "ray" / "files.parquet").num_rows == 600
