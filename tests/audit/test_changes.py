"""Change records: the element diff of each written instance kept by a run (`--change-records`), the clear part
holding nothing the output does not, the originals sealed to the custodian (or, single-user, the run key), and
each instance's record equal to `veil inspect` of its input row for row."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from corpus import corpus_file_list, pydicom_file_list

from veil import engine
from veil.audit.changes import (
    CHANGE_VALUE_LIMIT,
    ElementRow,
    audit_seal,
    change_part_path,
    changed_shards,
    originals_path,
    read_changes,
    write_changes,
)
from veil.errors import AuditError, KeyError_
from veil.keys import Key, KeyedFunctions
from veil.keys.custodian import generate_custodian, load_custodian_private, load_custodian_public
from veil.preview.inspect import inspect_file
from veil.recipes import compile_recipe
from veil.synth import write_archive

KEY = Key(bytes(range(32)))
OTHER = Key(bytes(range(1, 33)))
PASSPHRASE = "correct horse battery"
RESEARCH = compile_recipe("research")


@pytest.fixture(scope="module")
def custodian(tmp_path_factory):
    """(public key, private key) of a custodian made for these tests."""
    folder = tmp_path_factory.mktemp("custodian")
    public, private, _ = generate_custodian("officer", folder, PASSPHRASE)
    return load_custodian_public(public), load_custodian_private(private, PASSPHRASE), public


def element(path: str, before: str, after: str, action: str = "REPLACE") -> ElementRow:
    return ElementRow(path, path[-11:], "PatientName", "PN", before, after, action, "tag (0010,0010) PatientName",
                      True)


RECORDS = [(0, [element("(0010,0010)", "DOE^JOHN", "ANON"), element("(0010,0020)", "12345", "", "EMPTY")]),
           (2, [element("(0010,0010)", "ROE^JANE", "ANON")])]


def test_round_trip_single_user_opens_only_with_the_run_key(tmp_path) -> None:
    write_changes(tmp_path, 3, "run1", RECORDS, audit_seal(KEY))
    assert changed_shards(tmp_path) == [3]
    sealed = read_changes(tmp_path)[3]
    assert [(i.row, i.originals, i.sealing, i.key_id) for i in sealed] == [
        (0, "sealed", "single-user", KEY.key_id), (2, "sealed", "single-user", KEY.key_id)]
    assert all(e.before is None for i in sealed for e in i.elements)
    opened = read_changes(tmp_path, 3, audit_seal(KEY))[3]
    assert [[(e.before, e.after, e.action) for e in i.elements] for i in opened] == [
        [("DOE^JOHN", "ANON", "REPLACE"), ("12345", "", "EMPTY")], [("ROE^JANE", "ANON", "REPLACE")]]
    assert {i.originals for i in opened} == {"opened"}
    with pytest.raises(KeyError_, match="run key"):
        read_changes(tmp_path, 3, audit_seal(OTHER))


def test_the_clear_part_holds_no_original_and_the_originals_file_none_in_clear(tmp_path, custodian) -> None:
    public, _, _ = custodian
    write_changes(tmp_path, 0, "run1", RECORDS, public)
    for path in (change_part_path(tmp_path, 0), originals_path(tmp_path, 0)):
        data = path.read_bytes()
        assert b"DOE" not in data and b"12345" not in data and b"ROE" not in data
    assert pq.read_table(change_part_path(tmp_path, 0)).column_names == [
        "row", "path", "tag", "keyword", "vr", "action", "rule", "after", "present_after"]


def test_custodian_originals_open_with_the_private_key_only(tmp_path, custodian) -> None:
    public, private, _ = custodian
    write_changes(tmp_path, 1, "run1", RECORDS, public)
    opened = read_changes(tmp_path, 1, private)[1]
    assert opened[0].elements[0].before == "DOE^JOHN" and opened[0].sealing == "custodian"
    with pytest.raises(KeyError_, match="custodian key"):
        read_changes(tmp_path, 1, audit_seal(KEY))  # the run key cannot open a custodian part


def test_single_user_originals_refuse_a_custodian_key(tmp_path, custodian) -> None:
    _, private, _ = custodian
    write_changes(tmp_path, 1, "run1", RECORDS, audit_seal(KEY))
    with pytest.raises(KeyError_, match="single-user"):
        read_changes(tmp_path, 1, private)


def test_originals_moved_to_another_shard_fail_authentication(tmp_path) -> None:
    write_changes(tmp_path, 0, "run1", RECORDS, audit_seal(KEY))
    write_changes(tmp_path, 1, "run1", RECORDS, audit_seal(KEY))
    shutil.copyfile(originals_path(tmp_path, 0), originals_path(tmp_path, 1))
    with pytest.raises(AuditError, match="fails authentication"):
        read_changes(tmp_path, 1, audit_seal(KEY))


def test_purged_originals_read_as_none(tmp_path) -> None:
    write_changes(tmp_path, 0, "run1", RECORDS, audit_seal(KEY))
    originals_path(tmp_path, 0).unlink()
    purged = read_changes(tmp_path, 0, audit_seal(KEY))[0]
    assert {i.originals for i in purged} == {"purged"}
    assert all(e.before is None for i in purged for e in i.elements)
    assert purged[0].elements[0].after == "ANON"


def test_originals_are_never_written_without_a_seal_target(tmp_path) -> None:
    with pytest.raises(ValueError, match="seal target"):
        write_changes(tmp_path, 0, "run1", RECORDS, None)
    assert not changed_shards(tmp_path)


# --- a run with change records equals veil inspect ---------------------------------------------------------


def copied(files: list[Path], src: Path) -> Path:
    src.mkdir(parents=True)
    for i, path in enumerate(files):
        shutil.copyfile(path, src / f"{i:03d}-{path.name}")
    return src


def run_with_changes(src: Path, dst: Path, key: Key | None = KEY, custodian_public: Path | None = None,
                     **kw) -> engine.RunSummary:
    options = engine.RunOptions(src=str(src), dst=str(dst), change_records=True,
                                custodian_public=str(custodian_public) if custodian_public else None, **kw)
    return engine.run(options, RESEARCH, key)


# What the pixel stage of a run changes after the header rewrite that veil inspect shows: the marking of the
# cleaned pixels (one more De-identification Method Code item, PS3.15 E.1.1), and a decoded-and-re-encoded
# image's photometric interpretation and pixel data. The change record holds the output as written.
PIXEL_STAGE = {"(0012,0064)", "(0028,0004)", "(0028,0301)", "(7FE0,0010)"}


def assert_equals_inspect(src: Path, dst: Path, opener, with_before: bool) -> int:
    """Every written instance's change record equals veil inspect of its input under the run key, row for row
    (for an instance whose pixels were redacted, the final value of the pixel stage's elements aside)."""
    from veil import audit

    functions = KeyedFunctions(KEY, **RESEARCH.key_parameters)
    table = audit.read_audit(dst, columns=["shard", "output_path", "status", "pixel_redaction"]).to_pylist()
    changes = read_changes(dst, opener=opener)
    rows_in_shard: dict[int, int] = {}
    checked = 0
    for entry in table:
        row = rows_in_shard.get(entry["shard"], 0)
        rows_in_shard[entry["shard"]] = row + 1
        if entry["status"] != "written":
            continue
        (record,) = [i for i in changes[entry["shard"]] if i.row == row]
        expected = inspect_file(src / entry["output_path"], RESEARCH, functions, limit=CHANGE_VALUE_LIMIT).rows
        got = record.elements
        assert len(got) == len(expected), entry["output_path"]
        for e, g in zip(expected, got, strict=True):
            after = (e.after, g.after) if not (entry["pixel_redaction"] and e.path in PIXEL_STAGE) else ("", "")
            assert (e.path, e.tag, e.keyword, e.vr, e.action, e.rule, after[0], e.present_after) == (
                g.path, g.tag, g.keyword, g.vr, g.action, g.rule, after[1], g.present_after), (entry["output_path"], e.path)
            assert g.before == (e.before if with_before else None)
        checked += 1
    return checked


@pytest.mark.heavy
def test_a_run_keeps_records_equal_to_inspect_on_pydicom_files(tmp_path) -> None:
    src = copied(pydicom_file_list(), tmp_path / "in")
    summary = run_with_changes(src, tmp_path / "out", shard_files=40)
    assert summary.written > 100
    assert assert_equals_inspect(src, tmp_path / "out", audit_seal(KEY), True) == summary.written
    assert len(changed_shards(tmp_path / "out")) == len(list((tmp_path / "out" / ".veil" / "audit").glob("part-*")))


def test_a_custodian_run_keeps_records_equal_to_inspect_opened_with_the_private_key(tmp_path, custodian) -> None:
    _, private, public_file = custodian
    src = tmp_path / "in"
    write_archive(src, patients=2, studies_per_patient=1, series_per_study=2, instances_per_series=3, seed=7)
    run_with_changes(src, tmp_path / "out", custodian_public=public_file)
    assert assert_equals_inspect(src, tmp_path / "out", private, True) == 12
    assert assert_equals_inspect(src, tmp_path / "out", None, False) == 12
    with pytest.raises(KeyError_):
        read_changes(tmp_path / "out", opener=audit_seal(KEY))


@pytest.mark.corpus
def test_a_run_keeps_records_equal_to_inspect_on_corpus_files(tmp_path, corpus_root) -> None:
    files = corpus_file_list()
    sample = files[:: max(1, len(files) // 60)][:60]
    src = copied(sample, tmp_path / "in")
    summary = run_with_changes(src, tmp_path / "out")
    assert assert_equals_inspect(src, tmp_path / "out", audit_seal(KEY), True) == summary.written


def test_without_change_records_nothing_is_written(tmp_path) -> None:
    src = tmp_path / "in"
    write_archive(src, patients=1, studies_per_patient=1, series_per_study=1, instances_per_series=2, seed=3)
    engine.run(engine.RunOptions(src=str(src), dst=str(tmp_path / "out")), RESEARCH, KEY)
    assert changed_shards(tmp_path / "out") == [] and read_changes(tmp_path / "out") == {}


def test_a_file_pydicom_cannot_read_gives_one_error_row_naming_no_value(monkeypatch) -> None:
    import veil.audit.changes as changes
    from veil.errors import MalformedDicom

    def refuse(data: bytes, path: str):  # type: ignore[no-untyped-def]
        raise MalformedDicom(path, 0, "pydicom cannot read it: InvalidDicomError: DOE^JOHN is not DICOM")

    monkeypatch.setattr(changes, "read_dicom", refuse)
    (row,) = changes.change_rows(b"", b"", {}, RESEARCH.plan)
    assert row.action == "ERROR" and "InvalidDicomError" in row.rule and "DOE" not in row.rule
