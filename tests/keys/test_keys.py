"""Key files, key ids and the keyed functions."""

from __future__ import annotations

import os
import stat
import uuid

import pytest

from veil.errors import KeyError_
from veil.keys import CounterFormat, Key, KeyedFunctions, counter_format, generate_key_file, load_key


def test_keygen_writes_32_bytes_readable_by_owner_only(tmp_path) -> None:
    key = generate_key_file(tmp_path / "k")
    st = (tmp_path / "k").stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_size == 32
    assert load_key(tmp_path / "k") == key


def test_keygen_never_overwrites(tmp_path) -> None:
    generate_key_file(tmp_path / "k")
    with pytest.raises(KeyError_, match="already exists"):
        generate_key_file(tmp_path / "k")


def test_key_readable_by_others_is_refused(tmp_path) -> None:
    generate_key_file(tmp_path / "k")
    os.chmod(tmp_path / "k", 0o644)
    with pytest.raises(KeyError_, match="readable by others"):
        load_key(tmp_path / "k")


def test_missing_key_file_and_missing_env_are_clear_errors(tmp_path) -> None:
    with pytest.raises(KeyError_, match="not found"):
        load_key(tmp_path / "nope")
    with pytest.raises(KeyError_, match="VEIL_KEY"):
        load_key(None, environ={})


def test_key_from_environment(tmp_path) -> None:
    assert load_key(None, environ={"VEIL_KEY": "ab" * 32}).material == b"\xab" * 32
    with pytest.raises(KeyError_):
        load_key(None, environ={"VEIL_KEY": "xyz"})


def test_key_id_is_a_digest_not_the_key() -> None:
    key = Key(bytes(range(32)))
    assert len(key.key_id) == 16 and bytes.fromhex(key.key_id) not in key.material
    assert "material" not in repr(key) and bytes(range(32)).hex() not in repr(key)
    assert Key(bytes(32)).key_id != key.key_id


def test_uid_is_a_version_8_uuid_under_2_25_and_consistent() -> None:
    f = KeyedFunctions(Key(bytes(range(32))))
    new = f.uid(b"1.2.3.4")
    assert new.startswith(b"2.25.") and len(new) <= 64
    u = uuid.UUID(int=int(new[5:]))
    assert u.version == 8 and u.variant == uuid.RFC_4122
    assert f.uid(b"1.2.3.4") == new and f.uid(b"1.2.3.5") != new
    assert KeyedFunctions(Key(bytes(32))).uid(b"1.2.3.4") != new


def test_pseudonym_follows_the_pattern() -> None:
    f = KeyedFunctions(Key(bytes(range(32))), pseudonym_pattern="SUBJ-{hash:8}")
    p = f.pseudonym(b"MRN0001")
    assert p.startswith(b"SUBJ-") and len(p) == 13 and p == f.pseudonym(b"MRN0001")
    assert f.pseudonym(b"MRN0002") != p
    with pytest.raises(KeyError_):
        KeyedFunctions(Key(bytes(32)), pseudonym_pattern="no field")


def test_date_shift_is_per_patient_and_in_range() -> None:
    f = KeyedFunctions(Key(bytes(range(32))), shift_range=(-100, -10))
    shifts = {f.date_shift(f"P{i}") for i in range(200)}
    assert all(-100 <= s <= -10 for s in shifts) and len(shifts) > 30
    assert f.date_shift("P1") == f.date_shift(b"P1 ")


def test_counter_format_parses_formats_and_reads_back_its_numbers() -> None:
    fmt = counter_format("SUBJ-{counter:6}-X")
    assert fmt == CounterFormat("SUBJ-", 6, "-X") and fmt.max_length == 5 + 9 + 2
    assert fmt.format(123) == b"SUBJ-000123-X" and fmt.format(123456789) == b"SUBJ-123456789-X"
    assert fmt.number_of(b"SUBJ-000123-X") == 123 and fmt.number_of(b"SUBJ-1234567-X") == 1234567
    for other in (b"SUBJ-00123-X", b"SUBJ-0001234-X", b"SUBJ-000000-X", b"SUBJ-00012a-X", b"SUBJ-000123"):
        assert fmt.number_of(other) is None
    with pytest.raises(KeyError_, match="exhausted"):
        fmt.format(10**9)
    assert counter_format("{hash:8}") is None and counter_format(None) is None
    for bad in ("{counter}", "{counter:13}", "{hash:4}{counter:2}", "{counter:2}{counter:2}"):
        with pytest.raises(KeyError_):
            counter_format(bad)
