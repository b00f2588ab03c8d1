"""The audit trail: Parquet parts and Zarr arrays per shard, atomic and concurrent writes, resume detection,
the manifest, the summary, and the guarantee that the audit has no place for an original value."""

from __future__ import annotations

import multiprocessing
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from veil.audit import (
    ACTION_NAMES,
    AUDIT_COLUMNS,
    AUDIT_SCHEMA_VERSION,
    AuditRow,
    completed_shards,
    counts_from_mapping,
    format_summary,
    input_digest,
    part_path,
    read_actions,
    read_audit,
    read_manifest,
    summarize,
    write_manifest,
    write_shard,
)
from veil.audit import layout as audit_layout
from veil.audit import pixelstore as audit_pixelstore
from veil.audit import write as audit_write
from veil.core.plan import Action
from veil.keys import Key

KEY = Key(bytes(range(32)))

# The documented columns, spelled out: a new column (one that could hold an original value) fails this list.
DOCUMENTED_COLUMNS = [
    "run_id",
    "shard",
    "input_digest",
    "input_bytes",
    "output_bytes",
    "output_path",
    "sop_class_uid",
    "modality",
    "study_instance_uid",
    "series_instance_uid",
    "sop_instance_uid",
    "key_id",
    "recipe_name",
    "recipe_version",
    "recipe_hash",
    "veil_version",
    "count_keep",
    "count_remove",
    "count_empty",
    "count_dummy",
    "count_replace",
    "count_uid",
    "count_shift",
    "count_pseudo",
    "count_age",
    "count_recurse",
    "count_call",
    "pixel_redaction",
    "status",
    "reason",
    "microseconds",
    "time",
]


def make_row(shard: int, i: int, status: str = "written", reason: str = "", **over: object) -> AuditRow:
    """A plausible row: new UIDs under 2.25, digest of a made-up source path."""
    values: dict[str, object] = dict(
        run_id="run-1",
        shard=shard,
        input_digest=input_digest(KEY, f"src/{shard}/{i}.dcm"),
        input_bytes=1000 + i,
        output_bytes=900 + i if status == "written" else 0,
        output_path=f"2.25.1/2.25.2/2.25.{shard}{i}.dcm" if status == "written" else "",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        modality="CT",
        study_instance_uid="2.25.1",
        series_instance_uid="2.25.2",
        sop_instance_uid=f"2.25.{shard}{i}" if status == "written" else "",
        key_id=KEY.key_id,
        recipe_name="basic",
        recipe_version="1.0",
        recipe_hash="ab" * 32,
        veil_version="0.1.0",
        counts=tuple(i + a for a in range(len(ACTION_NAMES))),
        pixel_redaction=bool(i % 2),
        status=status,
        reason=reason,
        microseconds=10 * i,
        time=1_796_000_000_000_000 + i,
    )
    values.update(over)
    return AuditRow(**values)  # type: ignore[arg-type]


def rows_from_table(table: pa.Table) -> list[AuditRow]:
    rows = []
    for record in table.to_pylist():
        counts = tuple(record.pop(f"count_{a.lower()}") for a in ACTION_NAMES)
        # The time column is a UTC timestamp: back to microseconds since the epoch.
        record["time"] = (record["time"] - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        rows.append(AuditRow(counts=counts, **record))
    return rows


def test_action_names_follow_the_plan() -> None:
    assert ACTION_NAMES == tuple(a.name for a in Action)


def test_rows_round_trip_through_parquet_with_schema_and_version(tmp_path: Path) -> None:
    rows = [make_row(3, i) for i in range(5)] + [make_row(3, 5, "quarantined", "truncated element")]
    part = write_shard(tmp_path, 3, rows)

    assert part == part_path(tmp_path, 3) == tmp_path / ".veil" / "audit" / "part-00000003.parquet"
    schema = pq.read_schema(part)
    assert schema.metadata[b"veil.audit.schema"] == str(AUDIT_SCHEMA_VERSION).encode()
    assert schema.field("shard").type == pa.int64()
    assert schema.field("input_bytes").type == pa.int64()
    assert schema.field("pixel_redaction").type == pa.bool_()
    assert schema.field("status").type == pa.string()
    assert all(schema.field(f"count_{a.lower()}").type == pa.int32() for a in ACTION_NAMES)

    table = read_audit(tmp_path)
    assert table.column_names == DOCUMENTED_COLUMNS
    assert table.schema.metadata[b"veil.audit.schema"] == str(AUDIT_SCHEMA_VERSION).encode()
    assert rows_from_table(table) == rows
    assert completed_shards(tmp_path) == {3}


def test_action_matrix_is_a_zarr_array_per_shard(tmp_path: Path) -> None:
    rows = [make_row(4, i) for i in range(3)]
    write_shard(tmp_path, 4, rows)
    matrix = read_actions(tmp_path, 4)
    assert matrix.dtype == np.int32
    assert matrix.tolist() == [list(r.counts) for r in rows]
    assert (tmp_path / ".veil" / "audit" / "actions.zarr" / "shard-00000004").is_dir()


def test_empty_shard_is_complete_with_an_empty_matrix(tmp_path: Path) -> None:
    write_shard(tmp_path, 7, [])
    assert completed_shards(tmp_path) == {7}
    assert read_actions(tmp_path, 7).shape == (0, len(ACTION_NAMES))
    table = read_audit(tmp_path)
    assert table.num_rows == 0 and table.column_names == DOCUMENTED_COLUMNS
    assert summarize(tmp_path).shards == 1


def test_read_audit_of_a_fresh_destination_is_empty_with_the_schema(tmp_path: Path) -> None:
    table = read_audit(tmp_path)
    assert table.num_rows == 0 and table.column_names == DOCUMENTED_COLUMNS
    assert completed_shards(tmp_path) == set()


def test_rewriting_a_shard_replaces_it(tmp_path: Path) -> None:
    write_shard(tmp_path, 1, [make_row(1, i) for i in range(4)])
    write_shard(tmp_path, 1, [make_row(1, 9)])
    assert read_audit(tmp_path).num_rows == 1
    assert read_actions(tmp_path, 1).shape == (1, len(ACTION_NAMES))


def test_parts_are_read_in_shard_order(tmp_path: Path) -> None:
    for shard in (12, 2, 7):
        write_shard(tmp_path, shard, [make_row(shard, 0), make_row(shard, 1)])
    assert read_audit(tmp_path)["shard"].to_pylist() == [2, 2, 7, 7, 12, 12]
    assert read_audit(tmp_path, columns=["shard", "status"]).column_names == ["shard", "status"]


def test_audit_has_no_column_for_an_original_value(tmp_path: Path) -> None:
    original_path = "archive/DOE^JOHN/1.2.826.0.1.3680043.99.1.dcm"
    originals = ["DOE^JOHN", "1.2.826.0.1.3680043.99", original_path, "PID-0042"]
    row = make_row(0, 0, input_digest=input_digest(KEY, original_path))
    write_shard(tmp_path, 0, [row])

    table = read_audit(tmp_path)
    assert list(AUDIT_COLUMNS) == DOCUMENTED_COLUMNS == table.column_names
    cells = [str(v) for record in table.to_pylist() for v in record.values()]
    assert not [c for c in cells for o in originals if o in c]
    raw = b"".join(p.read_bytes() for p in (tmp_path / ".veil").rglob("*") if p.is_file())
    assert not [o for o in originals if o.encode() in raw]


def test_a_path_is_refused_as_input_digest() -> None:
    with pytest.raises(ValueError, match="digest"):
        make_row(0, 0, input_digest="/archive/DOE^JOHN/1.dcm")


@pytest.mark.parametrize("output_path", ["/abs/out.dcm", "../escape.dcm", "a/../../b.dcm", "C:\\x.dcm"])
def test_an_output_path_outside_dst_is_refused(output_path: str) -> None:
    with pytest.raises(ValueError, match="output_path"):
        make_row(0, 0, output_path=output_path)


def test_malformed_rows_are_refused() -> None:
    with pytest.raises(ValueError, match="counts"):
        make_row(0, 0, counts=(1, 2))
    with pytest.raises(ValueError, match="status"):
        make_row(0, 0, status="done")


def test_rows_of_another_shard_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shard"):
        write_shard(tmp_path, 1, [make_row(2, 0)])
    assert completed_shards(tmp_path) == set()


def test_counts_overflowing_int32_are_refused(tmp_path: Path) -> None:
    big = (2**31,) + (0,) * (len(ACTION_NAMES) - 1)
    with pytest.raises(ValueError, match="counts"):
        write_shard(tmp_path, 0, [make_row(0, 0, counts=big)])


def test_counts_from_mapping_orders_by_action_and_refuses_unknown_names() -> None:
    assert counts_from_mapping({"REMOVE": 3, "KEEP": 5}) == (5, 3) + (0,) * (len(ACTION_NAMES) - 2)
    with pytest.raises(ValueError, match="unknown"):
        counts_from_mapping({"DELETE": 1})


def test_input_digest_is_keyed_and_hex() -> None:
    d = input_digest(KEY, "a/b.dcm")
    assert len(d) == 64 and int(d, 16) >= 0
    assert d != input_digest(Key(bytes(32)), "a/b.dcm")
    assert d == input_digest(KEY, Path("a/b.dcm"))


def test_input_digester_is_input_digest_under_one_key() -> None:
    from veil.audit.schema import input_digester

    audit_key = KEY.subkey("audit")
    digest_of = input_digester(audit_key)
    for path in ("a/b.dcm", "Ä/\udcff.dcm", b"series\0" + b"1.2.3"):
        assert digest_of(path) == input_digest(audit_key, path) == input_digest(KEY, path)
    assert digest_of("a/b.dcm") != input_digester(bytes(32))("a/b.dcm")


def test_a_crash_before_rename_leaves_no_part_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(src: object, dst: object) -> None:
        raise OSError("simulated crash")

    monkeypatch.setattr(audit_layout.os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        write_shard(tmp_path, 5, [make_row(5, 0)])
    monkeypatch.undo()

    folder = tmp_path / ".veil" / "audit"
    assert [p.name for p in folder.iterdir()] == ["actions.zarr"]  # the Zarr array came first; no part
    assert completed_shards(tmp_path) == set()
    assert read_audit(tmp_path).num_rows == 0

    write_shard(tmp_path, 5, [make_row(5, 0)])  # the resumed run redoes the shard
    assert completed_shards(tmp_path) == {5}


def test_temporaries_and_corrupt_parts_are_not_complete(tmp_path: Path) -> None:
    good = write_shard(tmp_path, 1, [make_row(1, i) for i in range(20)])
    folder = good.parent
    data = good.read_bytes()
    (folder / ".part-00000002.parquet.123-abc.tmp").write_bytes(data[: len(data) // 2])  # killed mid-write
    (folder / "part-00000003.parquet").write_bytes(data[: len(data) // 2])  # truncated
    (folder / "part-00000004.parquet").write_bytes(b"")  # empty
    (folder / "part-00000005.parquet").write_bytes(b"PAR1" + b"\0" * 100 + b"PAR1")  # garbage
    (folder / "part-notanumber.parquet").write_bytes(data)
    other = pa.table({"x": [1]}).replace_schema_metadata({b"veil.audit.schema": b"999"})
    pq.write_table(other, folder / "part-00000006.parquet")  # a foreign or future schema
    old = pq.read_table(good).replace_schema_metadata({b"veil.audit.schema": b"0"})
    pq.write_table(old, folder / "part-00000008.parquet")  # right columns, another schema version

    assert completed_shards(tmp_path) == {1}
    assert read_audit(tmp_path).num_rows == 20


def test_manifest_round_trip_sorted_and_atomic(tmp_path: Path) -> None:
    path = write_manifest(tmp_path, {"run_id": "run-1", "b": [1, 2], "a": {"z": 1, "y": 2}})
    assert path == tmp_path / ".veil" / "manifest.json"
    text = path.read_text()
    assert text.index('"a"') < text.index('"b"') < text.index('"run_id"') and text.index('"y"') < text.index(
        '"z"'
    )
    manifest = read_manifest(tmp_path)
    assert manifest["run_id"] == "run-1" and manifest["audit_schema_version"] == AUDIT_SCHEMA_VERSION
    assert [p.name for p in path.parent.iterdir()] == ["manifest.json"]
    assert read_manifest(tmp_path / "elsewhere") == {}
    with pytest.raises(TypeError):
        write_manifest(tmp_path, {"bad": object()})
    assert read_manifest(tmp_path)["run_id"] == "run-1"  # the failed write left the old manifest whole


def test_summarize_counts_and_lists_quarantine(tmp_path: Path) -> None:
    write_shard(tmp_path, 0, [make_row(0, i) for i in range(3)] + [make_row(0, 3, "skipped", "already done")])
    quarantined = [
        make_row(1, 0, "quarantined", "truncated element"),
        make_row(1, 1, "quarantined", "not DICOM"),
    ]
    write_shard(tmp_path, 1, quarantined + [make_row(1, 2, "quarantined", "not DICOM")])
    write_shard(tmp_path, 2, [])
    write_manifest(tmp_path, {"run_id": "run-1", "recipe": "basic 1.0"})

    s = summarize(tmp_path)
    assert (s.files, s.written, s.skipped, s.quarantined, s.shards) == (7, 3, 1, 3, 3)
    assert s.input_bytes == sum(1000 + i for i in (0, 1, 2, 3)) + sum(1000 + i for i in (0, 1, 2))
    assert s.output_bytes == sum(900 + i for i in range(3))
    assert s.reasons == {"not DICOM": 2, "already done": 1, "truncated element": 1}
    assert list(s.reasons) == ["not DICOM", "already done", "truncated element"]
    assert len(s.quarantine) == 3 and s.quarantine == sorted(s.quarantine)
    assert (quarantined[0].input_digest, "truncated element") in s.quarantine
    assert list(s.actions) == list(ACTION_NAMES)
    all_rows = rows_from_table(read_audit(tmp_path))
    assert s.actions["KEEP"] == sum(r.counts[0] for r in all_rows)
    assert s.key_ids == (KEY.key_id,) and s.recipes == ("basic 1.0 " + "ab" * 32,)
    assert s.manifest["run_id"] == "run-1"

    text = format_summary(s)
    assert "run-1" in text and "not DICOM" in text and "quarantine (3)" in text
    assert all(digest in text for digest, _ in s.quarantine)
    assert "WARNING" not in text
    short = format_summary(s, quarantine_limit=1)
    assert "and 2 more" in short


def test_summary_warns_when_outputs_mix_keys(tmp_path: Path) -> None:
    write_shard(tmp_path, 0, [make_row(0, 0), make_row(0, 1, key_id="0123456789abcdef")])
    assert "more than one key" in format_summary(summarize(tmp_path))
    assert "run: no manifest" in format_summary(summarize(tmp_path))


def test_group_creation_race_opens_the_winners_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The pixel-record store is opened through zarr (the action counts are written by hand, below).
    import zarr
    from zarr.errors import ContainsGroupError

    real_open = zarr.open_group
    calls = []

    def lose_the_race(store: object, **kwargs: object) -> object:
        calls.append(kwargs.get("mode"))
        if len(calls) == 1:
            real_open(store, mode="w")  # the other process got there first
            raise ContainsGroupError("lost the race")
        return real_open(store, **kwargs)

    monkeypatch.setattr(zarr, "open_group", lose_the_race)
    group = audit_pixelstore._open_store_group(tmp_path / "store.zarr", {"veil.audit.schema": 1})
    monkeypatch.undo()
    assert len(calls) == 2
    assert zarr.open_group(tmp_path / "store.zarr", mode="r").store_path == group.store_path


@pytest.mark.parametrize("rows", [0, 1, 7, 250])
def test_action_arrays_are_what_zarr_itself_writes(tmp_path: Path, rows: int) -> None:
    """The hand-written action arrays (no zarr import in the workers) have the metadata zarr.create_array
    writes for the same arguments, and zarr reads back the same numbers."""
    import json

    import zarr

    matrix = np.arange(rows * len(ACTION_NAMES), dtype=np.int32).reshape(rows, len(ACTION_NAMES)) * 7919
    write_shard(tmp_path, 3, [make_row(3, i) for i in range(rows)], matrix=matrix)
    assert np.array_equal(read_actions(tmp_path, 3), matrix)

    store = tmp_path / ".veil" / "audit" / "actions.zarr"
    ours = zarr.open_group(store, mode="r")["shard-00000003"]
    theirs_group = zarr.open_group(tmp_path / "theirs.zarr", mode="a", attributes=dict(zarr.open_group(store).attrs))
    theirs = theirs_group.create_array("shard-00000003", shape=matrix.shape, dtype="int32",
                                       chunks=(max(1, rows), len(ACTION_NAMES)), attributes=dict(ours.attrs))
    if rows:
        theirs[:] = matrix
    for name in ("zarr.json", "shard-00000003/zarr.json"):
        assert json.loads((store / name).read_text()) == json.loads((tmp_path / "theirs.zarr" / name).read_text())
    assert np.array_equal(ours[:], theirs[:])


def test_action_arrays_in_several_chunks_and_a_rewrite_leaves_no_stale_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_write, "_ZARR_CHUNK_ROWS", 4)
    matrix = np.arange(10 * len(ACTION_NAMES), dtype=np.int32).reshape(10, len(ACTION_NAMES))
    write_shard(tmp_path, 0, [make_row(0, i) for i in range(10)], matrix=matrix)
    folder = tmp_path / ".veil" / "audit" / "actions.zarr" / "shard-00000000"
    assert sorted(p.name for p in (folder / "c").iterdir()) == ["0", "1", "2"]  # the last one padded
    assert np.array_equal(read_actions(tmp_path, 0), matrix)
    # The shard redone with fewer rows: one chunk, nothing of the first attempt's.
    write_shard(tmp_path, 0, [make_row(0, i) for i in range(3)], matrix=matrix[:3])
    assert sorted(p.name for p in (folder / "c").iterdir()) == ["0"]
    assert np.array_equal(read_actions(tmp_path, 0), matrix[:3])


def _write_shards(dst: str, shards: list[int], barrier: Any) -> None:
    barrier.wait()
    for shard in shards:
        write_shard(Path(dst), shard, [make_row(shard, i) for i in range(shard % 4)])


def test_concurrent_writers_do_not_touch_each_other(tmp_path: Path) -> None:
    # spawn, not fork: a forked child would inherit the event loop thread of any zarr used before, half-alive.
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    procs = [
        ctx.Process(target=_write_shards, args=(str(tmp_path), list(range(w, 20, 4)), barrier))
        for w in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]

    assert completed_shards(tmp_path) == set(range(20))
    assert read_audit(tmp_path).num_rows == sum(s % 4 for s in range(20))
    import zarr

    group = zarr.open_group(tmp_path / ".veil" / "audit" / "actions.zarr", mode="r")
    assert sorted(group.array_keys()) == [f"shard-{s:08d}" for s in range(20)]
    for shard in range(20):
        assert read_actions(tmp_path, shard).shape == (shard % 4, len(ACTION_NAMES))
    leftovers = [p for p in (tmp_path / ".veil").rglob("*") if p.name.endswith((".tmp", ".partial"))]
    assert leftovers == []


def test_a_replaced_row_is_validated_too() -> None:
    row = make_row(0, 0)
    assert row._replace(reason="x").reason == "x"
    with pytest.raises(ValueError, match="digest"):
        row._replace(input_digest="/home/patient/scan.dcm")
    with pytest.raises(ValueError, match="output_path"):
        row._replace(output_path="../outside.dcm")


def test_a_row_is_made_from_a_file_outcome_written_or_refused() -> None:
    """The one place a row comes from: every field of a written outcome lands in its column, the output path
    relative to DST; a refused one records the listed size, no output and the reason."""
    from veil.audit import RowContext, row_from_outcome
    from veil.pipeline import FileOutcome

    context = RowContext("run-1", 4, KEY.key_id, "basic", "1.0", "ab" * 32, "0.1.0", "/dst/")
    counts = tuple(range(len(ACTION_NAMES)))
    written = FileOutcome("/src/a.dcm", "/dst/p/a.dcm", "written", "", 1000, 900, "1.2.840.10008.5.1.4.1.1.2",
                          "2.25.3", "2.25.1", "2.25.2", "CT", "1.2.840.10008.1.2.1", counts, 77, True)
    before = time.time_ns() // 1000
    row = row_from_outcome(written, context, "cd" * 16, 5)
    assert before <= row.time <= time.time_ns() // 1000  # when the row was made, UTC microseconds
    assert row == AuditRow("run-1", 4, "cd" * 16, 1000, 900, "p/a.dcm", "1.2.840.10008.5.1.4.1.1.2", "CT", "2.25.1",
                           "2.25.2", "2.25.3", KEY.key_id, "basic", "1.0", "ab" * 32, "0.1.0", counts, True,
                           "written", "", 77, row.time)
    refused = FileOutcome("/src/b.dcm", None, "quarantined", reason="not DICOM", microseconds=3)
    row = row_from_outcome(refused, context, "ef" * 16, 123)
    assert (row.input_bytes, row.output_bytes, row.output_path, row.status, row.reason, row.counts) == (
        123, 0, "", "quarantined", "not DICOM", (0,) * len(ACTION_NAMES))


def test_tallies_add_up_and_count_an_audit_the_same_way(tmp_path: Path) -> None:
    from collections import Counter

    from veil.audit import Tally

    rows = [make_row(0, i) for i in range(3)] + [make_row(0, 3, "quarantined", "not DICOM")]
    write_shard(tmp_path, 0, rows)
    read = Tally.of_audit(tmp_path)
    assert (read.files, read.written, read.quarantined, read.reasons) == (4, 3, 1, {"not DICOM": 1})
    assert read.input_bytes == sum(r.input_bytes for r in rows) and read.actions["KEEP"] == sum(r.counts[0] for r in rows)
    one = Tally(2, 1, 0, 1, 10, 5, Counter({"x": 1}), Counter({"KEEP": 3}))
    both = one + Tally(1, 1, 0, 0, 4, 4, Counter(), Counter({"KEEP": 1, "UID": 2}))
    assert both == Tally(3, 2, 0, 1, 14, 9, Counter({"x": 1}), Counter({"KEEP": 4, "UID": 2}))
    assert one.files == 2  # + makes a new tally


def test_output_temporaries_of_stopped_workers_are_swept_outside_the_veil_folder(tmp_path) -> None:
    """After a run stopped on a full disk: the ``.NAME.veil-tmp`` files beside outputs go, outputs and the
    audit's own files stay (the audit's temporaries have their own sweep)."""
    from veil.audit.layout import sweep_output_temporaries

    (tmp_path / "p1" / "s1").mkdir(parents=True)
    (tmp_path / ".veil" / "audit").mkdir(parents=True)
    half = [tmp_path / "p1" / "s1" / ".i0001.dcm.veil-tmp", tmp_path / ".i0002.dcm.veil-tmp"]
    kept = [tmp_path / "p1" / "s1" / "i0003.dcm", tmp_path / ".veil" / "audit" / ".x.veil-tmp",
            tmp_path / "p1" / "not-ours.veil-tmp"]
    for path in half + kept:
        path.write_bytes(b"x")
    assert sweep_output_temporaries(tmp_path) == 2
    assert not any(p.exists() for p in half)
    assert all(p.exists() for p in kept)
