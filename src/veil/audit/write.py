"""Writing a shard's audit (its action-count Zarr array, its pixel records, then its Parquet part, last) and the
run manifest, each atomically, so a resumed run skips exactly the shards whose part is there."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veil.audit.layout import (
    actions_path,
    array_name,
    atomic_file,
    fsync_dir,
    manifest_path,
    part_path,
    write_json_atomically,
)
from veil.audit.schema import (
    ACTION_NAMES,
    AUDIT_COLUMNS,
    AUDIT_SCHEMA_VERSION,
    SHARED_FIELDS,
    AuditColumns,
    AuditRow,
    audit_schema,
    counts_matrix,
    scalar_types,
)
from veil.system import LazyLogger

# numpy and pyarrow (and the pixel store, which needs them) are imported by the functions that write a shard's
# audit: write_manifest, which a driver calls before its first file, needs neither.
if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from veil.audit.pixelstore import PixelRecord
    from veil.keys.custodian import CustodianPublicKey

__all__ = ["write_shard", "write_manifest"]

log = LazyLogger(__name__)

_ZARR_CHUNK_ROWS = 65536


def _table(rows: Sequence[AuditRow], matrix: np.ndarray) -> pa.Table:
    """The rows as an Arrow table. The count columns come from ``matrix`` (checked by :func:`counts_matrix`),
    made over its bytes (:func:`_count_arrays`)."""
    import pyarrow as pa

    types = scalar_types()
    columns: list[pa.Array] = []
    values = list(zip(*rows, strict=True)) if rows else [()] * len(AuditRow._fields)
    for name, column in zip(AuditRow._fields, values, strict=True):
        if name == "counts":
            columns.extend(_count_arrays(matrix))
        else:
            columns.append(pa.array(column, type=types[name]))
    return pa.Table.from_arrays(columns, schema=audit_schema())


# Column statistics (min, max) are kept where a reader may filter on them; not for the digests, paths, UIDs and
# reasons, which are unique per row (a sixth of the part's write time).
_WITH_STATISTICS = [name for name in AUDIT_COLUMNS if name not in {
    "input_digest", "output_path", "study_instance_uid", "series_instance_uid", "sop_instance_uid", "reason"}]


def _count_arrays(matrix: np.ndarray) -> list[pa.Array]:
    """One int32 Arrow array per action from the rows x actions matrix, made over its bytes (``from_buffers``):
    no conversion of Python ints, and none of numpy's (whose first use costs a process 10-12 ms)."""
    import numpy as np
    import pyarrow as pa

    rows = matrix.shape[0]
    by_action = np.ascontiguousarray(matrix.T, dtype="=i4")
    return [pa.Array.from_buffers(pa.int32(), rows, [None, pa.py_buffer(by_action[i])]) for i in range(len(ACTION_NAMES))]


def _columns_table(columns: AuditColumns) -> pa.Table:
    """:func:`_table` of a shard kept as columns (the native batch path): the same schema and values."""
    import pyarrow as pa

    types = scalar_types()
    arrays: list[pa.Array] = []
    for name in AuditRow._fields:
        if name == "counts":
            arrays.extend(_count_arrays(columns.matrix))
        elif name in SHARED_FIELDS:  # one value on every row (pa.repeat: no pyarrow.compute, 46 ms to import)
            arrays.append(pa.repeat(pa.scalar(columns.context[SHARED_FIELDS[name]], types[name]), len(columns)))
        else:
            arrays.append(pa.array(getattr(columns, name), type=types[name]))
    return pa.Table.from_arrays(arrays, schema=audit_schema())


# The action-count arrays are written here rather than through the zarr package: importing zarr costs a worker
# process 120-200 ms (asyncio, its codec registry), more than the whole shard it would record in a short run.
# What is written is an ordinary Zarr v3 array, the one ``zarr.create_array`` makes for these arguments (regular
# chunks, "bytes" little-endian then "zstd" level 0 without checksum): zarr reads it, and the tests compare it
# with zarr's own output. Readers (``veil audit``, :func:`~veil.audit.read.read_actions`) use zarr.
_ZARR_GROUP_META = {"zarr_format": 3, "node_type": "group",
                    "attributes": {"veil.audit.schema": AUDIT_SCHEMA_VERSION, "actions": list(ACTION_NAMES)}}


def _zarr_array_meta(shape: tuple[int, int], chunks: tuple[int, int], attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        "shape": list(shape),
        "data_type": "int32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                   {"name": "zstd", "configuration": {"level": 0, "checksum": False}}],
        "attributes": attributes,
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }


def _write_actions(dst: Path, shard: int, matrix: np.ndarray) -> None:
    """The shard's ``actions.zarr`` array (rows x actions, int32), replacing any earlier attempt's: chunks
    first, its ``zarr.json`` last, all fsynced before the caller writes the Parquet part."""
    import shutil

    import numpy as np
    import pyarrow as pa

    store = actions_path(dst)
    if not (store / "zarr.json").exists():
        # Two workers creating it at once write the same document; the last rename wins, whole.
        write_json_atomically(store / "zarr.json", _ZARR_GROUP_META)
    folder = store / array_name(shard)
    if folder.exists():
        shutil.rmtree(folder)  # as zarr's overwrite=True: no chunk of an earlier shape survives
    rows, width = matrix.shape
    chunk_rows = max(1, min(rows, _ZARR_CHUNK_ROWS))
    data = np.ascontiguousarray(matrix, dtype="<i4")
    for index, start in enumerate(range(0, rows, chunk_rows)):
        chunk = data[start:start + chunk_rows]
        if chunk.shape[0] < chunk_rows:  # an edge chunk is stored whole, padded with the fill value
            chunk = np.concatenate([chunk, np.zeros((chunk_rows - chunk.shape[0], width), "<i4")])
        with atomic_file(folder / "c" / str(index) / "0") as fh:
            fh.write(pa.compress(chunk.tobytes(), codec="zstd", asbytes=True))
    attributes = {"veil.audit.schema": AUDIT_SCHEMA_VERSION, "shard": shard, "actions": list(ACTION_NAMES)}
    write_json_atomically(folder / "zarr.json", _zarr_array_meta((rows, width), (chunk_rows, width), attributes))
    if rows:
        fsync_dir(folder / "c")
    fsync_dir(folder)


def write_shard(dst: Path | str, shard: int, rows: Sequence[AuditRow] | AuditColumns,
                pixel_records: Sequence[PixelRecord] = (),
                before_key: bytes | CustodianPublicKey | None = None, *,
                matrix: np.ndarray | None = None) -> Path:
    """Writes one shard's audit: its Zarr action-count array and pixel records, then its Parquet part
    (atomically, last, since the part's presence is what marks the shard complete). Rewriting a shard replaces
    all of them. Before-thumbnails are sealed with ``before_key`` (single-user:
    :func:`~veil.audit.pixelstore.before_thumbnail_key` of the audit sub-key of a project key; custodian mode:
    the custodian's public key), and stored not at all without one. Returns the part."""
    dst = Path(dst)
    if shard < 0:
        raise ValueError(f"shard must be >= 0, not {shard}")
    if isinstance(rows, AuditColumns):  # the native batch path: no row object per file
        if rows.context.shard != shard:
            raise ValueError(f"rows for shard {rows.context.shard} passed to write_shard({shard})")
        if pixel_records:
            raise ValueError("pixel records need audit rows, not columns")
        rows.check()
        return _write_part(dst, shard, _columns_table(rows), rows.matrix, (), rows, before_key)
    strays = {r.shard for r in rows} - {shard}
    if strays:
        raise ValueError(f"rows for shard(s) {sorted(strays)} passed to write_shard({shard})")
    for record in pixel_records:
        if not 0 <= record.row < len(rows) or not rows[record.row].pixel_redaction:
            raise ValueError(f"pixel record for row {record.row}: no such row with pixel_redaction in shard {shard}")
    if matrix is None or matrix.shape != (len(rows), len(ACTION_NAMES)):
        matrix = counts_matrix(rows)  # ``matrix``: the rows' own counts_matrix, when the caller has it
    return _write_part(dst, shard, _table(rows, matrix), matrix, pixel_records, rows, before_key)


def _write_part(dst: Path, shard: int, table: pa.Table, matrix: np.ndarray, pixel_records: Sequence[PixelRecord],
                rows: Sequence[AuditRow] | AuditColumns, before_key: bytes | CustodianPublicKey | None) -> Path:
    """The action counts, the pixel records, then the Parquet part, last."""
    import pyarrow.parquet as pq

    from veil.audit.pixelstore import write_pixels

    _write_actions(dst, shard, matrix)
    write_pixels(dst, shard, pixel_records, () if isinstance(rows, AuditColumns) else rows, before_key)
    final = part_path(dst, shard)
    with atomic_file(final) as fh:
        # No dictionary encoding: digests and UIDs are unique per row, and zstd shrinks the repeated columns
        # (run, recipe, key) better without it; a third faster to write, and smaller.
        pq.write_table(table, fh, compression="zstd", use_dictionary=False, write_statistics=_WITH_STATISTICS)
    log.debug("audit shard %d: %d rows", shard, table.num_rows)
    return final


def write_manifest(dst: Path | str, manifest: dict[str, Any]) -> Path:
    """Writes ``DST/.veil/manifest.json`` atomically with sorted keys; adds ``audit_schema_version`` when the
    caller did not set it. Values must be JSON (nothing is stringified behind the caller's back)."""
    content = dict(manifest)
    content.setdefault("audit_schema_version", AUDIT_SCHEMA_VERSION)
    text = json.dumps(content, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    final = manifest_path(dst)
    with atomic_file(final) as fh:
        fh.write(text.encode("utf-8"))
    return final
