"""The re-identification table in custodian mode: sealed to the custodian's public key, append-only (the run's
key service never opens it), the journal of a killed run merged unopened, counter numbers carried on by the
counter index; the run key opens none of it, and each kind of table names the key it needs."""

from __future__ import annotations

import dataclasses
import os
import pickle
import stat
from pathlib import Path

import pydicom
import pytest

from veil import engine
from veil.errors import KeyError_
from veil.keys import Key
from veil.keys.custodian import CustodianPrivateKey, generate_custodian
from veil.keys.reid import (
    CUSTODIAN_MAGIC,
    REID_MAGIC,
    ReidTableError,
    custodian_records,
    index_path,
    journal_dir,
    read_counter_index,
    read_reid_table,
    write_reid_part,
)
from veil.keys.service import KeyService
from veil.recipes import compile_recipe, load_recipe
from veil.synth import write_archive

KEY = Key(bytes(range(32)))
CUSTODIAN = CustodianPrivateKey("records-office", bytes(range(100, 132)))
PUBLIC = CUSTODIAN.public_key()
OTHER_CUSTODIAN = CustodianPrivateKey("elsewhere", bytes(range(50, 82)))
PATTERN = "SUBJ-{counter:6}"
RECIPE = Path(__file__).parents[1] / "data" / "recipes" / "subject-counters.yml"


def custodian_service(**kw) -> KeyService:  # type: ignore[no-untyped-def]
    return KeyService(KEY.material, kw.pop("pattern", PATTERN), None, seal_to=kw.pop("seal_to", PUBLIC), **kw)


def numbered(table: Path) -> dict[str, str]:
    """original -> counter pseudonym, read with the custodian's private key; one number per original and back."""
    rows = [(new, original) for kind, new, original in read_reid_table(table, CUSTODIAN) if kind == "pseudonym"]
    numbers = dict((original, new) for new, original in rows)
    assert len(numbers) == len(rows) == len(set(numbers.values()))
    return numbers


# --- the table -------------------------------------------------------------------------------------------------


def test_a_custodian_table_opens_with_the_private_key_only(tmp_path) -> None:
    service = custodian_service()
    assert service.custodian() == PUBLIC.key_id
    service.record_reid([("PatientID", b"P1", b"12345 "), ("PatientID", b"P1", b"12345"),
                         ("AccessionNumber", b"A1", b"\xe9\xff")])
    table = tmp_path / "t.reid"
    service.write_reid_table(str(table))
    blob = table.read_bytes()
    assert blob.startswith(CUSTODIAN_MAGIC) and b"12345" not in blob
    assert stat.S_IMODE(table.stat().st_mode) == 0o600
    assert read_reid_table(table, CUSTODIAN) == [
        ("AccessionNumber", "A1", b"\xe9\xff".decode("utf-8", "surrogateescape")),
        ("PatientID", "P1", "12345"),
    ]
    with pytest.raises(KeyError_, match=f"sealed to custodian key {PUBLIC.key_id}; the run key cannot open it.*"
                                        f"--custodian-key"):
        read_reid_table(table, KEY)
    with pytest.raises(KeyError_, match=f"custodian key {PUBLIC.key_id}"):
        read_reid_table(table, KEY.material)
    with pytest.raises(KeyError_, match=f"sealed to custodian key {PUBLIC.key_id}, not {OTHER_CUSTODIAN.key_id}"):
        read_reid_table(table, OTHER_CUSTODIAN)
    assert sorted(os.listdir(tmp_path)) == ["t.reid", "t.reid.counters"]  # no temporary file left behind


def test_a_single_user_table_given_the_custodian_key_names_the_run_key(tmp_path) -> None:
    service = KeyService(KEY.material)
    service.record_reid([("PatientID", b"P1", b"12345")])
    service.write_reid_table(str(tmp_path / "t.reid"))
    assert (tmp_path / "t.reid").read_bytes().startswith(REID_MAGIC)
    with pytest.raises(KeyError_, match=f"single-user .* run key {KEY.key_id}: open it with that key \\(--key\\)"):
        read_reid_table(tmp_path / "t.reid", CUSTODIAN)
    assert read_reid_table(tmp_path / "t.reid", KEY) == [("PatientID", "P1", "12345")]


def test_a_custodian_table_only_grows_its_records_kept_byte_for_byte(tmp_path) -> None:
    table = tmp_path / "t.reid"
    first = custodian_service()
    first.record_reid([("PatientID", b"P1", b"1")])
    first.write_reid_table(str(table))
    before = table.read_bytes()
    second = custodian_service()
    second.record_reid([("PatientID", b"P2", b"2"), ("PatientID", b"P1", b"1")])
    second.write_reid_table(str(table))
    assert table.read_bytes().startswith(before) and len(custodian_records(table, PUBLIC.key_id)) == 2
    assert read_reid_table(table, CUSTODIAN) == [("PatientID", "P1", "1"), ("PatientID", "P2", "2")]
    # Written again with nothing new: no empty record is added; rows already sealed are not sealed twice.
    second.write_reid_table(str(table))
    assert len(custodian_records(table, PUBLIC.key_id)) == 2


def test_a_killed_runs_journal_is_merged_without_opening_it(tmp_path) -> None:
    table = tmp_path / "t.reid"
    killed = custodian_service()
    killed.set_journal(table)
    killed.record_reid([("PatientID", b"P1", b"1")], shard=0)
    killed.record_reid([("PatientID", b"P2", b"2")], shard=1)
    # A pool worker journals its own shard with what the service gives it: the public key, nothing secret.
    sealer = killed.reid_sealer()
    assert sealer == PUBLIC
    write_reid_part(journal_dir(table), 2, [("PatientID", b"P3", b"3")], sealer)
    write_reid_part(journal_dir(table), 2, [("PatientID", b"P4", b"4")], sealer)  # the shard again: appended
    parts = sorted(journal_dir(table).glob("shard-*.bin"))
    assert [p.name for p in parts] == ["shard-00000000.bin", "shard-00000001.bin", "shard-00000002.bin"]
    assert len(custodian_records(parts[2], PUBLIC.key_id)) == 2
    journaled = [record for part in parts for record in custodian_records(part, PUBLIC.key_id)]
    for part in parts:
        with pytest.raises(KeyError_, match="--custodian-key"):
            read_reid_table(part, KEY)
    # killed here; the resumed run has its own service, no private key anywhere
    resumed = custodian_service()
    resumed.set_journal(table)
    resumed.record_reid([("PatientID", b"P5", b"5")], shard=3)
    resumed.record_reid([("PatientID", b"P6", b"6")])  # not journaled: goes in the table's last record
    resumed.write_reid_table(str(table))
    assert not journal_dir(table).exists()
    blob = table.read_bytes()
    assert all(record in blob for record in journaled)
    records = custodian_records(table, PUBLIC.key_id)
    assert len(records) == len(journaled) + 2  # + shard 3's part + one record of what was not journaled
    assert [original for _, _, original in read_reid_table(table, CUSTODIAN)] == ["1", "2", "3", "4", "5", "6"]


def test_another_custodians_table_or_a_single_user_one_is_refused_before_any_work(tmp_path) -> None:
    other = custodian_service(seal_to=OTHER_CUSTODIAN.public_key())
    other.record_reid([("PatientID", b"P1", b"1")])
    other.write_reid_table(str(tmp_path / "other.reid"))
    with pytest.raises(KeyError_, match=f"sealed to custodian key {OTHER_CUSTODIAN.key_id}, not {PUBLIC.key_id}"):
        custodian_service().set_journal(tmp_path / "other.reid")
    single = KeyService(KEY.material)
    single.record_reid([("PatientID", b"P1", b"1")])
    single.write_reid_table(str(tmp_path / "single.reid"))
    with pytest.raises(KeyError_, match=f"single-user .*run key {KEY.key_id}.*give another --reid-table"):
        custodian_service().set_journal(tmp_path / "single.reid")
    # And the other way round: a single-user run given a custodian table names the custodian key.
    with pytest.raises(KeyError_, match=f"custodian key {OTHER_CUSTODIAN.key_id}.*--custodian-key"):
        KeyService(KEY.material).write_reid_table(str(tmp_path / "other.reid"))


@pytest.mark.parametrize("cut", [3, 30])
def test_a_truncated_custodian_table_is_refused(tmp_path, cut) -> None:
    service = custodian_service()
    service.record_reid([("PatientID", b"P1", b"1")])
    service.write_reid_table(str(tmp_path / "t.reid"))
    blob = (tmp_path / "t.reid").read_bytes()
    (tmp_path / "t.reid").write_bytes(blob[:-cut])
    with pytest.raises(ReidTableError, match="truncated|fails authentication"):
        read_reid_table(tmp_path / "t.reid", CUSTODIAN)


def test_an_altered_record_fails_authentication(tmp_path) -> None:
    service = custodian_service()
    service.record_reid([("PatientID", b"P1", b"1")])
    service.write_reid_table(str(tmp_path / "t.reid"))
    blob = bytearray((tmp_path / "t.reid").read_bytes())
    blob[-5] ^= 1
    (tmp_path / "t.reid").write_bytes(bytes(blob))
    with pytest.raises(ReidTableError, match="fails authentication"):
        read_reid_table(tmp_path / "t.reid", CUSTODIAN)


def test_the_service_pickles_with_its_custodian_for_the_pool_manager() -> None:
    service = custodian_service()
    service.counter_pseudonyms("pseudonym", [b"A"], "SUBJ-", 6)
    copy = pickle.loads(pickle.dumps(service))
    assert copy.custodian() == PUBLIC.key_id
    assert copy.counter_pseudonyms("pseudonym", [b"B", b"A"], "SUBJ-", 6) == [b"SUBJ-000002", b"SUBJ-000001"]
    with pytest.raises(TypeError, match="custodian public key"):
        KeyService(KEY.material, seal_to=CUSTODIAN)  # type: ignore[arg-type]


# --- counters ----------------------------------------------------------------------------------------------------


def test_counters_go_on_across_runs_and_a_killed_run_from_the_counter_index(tmp_path) -> None:
    table = tmp_path / "t.reid"
    first = custodian_service()
    first.set_journal(table)
    first.load_reid(table)
    assert first.counter_pseudonyms("pseudonym", [b"A", b"B"], "SUBJ-", 6, shard=0) == [b"SUBJ-000001",
                                                                                         b"SUBJ-000002"]
    first.write_reid_table(str(table))
    index = index_path(table)
    assert stat.S_IMODE(index.stat().st_mode) == 0o600
    assert b"SUBJ" not in index.read_bytes() and len(read_counter_index(index, KEY)) == 2  # sealed
    second = custodian_service()
    second.set_journal(table)
    assert second.load_reid(table) == 2
    assert second.counter_pseudonyms("pseudonym", [b"C", b"A "], "SUBJ-", 6, shard=3) == [b"SUBJ-000003",
                                                                                           b"SUBJ-000001"]
    # killed here: C is only in the journal, sealed to the custodian, and in the journal's index part
    journal = journal_dir(table)
    assert {p.name for p in journal.iterdir()} == {"shard-00000003.counters.bin",
                                                   "shard-00000003.counters-index.bin"}
    third = custodian_service()
    third.set_journal(table)
    third.load_reid(table)
    assert third.counter_pseudonyms("pseudonym", [b"D", b"C", b"B"], "SUBJ-", 6, shard=3) == [
        b"SUBJ-000004", b"SUBJ-000003", b"SUBJ-000002"
    ]
    third.write_reid_table(str(table))
    assert not journal.exists()
    assert numbered(table) == {"A": "SUBJ-000001", "B": "SUBJ-000002", "C": "SUBJ-000003", "D": "SUBJ-000004"}
    assert sorted(new for _, new, _ in read_counter_index(index, KEY)) == [f"SUBJ-00000{n}".encode()
                                                                           for n in range(1, 5)]
    fourth = custodian_service()
    fourth.load_reid(table)
    assert fourth.counter_pseudonyms("pseudonym", [b"E", b"A"], "SUBJ-", 6) == [b"SUBJ-000005", b"SUBJ-000001"]


def test_the_counter_index_holds_digests_not_originals(tmp_path) -> None:
    table = tmp_path / "t.reid"
    service = custodian_service()
    service.counter_pseudonyms("pseudonym", [b"PATIENT-0042"], "SUBJ-", 6)
    service.write_reid_table(str(table))
    rows = read_counter_index(index_path(table), KEY)
    assert [(kind, new) for kind, new, _ in rows] == [("pseudonym", b"SUBJ-000001")]
    digest = rows[0][2]
    assert len(digest) == 64 and b"PATIENT" not in digest
    assert b"PATIENT" not in index_path(table).read_bytes() and b"PATIENT" not in table.read_bytes()
    # The run key opens the index (it numbers with it) and nothing else.
    with pytest.raises(KeyError_, match=f"sealed with run key {KEY.key_id}, not"):
        read_counter_index(index_path(table), Key(bytes(32)))


def test_counters_refuse_a_table_whose_index_is_missing_or_of_another_run_key(tmp_path) -> None:
    table = tmp_path / "t.reid"
    service = custodian_service()
    service.counter_pseudonyms("pseudonym", [b"A"], "SUBJ-", 6)
    service.write_reid_table(str(table))
    other_key = KeyService(bytes(32), PATTERN, None, seal_to=PUBLIC)
    with pytest.raises(KeyError_, match=f"sealed with run key {KEY.key_id}"):
        other_key.load_reid(table)
    index_path(table).unlink()
    with pytest.raises(ReidTableError, match="counter index .* is missing"):
        custodian_service().load_reid(table)
    # A run without counters adds to the table and does not make up an empty index in its place.
    without = custodian_service()
    without.record_reid([("PatientID", b"P1", b"1")])
    without.write_reid_table(str(table))
    assert not index_path(table).exists() and len(custodian_records(table, PUBLIC.key_id)) == 2


# --- runs --------------------------------------------------------------------------------------------------------


def _custodian_runs() -> bool:
    return "custodian_public" in {f.name for f in dataclasses.fields(engine.RunOptions)}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("archive") / "in"
    write_archive(src, patients=3, studies_per_patient=1, series_per_study=2, instances_per_series=2, seed=5)
    return src


@pytest.mark.skipif(not _custodian_runs(), reason="veil run has no --custodian-public yet")
@pytest.mark.parametrize("workers", [1, 2])
def test_a_run_sealed_to_the_custodian_counts_on_and_the_run_key_opens_nothing(archive, tmp_path, workers) -> None:
    public, _, _ = generate_custodian("office", tmp_path, "a custodian passphrase")
    compiled = compile_recipe(load_recipe(RECIPE))
    table = tmp_path / "t.reid"
    for dst in ("first", "second"):
        options = engine.RunOptions(src=str(archive), dst=str(tmp_path / dst), reid_table=str(table),
                                    custodian_public=str(public), workers=workers, shard_files=3)
        summary = engine.run(options, compiled, KEY)
        assert summary.written == 12 and summary.mode == ("local-pool" if workers > 1 else "in-process")
    assert table.read_bytes().startswith(CUSTODIAN_MAGIC)
    with pytest.raises(KeyError_, match="--custodian-key"):
        read_reid_table(table, KEY)
    from veil.keys.custodian import load_custodian_private

    private = load_custodian_private(tmp_path / "office.key", "a custodian passphrase")
    numbers = {original: new for kind, new, original in read_reid_table(table, private) if kind == "pseudonym"}
    assert sorted(set(numbers.values())) == [f"SUBJ-{n:06d}" for n in range(1, len(numbers) + 1)]
    for path in sorted(archive.rglob("*.dcm")):
        before = pydicom.dcmread(path, stop_before_pixels=True)
        for dst in ("first", "second"):  # the second run kept the first run's numbers
            after = pydicom.dcmread(tmp_path / dst / path.relative_to(archive), stop_before_pixels=True)
            assert after.PatientID == numbers[before.PatientID]
