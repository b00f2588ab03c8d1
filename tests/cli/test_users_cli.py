"""`veil users`: add (a token shown once, or a password from stdin), list (names and roles only), check (exit 0
allowed, 1 denied), remove, roles; the file stays mode 0600 and holds no secret."""

from __future__ import annotations

import argparse
import io
import json
import os
import stat

import pytest

from veil.access import Role, authenticate, authenticate_token, load_users
from veil.cli import users
from veil.cli.exits import EXIT_FATAL, EXIT_OK

PASSWORD = "a long enough password"


def veil(*argv: str) -> int:
    """``veil ARGV`` for the users verb alone: its own parser and handler (the lead registers it in main)."""
    parser = argparse.ArgumentParser(prog="veil")
    users.add_parser(parser.add_subparsers(dest="command", required=True))
    return users.command(parser.parse_args(list(argv)))


def test_add_list_check_remove_round_trip(tmp_path, capsys, monkeypatch) -> None:
    path = tmp_path / "users.yml"
    assert veil("users", "add", str(path), "alice", "--role", "reviewer", "--role", "auditor") == EXIT_OK
    out = capsys.readouterr().out
    assert "added alice (reviewer, auditor)" in out and "shown this once" in out
    token = out.strip().splitlines()[-1].strip()
    assert token.startswith("alice:") and len(token) > 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token.split(":", 1)[1] not in path.read_text()
    assert authenticate_token(load_users(path), token).roles == {Role.REVIEWER, Role.AUDITOR}

    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert veil("users", "add", str(path), "bob", "--role", "custodian", "--password-stdin") == EXIT_OK
    out = capsys.readouterr().out
    assert PASSWORD not in out and "bob:" not in out and "token" not in out
    assert PASSWORD not in path.read_text()
    assert authenticate(load_users(path), "bob", PASSWORD).roles == {Role.CUSTODIAN}

    assert veil("users", "list", str(path)) == EXIT_OK
    listing = capsys.readouterr().out
    assert listing.splitlines() == ["name   roles", "alice  reviewer, auditor", "bob    custodian"]
    assert veil("users", "list", str(path), "--json") == EXIT_OK
    assert json.loads(capsys.readouterr().out) == [{"name": "alice", "roles": ["reviewer", "auditor"]},
                                                   {"name": "bob", "roles": ["custodian"]}]

    assert veil("users", "check", str(path), "alice", "review.decide") == EXIT_OK
    assert "allowed: alice may review.decide (role reviewer)" in capsys.readouterr().out
    assert veil("users", "check", str(path), "alice", "reidentify") == EXIT_FATAL
    assert "denied: alice may not reidentify" in capsys.readouterr().out
    assert veil("users", "check", str(path), "bob", "reidentify") == EXIT_OK
    assert veil("users", "check", str(path), "bob", "run.start") == EXIT_FATAL
    capsys.readouterr()

    assert veil("users", "remove", str(path), "alice") == EXIT_OK
    assert load_users(path).names == ("bob",)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert veil("users", "check", str(path), "alice", "audit.view") == EXIT_FATAL
    assert "no user alice" in capsys.readouterr().err


def test_add_refuses_a_name_already_there_before_asking_for_a_password(tmp_path, capsys, monkeypatch) -> None:
    path = tmp_path / "users.yml"
    assert veil("users", "add", str(path), "alice", "--role", "operator") == EXIT_OK
    before = path.read_bytes()
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert veil("users", "add", str(path), "alice", "--role", "auditor", "--password-stdin") == EXIT_FATAL
    assert "already exists" in capsys.readouterr().err
    assert path.read_bytes() == before


def test_a_short_password_is_refused_and_nothing_written(tmp_path, capsys, monkeypatch) -> None:
    path = tmp_path / "users.yml"
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert veil("users", "add", str(path), "bob", "--role", "operator", "--password-stdin") == EXIT_FATAL
    err = capsys.readouterr().err
    assert "12 characters" in err and "short" not in err.replace("12 characters", "")
    assert not path.exists()


def test_a_users_file_open_to_others_is_refused_by_every_verb(tmp_path, capsys) -> None:
    path = tmp_path / "users.yml"
    assert veil("users", "add", str(path), "alice", "--role", "operator") == EXIT_OK
    os.chmod(path, 0o644)
    capsys.readouterr()
    for argv in (["add", str(path), "bob", "--role", "auditor"], ["list", str(path)], ["remove", str(path), "alice"],
                 ["check", str(path), "alice", "run.start"]):
        assert veil("users", *argv) == EXIT_FATAL
        assert "chmod 600" in capsys.readouterr().err
    assert "bob" not in path.read_text()


def test_remove_of_an_unknown_user_and_a_missing_file_are_errors(tmp_path, capsys) -> None:
    path = tmp_path / "users.yml"
    assert veil("users", "list", str(path)) == EXIT_FATAL
    assert "users file not found" in capsys.readouterr().err
    veil("users", "add", str(path), "alice", "--role", "operator")
    assert veil("users", "remove", str(path), "nobody") == EXIT_FATAL
    assert "no user nobody" in capsys.readouterr().err


def test_roles_prints_the_whole_table(capsys) -> None:
    from veil.access import PERMISSIONS, Action

    assert veil("users", "roles") == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["action", "operator", "reviewer", "custodian", "auditor"]
    table = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert set(table) == {a.value for a in Action}
    for action, cells in table.items():
        assert cells == ["x" if Action(action) in PERMISSIONS[r] else "-" for r in Role]


@pytest.mark.parametrize("argv", [
    ["users", "add", "f.yml", "alice"],  # --role is required
    ["users", "add", "f.yml", "alice", "--role", "admin"],
    ["users", "check", "f.yml", "alice", "users.manage"],
    ["users"],
])
def test_usage_errors_exit_2(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exited:
        veil(*argv)
    assert exited.value.code == 2
