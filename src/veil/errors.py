"""The exception tree: every error veil raises on purpose is a ``VeilError``.

The CLI maps these to exit codes; a worker turns them into a quarantine record. Messages never carry an
identifying value from a file, only offsets, tags and reasons.
"""

from __future__ import annotations


class VeilError(Exception):
    """Base of every error veil raises on purpose."""


class MalformedDicom(VeilError):
    """A file that cannot be read as DICOM: truncated, impossible lengths, bad VRs, too deep, not DICOM."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        self.path = path
        self.offset = offset
        self.reason = reason
        where = path or "<buffer>"
        super().__init__(f"{where}: malformed DICOM at byte offset {offset}: {reason}")


class PlanError(VeilError):
    """A Plan that the core cannot run (an action invalid for a VR, a bad parameter)."""


class RecipeError(VeilError):
    """A recipe that cannot be loaded or compiled; names the file, the line and the problem."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        at = f"{path}:{line}" if line is not None else path
        super().__init__(f"{at}: {problem}")


class KeyError_(VeilError):
    """A missing, unreadable or unsafe key (named with a trailing underscore to avoid the builtin)."""


class AuditError(VeilError):
    """An audit that cannot be read as asked: a sealed record altered, damaged, moved or incomplete."""
