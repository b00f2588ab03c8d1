"""Roles and the actions they allow, where veil serves (the review UI, the DICOM node) and for the evidence verbs.

A user holds one or more roles; a request is allowed when any of them grants its action. Every guarded endpoint
calls :func:`authorize`, which raises :class:`AccessDenied` and logs the denial (logger ``veil.access``, WARNING:
the user's name, the action and a resource label, never a value, a token or a secret).

The roles:

- **operator** runs veil: starts runs, pulls from and sends to other nodes, watches the node and run outcomes.
- **reviewer** checks the de-identified result: after-images and header diffs *without* originals, decisions
  (approve, reject, second look) and proposed rules.
- **custodian** holds what can re-identify: originals (before-images, original header values, quarantined
  originals, change reports with originals), re-identification, and the disposal of PHI (purge).
- **auditor** reads the evidence only: the audit, the decision log, node status, change reports without
  originals, and exports them.

The table (``x``: allowed; every other cell is denied)::

    action                    what it guards                                        oper revi cust audi
    run.start                 start a run or a rerun (veil run, the API, review)     x
    node.send                 push a folder, forward a study to a destination        x
    node.pull                 query and retrieve from a PACS (DIMSE, DICOMweb)       x
    node.control              trigger a spooled study; retry or drop a dead letter   x
    node.status               health, metrics, queue depths (no PHI)                 x              x
    audit.view                run summary, manifest, audit rows, purge history       x    x    x    x
    audit.export              the audit as JSON or CSV for other tools                              x
    audit.purge               remove PHI-bearing items past their retention                    x
    review.view               review lists, filters, quarantine reasons, progress         x    x    x
    review.view_after         after-images (de-identified frames, projections)            x    x
    review.view_header_diff   header rows: action, rule, final value; no originals        x    x
    review.view_before        before-redaction images                                          x
    review.view_original      original values in the header diff                               x
    review.decide             approve, reject, second look                                x
    review.propose_rule       draw a box, propose a rule, write a site layer              x
    review.view_log           the decision log and its CSV export                         x         x
    quarantine.view_original  a quarantined original (header and frames)                       x
    report.view               change report: actions, rules, final values                 x    x    x
    report.view_originals     change report with the original values                           x
    reidentify                look an original up in the re-identification table               x

No role manages users: the users file is changed with ``veil users`` by whoever owns the file (mode 0600), and
no served endpoint changes it. The custodian sees the de-identified views too (after-images, header diffs),
since an original is checked against its result; it decides nothing and starts nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Protocol

from veil.errors import VeilError

__all__ = [
    "Action",
    "AccessDenied",
    "PERMISSIONS",
    "Role",
    "Subject",
    "actions_of",
    "allowed",
    "authorize",
    "parse_roles",
]

logger = logging.getLogger("veil.access")


class Role(StrEnum):
    """A role a user holds; a user may hold several."""

    OPERATOR = "operator"
    REVIEWER = "reviewer"
    CUSTODIAN = "custodian"
    AUDITOR = "auditor"


class Action(StrEnum):
    """Every guarded action of the review UI, the DICOM node and the evidence verbs (the module's table)."""

    RUN_START = "run.start"
    NODE_SEND = "node.send"
    NODE_PULL = "node.pull"
    NODE_CONTROL = "node.control"
    NODE_STATUS = "node.status"
    AUDIT_VIEW = "audit.view"
    AUDIT_EXPORT = "audit.export"
    AUDIT_PURGE = "audit.purge"
    REVIEW_VIEW = "review.view"
    REVIEW_VIEW_AFTER = "review.view_after"
    REVIEW_VIEW_HEADER_DIFF = "review.view_header_diff"
    REVIEW_VIEW_BEFORE = "review.view_before"
    REVIEW_VIEW_ORIGINAL = "review.view_original"
    REVIEW_DECIDE = "review.decide"
    REVIEW_PROPOSE_RULE = "review.propose_rule"
    REVIEW_VIEW_LOG = "review.view_log"
    QUARANTINE_VIEW_ORIGINAL = "quarantine.view_original"
    REPORT_VIEW = "report.view"
    REPORT_VIEW_ORIGINALS = "report.view_originals"
    REIDENTIFY = "reidentify"


_A = Action
PERMISSIONS: dict[Role, frozenset[Action]] = {
    Role.OPERATOR: frozenset({
        _A.RUN_START, _A.NODE_SEND, _A.NODE_PULL, _A.NODE_CONTROL, _A.NODE_STATUS, _A.AUDIT_VIEW,
    }),
    Role.REVIEWER: frozenset({
        _A.AUDIT_VIEW, _A.REVIEW_VIEW, _A.REVIEW_VIEW_AFTER, _A.REVIEW_VIEW_HEADER_DIFF, _A.REVIEW_DECIDE,
        _A.REVIEW_PROPOSE_RULE, _A.REVIEW_VIEW_LOG, _A.REPORT_VIEW,
    }),
    Role.CUSTODIAN: frozenset({
        _A.AUDIT_VIEW, _A.AUDIT_PURGE, _A.REVIEW_VIEW, _A.REVIEW_VIEW_AFTER, _A.REVIEW_VIEW_HEADER_DIFF,
        _A.REVIEW_VIEW_BEFORE, _A.REVIEW_VIEW_ORIGINAL, _A.QUARANTINE_VIEW_ORIGINAL, _A.REPORT_VIEW,
        _A.REPORT_VIEW_ORIGINALS, _A.REIDENTIFY,
    }),
    Role.AUDITOR: frozenset({
        _A.NODE_STATUS, _A.AUDIT_VIEW, _A.AUDIT_EXPORT, _A.REVIEW_VIEW, _A.REVIEW_VIEW_LOG, _A.REPORT_VIEW,
    }),
}
"""Role -> the actions it allows (the module's table)."""


class Subject(Protocol):
    """Whoever asks: a :class:`veil.access.users.User`, or any object with a name and roles."""

    @property
    def name(self) -> str: ...

    @property
    def roles(self) -> frozenset[Role]: ...


class AccessDenied(VeilError):
    """A request its user's roles do not allow (HTTP 403); names the action, never the resource or a value."""

    def __init__(self, user: str, action: Action | str, message: str | None = None) -> None:
        self.user = user
        self.action = str(action)
        super().__init__(message or f"access denied: {user} may not {action}")


def parse_roles(names: Iterable[str]) -> frozenset[Role]:
    """Role names to roles; ``ValueError`` naming an unknown one (and the known ones)."""
    roles = set()
    for name in names:
        try:
            roles.add(Role(name))
        except ValueError:
            known = ", ".join(r.value for r in Role)
            raise ValueError(f"unknown role {name!r} (roles: {known})") from None
    return frozenset(roles)


def actions_of(roles: Iterable[Role]) -> frozenset[Action]:
    """Every action any of ``roles`` allows."""
    granted: set[Action] = set()
    for role in roles:
        granted |= PERMISSIONS[Role(role)]
    return frozenset(granted)


def _action(action: Action | str) -> Action:
    try:
        return Action(action)
    except ValueError:
        raise ValueError(f"unknown action {action!r}") from None


def allowed(user: Subject | None, action: Action | str) -> bool:
    """Whether ``user`` (``None``: nobody signed in) may do ``action``; logs nothing (for showing or hiding a
    control). ``ValueError`` for an action veil does not know: a typo must not be silently denied or granted."""
    wanted = _action(action)
    return user is not None and wanted in actions_of(user.roles)


# A resource label is a kind and ids ("shard 3 row 5"); anything else is dropped from the log line, so a caller's
# mistake cannot write a value, a path or a control character into the log.
_LABEL = re.compile(r"[A-Za-z0-9 ._:#/=-]{0,80}")


def _label(resource: str) -> str:
    return resource if _LABEL.fullmatch(resource) else "<label withheld>"


def authorize(user: Subject | None, action: Action | str, *, resource: str = "") -> None:
    """Returns when ``user`` may do ``action``; else logs the denial at WARNING (user name or ``anonymous``,
    action, ``resource``: a kind and ids such as ``"shard 3 row 5"``, never a value) and raises
    :class:`AccessDenied`."""
    wanted = _action(action)
    if user is not None and wanted in actions_of(user.roles):
        return
    who = user.name if user is not None else "anonymous"
    label = _label(resource)
    logger.warning("access denied: user %s, action %s%s", who, wanted.value, f", resource {label}" if label else "")
    raise AccessDenied(who, wanted)
