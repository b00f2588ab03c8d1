"""The key/mapping service: worker keys, counter pseudonyms, the encrypted re-identification table, the actor."""

from __future__ import annotations

import dataclasses
import os
import pickle
import stat

import pytest

from veil.errors import KeyError_, VeilError
from veil.keys import Key, KeyedFunctions
from veil.keys.actor import worker_functions
from veil.keys.reid import REID_MAGIC, ReidTableError, read_reid_table
from veil.keys.service import KeyService, WorkerKeys, functions_from_worker_keys

MATERIAL = bytes(range(32))
OTHER = bytes(range(1, 33))
SAMPLES = [
    b"1.2.840.113619.2.55.3.604688119.969.1268071029.320",
    b"12345",
    b"",
    b"PAT^ONE",
    "Müller".encode(),
]


def test_worker_keys_never_hold_the_master_key() -> None:
    keys = KeyService(MATERIAL, "P{hash:8}", (-30, -1)).worker_keys()
    assert isinstance(keys, WorkerKeys) and keys.key_id == Key(MATERIAL).key_id
    blob = pickle.dumps(keys)
    assert MATERIAL not in blob and MATERIAL.hex() not in repr(keys)
    assert MATERIAL not in {getattr(keys, f.name) for f in dataclasses.fields(keys)}
    assert keys.subkey("uid") == Key(MATERIAL).subkey("uid")
    with pytest.raises(KeyError_, match="reid-table"):
        keys.subkey("reid-table")
    assert "uid_key" not in repr(keys) and Key(MATERIAL).subkey("uid").hex() not in repr(keys)


@pytest.mark.parametrize(
    ("pattern", "shift_range"), [(None, None), ("SUBJ-{hash:10}", (-100, -7)), ("{hash}-{hash:4}", None)]
)
def test_functions_from_worker_keys_equal_functions_from_the_key(pattern, shift_range) -> None:
    params = {
        k: v for k, v in (("pseudonym_pattern", pattern), ("shift_range", shift_range)) if v is not None
    }
    reference = KeyedFunctions(Key(MATERIAL), **params)
    built = functions_from_worker_keys(KeyService(MATERIAL, pattern, shift_range).worker_keys())
    assert isinstance(built, KeyedFunctions) and vars(built) == vars(reference)
    for value in SAMPLES:
        assert built.uid(value) == reference.uid(value)
        assert built.pseudonym(value) == reference.pseudonym(value)
        assert built.date_shift(value) == reference.date_shift(value)
    assert built.key_id == Key(MATERIAL).key_id


def test_a_bad_pattern_or_shift_range_is_refused_when_the_key_is_loaded() -> None:
    with pytest.raises(KeyError_, match="no {hash}"):
        KeyService(MATERIAL, "SUBJ", None)
    with pytest.raises(KeyError_, match="empty"):
        KeyService(MATERIAL, None, (5, 1))


def test_a_service_without_a_key_refuses_work_and_keeps_its_first_key() -> None:
    service = KeyService(None, None, None)
    assert service.describe() == (None, None, None)
    with pytest.raises(KeyError_, match="holds no key"):
        service.worker_keys()
    assert service.load_key(MATERIAL) == Key(MATERIAL).key_id
    assert service.load_key(MATERIAL) == Key(MATERIAL).key_id
    with pytest.raises(KeyError_, match="already holds key"):
        service.load_key(OTHER)


def test_reid_table_round_trip_with_owner_only_mode(tmp_path) -> None:
    service = KeyService(MATERIAL, None, None)
    rows = [
        ("PatientID", b"P1", b"12345 "),
        ("PatientID", b"P1", b"12345"),  # the same identifier, padded: one row
        ("StudyInstanceUID", b"2.25.1\x00", b"1.2.3\x00"),
        ("AccessionNumber", b"A1", b"\xe9\xff"),  # not UTF-8: kept exactly
    ]
    assert service.record_reid(rows) == 3
    assert service.record_reid(rows[:1]) == 3
    path = tmp_path / "reid.bin"
    assert service.write_reid_table(str(path)) == 3
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(REID_MAGIC) and b"12345" not in path.read_bytes()
    read = read_reid_table(str(path), MATERIAL)
    assert sorted(read) == [
        ("AccessionNumber", "A1", b"\xe9\xff".decode("utf-8", "surrogateescape")),
        ("PatientID", "P1", "12345"),
        ("StudyInstanceUID", "2.25.1", "1.2.3"),
    ]
    assert [t for t in os.listdir(tmp_path) if t != "reid.bin"] == []  # no temporary file left behind


def test_reid_table_is_rewritten_whole(tmp_path) -> None:
    service = KeyService(MATERIAL, None, None)
    path = tmp_path / "reid.bin"
    service.record_reid([("PatientID", b"P1", b"1")])
    service.write_reid_table(path)
    service.record_reid([("PatientID", b"P2", b"2")])
    assert service.write_reid_table(path) == 2
    assert len(read_reid_table(path, Key(MATERIAL))) == 2


def test_reid_table_with_the_wrong_key_is_refused(tmp_path) -> None:
    service = KeyService(MATERIAL, None, None)
    service.record_reid([("PatientID", b"P1", b"12345")])
    service.write_reid_table(tmp_path / "reid.bin")
    with pytest.raises(KeyError_, match="written with key"):
        read_reid_table(tmp_path / "reid.bin", OTHER)


@pytest.mark.parametrize("where", ["nonce", "ciphertext", "tag", "cut", "appended"])
def test_altered_reid_table_is_refused(tmp_path, where) -> None:
    service = KeyService(MATERIAL, None, None)
    service.record_reid([("PatientID", b"P1", b"12345")])
    path = tmp_path / "reid.bin"
    service.write_reid_table(path)
    data = bytearray(path.read_bytes())
    if where == "cut":
        del data[-1]
    elif where == "appended":
        data += b"\x00"
    else:
        data[{"nonce": 18, "ciphertext": 30, "tag": len(data) - 1}[where]] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ReidTableError, match="altered or damaged"):
        read_reid_table(path, MATERIAL)


def test_reid_table_of_another_format_version_is_refused(tmp_path) -> None:
    service = KeyService(MATERIAL, None, None)
    path = tmp_path / "reid.bin"
    service.write_reid_table(path)
    data = bytearray(path.read_bytes())
    data[len(REID_MAGIC)] = 2
    path.write_bytes(bytes(data))
    with pytest.raises(ReidTableError, match="format 2"):
        read_reid_table(path, MATERIAL)


def test_truncated_or_foreign_files_are_refused(tmp_path) -> None:
    (tmp_path / "short").write_bytes(REID_MAGIC + b"\x01")
    (tmp_path / "other").write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(ReidTableError, match="truncated"):
        read_reid_table(tmp_path / "short", MATERIAL)
    with pytest.raises(ReidTableError, match="not a veil"):
        read_reid_table(tmp_path / "other", MATERIAL)
    with pytest.raises(ReidTableError, match="cannot read"):
        read_reid_table(tmp_path / "missing", MATERIAL)


def test_reid_table_is_never_written_inside_the_outputs(tmp_path) -> None:
    dst = tmp_path / "dst"
    (dst / "sub").mkdir(parents=True)
    service = KeyService(MATERIAL, None, None)
    for inside in (dst / "reid.bin", dst / "sub" / "reid.bin", tmp_path / "dst" / ".." / "dst" / "r"):
        with pytest.raises(ReidTableError, match="never written inside"):
            service.write_reid_table(inside, forbid_under=str(dst))
    with pytest.raises(VeilError):
        service.write_reid_table(dst / "r", forbid_under=[tmp_path / "src", dst])
    assert service.write_reid_table(tmp_path / "dst-reid.bin", forbid_under=dst) == 0
    with pytest.raises(ReidTableError, match="absolute"):
        service.write_reid_table("reid.bin", forbid_under=dst)
    with pytest.raises(ReidTableError, match="absolute"):
        service.write_reid_table(tmp_path / "r", forbid_under="dst")
    assert not any(dst.rglob("*.bin"))


def test_counter_pseudonyms_are_stable_per_value_and_recorded(tmp_path) -> None:
    service = KeyService(MATERIAL, None, None)
    first = service.counter_pseudonyms("PatientID", [b"A", b"B", b"A ", b"", b"C"], "SUBJ-", 6)
    assert first == [b"SUBJ-000001", b"SUBJ-000002", b"SUBJ-000001", b"", b"SUBJ-000003"]
    second = service.counter_pseudonyms("PatientID", [b"C", b"D", b"A"], "SUBJ-", 6)
    assert second == [b"SUBJ-000003", b"SUBJ-000004", b"SUBJ-000001"]
    assert service.counter_pseudonyms("AccessionNumber", [b"A"], "ACC", 2) == [b"ACC01"]
    assert service.stats()["counter_values"] == 5
    service.write_reid_table(tmp_path / "reid.bin")
    assert sorted(read_reid_table(tmp_path / "reid.bin", MATERIAL)) == [
        ("AccessionNumber", "ACC01", "A"),
        ("PatientID", "SUBJ-000001", "A"),
        ("PatientID", "SUBJ-000002", "B"),
        ("PatientID", "SUBJ-000003", "C"),
        ("PatientID", "SUBJ-000004", "D"),
    ]
    with pytest.raises(ValueError, match=r"not 'P\{counter:6\}'"):
        service.counter_pseudonyms("PatientID", [b"E"], "P", 6)


def test_two_originals_behind_one_pseudonym_are_kept_and_counted() -> None:
    service = KeyService(MATERIAL, None, None)
    assert service.record_reid([("PatientID", b"X", b"1"), ("PatientID", b"X", b"2")]) == 2
    assert service.stats()["reid_collisions"] == 1


def test_worker_functions_accepts_a_plain_service() -> None:
    functions = worker_functions(KeyService(MATERIAL, None, None))
    assert functions.uid(SAMPLES[0]) == KeyedFunctions(Key(MATERIAL)).uid(SAMPLES[0])


# --- Ray ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    started = False
    if not ray.is_initialized():
        try:
            ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
        except Exception as exc:  # no shared memory, no ports, ...: skip, the plain-class tests still run
            pytest.skip(f"ray cannot start here: {exc}")
        started = True
    yield ray
    if started:
        ray.shutdown()


def test_workers_get_their_keys_once_and_make_identical_uids(ray_session) -> None:
    from veil.keys.actor import get_or_create_actor

    ray = ray_session
    actor = get_or_create_actor(MATERIAL, "P{hash:8}", (-30, -1), name="veil-keys-test")

    @ray.remote(num_cpus=1)
    def remap(handle, value: bytes) -> tuple[int, int, bytes]:
        first = worker_functions(handle)
        assert worker_functions(handle) is first
        return os.getpid(), id(first), first.uid(value)

    results = ray.get([remap.remote(actor, SAMPLES[0]) for _ in range(2)])
    expected = KeyedFunctions(Key(MATERIAL), pseudonym_pattern="P{hash:8}", shift_range=(-30, -1)).uid(
        SAMPLES[0]
    )
    assert [uid for _, _, uid in results] == [expected, expected]
    assert ray.get(actor.stats.remote())["workers_served"] == len({pid for pid, _, _ in results})

    again = get_or_create_actor(MATERIAL, "P{hash:8}", (-30, -1), name="veil-keys-test")
    assert again == actor
    assert ray.get(again.counter_pseudonyms.remote("PatientID", [b"A"], "S", 3)) == [b"S001"]
    assert ray.get(actor.counter_pseudonyms.remote("PatientID", [b"B", b"A"], "S", 3)) == [b"S002", b"S001"]

    with pytest.raises(KeyError_, match="already holds key"):
        get_or_create_actor(OTHER, "P{hash:8}", (-30, -1), name="veil-keys-test")
    with pytest.raises(KeyError_, match="was made for key"):
        get_or_create_actor(MATERIAL, "Q{hash:8}", (-30, -1), name="veil-keys-test")
    ray.kill(actor)
