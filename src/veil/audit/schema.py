"""The audit row: its schema and version, the validated :class:`AuditRow`, and the one place a row is made from a
file's outcome (:func:`row_from_outcome`).

An audit proves what was done to each instance without itself leaking PHI: a row holds a keyed digest of the
input path and the NEW (de-identified) identifiers only; the schema has no column for an original value.

Schema versions: 1, the first; 2 adds ``time`` (when the row was made, UTC, microseconds). A part of another
version is not complete for ``--resume`` (its shard is redone), so an audit is never of mixed versions.
"""

from __future__ import annotations

import functools
import os
import re
import time as _time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, NamedTuple

import blake3

from veil.core.plan import Action
from veil.keys import Key

if TYPE_CHECKING:  # the pipeline (and the native core) only where files are rewritten, not to read an audit
    import numpy as np
    import pyarrow as pa

    from veil.pipeline import FileOutcome

__all__ = [
    "AUDIT_SCHEMA_VERSION",
    "SCHEMA_METADATA_KEY",
    "ACTION_NAMES",
    "AUDIT_COLUMNS",
    "SHARED_FIELDS",
    "STATUSES",
    "audit_schema",
    "scalar_types",
    "AuditColumns",
    "AuditRow",
    "RowContext",
    "count_column",
    "counts_from_mapping",
    "counts_matrix",
    "input_digest",
    "input_digester",
    "iso_time",
    "parse_iso_time",
    "row_from_outcome",
]

AUDIT_SCHEMA_VERSION: int = 2
SCHEMA_METADATA_KEY = b"veil.audit.schema"
ACTION_NAMES: tuple[str, ...] = tuple(a.name for a in Action)
STATUSES: tuple[str, ...] = ("written", "skipped", "quarantined")

# A keyed BLAKE3 digest in hex (128 to 512 bits): anything else, a path for one, is refused.
_DIGEST = re.compile(r"[0-9a-f]{32,128}")
_NO_COUNTS: tuple[int, ...] = (0,) * len(ACTION_NAMES)


def count_column(action: str) -> str:
    """The Parquet column of one action's element count: ``count_keep``, ``count_remove``, ..."""
    return f"count_{action.lower()}"


# One Arrow field per AuditRow field, in order; ``counts`` becomes one int32 column per action. The Arrow types
# are made on first use (scalar_types, audit_schema): pyarrow is imported where an audit is written or read, not
# by a driver before its first file.
_SCALAR_TYPE_NAMES: dict[str, str] = {
    "run_id": "string",
    "shard": "int64",
    "input_digest": "string",
    "input_bytes": "int64",
    "output_bytes": "int64",
    "output_path": "string",
    "sop_class_uid": "string",
    "modality": "string",
    "study_instance_uid": "string",
    "series_instance_uid": "string",
    "sop_instance_uid": "string",
    "key_id": "string",
    "recipe_name": "string",
    "recipe_version": "string",
    "recipe_hash": "string",
    "veil_version": "string",
    "pixel_redaction": "bool_",
    "status": "string",
    "reason": "string",
    "microseconds": "int64",
    "time": "timestamp",
}


class _AuditRowFields(NamedTuple):
    run_id: str
    shard: int
    input_digest: str  # keyed BLAKE3 hex of the input path (see input_digest())
    input_bytes: int
    output_bytes: int
    output_path: str  # relative to DST; '' when nothing was written
    sop_class_uid: str
    modality: str
    study_instance_uid: str  # the new UIDs, as written in the output
    series_instance_uid: str
    sop_instance_uid: str
    key_id: str
    recipe_name: str
    recipe_version: str
    recipe_hash: str
    veil_version: str
    counts: tuple[int, ...]  # elements per action, in ACTION_NAMES order
    pixel_redaction: bool
    status: str  # "written" | "skipped" | "quarantined"
    reason: str
    microseconds: int  # the time the file took
    # When the row was made: microseconds since the epoch, UTC (a timestamp column); 0 in rows made by hand.
    time: int = 0


def _leaves_dst(out: str) -> bool:
    """Whether an output path is absolute or climbs out of DST. Cheap string tests first (this runs once per
    file); the path parse only for suspicious values."""
    return bool(out) and (out[0] in "/\\" or ":" in out or ".." in out) and (
        PurePosixPath(out).is_absolute()
        or PureWindowsPath(out).is_absolute()
        or ".." in PurePosixPath(out.replace("\\", "/")).parts
    )


class AuditRow(_AuditRowFields):
    """What was done to one input instance; identifiers are the NEW values, the input only a keyed digest.

    Validated on construction (fail closed): the digest must be hex, ``output_path`` relative to DST, ``counts``
    one per :data:`ACTION_NAMES`, ``status`` one of :data:`STATUSES`. An immutable named tuple rather than a
    frozen dataclass: one is made per file, and this costs a third as much.
    """

    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> AuditRow:
        self = super().__new__(cls, *args, **kwargs)
        if len(self.counts) != len(ACTION_NAMES):
            raise ValueError(f"counts has {len(self.counts)} values, expected one per action {ACTION_NAMES}")
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")
        if not _DIGEST.fullmatch(self.input_digest):
            raise ValueError("input_digest must be a lowercase hex keyed digest (32-128 digits), not a path")
        if self.shard < 0:
            raise ValueError(f"shard must be >= 0, not {self.shard}")
        if self.time < 0:
            raise ValueError(f"time must be microseconds since the epoch, not {self.time}")
        if _leaves_dst(self.output_path):
            raise ValueError("output_path must be relative to DST and stay inside it")
        return self

    # The named tuple's own ``_make`` skips ``__new__``: this one validates, so ``_replace`` does too.
    @classmethod
    def _make(cls, iterable: Any) -> AuditRow:  # type: ignore[override]
        return cls(*iterable)


AUDIT_COLUMNS: tuple[str, ...] = tuple(
    col
    for name in AuditRow._fields
    for col in ((count_column(a) for a in ACTION_NAMES) if name == "counts" else (name,))
)


@functools.cache
def scalar_types() -> dict[str, pa.DataType]:
    """The Arrow type of each :class:`AuditRow` field but ``counts``."""
    import pyarrow as pa

    return {name: pa.timestamp("us", tz="UTC") if kind == "timestamp" else getattr(pa, kind)()
            for name, kind in _SCALAR_TYPE_NAMES.items()}


@functools.cache
def audit_schema() -> pa.Schema:
    """The Arrow schema of an audit part (:data:`AUDIT_COLUMNS`, none nullable, the schema version as metadata)."""
    import pyarrow as pa

    types = scalar_types()
    return pa.schema(
        [pa.field(col, types.get(col, pa.int32()), nullable=False) for col in AUDIT_COLUMNS],
        metadata={SCHEMA_METADATA_KEY: str(AUDIT_SCHEMA_VERSION).encode()},
    )


if TYPE_CHECKING:
    AUDIT_SCHEMA: pa.Schema
    SCALAR_TYPES: dict[str, pa.DataType]


def __getattr__(name: str) -> Any:  # AUDIT_SCHEMA and SCALAR_TYPES, made on first use (PEP 562)
    if name == "AUDIT_SCHEMA":
        return audit_schema()
    if name == "SCALAR_TYPES":
        return scalar_types()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class AuditColumns:
    """A shard's rows as columns, for the native batch path: one list per :class:`AuditRow` field but ``counts``
    (``matrix``, rows x actions int32) and the fields every row of the shard shares (from its
    :class:`RowContext`). No row object is made per file; :meth:`check` validates the columns as
    :class:`AuditRow` validates a row, and the table written is the same (:func:`veil.audit.write_shard`)."""

    context: RowContext
    input_digest: list[str]
    input_bytes: list[int]
    output_bytes: list[int]
    output_path: list[str]
    sop_class_uid: list[str]
    modality: list[str]
    study_instance_uid: list[str]
    series_instance_uid: list[str]
    sop_instance_uid: list[str]
    matrix: np.ndarray
    pixel_redaction: list[bool]
    status: list[str]
    reason: list[str]
    microseconds: list[int]
    time: list[int]

    def __len__(self) -> int:  # the rows
        return len(self.input_digest)

    def check(self) -> None:
        """Raises ValueError where a row would not be a valid :class:`AuditRow` (fail closed)."""
        n = len(self)
        for name in _COLUMN_FIELDS:
            if len(getattr(self, name)) != n:
                raise ValueError(f"audit column {name} has {len(getattr(self, name))} values for {n} rows")
        if self.matrix.shape != (n, len(ACTION_NAMES)):
            raise ValueError(f"counts matrix of shape {self.matrix.shape} for {n} rows")
        if self.context.shard < 0:
            raise ValueError(f"shard must be >= 0, not {self.context.shard}")
        if not set(self.status) <= set(STATUSES):
            raise ValueError(f"a status is not one of {STATUSES}")
        if n and (_NOT_HEX.search("".join(self.input_digest)) or not 32 <= min(map(len, self.input_digest))
                  or max(map(len, self.input_digest)) > 128):
            raise ValueError("input_digest must be a lowercase hex keyed digest (32-128 digits), not a path")
        if n and min(self.time) < 0:
            raise ValueError("time must be microseconds since the epoch")
        if any(map(_leaves_dst, self.output_path)):
            raise ValueError("output_path must be relative to DST and stay inside it")


class RowContext(NamedTuple):
    """What every row of one shard shares: the run, the shard, the key and recipe, and DST with a trailing
    separator (output paths are recorded relative to it)."""

    run_id: str
    shard: int
    key_id: str
    recipe_name: str
    recipe_version: str
    recipe_hash: str
    veil_version: str
    dst_prefix: str


# The AuditRow fields every row of a shard shares: their index in RowContext.
SHARED_FIELDS = {"run_id": 0, "shard": 1, "key_id": 2, "recipe_name": 3, "recipe_version": 4, "recipe_hash": 5,
                 "veil_version": 6}
_COLUMN_FIELDS = tuple(name for name in _AuditRowFields._fields if name not in SHARED_FIELDS and name != "counts")
_NOT_HEX = re.compile(r"[^0-9a-f]")


def row_from_outcome(outcome: FileOutcome, context: RowContext, digest: str, listed_bytes: int = 0) -> AuditRow:
    """The audit row of one file's outcome, written or refused: the one place a row is made.

    ``digest`` is the keyed digest of the input's path relative to SRC (:func:`input_digest`); ``listed_bytes``
    the input's size as listed, recorded when the outcome has none (a file refused before it was read). The
    output path is recorded relative to DST, and ``time`` is now (UTC)."""
    run_id, shard, key_id, recipe_name, recipe_version, recipe_hash, veil_version, prefix = context
    # One unpacking rather than a dozen attribute reads: this runs once per file. FileOutcome's field order.
    (_, destination, status, reason, input_bytes, output_bytes, sop_class_uid, sop_instance_uid, study_instance_uid,
     series_instance_uid, modality, _, counts_row, microseconds, pixel_redaction, _, _) = outcome
    if not destination:
        output_path = ""
    elif destination.startswith(prefix):
        output_path = destination[len(prefix):]
    else:
        output_path = os.path.relpath(destination, prefix)
    return AuditRow(run_id, shard, digest, input_bytes or listed_bytes, output_bytes, output_path, sop_class_uid,
                    modality, study_instance_uid, series_instance_uid, sop_instance_uid, key_id, recipe_name,
                    recipe_version, recipe_hash, veil_version, counts_row or _NO_COUNTS, pixel_redaction, status,
                    reason, microseconds, _time.time_ns() // 1000)


def iso_time(micros: int) -> str:
    """Microseconds since the epoch as ISO 8601 UTC, to the microsecond: ``2026-12-04T21:15:21.123456Z``."""
    seconds, fraction = divmod(int(micros), 1_000_000)
    return _time.strftime("%Y-%m-%dT%H:%M:%S", _time.gmtime(seconds)) + f".{fraction:06d}Z"


def parse_iso_time(text: str) -> int:
    """An ISO 8601 time with its zone (``Z`` or an offset) as microseconds since the epoch; a time without a
    zone is refused (it would be read as local time)."""
    from datetime import UTC, datetime

    moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def input_digest(key: Key | bytes, path: str | bytes | os.PathLike[str]) -> str:
    """The keyed BLAKE3 hex digest of an input path (the ``audit`` sub-key), so the audit names no file.

    ``key`` is the project key, or a run's audit key itself (:func:`veil.engine.audit_key`: a keyless run's is
    derived from its run id). Pass the path relative to the source root: the digest is then the same whatever
    the mount point.
    """
    raw = os.fsencode(path)
    return blake3.blake3(raw, key=key if isinstance(key, bytes) else key.subkey("audit")).hexdigest()


def input_digester(audit_key: bytes) -> Callable[[str | bytes], str]:
    """:func:`input_digest` under one audit key for the many paths of a shard: the keyed hasher is made once and
    copied for each path (the key schedule not redone per file)."""
    keyed = blake3.blake3(key=audit_key)

    def digest(path: str | bytes) -> str:
        hasher = keyed.copy()
        hasher.update(os.fsencode(path))
        return hasher.hexdigest()

    return digest


def counts_from_mapping(counts: Mapping[str, int]) -> tuple[int, ...]:
    """The core's ``{action name: count}`` as a tuple in :data:`ACTION_NAMES` order; unknown names refused."""
    unknown = set(counts) - set(ACTION_NAMES)
    if unknown:
        raise ValueError(f"unknown action names in counts: {sorted(unknown)}")
    return tuple(int(counts.get(name, 0)) for name in ACTION_NAMES)


def counts_matrix(rows: Sequence[AuditRow]) -> np.ndarray:
    """The rows' action counts as int32 (rows x actions), checked to fit."""
    import numpy as np

    n_actions = len(ACTION_NAMES)
    if not rows:
        return np.zeros((0, n_actions), dtype=np.int32)
    wide = np.asarray([r.counts for r in rows], dtype=np.int64).reshape(len(rows), n_actions)
    if wide.size and (wide.min() < 0 or wide.max() > np.iinfo(np.int32).max):
        raise ValueError("action counts must be in 0 .. 2**31-1")
    return wide.astype(np.int32)
