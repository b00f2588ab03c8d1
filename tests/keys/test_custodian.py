"""The custodian key (X25519, private half under a passphrase) and the sealed-part envelope: key files and their
modes, passphrases, a key of the wrong kind given, tampering, and what binds a sealed part to its place."""

from __future__ import annotations

import base64
import json
import pickle
import stat

import pytest

from veil.errors import AuditError, KeyError_
from veil.keys import Key
from veil.keys.custodian import (
    PASSPHRASE_ENV,
    WRAPPED_SIZE,
    CustodianPrivateKey,
    generate_custodian,
    load_custodian_private,
    load_custodian_public,
    read_passphrase,
)
from veil.keys.envelope import envelope_info, open_bytes, seal_bytes, symmetric_seal

PASSPHRASE = "correct horse battery staple"
RUN_KEY = Key(bytes(range(32)))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(public path, private path, key id) of one custodian key pair, made once: scrypt costs ~0.1 s a use."""
    return generate_custodian("records-office", tmp_path_factory.mktemp("custodian"), PASSPHRASE)


@pytest.fixture(scope="module")
def private(pair) -> CustodianPrivateKey:
    return load_custodian_private(pair[1], PASSPHRASE)


def test_key_files_are_written_with_their_modes_and_name_the_same_key(pair, private) -> None:
    public_path, private_path, key_id = pair
    assert (public_path.name, private_path.name) == ("records-office.pub", "records-office.key")
    assert stat.S_IMODE(public_path.stat().st_mode) == 0o644
    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    public = load_custodian_public(public_path)
    assert public.key_id == private.key_id == key_id and len(key_id) == 16
    assert public == private.public_key() and public.describe() == {"name": "records-office", "key_id": key_id}
    document = json.loads(private_path.read_text())
    assert document["kdf"]["name"] == "scrypt" and document["cipher"] == "AES-256-GCM"
    assert private.private.hex() not in private_path.read_text() and PASSPHRASE not in private_path.read_text()
    assert private.private.hex() not in repr(private) and public.public.hex() not in repr(public)


def test_key_files_are_never_overwritten(pair) -> None:
    with pytest.raises(KeyError_, match="never overwrites"):
        generate_custodian("records-office", pair[0].parent, PASSPHRASE)


def test_a_short_passphrase_or_a_bad_name_is_refused(tmp_path) -> None:
    with pytest.raises(KeyError_, match="8 characters"):
        generate_custodian("c", tmp_path, "short")
    with pytest.raises(KeyError_, match="letters, digits"):
        generate_custodian("../escape", tmp_path, PASSPHRASE)
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_passphrase_is_refused_naming_the_key_not_the_passphrase(pair) -> None:
    with pytest.raises(KeyError_, match=f"wrong passphrase for custodian key {pair[2]}") as caught:
        load_custodian_private(pair[1], "not the passphrase")
    assert "not the passphrase" not in str(caught.value)


def test_a_private_key_readable_by_others_is_refused(pair, tmp_path) -> None:
    copy = tmp_path / "copy.key"
    copy.write_bytes(pair[1].read_bytes())
    copy.chmod(0o640)
    with pytest.raises(KeyError_, match="readable by others"):
        load_custodian_private(copy, PASSPHRASE)


def test_the_public_file_given_as_private_and_the_private_as_public_are_refused(pair) -> None:
    with pytest.raises(KeyError_, match="PUBLIC key"):
        load_custodian_private(pair[0], PASSPHRASE)
    with pytest.raises(KeyError_, match="PRIVATE key"):
        load_custodian_public(pair[1])


def test_a_run_key_file_given_as_a_custodian_key_is_refused(tmp_path) -> None:
    run_key = tmp_path / "run.key"
    run_key.write_bytes(bytes(32))
    run_key.chmod(0o600)
    with pytest.raises(KeyError_):
        load_custodian_private(run_key, PASSPHRASE)
    with pytest.raises(KeyError_, match="not a veil custodian public key"):
        load_custodian_public(run_key)


@pytest.mark.parametrize("field", ["x25519", "key-id", "name-only"])
def test_a_tampered_public_key_is_refused(pair, tmp_path, field) -> None:
    lines = pair[0].read_text().splitlines()
    other = CustodianPrivateKey("x", bytes(range(1, 33))).public_key()
    if field == "x25519":  # an attacker's key under the custodian's name and id
        lines = [f"x25519: {base64.b64encode(other.public).decode()}" if line.startswith("x25519")
                 else line for line in lines]
    elif field == "key-id":
        lines = [f"key-id: {other.key_id}" if line.startswith("key-id") else line for line in lines]
    else:
        lines = lines[:3]
    tampered = tmp_path / "tampered.pub"
    tampered.write_text("\n".join(lines) + "\n")
    with pytest.raises(KeyError_, match="does not match its key id|malformed"):
        load_custodian_public(tampered)


def test_a_tampered_private_key_file_is_refused(pair, tmp_path) -> None:
    document = json.loads(pair[1].read_text())
    document["name"] = "someone-else"  # a header field: part of the associated data
    tampered = tmp_path / "tampered.key"
    tampered.write_text(json.dumps(document))
    tampered.chmod(0o600)
    with pytest.raises(KeyError_, match=r"wrong passphrase .*\(or the file was altered\)"):
        load_custodian_private(tampered, PASSPHRASE)


@pytest.mark.parametrize(("field", "value"), [("n", 3), ("n", 0), ("n", 2**21), ("r", 0), ("p", 99)])
def test_unusable_scrypt_parameters_are_malformed_not_a_crash(pair, tmp_path, field, value) -> None:
    document = json.loads(pair[1].read_text())
    document["kdf"][field] = value
    tampered = tmp_path / "tampered.key"
    tampered.write_text(json.dumps(document))
    tampered.chmod(0o600)
    with pytest.raises(KeyError_, match="malformed"):
        load_custodian_private(tampered, PASSPHRASE)


def test_the_passphrase_comes_from_the_environment_or_the_terminal_only(monkeypatch) -> None:
    assert read_passphrase(environ={PASSPHRASE_ENV: "from env"}) == "from env"
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(KeyError_, match=PASSPHRASE_ENV):
        read_passphrase(environ={})
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("getpass.getpass", lambda prompt: "typed")
    assert read_passphrase(environ={}) == "typed"


def test_wrap_and_unwrap_are_bound_to_their_context(private) -> None:
    public = private.public_key()
    data_key = bytes(range(32))
    wrapped = public.wrap(data_key, b"reid-table")
    assert len(wrapped) == WRAPPED_SIZE and data_key not in wrapped
    assert public.wrap(data_key, b"reid-table") != wrapped  # a fresh ephemeral key each time
    assert private.unwrap(wrapped, b"reid-table") == data_key
    with pytest.raises(KeyError_, match="cannot open this part"):
        private.unwrap(wrapped, b"change-records RUN shard 0")
    with pytest.raises(KeyError_, match="cannot open this part"):
        CustodianPrivateKey("other", bytes(range(7, 39))).unwrap(wrapped, b"reid-table")
    altered = bytearray(wrapped)
    altered[40] ^= 1
    with pytest.raises(KeyError_, match="cannot open this part"):
        private.unwrap(bytes(altered), b"reid-table")


def test_keys_pickle_for_workers_and_the_public_key_holds_no_secret(private) -> None:
    public = private.public_key()
    assert pickle.loads(pickle.dumps(public)) == public
    assert private.private not in pickle.dumps(public)


# --- the envelope -----------------------------------------------------------------------------------------------


def test_a_custodian_envelope_opens_with_the_private_key_only(private) -> None:
    sealed = seal_bytes(b"PATIENT^NAME", private.public_key(), b"reid-table")
    assert b"PATIENT^NAME" not in sealed
    assert envelope_info(sealed) == ("custodian", private.key_id)
    assert open_bytes(sealed, private, b"reid-table") == b"PATIENT^NAME"
    with pytest.raises(KeyError_, match=f"sealed to custodian key {private.key_id}.*the run key cannot"):
        open_bytes(sealed, symmetric_seal(RUN_KEY, "reid-table"), b"reid-table")
    other = CustodianPrivateKey("other", bytes(range(7, 39)))
    with pytest.raises(KeyError_, match=f"sealed to custodian key {private.key_id}, not {other.key_id}"):
        open_bytes(sealed, other, b"reid-table")


def test_a_single_user_envelope_opens_with_its_run_key_only(private) -> None:
    seal = symmetric_seal(RUN_KEY, "audit-parts")
    sealed = seal_bytes(b"12345", seal, b"change-records R shard 1")
    assert envelope_info(sealed) == ("single-user", RUN_KEY.key_id)
    assert open_bytes(sealed, seal, b"change-records R shard 1") == b"12345"
    with pytest.raises(KeyError_, match=f"single-user mode with run key {RUN_KEY.key_id}"):
        open_bytes(sealed, private, b"change-records R shard 1")
    other = symmetric_seal(Key(bytes(32)), "audit-parts")
    with pytest.raises(KeyError_, match=f"sealed with run key {RUN_KEY.key_id}, not {other.key_id}"):
        open_bytes(sealed, other, b"change-records R shard 1")
    # Same key, another purpose: another AES key, so authentication fails.
    with pytest.raises(AuditError, match="fails authentication"):
        open_bytes(sealed, symmetric_seal(RUN_KEY, "reid-table"), b"change-records R shard 1")


@pytest.mark.parametrize("kind", ["custodian", "single-user"])
def test_an_envelope_moved_or_altered_fails_to_open(private, kind) -> None:
    seal = symmetric_seal(RUN_KEY, "p")
    sealed = seal_bytes(b"original", private.public_key() if kind == "custodian" else seal, b"change-records R 1")
    opener = private if kind == "custodian" else seal
    with pytest.raises(AuditError, match="fails authentication"):
        open_bytes(sealed, opener, b"change-records R 2")
    for index in (len(sealed) - 1, len(sealed) - 20):
        altered = bytearray(sealed)
        altered[index] ^= 1
        with pytest.raises(AuditError, match="fails authentication"):
            open_bytes(bytes(altered), opener, b"change-records R 1")
    with pytest.raises(AuditError, match="not a veil sealed part|truncated"):
        open_bytes(sealed[:20], opener, b"change-records R 1")


def test_the_custodian_names_load_from_veil_keys_on_first_use_only() -> None:
    import subprocess
    import sys

    # cryptography itself loads when a key is first used, not with the names.
    code = ("import sys, veil.keys as k; assert 'cryptography' not in sys.modules; "
            "assert k.CustodianPublicKey.__module__ == 'veil.keys.custodian'; assert 'cryptography' not in sys.modules; "
            "k.CustodianPublicKey('c', bytes(range(32))).wrap(bytes(32), b'test'); assert 'cryptography' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
