"""`veil keygen --custodian NAME` and `veil reidentify` with the run key or the custodian's private key: a table
sealed to the custodian is refused to the run key with a clear one-line error and opens with the private key and
its passphrase."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pydicom
import pytest

from veil.cli.main import EXIT_FATAL, EXIT_OK, EXIT_USAGE, main
from veil.keys import Key
from veil.keys.custodian import PASSPHRASE_ENV, load_custodian_public
from veil.keys.service import KeyService

PASSPHRASE = "a long custodian passphrase"
RECIPE = Path(__file__).parents[1] / "data" / "recipes" / "subject-counters.yml"


@pytest.fixture
def custodian(tmp_path, monkeypatch, capsys) -> tuple[Path, Path]:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    assert main(["keygen", "--custodian", "office", "--dir", str(tmp_path)]) == EXIT_OK
    capsys.readouterr()
    return tmp_path / "office.pub", tmp_path / "office.key"


def test_keygen_custodian_writes_the_pair_and_says_which_file_goes_to_operators(tmp_path, monkeypatch,
                                                                                capsys) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    assert main(["keygen", "--custodian", "office", "--dir", str(tmp_path)]) == EXIT_OK
    out = capsys.readouterr().out
    public, private = tmp_path / "office.pub", tmp_path / "office.key"
    assert stat.S_IMODE(public.stat().st_mode) == 0o644 and stat.S_IMODE(private.stat().st_mode) == 0o600
    key_id = load_custodian_public(public).key_id
    assert key_id in out and str(public) in out and str(private) in out
    assert "operators" in out.splitlines()[1] and "--custodian-public" in out.splitlines()[1]
    assert PASSPHRASE not in out
    assert main(["keygen", "--custodian", "office", "--dir", str(tmp_path)]) == EXIT_FATAL  # never overwritten
    assert "never overwrites" in capsys.readouterr().err


def test_keygen_custodian_asks_the_passphrase_twice_at_a_terminal(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    answers = iter([PASSPHRASE, PASSPHRASE + "!"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    assert main(["keygen", "--custodian", "office", "--dir", str(tmp_path)]) == EXIT_FATAL
    assert "differ" in capsys.readouterr().err and list(tmp_path.iterdir()) == []
    answers = iter([PASSPHRASE, PASSPHRASE])
    assert main(["keygen", "--custodian", "office", "--dir", str(tmp_path)]) == EXIT_OK
    assert sorted(p.name for p in tmp_path.iterdir()) == ["office.key", "office.pub"]


def test_keygen_without_a_terminal_or_the_environment_is_refused(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["keygen", "--custodian", "office", "--dir", str(tmp_path)]) == EXIT_FATAL
    assert PASSPHRASE_ENV in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_keygen_takes_a_keyfile_or_a_custodian_name(tmp_path, capsys) -> None:
    assert main(["keygen"]) == EXIT_USAGE
    assert main(["keygen", str(tmp_path / "run.key"), "--custodian", "office"]) == EXIT_USAGE
    assert "not both" in capsys.readouterr().err and list(tmp_path.iterdir()) == []
    assert main(["keygen", str(tmp_path / "run.key")]) == EXIT_OK  # a run key, as ever
    assert "key id" in capsys.readouterr().out and (tmp_path / "run.key").stat().st_size == 32


def _custodian_table(tmp_path: Path, public: Path, key: Key) -> Path:
    service = KeyService(key.material, seal_to=load_custodian_public(public))
    service.record_reid([("PatientID", b"SUBJ-000001", b"12345"), ("AccessionNumber", b"ACC1", b"\xe9\xff")])
    table = tmp_path / "t.reid"
    service.write_reid_table(str(table))
    return table


def test_reidentify_a_custodian_table_needs_the_custodian_key(tmp_path, custodian, capsys) -> None:
    public, private = custodian
    assert main(["keygen", str(tmp_path / "run.key")]) == EXIT_OK
    from veil.keys import load_key

    table = _custodian_table(tmp_path, public, load_key(tmp_path / "run.key"))
    capsys.readouterr()
    assert main(["reidentify", str(table), "--key", str(tmp_path / "run.key")]) == EXIT_FATAL
    captured = capsys.readouterr()
    assert captured.out == "" and "12345" not in captured.err
    err = captured.err.strip()
    assert len(err.splitlines()) == 1
    assert load_custodian_public(public).key_id in err and "--custodian-key" in err and "run key cannot" in err
    assert main(["reidentify", str(table), "--custodian-key", str(private), "--value", "SUBJ-000001"]) == EXIT_OK
    assert capsys.readouterr().out.splitlines() == ["PatientID\tSUBJ-000001\t12345"]
    assert main(["reidentify", str(table), "--custodian-key", str(private), "--json"]) == EXIT_OK
    assert json.loads(capsys.readouterr().out) == [
        {"kind": "AccessionNumber", "new": "ACC1", "original": {"b64": "6f8="}},
        {"kind": "PatientID", "new": "SUBJ-000001", "original": "12345"},
    ]


def test_reidentify_with_a_wrong_passphrase_or_the_public_file_fails_clearly(tmp_path, custodian, monkeypatch,
                                                                             capsys) -> None:
    public, private = custodian
    table = _custodian_table(tmp_path, public, Key(bytes(32)))
    monkeypatch.setenv(PASSPHRASE_ENV, "not the passphrase")
    assert main(["reidentify", str(table), "--custodian-key", str(private)]) == EXIT_FATAL
    assert "wrong passphrase" in capsys.readouterr().err
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    assert main(["reidentify", str(table), "--custodian-key", str(public)]) == EXIT_FATAL
    assert "PUBLIC key" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["reidentify", str(table), "--custodian-key", str(private), "--key", str(tmp_path / "k")])


def test_reidentify_a_single_user_table_with_the_custodian_key_names_the_run_key(tmp_path, custodian,
                                                                                capsys) -> None:
    _, private = custodian
    service = KeyService(bytes(32))
    service.record_reid([("PatientID", b"P1", b"12345")])
    service.write_reid_table(str(tmp_path / "single.reid"))
    assert main(["reidentify", str(tmp_path / "single.reid"), "--custodian-key", str(private)]) == EXIT_FATAL
    err = capsys.readouterr().err
    assert Key(bytes(32)).key_id in err and "--key" in err and "12345" not in err


def test_a_run_sealed_to_the_custodian_reidentifies_with_its_private_key_only(tmp_path, custodian, capsys) -> None:
    public, private = custodian
    src, key, table = tmp_path / "in", tmp_path / "run.key", tmp_path / "t.reid"
    assert main(["synth", str(src), "--patients", "2", "--series-per-study", "1", "--instances-per-series", "2"]) == 0
    assert main(["keygen", str(key)]) == EXIT_OK
    code = main(["run", str(src), str(tmp_path / "out"), "--recipe", str(RECIPE), "--key", str(key),
                 "--reid-table", str(table), "--custodian-public", str(public)])
    assert code == EXIT_OK
    capsys.readouterr()
    assert main(["reidentify", str(table), "--key", str(key)]) == EXIT_FATAL
    assert "--custodian-key" in capsys.readouterr().err
    assert main(["reidentify", str(table), "--custodian-key", str(private)]) == EXIT_OK
    rows = {tuple(line.split("\t")) for line in capsys.readouterr().out.splitlines()}
    for path in sorted(src.rglob("*.dcm")):
        before = pydicom.dcmread(path, stop_before_pixels=True)
        after = pydicom.dcmread(tmp_path / "out" / path.relative_to(src), stop_before_pixels=True)
        assert ("pseudonym", after.PatientID, before.PatientID) in rows
