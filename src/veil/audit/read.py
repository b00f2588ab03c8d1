"""Reading an audit back: the complete Parquet parts (what ``--resume`` skips), the rows, the action-count arrays
and the run manifest."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veil.audit.layout import PART_NAME, actions_path, array_name, audit_dir, manifest_path
from veil.audit.schema import (
    ACTION_NAMES,
    AUDIT_COLUMNS,
    AUDIT_SCHEMA_VERSION,
    SCHEMA_METADATA_KEY,
    audit_schema,
    iso_time,
)
from veil.system import LazyLogger

# numpy and pyarrow are imported by the functions that read parts: a driver into a new DST (no parts, or a
# manifest only) needs neither before its first file.
if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

__all__ = [
    "part_is_complete",
    "complete_parts",
    "completed_shards",
    "read_audit",
    "read_parts",
    "iter_instances",
    "read_actions",
    "read_manifest",
]

log = LazyLogger(__name__)


def part_is_complete(path: Path) -> bool:
    """Whether ``path`` is a whole Parquet part of this schema version (its footer read back)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException):
        return False
    meta = schema.metadata or {}
    version_ok = meta.get(SCHEMA_METADATA_KEY) == str(AUDIT_SCHEMA_VERSION).encode()
    return version_ok and schema.remove_metadata().equals(audit_schema().remove_metadata())


def complete_parts(dst: Path | str) -> dict[int, Path]:
    """Every complete part (footer reads, current schema version), by shard."""
    found: dict[int, Path] = {}
    folder = audit_dir(dst)
    if not folder.is_dir():
        return found
    for entry in folder.iterdir():
        m = PART_NAME.fullmatch(entry.name)
        if m and entry.is_file() and part_is_complete(entry):
            found[int(m.group(1))] = entry
        elif m:
            log.warning(
                "audit part %s is unreadable or of another schema version; its shard will be redone",
                entry.name,
            )
    return found


def completed_shards(dst: Path | str) -> set[int]:
    """Shards whose Parquet part exists, reads back and has this schema version: the ones a resume skips."""
    return set(complete_parts(dst))


def read_audit(dst: Path | str, columns: Sequence[str] | None = None) -> pa.Table:
    """All complete parts concatenated in shard order (an empty table with the schema when there are none)."""
    return read_parts(complete_parts(dst), columns)


def read_parts(parts: Mapping[int, Path], columns: Sequence[str] | None = None) -> pa.Table:
    """The given parts (shard -> path) concatenated in shard order, with the audit schema's metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    full = audit_schema()
    cols = list(columns) if columns is not None else None
    schema = full if cols is None else pa.schema([full.field(c) for c in cols])
    schema = schema.with_metadata(full.metadata)
    tables = [pq.read_table(parts[s], columns=cols) for s in sorted(parts)]
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables).replace_schema_metadata(schema.metadata)


def iter_instances(dst: Path | str) -> Iterator[dict[str, Any]]:
    """Every audit row of ``dst`` as a dict of :data:`~veil.audit.schema.AUDIT_COLUMNS`, shard by shard (one
    part in memory at a time), its ``time`` as ISO 8601 UTC: what ``veil audit --json/--csv`` export."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    parts = complete_parts(dst)
    for shard in sorted(parts):
        table = pq.read_table(parts[shard], columns=list(AUDIT_COLUMNS))
        micros = pc.cast(table["time"], pa.int64()).to_pylist()
        columns = table.drop_columns(["time"]).to_pydict()
        for i, when in enumerate(micros):
            row = {name: (iso_time(when) if name == "time" else columns[name][i]) for name in AUDIT_COLUMNS}
            yield row


def read_actions(dst: Path | str, shard: int) -> np.ndarray:
    """One shard's action-count matrix (rows x :data:`ACTION_NAMES`, int32) from the Zarr store."""
    import numpy as np
    import zarr

    group: Any = zarr.open_group(actions_path(dst), mode="r")
    return np.asarray(group[array_name(shard)][:], dtype=np.int32).reshape(-1, len(ACTION_NAMES))


def read_manifest(dst: Path | str) -> dict[str, Any]:
    """The run manifest, or ``{}`` when none has been written yet (a malformed one raises)."""
    path = manifest_path(dst)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"{path}: the manifest is not a JSON object")
    return value
