"""The review decision log, ``DST/.veil/review/decisions.jsonl``: every decision a reviewer makes on de-identified
instances (approve, reject, second look), append-only, hash-chained and tied to what the reviewer was shown.

Each line is one :class:`Decision` as compact JSON with sorted keys; its ``prev`` is the SHA-256 of the previous
line's bytes (``GENESIS`` for the first), so an edited, deleted, inserted or reordered line breaks the chain at
the line after it and :meth:`DecisionLog.verify` names that line. The last line has no successor: anchor
:meth:`DecisionLog.head` elsewhere (a report, a ticket) to make it tamper-evident too. Appends hold an exclusive
``flock`` (two review servers never interleave), are fsynced line by line, and never follow a torn line. The file
names operators, so it is created 0600 in a 0700 folder, and one that group or others can read is refused.

A decision covers instances by their NEW SOP Instance UIDs with the digest of what was shown
(:func:`shown_digest`); :meth:`DecisionLog.states` makes an instance pending again once what the UI shows for
it changes (a rerun), since an approval is of what was seen, not of a UID.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import json
import os
import re
import stat
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TextIO

from veil.audit.layout import fsync_dir, veil_dir
from veil.audit.schema import iso_time
from veil.errors import VeilError

__all__ = [
    "DECISIONS",
    "DECISIONS_FILE",
    "GENESIS",
    "CSV_COLUMNS",
    "Decision",
    "DecisionLog",
    "DecisionLogError",
    "decisions_path",
    "shown_digest",
]

DECISIONS = ("approve", "reject", "second-look")
DECISIONS_FILE = "decisions.jsonl"
GENESIS = "0" * 64
CSV_COLUMNS = ("time", "operator", "run_id", "recipe_hash", "instances", "shown", "decision", "reason", "note",
               "prev")
MAX_TEXT = 500  # reason and note, in characters
MAX_OPERATOR = 200
# A new UID (PS3.5 9.1: digits and dots, at most 64 characters), or "q:" and the keyed digest of a quarantined input
_UID = re.compile(r"[0-9.]{1,64}|q:[0-9a-f]{32,128}")
_HEX = re.compile(r"[0-9a-f]{1,128}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
_BAD_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})  # control, lone surrogate, line/paragraph separator
_FORMULA_START = ("=", "+", "-", "@")
_TAIL_CHUNK = 8192


class DecisionLogError(VeilError):
    """A decision log that cannot be read or appended to as it is: a broken chain, a torn or malformed line, or
    permissions looser than 0600. Messages name the line, never a value."""


def decisions_path(dst: str | os.PathLike[str]) -> Path:
    """``DST/.veil/review/decisions.jsonl``."""
    return veil_dir(os.fspath(dst)) / "review" / DECISIONS_FILE


@dataclass(frozen=True)
class Decision:
    """One line of the log: who decided what on which instances, having been shown what, chained to the line
    before it by ``prev``."""

    time: str
    operator: str
    run_id: str
    recipe_hash: str
    instances: tuple[str, ...]
    shown: str
    decision: str
    reason: str
    note: str
    prev: str

    def to_json(self) -> str:
        """The line as written: compact JSON, sorted keys, UTF-8 kept as is, no newline."""
        return json.dumps(self._fields(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def _fields(self) -> dict[str, Any]:
        return {"time": self.time, "operator": self.operator, "run_id": self.run_id,
                "recipe_hash": self.recipe_hash, "instances": list(self.instances), "shown": self.shown,
                "decision": self.decision, "reason": self.reason, "note": self.note, "prev": self.prev}


_FIELDS = frozenset(f.name for f in fields(Decision))


def _text_problem(name: str, value: object, limit: int) -> str | None:
    if not isinstance(value, str):
        return f"{name} must be a string"
    if len(value) > limit:
        return f"{name} is longer than {limit} characters"
    if any(unicodedata.category(ch) in _BAD_CATEGORIES for ch in value):
        return f"{name} contains a newline or control character"
    return None


def _problem(d: Decision) -> str | None:
    """What makes ``d`` unfit for the log (the field and the rule, never the value), or None."""
    if not isinstance(d.time, str) or not _TIME.fullmatch(d.time):
        return "time must be ISO 8601 UTC with microseconds and Z"
    for name, limit in (("operator", MAX_OPERATOR), ("reason", MAX_TEXT), ("note", MAX_TEXT)):
        if problem := _text_problem(name, getattr(d, name), limit):
            return problem
    if not d.operator.strip():
        return "operator must not be empty"
    for name in ("run_id", "recipe_hash", "shown"):
        value = getattr(d, name)
        if not isinstance(value, str) or not _HEX.fullmatch(value):
            return f"{name} must be lowercase hex (1 to 128 digits)"
    if not isinstance(d.prev, str) or not _SHA256.fullmatch(d.prev):
        return "prev must be a SHA-256 hex digest"
    if d.decision not in DECISIONS:
        return f"decision must be one of {', '.join(DECISIONS)}"
    if d.decision == "reject" and not d.reason.strip():
        return "a reject needs a reason"
    if not isinstance(d.instances, tuple) or not d.instances:
        return "instances must name at least one SOP Instance UID"
    if not all(isinstance(uid, str) and _UID.fullmatch(uid) for uid in d.instances):
        return "instances must be UIDs (digits and dots, at most 64 characters)"
    if len(set(d.instances)) != len(d.instances):
        return "instances must not repeat a UID"
    return None


def _parse(line: bytes, number: int) -> Decision:
    """Line ``number`` (1-based) as a valid Decision in its canonical form, else DecisionLogError."""
    try:
        value = json.loads(line.decode("utf-8"))
    except ValueError:
        raise DecisionLogError(f"line {number}: not a JSON line (edited, or cut short)") from None
    if not isinstance(value, dict) or set(value) != _FIELDS:
        raise DecisionLogError(f"line {number}: not a decision (fields missing or unknown)")
    if not isinstance(value["instances"], list):
        raise DecisionLogError(f"line {number}: instances must be a list")
    decision = Decision(**{**value, "instances": tuple(value["instances"])})
    if problem := _problem(decision):
        raise DecisionLogError(f"line {number}: {problem}")
    if decision.to_json().encode("utf-8") != line:
        raise DecisionLogError(f"line {number}: not written in the log's canonical form (edited)")
    return decision


def _chain(data: bytes) -> list[Decision]:
    """Every line of ``data`` parsed and checked against the chain, in order; DecisionLogError at the first break."""
    if not data:
        return []
    lines = data.split(b"\n")
    if lines[-1]:
        raise DecisionLogError(f"line {len(lines)}: cut short (no newline; a crash during a write?)")
    out: list[Decision] = []
    expected = GENESIS
    for number, line in enumerate(lines[:-1], start=1):
        if not line:
            raise DecisionLogError(f"line {number}: empty")
        decision = _parse(line, number)
        if decision.prev != expected:
            raise DecisionLogError(f"line {number}: prev does not match the line before it "
                                   "(a line edited, deleted, inserted or reordered)")
        out.append(decision)
        expected = hashlib.sha256(line).hexdigest()
    return out


def _last_line(fd: int, size: int) -> bytes:
    """The last line's bytes (without its newline), read backwards from the end; b"" for an empty file."""
    if size == 0:
        return b""
    if os.pread(fd, 1, size - 1) != b"\n":
        raise DecisionLogError("the last line is cut short (a crash during a write?); nothing was appended. Check "
                               "the log with DecisionLog.verify() and repair the torn line before recording more")
    tail = b""
    end = size - 1  # the final newline
    while True:
        start = max(0, end - _TAIL_CHUNK)
        tail = os.pread(fd, end - start, start) + tail
        end = start
        cut = tail.rfind(b"\n")
        if cut >= 0:
            return tail[cut + 1:]
        if start == 0:
            return tail


def _check_private(fd: int, path: Path) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise DecisionLogError(f"{path}: not a regular file")
    if info.st_mode & 0o077:
        raise DecisionLogError(f"{path}: group or others may access it (mode {stat.S_IMODE(info.st_mode):04o}); "
                               "it names operators: make it 0600 (chmod 600) once you have checked it")


class DecisionLog:
    """The decision log of one DST: append under a lock, read back verified, per-instance states, CSV export."""

    def __init__(self, dst: str | os.PathLike[str]) -> None:
        self.path: Path = decisions_path(dst)

    def _open_for_append(self) -> tuple[int, bool]:
        """(fd, created): the log opened O_APPEND, created 0600 (in a 0700 folder) when absent."""
        folder = self.path.parent
        made_folder = not folder.is_dir()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if made_folder:
            fsync_dir(folder.parent)
        flags = os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
        while True:
            try:
                return os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o600), True
            except FileExistsError:
                pass
            try:
                return os.open(self.path, flags), False
            except FileNotFoundError:
                continue  # removed between the two opens: create it
            except OSError as exc:  # a symbolic link (ELOOP) or unreadable
                raise DecisionLogError(f"{self.path}: cannot be opened for appending ({exc.strerror})") from None

    def append(self, *, operator: str, run_id: str, recipe_hash: str, instances: Iterable[str], shown: str,
               decision: str, reason: str = "", note: str = "", now: float | None = None) -> Decision:
        """Records one decision and returns it as written; ValueError for an invalid field (named, never its
        value), DecisionLogError for a log that cannot be appended to (torn last line, loose permissions)."""
        if isinstance(instances, str):
            raise ValueError("instances must be a collection of UIDs, not one string")
        draft = Decision(time=iso_time(0), operator=operator, run_id=run_id, recipe_hash=recipe_hash,
                         instances=tuple(instances), shown=shown, decision=decision, reason=reason, note=note,
                         prev=GENESIS)
        if problem := _problem(draft):
            raise ValueError(problem)
        fd, created = self._open_for_append()
        try:
            _check_private(fd, self.path)
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            last = _last_line(fd, size)
            if size:
                try:
                    _parse(last, 0)  # never chain onto a line that is not a decision
                except DecisionLogError:
                    raise DecisionLogError("the last line is not a valid decision; nothing was appended. Check "
                                           "the log with DecisionLog.verify()") from None
            moment = time.time() if now is None else now
            record = replace(draft, time=iso_time(int(moment * 1_000_000)),
                             prev=hashlib.sha256(last).hexdigest() if size else GENESIS)
            data = (record.to_json() + "\n").encode("utf-8")
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
        finally:
            os.close(fd)  # releases the lock
        if created:
            fsync_dir(self.path.parent)
        return record

    def _read(self) -> bytes:
        """The whole log under a shared lock (no half-written line from a concurrent append); b"" if absent."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return b""
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def records(self) -> list[Decision]:
        """Every decision, in order, each checked and chained (a tampered log is refused, not shown); [] if the
        log does not exist."""
        return _chain(self._read())

    def verify(self) -> int:
        """The number of lines, once every line parses as a valid decision and chains onto the one before it;
        DecisionLogError("line N: ...") at the first break."""
        return len(self.records())

    def head(self) -> str:
        """SHA-256 of the last line (GENESIS for an empty log): the value to anchor outside the log, so that
        the last line cannot be rewritten unnoticed."""
        data = self._read()
        _chain(data)
        return hashlib.sha256(data[:-1].rsplit(b"\n", 1)[-1]).hexdigest() if data else GENESIS

    def states(self, shown: Mapping[str, str]) -> dict[str, tuple[str, Decision | None]]:
        """For each instance in ``shown`` (UID -> digest of what the UI shows for it now): ("pending", None) when
        no decision names it or the latest one was made on another digest, else (that decision's value, it)."""
        latest: dict[str, Decision] = {}
        for record in self.records():
            for uid in record.instances:
                if uid in shown:
                    latest[uid] = record
        out: dict[str, tuple[str, Decision | None]] = {}
        for uid, digest in shown.items():
            found = latest.get(uid)
            out[uid] = ("pending", None) if found is None or found.shown != digest else (found.decision, found)
        return out

    def write_csv(self, fh: TextIO) -> int:
        """The log as CSV (header, then one row per decision; instances joined by spaces), every cell that a
        spreadsheet would run as a formula prefixed with a quote. Returns the number of rows."""
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        rows = 0
        for record in self.records():
            fields = {**record._fields(), "instances": " ".join(record.instances)}
            writer.writerow([_cell(fields[name]) for name in CSV_COLUMNS])
            rows += 1
        return rows


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def shown_digest(*parts: bytes | str) -> str:
    """SHA-256 hex of what a reviewer was shown: each part (str as UTF-8) preceded by its length as 8 bytes
    big-endian, so no two different sequences of parts share a digest."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, str):
            data = part.encode("utf-8")
        elif isinstance(part, bytes | bytearray | memoryview):
            data = bytes(part)
        else:
            raise TypeError("shown_digest takes bytes or str parts")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()
