"""Retention and disposal: how long what still holds PHI after a run is kept, and ``veil audit --purge``.

A run leaves three classes of PHI-bearing items beside its de-identified outputs (:data:`RETENTION_CLASSES`):

=================  ===========================================================================================
quarantine         the copies of refused inputs, ``.veil/quarantine/{digest}.dcm`` (clear, single-user mode) or
                   ``{digest}.dcm.sealed`` (custodian mode); their ``{digest}.json`` (digest and reason) stays
before_images      the sealed before-redaction thumbnails, the ``before_sealed`` array of each shard group of
                   ``.veil/audit/pixels.zarr`` (the group's ``before_thumbnails`` attribute becomes "purged")
change_records     the sealed original values of the change records, ``.veil/audit/changes/originals-*.bin``
=================  ===========================================================================================

Each class is kept for an age, ``NNd`` (days) or ``NNh`` (hours), or ``keep`` (until asked). The policy comes from
the recipe's ``retention:`` section, overridden per class by ``veil run --retention``, and is recorded in the
manifest. :func:`purge` removes the items older than their limit: the policy's age, or ``--older-than`` for the
quarantine and the before-images (an explicit request wins over the policy); change records only when the policy
gives them an age, never on ``--older-than`` alone, since they are the evidence of what a run changed. An item's
age: a quarantine copy's, from its audit row's time (else the file's modification time); a shard's items', from
the latest row time of that shard's audit part. Everything else stays: every audit part, the clear change
records (actions and final values), the manifest, the pixel records after redaction.

Each purge appends one line to ``.veil/purges.jsonl`` (fsynced): when, who, the policy and limits, and per class
how many items and bytes went; never a name, path or value.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veil.audit.layout import changes_dir, fsync_dir, fsync_tree, pixels_path, purges_path, quarantine_dir
from veil.audit.read import read_audit, read_manifest
from veil.audit.schema import iso_time
from veil.recipes.model import RETENTION_CLASSES, retention_problem
from veil.system import login_name

__all__ = [
    "KEEP",
    "RETENTION_CLASSES",
    "PurgeItem",
    "PurgePlan",
    "age_seconds",
    "parse_retention_spec",
    "resolve_policy",
    "plan_purge",
    "purge",
    "read_purges",
]

KEEP = "keep"
_QUARANTINE_COPY = re.compile(r"([0-9a-f]{32,128})\.dcm(?:\.sealed)?(?:\.tmp)?")  # .tmp: a copy cut short
_ORIGINALS = re.compile(r"\.?originals-(\d{8,})\.bin(?:\..+\.tmp)?")
_PURGED = "purged"


def age_seconds(value: str) -> int | None:
    """A retention age in seconds (``30d``, ``12h``), or None for ``keep``; anything else is a ValueError."""
    problem = retention_problem(value)
    if problem:
        raise ValueError(problem)
    if value == KEEP:
        return None
    return int(value[:-1]) * (86_400 if value[-1] == "d" else 3_600)


def parse_retention_spec(spec: str) -> dict[str, str]:
    """``--retention``: ``keep`` (every class kept) or ``quarantine=30d,before_images=30d,change_records=365d``
    (the classes named; the others as the recipe says). ValueError naming the problem."""
    text = spec.strip()
    if text == KEEP:
        return dict.fromkeys(RETENTION_CLASSES, KEEP)
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or name not in RETENTION_CLASSES:
            raise ValueError(f"retention {item!r}: write CLASS=AGE with CLASS one of {', '.join(RETENTION_CLASSES)}")
        if name in out:
            raise ValueError(f"retention: {name} is given twice")
        problem = retention_problem(value)
        if problem:
            raise ValueError(f"retention {name}: {problem}")
        out[name] = value
    if not out:
        raise ValueError("retention: empty; write keep or CLASS=AGE,...")
    return out


def resolve_policy(recipe: Mapping[str, str] | None, override: Mapping[str, str] | None = None) -> dict[str, str]:
    """The run's policy, every class: the override's age, else the recipe's, else ``keep``."""
    merged = {**dict(recipe or {}), **dict(override or {})}
    for name, value in merged.items():
        if name not in RETENTION_CLASSES:
            raise ValueError(f"retention: unknown class {name!r}; classes: {', '.join(RETENTION_CLASSES)}")
        age_seconds(value)
    return {name: merged.get(name, KEEP) for name in RETENTION_CLASSES}


@dataclass(frozen=True)
class PurgeItem:
    """One PHI-bearing item: its class, where it is (a file, or the shard group of ``pixels.zarr``), its shard
    (None for a quarantine copy), how many instances it holds, its size and its age in seconds."""

    kind: str
    path: Path
    shard: int | None
    items: int
    bytes: int
    age: float


@dataclass
class PurgePlan:
    """What a purge removes (``due``) under ``limits`` (class -> age applied, None: not purged), and of what was
    found (``held``), everything still there."""

    limits: dict[str, str | None]
    policy: dict[str, str]
    held: list[PurgeItem] = field(default_factory=list)
    due: list[PurgeItem] = field(default_factory=list)

    def counts(self, items: list[PurgeItem] | None = None) -> dict[str, dict[str, int]]:
        """Class -> {"items": instances, "files": files or shard groups, "bytes": bytes} of ``items`` (the due)."""
        out = {name: {"items": 0, "files": 0, "bytes": 0} for name in RETENTION_CLASSES}
        for item in self.due if items is None else items:
            out[item.kind]["items"] += item.items
            out[item.kind]["files"] += 1
            out[item.kind]["bytes"] += item.bytes
        return out


def _limits(policy: Mapping[str, str], older_than: str | None) -> dict[str, str | None]:
    limits: dict[str, str | None] = {}
    for name in RETENTION_CLASSES:
        value = policy.get(name, KEEP)
        if older_than is not None and name != "change_records":
            value = older_than
        limits[name] = None if value == KEEP else value
    return limits


def _row_times(dst: Path, table: Any | None) -> tuple[dict[str, int], dict[int, int]]:
    """(input digest -> latest row time of its quarantined rows, shard -> latest row time), microseconds; rows
    without a time (0) left out."""
    import pyarrow.compute as pc

    if table is None:
        table = read_audit(dst, ["shard", "input_digest", "status", "time"])
    if table.num_rows == 0:
        return {}, {}
    micros = pc.cast(table["time"], "int64")
    slim = table.select(["shard", "input_digest", "status"]).append_column("t", micros)
    slim = slim.filter(pc.greater(slim["t"], 0))
    by_shard = slim.group_by("shard").aggregate([("t", "max")]).to_pydict()
    held = slim.filter(pc.equal(slim["status"], "quarantined"))
    by_digest = held.group_by("input_digest").aggregate([("t", "max")]).to_pydict()
    return (dict(zip(by_digest["input_digest"], by_digest["t_max"], strict=True)),
            dict(zip(by_shard["shard"], by_shard["t_max"], strict=True)))


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _held(dst: Path, now: float, table: Any | None) -> list[PurgeItem]:
    """Every PHI-bearing item under DST/.veil, with its age."""
    digests, shards = _row_times(dst, table)
    items: list[PurgeItem] = []

    def age(micros: int | None, fallback: Path) -> float:
        when = micros / 1e6 if micros else fallback.stat().st_mtime
        return max(0.0, now - when)

    folder = quarantine_dir(dst)
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):
            m = _QUARANTINE_COPY.fullmatch(entry.name)
            if m and entry.is_file():
                items.append(PurgeItem("quarantine", entry, None, 1, entry.stat().st_size,
                                       age(digests.get(m.group(1)), entry)))
    store = pixels_path(dst)
    if (store / "zarr.json").is_file():
        import zarr

        root: Any = zarr.open_group(store, mode="r")
        for name in sorted(root.group_keys()):
            group = root[name]
            if "before_sealed" not in group:
                continue
            shard = int(group.attrs["shard"])
            sealed = store / name / "before_sealed"
            items.append(PurgeItem("before_images", store / name, shard, int(group["before_sealed"].shape[0]),
                                   _size(sealed), age(shards.get(shard), store / name / "zarr.json")))
    folder = changes_dir(dst)
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):
            m = _ORIGINALS.fullmatch(entry.name)
            if m and entry.is_file():
                shard = int(m.group(1))
                items.append(PurgeItem("change_records", entry, shard, 1, entry.stat().st_size,
                                       age(shards.get(shard), entry)))
    return items


def plan_purge(dst: Path | str, *, policy: Mapping[str, str] | None = None, older_than: str | None = None,
               now: float | None = None, table: Any | None = None) -> PurgePlan:
    """What :func:`purge` would remove now: ``policy`` (default: the manifest's ``retention``, else every class
    kept), ``older_than`` for the quarantine and the before-images. ``table``: the audit's rows when the caller
    has them (columns shard, input_digest, status, time)."""
    dst = Path(dst)
    if older_than is not None:
        age_seconds(older_than)
        if older_than == KEEP:
            raise ValueError("--older-than takes an age (30d, 12h), not keep")
    if policy is None:
        recorded = read_manifest(dst).get("retention")
        policy = recorded if isinstance(recorded, dict) else {}
    full = resolve_policy(policy)
    limits = _limits(full, older_than)
    plan = PurgePlan(limits, full, _held(dst, time.time() if now is None else now, table))
    for item in plan.held:
        limit = limits[item.kind]
        seconds = age_seconds(limit) if limit is not None else None
        if seconds is not None and item.age >= seconds:
            plan.due.append(item)
    return plan


def _remove(item: PurgeItem) -> None:
    if item.kind != "before_images":
        with contextlib.suppress(FileNotFoundError):
            item.path.unlink()
        return
    import zarr

    # The state first: a purge cut short leaves "purged" with the array still there, which the next purge
    # removes (it looks for the array), and which readers take as purged, never as a damaged store.
    group: Any = zarr.open_group(item.path.parent, mode="r+")[item.path.name]
    group.attrs["before_thumbnails"] = _PURGED
    del group["before_sealed"]
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(item.path / "before_sealed")
    fsync_tree(item.path)


def purge(dst: Path | str, *, older_than: str | None = None, operator: str | None = None, dry_run: bool = False,
          now: float | None = None) -> PurgePlan:
    """Removes the PHI-bearing items due under the manifest's policy (and ``older_than``; see the module
    docstring) and appends the purge to ``purges.jsonl``; ``dry_run`` removes and records nothing. Returns the
    plan (its ``due`` are the items removed)."""
    dst = Path(dst)
    moment = time.time() if now is None else now
    plan = plan_purge(dst, older_than=older_than, now=moment)
    if dry_run:
        return plan
    for item in plan.due:
        _remove(item)
    for folder in {item.path.parent for item in plan.due if item.kind != "before_images"}:
        fsync_dir(folder)
    record = {
        "time": iso_time(int(moment * 1_000_000)),
        "operator": operator or login_name(),
        "older_than": older_than,
        "policy": plan.policy,
        "limits": plan.limits,
        "removed": plan.counts(),
    }
    _append(purges_path(dst), record)
    return plan


def _append(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def read_purges(dst: Path | str) -> list[dict[str, Any]]:
    """Every purge recorded in ``DST/.veil/purges.jsonl``, oldest first (a torn last line is skipped)."""
    try:
        text = purges_path(dst).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            value = json.loads(line)
            if isinstance(value, dict):
                out.append(value)
    return out
