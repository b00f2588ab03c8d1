"""The users file (scrypt hashes, mode 0600, strict format) and authentication by name and secret, token or
bearer header: unknown users and wrong secrets fail alike, and no secret reaches a log or an error."""

from __future__ import annotations

import logging
import os
import stat

import pytest

import veil.access.users as users_module
from veil.access import (
    AccessDenied,
    AuthenticationFailed,
    Role,
    User,
    Users,
    UsersFileError,
    add_user,
    authenticate,
    authenticate_bearer,
    authenticate_token,
    bearer_token,
    hash_secret,
    load_users,
    new_token,
    parse_users,
    remove_user,
    save_users,
    verify_secret,
)

PASSWORD = "correct horse: battery staple"  # holds a ':' (a token is split at the first one)
FAST = 2**10  # scrypt n for hashes written by hand in these tests


@pytest.fixture(scope="module")
def people() -> tuple[Users, str]:
    """alice (reviewer+auditor, a token) and bob (custodian, a password)."""
    token = new_token()
    users = add_user(Users(), "alice", ["reviewer", "auditor"], token)
    users = add_user(users, "bob", [Role.CUSTODIAN], PASSWORD)
    return users, token


def _write(path, text: str, mode: int = 0o600) -> None:
    path.write_text(text)
    os.chmod(path, mode)


def _entry(name: str = "carol", roles: str = "[auditor]", secret: str | None = None) -> str:
    return f"  - name: {name}\n    roles: {roles}\n    secret: {secret or hash_secret('x' * 16, n=FAST)}\n"


# -- secrets ---------------------------------------------------------------------------------------------------


def test_a_secret_is_stored_as_a_salted_scrypt_hash_and_verified() -> None:
    first, second = hash_secret(PASSWORD, n=FAST), hash_secret(PASSWORD, n=FAST)
    assert first != second and PASSWORD not in first
    scheme, n, r, p, salt, digest = first.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(FAST), "8", "1")
    assert verify_secret(PASSWORD, first) and verify_secret(PASSWORD, second)
    assert not verify_secret(PASSWORD + "x", first)
    assert not verify_secret(PASSWORD, "scrypt$1024$8$1$bad")
    assert not verify_secret(PASSWORD, "")
    assert hash_secret("x").startswith("scrypt$32768$8$1$")  # the default cost


def test_scrypt_parameters_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError):
        hash_secret("x", n=1000)
    with pytest.raises(ValueError):
        hash_secret("x", n=2**22)
    assert not verify_secret("x", hash_secret("x", n=FAST).replace("$1024$", "$1073741824$", 1))


def test_a_new_token_is_long_and_random() -> None:
    tokens = {new_token() for _ in range(50)}
    assert len(tokens) == 50 and all(len(t) >= 43 and ":" not in t for t in tokens)


# -- authentication --------------------------------------------------------------------------------------------


def test_a_user_authenticates_by_name_and_secret_token_or_bearer_header(people) -> None:
    users, token = people
    assert authenticate(users, "alice", token).name == "alice"
    assert authenticate_token(users, bearer_token("alice", token)).roles == {Role.REVIEWER, Role.AUDITOR}
    assert authenticate_bearer(users, f"Bearer alice:{token}").name == "alice"
    assert authenticate_bearer(users, f"bearer   alice:{token} ").name == "alice"
    assert authenticate(users, "bob", PASSWORD).roles == {Role.CUSTODIAN}
    assert authenticate_token(users, f"bob:{PASSWORD}").name == "bob"


@pytest.mark.parametrize("name, secret", [("alice", "wrong secret 123"), ("bob", "x"), ("mallory", PASSWORD),
                                          ("alice", ""), ("", "x"), ("ALICE", None)])
def test_an_unknown_user_and_a_wrong_secret_fail_alike(people, name, secret, caplog) -> None:
    users, token = people
    secret = token if secret is None else secret
    caplog.set_level(logging.DEBUG, logger="veil.access")
    with pytest.raises(AuthenticationFailed) as failed:
        authenticate(users, name, secret)
    assert str(failed.value) == "authentication failed: unknown user or wrong secret"
    assert isinstance(failed.value, AccessDenied)  # a caller that catches only denials still fails closed
    assert caplog.records and all(r.levelno == logging.WARNING for r in caplog.records)
    if secret:
        assert secret not in caplog.text
    assert token not in caplog.text


@pytest.mark.parametrize("token", ["no-colon-here", ":secretwithoutname", "", "mallory:" + "s" * 43])
def test_a_malformed_or_unknown_token_fails_without_logging_it(people, token, caplog) -> None:
    users, _ = people
    caplog.set_level(logging.DEBUG, logger="veil.access")
    with pytest.raises(AuthenticationFailed):
        authenticate_token(users, token)
    assert "secret" not in caplog.text and (not token or token not in caplog.text)


@pytest.mark.parametrize("header", [None, "", "Basic YWxpY2U6eA==", "Bearer", "Bearer  "])
def test_a_missing_or_foreign_authorization_header_fails(people, header) -> None:
    with pytest.raises(AuthenticationFailed):
        authenticate_bearer(people[0], header)


def test_an_unknown_name_costs_one_scrypt_like_a_known_one(people, monkeypatch) -> None:
    users, _ = people
    calls: list[str] = []
    real = users_module.verify_secret

    def counting(secret: str, stored: str) -> bool:
        calls.append(stored.split("$")[1])
        return real(secret, stored)

    monkeypatch.setattr(users_module, "verify_secret", counting)
    for name in ("mallory", "bob"):
        with pytest.raises(AuthenticationFailed):
            authenticate(users, name, "wrong secret 123")
    with pytest.raises(AuthenticationFailed):
        authenticate_token(users, "no colon")
    assert calls == ["32768", "32768", "32768"]


def test_a_verified_token_is_remembered_per_users_object_only(people, monkeypatch) -> None:
    token = new_token()
    users = add_user(Users(), "dave", ["operator"], token)
    authenticate_token(users, f"dave:{token}")
    monkeypatch.setattr(users_module, "verify_secret", lambda *a: pytest.fail("scrypt run again"))
    assert authenticate_token(users, f"dave:{token}").name == "dave"
    assert all(token.encode() not in key for key in users._verified)
    monkeypatch.undo()
    with pytest.raises(AuthenticationFailed):  # removed: the new object knows nothing of the old one's cache
        authenticate_token(remove_user(users, "dave"), f"dave:{token}")
    with pytest.raises(AuthenticationFailed):  # a wrong secret is never remembered as right
        authenticate_token(users, f"dave:{token}x")


def test_repr_shows_no_hash(people) -> None:
    users, _ = people
    assert "scrypt" not in repr(users) and "scrypt" not in repr(users.get("bob"))


# -- changes ---------------------------------------------------------------------------------------------------


def test_add_and_remove_users(people) -> None:
    users, _ = people
    assert users.names == ("alice", "bob") and "bob" in users and len(users) == 2
    with pytest.raises(UsersFileError, match="already exists"):
        add_user(users, "alice", ["operator"], new_token())
    with pytest.raises(UsersFileError, match="12 characters"):
        add_user(users, "eve", ["operator"], "short")
    with pytest.raises(UsersFileError, match="unknown role"):
        add_user(users, "eve", ["admin"], new_token())
    with pytest.raises(UsersFileError, match="user name"):
        add_user(users, "eve:x", ["operator"], new_token())
    with pytest.raises(UsersFileError, match="no user"):
        remove_user(users, "eve")
    assert remove_user(users, "alice").names == ("bob",)
    assert users.names == ("alice", "bob")  # immutable


# -- the file --------------------------------------------------------------------------------------------------


def test_the_file_round_trips_with_mode_0600_and_no_secret(people, tmp_path) -> None:
    users, token = people
    path = tmp_path / "users.yml"
    save_users(path, users)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert token not in text and PASSWORD not in text and "version: 1" in text
    loaded = load_users(path)
    assert loaded == users
    assert [(u.name, u.roles, u.secret_hash) for u in loaded] == [(u.name, u.roles, u.secret_hash) for u in users]
    assert authenticate(loaded, "alice", token).name == "alice"
    save_users(path, remove_user(loaded, "alice"))  # replaces atomically, leaves no temporary behind
    assert load_users(path).names == ("bob",) and sorted(p.name for p in tmp_path.iterdir()) == ["users.yml"]


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o602, 0o610, 0o644])
def test_a_users_file_open_to_others_is_refused(tmp_path, mode) -> None:
    path = tmp_path / "users.yml"
    _write(path, "version: 1\nusers: []\n", mode)
    with pytest.raises(UsersFileError, match="chmod 600"):
        load_users(path)


def test_a_missing_users_file_says_how_to_make_one(tmp_path) -> None:
    with pytest.raises(UsersFileError, match="veil users add"):
        load_users(tmp_path / "none.yml")


PASTED = "pasted-secret-" + "q" * 30


@pytest.mark.parametrize("text, problem", [
    ("version: 1\nusers: [\n", r"users.yml:\d+: not valid YAML"),
    ("- just a list\n", "a mapping with 'version' and 'users'"),
    ("version: 2\nusers: []\n", "version 2"),
    ("users: []\n", "version None"),
    ("version: true\nusers: []\n", "version True"),
    ("version: 1\nusers: []\nadmins: []\n", "unknown field"),
    ("version: 1\nusers: {}\n", "'users' is a list"),
    ("version: 1\nusers:\n  - carol\n", "user #1: expected a mapping"),
    ("version: 1\nusers:\n" + _entry(roles="[auditor]\n    role: operator"), "user #1: unknown field"),
    ("version: 1\nusers:\n  - name: carol\n    roles: [auditor]\n", "user #1: missing secret"),
    ("version: 1\nusers:\n" + _entry(name="'carol:x'"), "user #1: a user name is"),
    ("version: 1\nusers:\n" + _entry(name="42"), "user #1: a user name is"),
    ("version: 1\nusers:\n" + _entry(roles="[admin]"), "user carol: unknown role 'admin'"),
    ("version: 1\nusers:\n" + _entry(roles="[]"), "user carol: roles is a non-empty list"),
    ("version: 1\nusers:\n" + _entry(roles="auditor"), "user carol: roles is a non-empty list"),
    ("version: 1\nusers:\n" + _entry(secret=PASTED), "user carol: secret: not a veil scrypt hash"),
    ("version: 1\nusers:\n" + _entry(secret="scrypt$16$8$1$AAAA$AAAA"), "user carol: secret: scrypt parameters"),
    ("version: 1\nusers:\n" + _entry() + _entry(), "user carol appears twice"),
])
def test_a_malformed_users_file_names_the_problem_and_never_a_secret(tmp_path, text, problem) -> None:
    path = tmp_path / "users.yml"
    _write(path, text)
    with pytest.raises(UsersFileError, match=problem) as failed:
        load_users(path)
    secrets = [line.split("secret: ", 1)[1] for line in text.splitlines() if "secret: " in line]
    assert not [s for s in secrets if s in str(failed.value)]


def test_an_empty_user_list_is_a_valid_file() -> None:
    assert len(parse_users("version: 1\nusers:\n")) == 0


def test_a_users_file_that_is_not_utf8_is_refused(tmp_path) -> None:
    path = tmp_path / "users.yml"
    path.write_bytes(b"version: 1\nusers: []\n# \xff\xfe\n")
    os.chmod(path, 0o600)
    with pytest.raises(UsersFileError, match="UTF-8"):
        load_users(path)


def test_a_hand_written_user_authenticates(tmp_path) -> None:
    path = tmp_path / "users.yml"
    _write(path, "version: 1\nusers:\n" + _entry(roles="[operator, custodian]", secret=hash_secret(PASSWORD, n=FAST)))
    user = authenticate(load_users(path), "carol", PASSWORD)
    assert user == User("carol", frozenset({Role.OPERATOR, Role.CUSTODIAN}))
