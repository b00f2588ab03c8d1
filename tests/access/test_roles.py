"""The role x action matrix, cell by cell, against a table written out here (not imported), multi-role users,
anonymous requests and the denial log (user, action, resource label; never a secret)."""

from __future__ import annotations

import itertools
import logging

import pytest

from veil.access import (
    PERMISSIONS,
    AccessDenied,
    Action,
    Role,
    User,
    actions_of,
    allowed,
    authorize,
    hash_secret,
    new_token,
)
from veil.errors import VeilError

# The issue's roles: operator (start runs and sends), reviewer (decide, propose rules, after-images and header
# diffs without originals), custodian (originals, re-identification, disposal), auditor (read audit, logs and
# reports only). Written out independently of veil.access.roles.PERMISSIONS.
EXPECTED: dict[str, set[str]] = {
    "run.start": {"operator"},
    "node.send": {"operator"},
    "node.pull": {"operator"},
    "node.control": {"operator"},
    "node.status": {"operator", "auditor"},
    "audit.view": {"operator", "reviewer", "custodian", "auditor"},
    "audit.export": {"auditor"},
    "audit.purge": {"custodian"},
    "review.view": {"reviewer", "custodian", "auditor"},
    "review.view_after": {"reviewer", "custodian"},
    "review.view_header_diff": {"reviewer", "custodian"},
    "review.view_before": {"custodian"},
    "review.view_original": {"custodian"},
    "review.decide": {"reviewer"},
    "review.propose_rule": {"reviewer"},
    "review.view_log": {"reviewer", "auditor"},
    "quarantine.view_original": {"custodian"},
    "report.view": {"reviewer", "custodian", "auditor"},
    "report.view_originals": {"custodian"},
    "reidentify": {"custodian"},
}
ROLES = ("operator", "reviewer", "custodian", "auditor")
# Actions that show or return an original value, or can re-identify: only a custodian may.
ORIGINALS = {"review.view_before", "review.view_original", "quarantine.view_original", "report.view_originals",
             "reidentify"}


def _user(*roles: str, name: str = "alice") -> User:
    return User(name, frozenset(Role(r) for r in roles))


def test_the_actions_and_roles_are_exactly_those_of_the_table() -> None:
    assert {a.value for a in Action} == set(EXPECTED)
    assert {r.value for r in Role} == set(ROLES)
    assert set(PERMISSIONS) == set(Role)


@pytest.mark.parametrize("action", sorted(EXPECTED))
@pytest.mark.parametrize("role", ROLES)
def test_each_role_is_allowed_exactly_the_actions_of_the_table(role: str, action: str, caplog) -> None:
    user = _user(role)
    expected = role in EXPECTED[action]
    assert allowed(user, action) is expected
    assert user.can(action) is expected
    assert (Action(action) in PERMISSIONS[Role(role)]) is expected
    caplog.set_level(logging.WARNING, logger="veil.access")
    if expected:
        authorize(user, action, resource="shard 3 row 5")
        authorize(user, Action(action))
        assert not caplog.records
    else:
        with pytest.raises(AccessDenied) as denied:
            authorize(user, action, resource="shard 3 row 5")
        assert denied.value.user == "alice" and denied.value.action == action
        assert isinstance(denied.value, VeilError)
        [record] = caplog.records
        assert record.levelno == logging.WARNING and record.name == "veil.access"
        assert record.getMessage() == f"access denied: user alice, action {action}, resource shard 3 row 5"


def test_only_a_custodian_touches_originals() -> None:
    for action in ORIGINALS:
        assert EXPECTED[action] == {"custodian"}
        assert [r for r in ROLES if allowed(_user(r), action)] == ["custodian"]


@pytest.mark.parametrize("roles", [c for n in (2, 3, 4) for c in itertools.combinations(ROLES, n)],
                         ids="+".join)
def test_a_user_with_several_roles_has_the_union_of_their_actions(roles: tuple[str, ...]) -> None:
    user = _user(*roles)
    for action, granted in EXPECTED.items():
        expected = bool(granted & set(roles))
        assert allowed(user, action) is expected, (roles, action)
        if not expected:
            with pytest.raises(AccessDenied):
                authorize(user, action)
    assert {a.value for a in actions_of(user.roles)} == {a for a, g in EXPECTED.items() if g & set(roles)}


@pytest.mark.parametrize("action", sorted(EXPECTED))
def test_anonymous_is_denied_everything_and_logged_as_anonymous(action: str, caplog) -> None:
    assert not allowed(None, action)
    caplog.set_level(logging.WARNING, logger="veil.access")
    with pytest.raises(AccessDenied) as denied:
        authorize(None, action)
    assert denied.value.user == "anonymous"
    assert [r.getMessage() for r in caplog.records] == [f"access denied: user anonymous, action {action}"]


def test_a_denial_logs_neither_the_secret_nor_its_hash(caplog) -> None:
    token = new_token()
    stored = hash_secret(token, n=2**10)
    user = User("bob", frozenset({Role.AUDITOR}), stored)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(AccessDenied) as denied:
        authorize(user, Action.REPORT_VIEW_ORIGINALS, resource="instance 12")
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    for secret in (token, stored, stored.split("$")[-1]):
        assert secret not in logged and secret not in str(denied.value) and secret not in repr(user)
    assert "bob" in logged and "report.view_originals" in logged and "instance 12" in logged


@pytest.mark.parametrize("resource", ["Doe^John", "/data/Doe John/1.dcm\nforged line", "x" * 81, "1.2.840\t"])
def test_a_resource_label_that_may_hold_a_value_is_withheld_from_the_log(resource: str, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="veil.access")
    with pytest.raises(AccessDenied) as denied:
        authorize(_user("operator"), Action.REIDENTIFY, resource=resource)
    [record] = caplog.records
    assert record.getMessage() == "access denied: user alice, action reidentify, resource <label withheld>"
    assert resource not in str(denied.value)


def test_an_unknown_action_is_an_error_not_a_decision() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        authorize(_user("custodian"), "review.release")
    with pytest.raises(ValueError, match="unknown action"):
        allowed(_user("custodian"), "users.manage")


def test_a_user_needs_a_known_role() -> None:
    with pytest.raises(VeilError):
        User("carol", frozenset())
    with pytest.raises(VeilError, match="unknown role"):
        User("carol", frozenset({"admin"}))  # type: ignore[arg-type]
