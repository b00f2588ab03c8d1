"""Retention: the policy (recipe ``retention:``, ``--retention``), and ``veil audit --purge``, which removes exactly
the PHI-bearing items that are due (quarantined originals, sealed before-images, sealed change-record originals
when the policy says so), keeps the audit, and records itself."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from veil import audit
from veil.audit import layout
from veil.audit.retention import (
    RETENTION_CLASSES,
    age_seconds,
    parse_retention_spec,
    plan_purge,
    purge,
    read_purges,
    resolve_policy,
)
from veil.errors import RecipeError
from veil.recipes import load_recipe

DAY = 86_400
NOW = 1_790_000_000.0  # the purge's "now", seconds since the epoch (in the past: summaries use the clock)
RECIPE_HEAD = 'name: mine\nversion: "1"\nextends: research\n'


# --- the policy -------------------------------------------------------------------------------------------------

def test_ages_are_days_or_hours_or_keep() -> None:
    assert age_seconds("30d") == 30 * DAY and age_seconds("12h") == 12 * 3600 and age_seconds("0d") == 0
    assert age_seconds("keep") is None
    for bad in ("30", "30 d", "-1d", "1w", "d", "forever", "3.5d"):
        with pytest.raises(ValueError, match="not an age"):
            age_seconds(bad)


def test_the_retention_option_names_classes_and_ages() -> None:
    assert parse_retention_spec("keep") == dict.fromkeys(RETENTION_CLASSES, "keep")
    assert parse_retention_spec("quarantine=30d, before_images=12h,change_records=keep") == {
        "quarantine": "30d", "before_images": "12h", "change_records": "keep"}
    for bad, problem in (("quarantine", "CLASS=AGE"), ("thumbnails=3d", "CLASS=AGE"), ("quarantine=soon", "not an age"),
                         ("quarantine=1d,quarantine=2d", "twice"), ("", "empty"), (",", "empty")):
        with pytest.raises(ValueError, match=problem):
            parse_retention_spec(bad)


def test_the_policy_is_the_option_over_the_recipe_over_keep() -> None:
    assert resolve_policy({"quarantine": "30d", "change_records": "365d"}, {"change_records": "keep"}) == {
        "quarantine": "30d", "before_images": "keep", "change_records": "keep"}
    with pytest.raises(ValueError, match="unknown class"):
        resolve_policy({"audit": "1d"})


def test_a_recipe_sets_retention_and_only_then_its_hash_changes(tmp_path) -> None:
    plain = tmp_path / "plain.yml"
    plain.write_text(RECIPE_HEAD + "rules: []\n")
    kept = tmp_path / "kept.yml"
    kept.write_text(RECIPE_HEAD + "retention: {quarantine: 30d, change_records: keep}\nrules: []\n")
    base, with_policy = load_recipe(plain), load_recipe(kept)
    assert base.retention == {} and base.content_hash == load_recipe("research").content_hash
    assert with_policy.retention == {"quarantine": "30d", "change_records": "keep"}
    assert with_policy.content_hash != base.content_hash
    assert with_policy.canonical()["retention"] == {"quarantine": "30d", "change_records": "keep"}
    assert "retention: quarantine 30d, change_records keep" in with_policy.show()


@pytest.mark.parametrize("section, problem", [
    ("retention: {quarantine: 30days}", "retention.quarantine: '30days' is not an age"),
    ("retention: {thumbnails: 30d}", "thumbnails"),
    ("retention: 30d", "retention must be a mapping"),
    ("retention: {quarantine: [30d]}", "must be a single value"),
])
def test_a_malformed_retention_names_the_file_and_line(tmp_path, section, problem) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(RECIPE_HEAD + section + "\nrules: []\n")
    with pytest.raises(RecipeError, match=problem) as info:
        load_recipe(path)
    assert "bad.yml:4" in str(info.value)


def test_an_option_overlay_holds_no_retention(tmp_path) -> None:
    path = tmp_path / "overlay.yml"
    path.write_text('name: overlay\nversion: "1"\nkind: option\nretention: {quarantine: 1d}\nrules: []\n')
    with pytest.raises(RecipeError, match="an option overlay holds rules only"):
        load_recipe(path)


# --- the purge --------------------------------------------------------------------------------------------------

def _row(shard: int, i: int, status: str, when: float) -> audit.AuditRow:
    digest = f"{shard:02x}{i:02x}" * 8
    return audit.AuditRow("run", shard, digest, 10, 10 if status == "written" else 0,
                          f"{shard}/{i}.dcm" if status == "written" else "", "1.2", "CT", "1.3", "1.4", "1.5", "k",
                          "r", "1", "h", "0.1.0", (0,) * len(audit.ACTION_NAMES), False, status,
                          "" if status == "written" else "refused", 5, int(when * 1_000_000))


def _sealed_group(dst: Path, shard: int, rows: int) -> Path:
    """A shard group of pixels.zarr with a sealed before-image array (made by hand: only its shape matters)."""
    import zarr

    root = zarr.open_group(layout.pixels_path(dst), mode="a")
    group = root.create_group(layout.array_name(shard), overwrite=True,
                              attributes={"shard": shard, "before_thumbnails": "sealed"})
    arrays = {"row": np.arange(rows, dtype=np.int64), "size": np.full((rows, 4), 4, np.int32),
              "boxes": np.zeros((0, 6), np.int32), "kept": np.zeros((0, 5), np.int32),
              "thumbnail": np.ones((rows, 4, 4), np.uint8), "before_sealed": np.full((rows, 64), 7, np.uint8)}
    for name, value in arrays.items():
        array = group.create_array(name, shape=value.shape, dtype=value.dtype,
                                   chunks=tuple(max(1, d) for d in value.shape))
        if value.size:
            array[...] = value
    return layout.pixels_path(dst) / layout.array_name(shard)


@pytest.fixture
def dst(tmp_path) -> Path:
    """Shard 0 is 40 days old, shard 1 two days old; each has a quarantined input (clear copy in shard 0, a
    sealed copy in shard 1), sealed before-images and change records (clear part and sealed originals)."""
    out = tmp_path / "out"
    quarantine = layout.quarantine_dir(out)
    quarantine.mkdir(parents=True)
    changes = layout.changes_dir(out)
    changes.mkdir(parents=True)
    for shard, age_days, suffix in ((0, 40, ".dcm"), (1, 2, ".dcm.sealed")):
        when = NOW - age_days * DAY
        rows = [_row(shard, 0, "written", when), _row(shard, 1, "quarantined", when)]
        audit.write_shard(out, shard, rows)
        digest = rows[1].input_digest
        (quarantine / f"{digest}{suffix}").write_bytes(b"PHI" * 10)
        (quarantine / f"{digest}.json").write_text(json.dumps({"input_digest": digest, "reason": "refused"}))
        os.utime(quarantine / f"{digest}{suffix}", (NOW, NOW))  # copied just now: the audit row's time counts
        (changes / f"part-{shard:08d}.parquet").write_bytes(b"clear change records")
        (changes / f"originals-{shard:08d}.bin").write_bytes(b"VEILSEAL" + bytes(40))
        _sealed_group(out, shard, rows=2)
    audit.write_manifest(out, {"run_id": "run", "retention": {"quarantine": "30d", "before_images": "keep",
                                                             "change_records": "keep"}})
    return out


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _before_state(dst: Path, shard: int) -> tuple[str, bool]:
    import zarr

    group = zarr.open_group(layout.pixels_path(dst), mode="r")[layout.array_name(shard)]
    return group.attrs["before_thumbnails"], "before_sealed" in group


def test_a_purge_by_policy_removes_exactly_the_due_items_and_records_itself(dst) -> None:
    before = _files(dst)
    digest_old = _row(0, 1, "quarantined", 0).input_digest
    plan = purge(dst, operator="dpo", now=NOW)
    removed = before - _files(dst)
    assert removed == {f".veil/quarantine/{digest_old}.dcm"}  # quarantine 30d: only shard 0's copy is older
    assert [item.kind for item in plan.due] == ["quarantine"]
    assert _before_state(dst, 0) == ("sealed", True)  # before_images: keep
    (record,) = read_purges(dst)
    assert record["operator"] == "dpo" and record["time"] == audit.schema.iso_time(int(NOW * 1e6))
    assert record["older_than"] is None and record["limits"] == {"quarantine": "30d", "before_images": None,
                                                                 "change_records": None}
    assert record["removed"]["quarantine"] == {"items": 1, "files": 1, "bytes": 30}
    line = layout.purges_path(dst).read_text()
    assert digest_old not in line and "quarantine/" not in line  # counts, never names


def test_older_than_purges_quarantine_and_before_images_but_never_change_records_alone(dst) -> None:
    before = _files(dst)
    plan = purge(dst, older_than="1d", now=NOW)
    removed = before - _files(dst)
    assert {Path(p).name.split(".", 1)[1] for p in removed if "quarantine/" in p} == {"dcm", "dcm.sealed"}
    assert {p.split("/")[1] for p in removed} == {"quarantine", "audit"}  # never the manifest or purges record
    assert not any(p.endswith(".json") for p in removed if "quarantine/" in p)  # the reason files stay
    assert {p.split("/")[2] for p in removed if "audit/" in p} == {"pixels.zarr"}  # no part, no change record
    assert {p.split("/")[4] for p in removed if "pixels.zarr/" in p} == {"before_sealed"}
    for shard in (0, 1):
        assert _before_state(dst, shard) == ("purged", False)
        assert not (layout.pixels_path(dst) / layout.array_name(shard) / "before_sealed").exists()
    assert {k: v["items"] for k, v in plan.counts().items()} == {"quarantine": 2, "before_images": 4,
                                                                "change_records": 0}
    assert read_purges(dst)[0]["older_than"] == "1d"
    # Everything else is kept: the audit parts, the Zarr actions, the after-thumbnails, the manifest.
    kept = _files(dst)
    assert {".veil/audit/part-00000000.parquet", ".veil/audit/part-00000001.parquet", ".veil/manifest.json",
            ".veil/audit/changes/part-00000000.parquet", ".veil/audit/changes/originals-00000000.bin"} <= kept
    assert audit.read_audit(dst).num_rows == 4
    assert all(any(p.startswith(f".veil/audit/pixels.zarr/shard-0000000{s}/thumbnail") for p in kept) for s in (0, 1))


def test_change_records_go_when_the_policy_gives_them_an_age(dst) -> None:
    manifest = audit.read_manifest(dst)
    manifest["retention"]["change_records"] = "30d"
    audit.write_manifest(dst, manifest)
    before = _files(dst)
    purge(dst, older_than="90d", now=NOW)  # older_than does not apply to change records: the policy's 30d does
    assert before - _files(dst) == {".veil/audit/changes/originals-00000000.bin"}
    assert (layout.changes_dir(dst) / "part-00000000.parquet").exists()


def test_a_dry_run_removes_and_records_nothing(dst) -> None:
    before = _files(dst)
    plan = purge(dst, older_than="1d", dry_run=True, now=NOW)
    assert len(plan.due) == 4 and _files(dst) == before and read_purges(dst) == []


def test_age_comes_from_the_audit_row_else_the_file_time(dst) -> None:
    # An orphan copy (its run was killed before its part was written) ages by its modification time.
    orphan = layout.quarantine_dir(dst) / ("ee" * 16 + ".dcm.tmp")
    orphan.write_bytes(b"partial copy")
    os.utime(orphan, (NOW - 60 * DAY, NOW - 60 * DAY))
    due = {item.path.name for item in plan_purge(dst, now=NOW).due}
    assert orphan.name in due and len(due) == 2
    os.utime(orphan, (NOW, NOW))
    assert orphan.name not in {item.path.name for item in plan_purge(dst, now=NOW).due}


def test_a_purge_cut_short_is_finished_by_the_next(dst) -> None:
    import zarr

    group = zarr.open_group(layout.pixels_path(dst), mode="r+")[layout.array_name(0)]
    group.attrs["before_thumbnails"] = "purged"  # the state was written, the array not yet removed
    purge(dst, older_than="30d", now=NOW)
    assert _before_state(dst, 0) == ("purged", False) and _before_state(dst, 1) == ("sealed", True)


def test_older_than_takes_an_age(dst) -> None:
    for bad in ("keep", "soon"):
        with pytest.raises(ValueError):
            purge(dst, older_than=bad, now=NOW)
    assert read_purges(dst) == []


def test_the_summary_shows_the_policy_what_is_due_and_the_purges(dst) -> None:
    summary = audit.summarize(dst)
    assert summary.due["quarantine"]["items"] >= 1
    text = audit.format_summary(summary)
    assert "retention  before_images keep, change_records keep, quarantine 30d" in text
    assert "due for purge under this policy: quarantine" in text
    purge(dst, operator="dpo")
    text = audit.format_summary(audit.summarize(dst))
    assert "purges (1)" in text and "dpo  by policy: " in text
