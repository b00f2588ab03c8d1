"""The audit trail of a run: one Parquet part per shard, the per-instance action counts as Zarr arrays, and
the run manifest, all under ``DST/.veil/``.

An audit proves what was done to each instance without itself leaking PHI: a row holds a keyed digest of the
input path and the NEW (de-identified) identifiers only; the schema has no column for an original value.

Layout::

    DST/.veil/manifest.json                       the run (written by the driver through write_manifest)
    DST/.veil/audit/part-{shard:08d}.parquet      one per shard; its presence marks the shard complete
    DST/.veil/audit/actions.zarr/shard-{shard:08d} int32 (rows x actions), row i = row i of the part

    DST/.veil/audit/pixels.zarr/shard-{shard:08d} the pixel redactions of the shard's instances (below)

Every shard is written by one worker, independently: its Zarr arrays first, its Parquet part last (temporary
name in the same directory, fsync, ``os.replace``), so a resumed run skips exactly :func:`completed_shards`.

Pixel records. For each instance whose pixels were redacted (``pixel_redaction``), a person reviewing the run
needs to see where the boxes were and that the rest of the image is intact. ``pixels.zarr`` holds, per shard
(one group, written by that shard's worker alone), the Parquet row each record belongs to, the boxes blanked
(frame, x, y, width, height; frame -1 is every frame), the data regions kept (ultrasound: all else blanked)
and a thumbnail of the first redacted frame AFTER redaction (grey, uint8, longest side 128 px), which holds
nothing the output file does not.

The same frame BEFORE redaction shows the reviewer what was removed, and so carries the burned-in name, ID
and date (OCR reads them at 128 px): it is stored only sealed, never in clear. Each before-thumbnail (its
size and 128 x 128 bytes) is encrypted with AES-256-GCM under a random 12-byte nonce, with associated data
binding it to the run id, key id, shard and row of its Parquet row, so a blob moved to another row, shard or
run fails authentication. The key is ``BLAKE3 derive_key("veil 2026-11 audit before-thumbnail", K)`` where K
is the run's audit sub-key (``Key.subkey("audit")``, which the workers already hold; they never get the
project key): only a holder of the project key can derive it (:func:`before_thumbnail_key`). A run without a
project key has an audit key derived from the public run id, so it stores no before-thumbnail at all (the
group's ``before_thumbnails`` attribute says "omitted"), never a weakly protected one.
:func:`read_pixel_records` with the project key opens them (a wrong key raises ``KeyError_``, an altered blob
``AuditError``); :func:`review_image` then shows before and after side by side.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import struct
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, NamedTuple

import blake3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from veil.core.plan import Action
from veil.errors import AuditError, KeyError_
from veil.keys import Key

__all__ = [
    "AUDIT_SCHEMA_VERSION",
    "ACTION_NAMES",
    "AUDIT_COLUMNS",
    "AUDIT_SCHEMA",
    "STATUSES",
    "AuditRow",
    "AuditSummary",
    "veil_dir",
    "audit_dir",
    "actions_path",
    "part_path",
    "manifest_path",
    "input_digest",
    "counts_from_mapping",
    "write_shard",
    "counts_matrix",
    "sweep_temporaries",
    "completed_shards",
    "read_audit",
    "read_actions",
    "PixelRecord",
    "pixels_path",
    "BEFORE_THUMBNAIL_CONTEXT",
    "before_thumbnail_key",
    "read_pixel_records",
    "review_image",
    "write_manifest",
    "read_manifest",
    "summarize",
    "format_summary",
]

log = logging.getLogger(__name__)

AUDIT_SCHEMA_VERSION: int = 1
SCHEMA_METADATA_KEY = b"veil.audit.schema"
ACTION_NAMES: tuple[str, ...] = tuple(a.name for a in Action)
STATUSES: tuple[str, ...] = ("written", "skipped", "quarantined")

_PART_NAME = re.compile(r"part-(\d{8,})\.parquet")
# A keyed BLAKE3 digest in hex (128 to 512 bits): anything else, a path for one, is refused.
_DIGEST = re.compile(r"[0-9a-f]{32,128}")
_ZARR_CHUNK_ROWS = 65536


def _count_column(action: str) -> str:
    return f"count_{action.lower()}"


# One Arrow field per AuditRow field, in order; ``counts`` becomes one int32 column per action.
_SCALAR_TYPES: dict[str, pa.DataType] = {
    "run_id": pa.string(),
    "shard": pa.int64(),
    "input_digest": pa.string(),
    "input_bytes": pa.int64(),
    "output_bytes": pa.int64(),
    "output_path": pa.string(),
    "sop_class_uid": pa.string(),
    "modality": pa.string(),
    "study_instance_uid": pa.string(),
    "series_instance_uid": pa.string(),
    "sop_instance_uid": pa.string(),
    "key_id": pa.string(),
    "recipe_name": pa.string(),
    "recipe_version": pa.string(),
    "recipe_hash": pa.string(),
    "veil_version": pa.string(),
    "pixel_redaction": pa.bool_(),
    "status": pa.string(),
    "reason": pa.string(),
    "microseconds": pa.int64(),
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
    microseconds: int


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
        out = self.output_path
        # Cheap string tests first (this runs once per file); the path parse only for suspicious values.
        if out and (out[0] in "/\\" or ":" in out or ".." in out) and (
            PurePosixPath(out).is_absolute()
            or PureWindowsPath(out).is_absolute()
            or ".." in PurePosixPath(out.replace("\\", "/")).parts
        ):
            raise ValueError("output_path must be relative to DST and stay inside it")
        return self

    @classmethod
    def _make(cls, iterable: Any) -> AuditRow:  # the named tuple's own skips __new__: ``_replace`` validates too
        return cls(*iterable)


AUDIT_COLUMNS: tuple[str, ...] = tuple(
    col
    for name in AuditRow._fields
    for col in ((_count_column(a) for a in ACTION_NAMES) if name == "counts" else (name,))
)

AUDIT_SCHEMA: pa.Schema = pa.schema(
    [pa.field(col, _SCALAR_TYPES.get(col, pa.int32()), nullable=False) for col in AUDIT_COLUMNS],
    metadata={SCHEMA_METADATA_KEY: str(AUDIT_SCHEMA_VERSION).encode()},
)


# --- paths -------------------------------------------------------------------------------------------------


def veil_dir(dst: Path) -> Path:
    """``DST/.veil``: everything a run writes beside its outputs."""
    return Path(dst) / ".veil"


def audit_dir(dst: Path) -> Path:
    """``DST/.veil/audit``: the Parquet parts and the Zarr store."""
    return veil_dir(dst) / "audit"


def actions_path(dst: Path) -> Path:
    """``DST/.veil/audit/actions.zarr``: one int32 array of action counts per shard."""
    return audit_dir(dst) / "actions.zarr"


def pixels_path(dst: Path) -> Path:
    """``DST/.veil/audit/pixels.zarr``: one group of pixel redaction records per shard that has any."""
    return audit_dir(dst) / "pixels.zarr"


def part_path(dst: Path, shard: int) -> Path:
    """The Parquet part of one shard; it exists under this name only once the shard is complete."""
    return audit_dir(dst) / f"part-{shard:08d}.parquet"


def manifest_path(dst: Path) -> Path:
    """``DST/.veil/manifest.json``."""
    return veil_dir(dst) / "manifest.json"


def _array_name(shard: int) -> str:
    return f"shard-{shard:08d}"


# --- helpers for the caller --------------------------------------------------------------------------------


def input_digest(key: Key, path: str | bytes | os.PathLike[str]) -> str:
    """The keyed BLAKE3 hex digest of an input path (the ``audit`` sub-key), so the audit names no file.

    Pass the path relative to the source root: the digest is then the same whatever the mount point.
    """
    raw = os.fsencode(path)
    return blake3.blake3(raw, key=key.subkey("audit")).hexdigest()


def counts_from_mapping(counts: Mapping[str, int]) -> tuple[int, ...]:
    """The core's ``{action name: count}`` as a tuple in :data:`ACTION_NAMES` order; unknown names refused."""
    unknown = set(counts) - set(ACTION_NAMES)
    if unknown:
        raise ValueError(f"unknown action names in counts: {sorted(unknown)}")
    return tuple(int(counts.get(name, 0)) for name in ACTION_NAMES)


# --- writing -----------------------------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    """Makes a rename in ``path`` durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    """fsyncs every file and directory under ``root``, so a Parquet part never outlives its Zarr array."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            with contextlib.suppress(OSError), open(os.path.join(dirpath, name), "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(Path(dirpath))


@contextlib.contextmanager
def _atomic_file(final: Path) -> Iterator[Any]:
    """Yields a binary file under a temporary name beside ``final``; fsynced and renamed on success, removed on
    failure, so ``final`` either does not exist or is complete."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}-{os.urandom(6).hex()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(final.parent)


def sweep_temporaries(dst: Path) -> int:
    """Removes the temporary files a killed run left in ``DST/.veil`` (audit parts and the manifest half
    written); call it only when no other run writes into DST. Returns how many were removed."""
    removed = 0
    folder = veil_dir(Path(dst))
    for pattern in (".part-*.parquet.*.tmp", ".manifest.json.*.tmp"):
        for directory in (folder, audit_dir(Path(dst))):
            for stray in directory.glob(pattern):
                with contextlib.suppress(FileNotFoundError):
                    stray.unlink()
                    removed += 1
    return removed


def counts_matrix(rows: Sequence[AuditRow]) -> np.ndarray:
    """The rows' action counts as int32 (rows x actions), checked to fit."""
    n_actions = len(ACTION_NAMES)
    if not rows:
        return np.zeros((0, n_actions), dtype=np.int32)
    wide = np.asarray([r.counts for r in rows], dtype=np.int64).reshape(len(rows), n_actions)
    if wide.size and (wide.min() < 0 or wide.max() > np.iinfo(np.int32).max):
        raise ValueError("action counts must be in 0 .. 2**31-1")
    return wide.astype(np.int32)


def _table(rows: Sequence[AuditRow], matrix: np.ndarray) -> pa.Table:
    """The rows as an Arrow table. The count columns come from ``matrix`` (checked by :func:`counts_matrix`),
    converted from Python lists: pyarrow's first conversion from numpy costs a worker process 7-10 ms."""
    columns: list[pa.Array] = []
    values = list(zip(*rows, strict=True)) if rows else [()] * len(AuditRow._fields)
    for name, column in zip(AuditRow._fields, values, strict=True):
        if name == "counts":
            counts = matrix.T.tolist() if len(rows) else [[]] * len(ACTION_NAMES)
            columns.extend(pa.array(counts[i], type=pa.int32()) for i in range(len(ACTION_NAMES)))
        else:
            columns.append(pa.array(column, type=_SCALAR_TYPES[name]))
    return pa.Table.from_arrays(columns, schema=AUDIT_SCHEMA)


# The action-count arrays are written here rather than through the zarr package: importing zarr costs a worker
# process 120-200 ms (asyncio, its codec registry), more than the whole shard it would record in a short run.
# What is written is an ordinary Zarr v3 array, the one ``zarr.create_array`` makes for these arguments (regular
# chunks, "bytes" little-endian then "zstd" level 0 without checksum): zarr reads it, and the tests compare it
# with zarr's own output. Readers (``veil audit``, :func:`read_actions`) use zarr.
_ZARR_GROUP_META = {"zarr_format": 3, "node_type": "group",
                    "attributes": {"veil.audit.schema": AUDIT_SCHEMA_VERSION, "actions": list(ACTION_NAMES)}}


def _write_json_atomically(final: Path, document: dict[str, Any]) -> None:
    with _atomic_file(final) as fh:
        fh.write(json.dumps(document, indent=2).encode())


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

    store = actions_path(dst)
    if not (store / "zarr.json").exists():
        # Two workers creating it at once write the same document; the last rename wins, whole.
        _write_json_atomically(store / "zarr.json", _ZARR_GROUP_META)
    folder = store / _array_name(shard)
    if folder.exists():
        shutil.rmtree(folder)  # as zarr's overwrite=True: no chunk of an earlier shape survives
    rows, width = matrix.shape
    chunk_rows = max(1, min(rows, _ZARR_CHUNK_ROWS))
    data = np.ascontiguousarray(matrix, dtype="<i4")
    for index, start in enumerate(range(0, rows, chunk_rows)):
        chunk = data[start:start + chunk_rows]
        if chunk.shape[0] < chunk_rows:  # an edge chunk is stored whole, padded with the fill value
            chunk = np.concatenate([chunk, np.zeros((chunk_rows - chunk.shape[0], width), "<i4")])
        with _atomic_file(folder / "c" / str(index) / "0") as fh:
            fh.write(pa.compress(chunk.tobytes(), codec="zstd", asbytes=True))
    attributes = {"veil.audit.schema": AUDIT_SCHEMA_VERSION, "shard": shard, "actions": list(ACTION_NAMES)}
    _write_json_atomically(folder / "zarr.json", _zarr_array_meta((rows, width), (chunk_rows, width), attributes))
    if rows:
        _fsync_dir(folder / "c")
    _fsync_dir(folder)


def write_shard(dst: Path, shard: int, rows: Sequence[AuditRow], pixel_records: Sequence[PixelRecord] = (),
                before_key: bytes | None = None, *, matrix: np.ndarray | None = None) -> Path:
    """Writes one shard's audit: its Zarr action-count array and pixel records, then its Parquet part
    (atomically, last, since the part's presence is what marks the shard complete). Rewriting a shard replaces
    all of them. Before-thumbnails are sealed with ``before_key`` (:func:`before_thumbnail_key` of the audit
    sub-key of a project key), and stored not at all without one. Returns the part."""
    dst = Path(dst)
    if shard < 0:
        raise ValueError(f"shard must be >= 0, not {shard}")
    strays = {r.shard for r in rows} - {shard}
    if strays:
        raise ValueError(f"rows for shard(s) {sorted(strays)} passed to write_shard({shard})")
    for record in pixel_records:
        if not 0 <= record.row < len(rows) or not rows[record.row].pixel_redaction:
            raise ValueError(f"pixel record for row {record.row}: no such row with pixel_redaction in shard {shard}")
    if matrix is None or matrix.shape != (len(rows), len(ACTION_NAMES)):
        matrix = counts_matrix(rows)  # ``matrix``: the rows' own counts_matrix, when the caller has it
    table = _table(rows, matrix)
    _write_actions(dst, shard, matrix)
    _write_pixels(dst, shard, pixel_records, rows, before_key)
    final = part_path(dst, shard)
    with _atomic_file(final) as fh:
        # No dictionary encoding: digests and UIDs are unique per row, and zstd shrinks the repeated columns
        # (run, recipe, key) better without it; a third faster to write, and smaller.
        pq.write_table(table, fh, compression="zstd", use_dictionary=False)
    log.debug("audit shard %d: %d rows", shard, len(rows))
    return final


# --- pixel records -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PixelRecord:
    """What a pixel redaction did to the instance in Parquet row ``row`` of its shard (see the module
    docstring): boxes (frame, x, y, width, height; frame -1 every frame), kept regions (x, y, width, height),
    the image size, the AFTER-redaction thumbnail (uint8, rows x columns, longest side 128 at most) and the
    BEFORE one: set when writing, and when read back only with the project key (None otherwise).
    ``before_sealed`` says, when read back, whether the store holds a sealed before-thumbnail for it."""

    row: int
    boxes: tuple[tuple[int, int, int, int, int], ...]
    kept: tuple[tuple[int, int, int, int], ...]
    rows: int
    columns: int
    thumbnail: np.ndarray | None = field(default=None, repr=False, compare=False)
    before: np.ndarray | None = field(default=None, repr=False, compare=False)
    before_sealed: bool = field(default=False, compare=False)

    @classmethod
    def from_redaction(cls, row: int, redaction: Any) -> PixelRecord:
        """From a ``veil.pixels.redact.Redaction`` (not imported here: the audit needs no pixel codecs)."""
        return cls(row, tuple(redaction.boxes), tuple(redaction.kept), redaction.rows, redaction.columns,
                   redaction.thumbnail, getattr(redaction, "before", None))


_THUMBNAIL = 128
BEFORE_THUMBNAIL_CONTEXT = "veil 2026-11 audit before-thumbnail"
_BEFORE_FORMAT = 1
_NONCE_SIZE = 12
_TAG_SIZE = 16
_BEFORE_PLAIN = 4 + _THUMBNAIL * _THUMBNAIL  # rows, columns (uint16 LE each), then 128 x 128 bytes
_BEFORE_BLOB = _NONCE_SIZE + _BEFORE_PLAIN + _TAG_SIZE
_BEFORE_SEALED = "sealed"
_BEFORE_OMITTED = "omitted"


def before_thumbnail_key(audit_key: bytes) -> bytes:
    """The AES-256 key of the sealed before-thumbnails, from a run's audit sub-key (``Key.subkey("audit")``):
    a BLAKE3 derivation for this purpose only, so a worker holding the audit key needs no project key and the
    sealing key serves nothing else. Only meaningful when the audit key comes from a project key."""
    if len(audit_key) != 32:
        raise ValueError(f"an audit key is 32 bytes, not {len(audit_key)}")
    return blake3.blake3(audit_key, derive_key_context=BEFORE_THUMBNAIL_CONTEXT).digest()


def _before_associated_data(run_id: str, key_id: str, shard: int, row: int) -> bytes:
    """Binds a sealed blob to the audit row it belongs to: moving it elsewhere fails authentication."""
    return json.dumps(["veil audit before-thumbnail", _BEFORE_FORMAT, run_id, key_id, shard, row],
                      separators=(",", ":")).encode()


def _check_thumbnail(thumb: np.ndarray) -> None:
    if thumb.ndim != 2 or max(thumb.shape, default=0) > _THUMBNAIL or thumb.dtype != np.uint8:
        raise ValueError(f"a pixel record thumbnail must be 2-D uint8 of {_THUMBNAIL} px at most")


def _seal_before(aead: Any, thumb: np.ndarray | None, associated: bytes) -> np.ndarray:
    plain = np.zeros(_BEFORE_PLAIN, np.uint8)
    if thumb is not None:
        _check_thumbnail(thumb)
        rows, columns = thumb.shape
        plain[:4] = np.frombuffer(struct.pack("<HH", rows, columns), np.uint8)
        plain[4 : 4 + rows * columns] = thumb.reshape(-1)
    nonce = os.urandom(_NONCE_SIZE)
    return np.frombuffer(nonce + aead.encrypt(nonce, plain.tobytes(), associated), np.uint8)


def _open_before(aead: Any, blob: np.ndarray, associated: bytes, where: str) -> np.ndarray | None:
    from cryptography.exceptions import InvalidTag

    raw = bytes(blob)
    if len(raw) != _BEFORE_BLOB:
        raise AuditError(f"{where}: sealed before-thumbnail is {len(raw)} bytes, not {_BEFORE_BLOB}")
    try:
        plain = aead.decrypt(raw[:_NONCE_SIZE], raw[_NONCE_SIZE:], associated)
    except InvalidTag:
        raise AuditError(f"{where}: sealed before-thumbnail fails authentication: altered, damaged, moved from "
                         f"another row, or sealed with another key") from None
    rows, columns = struct.unpack("<HH", plain[:4])
    if rows > _THUMBNAIL or columns > _THUMBNAIL:
        raise AuditError(f"{where}: sealed before-thumbnail claims {rows} x {columns} px")  # authenticated: a bug
    if rows * columns == 0:
        return None  # the record had no before-thumbnail
    return np.frombuffer(plain, np.uint8, rows * columns, 4).reshape(rows, columns).copy()


def _open_store_group(store: Path, attributes: dict[str, Any]) -> Any:
    """A Zarr group created on first use; two processes creating it at once both end up opening it."""
    import zarr
    from zarr.errors import ContainsGroupError

    for _ in range(5):
        try:
            return zarr.open_group(store, mode="a", attributes=attributes)
        except ContainsGroupError:
            continue
    return zarr.open_group(store, mode="r+")


def _write_pixels(dst: Path, shard: int, records: Sequence[PixelRecord], rows: Sequence[AuditRow],
                  before_key: bytes | None) -> None:
    """The shard's pixel records as one group of arrays; a shard rewritten without records loses its group.
    Before-thumbnails are sealed with ``before_key`` (see the module docstring), or left out without one."""
    import shutil

    name = _array_name(shard)
    folder = pixels_path(dst) / name
    if not records:
        if folder.exists():  # an earlier attempt at this shard wrote records this one does not have
            shutil.rmtree(folder)
        return
    aead = None
    if before_key is not None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(before_key) != 32:
            raise ValueError(f"the before-thumbnail key is 32 bytes, not {len(before_key)}")
        if any(not rows[r.row].key_id for r in records):
            raise ValueError("before-thumbnails are sealed only in runs with a project key (rows name no key id)")
        aead = AESGCM(before_key)
    state = (
        {"before_thumbnails": _BEFORE_SEALED, "cipher": "AES-256-GCM",
         "key": f"BLAKE3 derive_key({BEFORE_THUMBNAIL_CONTEXT!r}, audit sub-key)"}
        if aead is not None else
        {"before_thumbnails": _BEFORE_OMITTED,
         "reason": "no project key: the audit key of this run is derived from its run id, which is not secret"}
    )
    root = _open_store_group(pixels_path(dst), {"veil.audit.schema": AUDIT_SCHEMA_VERSION})
    group = root.create_group(name, overwrite=True, attributes={"shard": shard, **state})
    n = len(records)
    sizes = np.zeros((n, 4), dtype=np.int32)  # image rows, columns; thumbnail rows, columns
    thumbnails = np.zeros((n, _THUMBNAIL, _THUMBNAIL), dtype=np.uint8)
    sealed = np.zeros((n, _BEFORE_BLOB), dtype=np.uint8)
    boxes: list[tuple[int, ...]] = []
    kept: list[tuple[int, ...]] = []
    for i, record in enumerate(records):
        thumb = record.thumbnail if record.thumbnail is not None else np.zeros((0, 0), np.uint8)
        _check_thumbnail(thumb)
        sizes[i] = (record.rows, record.columns, *thumb.shape)
        thumbnails[i, : thumb.shape[0], : thumb.shape[1]] = thumb
        boxes.extend((i, *box) for box in record.boxes)
        kept.extend((i, *region) for region in record.kept)
        if aead is not None:
            row = rows[record.row]
            sealed[i] = _seal_before(aead, record.before,
                                     _before_associated_data(row.run_id, row.key_id, shard, record.row))
    arrays = {
        "row": np.asarray([r.row for r in records], dtype=np.int64),
        "size": sizes,
        "boxes": np.asarray(boxes, dtype=np.int32).reshape(-1, 6),
        "kept": np.asarray(kept, dtype=np.int32).reshape(-1, 5),
        "thumbnail": thumbnails,
    }
    if aead is not None:
        arrays["before_sealed"] = sealed
    for key, value in arrays.items():
        array = group.create_array(key, shape=value.shape, dtype=value.dtype,
                                   chunks=tuple(max(1, d) for d in value.shape), overwrite=True)
        if value.size:
            array[...] = value
    _fsync_tree(folder)


def _part_rows(dst: Path, shard: int) -> list[dict[str, str]]:
    """The run id and key id of every row of one shard's complete Parquet part (for the associated data)."""
    path = part_path(dst, shard)
    if not _part_is_complete(path):
        raise AuditError(f"shard {shard} has no complete audit part: its sealed before-thumbnails cannot be "
                         f"checked (resume the run, or read this shard without a key)")
    return pq.read_table(path, columns=["run_id", "key_id"]).to_pylist()


def read_pixel_records(dst: Path, shard: int | None = None, key: Key | None = None) -> dict[int, list[PixelRecord]]:
    """Shard -> its pixel records (in row order), for one shard or every shard that has any. Join a record to
    its audit row by shard and ``row`` (the row's index in that shard's Parquet part).

    With the project ``key``, the sealed before-thumbnails are opened into ``PixelRecord.before`` (a shard
    needs its complete Parquet part for that); a wrong key raises ``KeyError_``, a blob altered, damaged or
    moved raises ``AuditError``. Without it, or where none was stored, ``before`` is None."""
    dst = Path(dst)
    store = pixels_path(dst)
    if not store.is_dir():
        return {}
    import zarr

    aead = None
    if key is not None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        aead = AESGCM(before_thumbnail_key(key.subkey("audit")))
    root = zarr.open_group(store, mode="r")
    names = sorted(root.group_keys()) if shard is None else [_array_name(shard)]
    out: dict[int, list[PixelRecord]] = {}
    for name in names:
        if name not in root:
            continue
        group = root[name]
        number = int(group.attrs["shard"])
        state = group.attrs.get("before_thumbnails", _BEFORE_OMITTED)
        if state not in (_BEFORE_SEALED, _BEFORE_OMITTED) or (state == _BEFORE_SEALED) != ("before_sealed" in group):
            raise AuditError(f"{store.name}/{name}: before-thumbnail state {state!r} does not match its arrays")
        rows = np.asarray(group["row"][:])
        sizes = np.asarray(group["size"][:])
        boxes = np.asarray(group["boxes"][:]).reshape(-1, 6)
        kept = np.asarray(group["kept"][:]).reshape(-1, 5)
        thumbnails = np.asarray(group["thumbnail"][:])
        sealed = np.asarray(group["before_sealed"][:]) if state == _BEFORE_SEALED and aead is not None else None
        part = _part_rows(dst, number) if sealed is not None else []
        records = []
        for i, row in enumerate(rows.tolist()):
            t_rows, t_cols = int(sizes[i, 2]), int(sizes[i, 3])
            before = None
            if sealed is not None:
                if not 0 <= row < len(part):
                    raise AuditError(f"{store.name}/{name}: record {i} names row {row}, not in the shard's part")
                run_id, key_id = part[row]["run_id"], part[row]["key_id"]
                if key_id != key.key_id:  # type: ignore[union-attr]
                    raise KeyError_(f"shard {number}: before-thumbnails were sealed with key {key_id or 'none'}, "
                                    f"not {key.key_id}")  # type: ignore[union-attr]
                before = _open_before(aead, sealed[i], _before_associated_data(run_id, key_id, number, row),
                                      f"{store.name}/{name} row {row}")
            records.append(PixelRecord(
                row=int(row),
                boxes=tuple(tuple(int(v) for v in b[1:]) for b in boxes[boxes[:, 0] == i]),  # type: ignore[misc]
                kept=tuple(tuple(int(v) for v in k[1:]) for k in kept[kept[:, 0] == i]),  # type: ignore[misc]
                rows=int(sizes[i, 0]),
                columns=int(sizes[i, 1]),
                thumbnail=thumbnails[i, :t_rows, :t_cols].copy(),
                before=before,
                before_sealed=state == _BEFORE_SEALED,
            ))
        out[number] = records
    return out


def _outlined(thumb: np.ndarray, record: PixelRecord) -> Any:
    from PIL import Image, ImageDraw

    image = Image.fromarray(thumb).convert("RGB")
    draw = ImageDraw.Draw(image)
    sy = thumb.shape[0] / max(record.rows, 1)
    sx = thumb.shape[1] / max(record.columns, 1)
    for colour, regions in (((0, 255, 0), record.kept), ((255, 0, 0), [b[1:] for b in record.boxes])):
        for x, y, w, h in regions:
            x0, y0 = max(int(x * sx), 0), max(int(y * sy), 0)
            x1, y1 = min(int((x + w) * sx), thumb.shape[1] - 1), min(int((y + h) * sy), thumb.shape[0] - 1)
            if x1 >= x0 and y1 >= y0:
                draw.rectangle((x0, y0, x1, y1), outline=colour)
    return image


_REVIEW_GAP = 4  # px of white between the before and after images


def review_image(record: PixelRecord) -> np.ndarray:
    """The record's thumbnail in RGB with each blanked box outlined in red and each kept region in green,
    scaled to the thumbnail: where the redaction was, on the image as it now is. When the before-thumbnail
    is there (read with the project key), before | after side by side, both outlined."""
    after = np.asarray(_outlined(record.thumbnail if record.thumbnail is not None else np.zeros((1, 1), np.uint8),
                                 record))
    if record.before is None:
        return after
    before = np.asarray(_outlined(record.before, record))
    height = max(before.shape[0], after.shape[0])
    canvas = np.full((height, before.shape[1] + _REVIEW_GAP + after.shape[1], 3), 255, np.uint8)
    canvas[: before.shape[0], : before.shape[1]] = before
    canvas[: after.shape[0], before.shape[1] + _REVIEW_GAP :] = after
    return canvas


# --- reading -----------------------------------------------------------------------------------------------


def _part_is_complete(path: Path) -> bool:
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException):
        return False
    meta = schema.metadata or {}
    version_ok = meta.get(SCHEMA_METADATA_KEY) == str(AUDIT_SCHEMA_VERSION).encode()
    return version_ok and schema.remove_metadata().equals(AUDIT_SCHEMA.remove_metadata())


def _parts(dst: Path) -> dict[int, Path]:
    """Every complete part (footer reads, current schema version), by shard."""
    found: dict[int, Path] = {}
    folder = audit_dir(dst)
    if not folder.is_dir():
        return found
    for entry in folder.iterdir():
        m = _PART_NAME.fullmatch(entry.name)
        if m and entry.is_file() and _part_is_complete(entry):
            found[int(m.group(1))] = entry
        elif m:
            log.warning(
                "audit part %s is unreadable or of another schema version; its shard will be redone",
                entry.name,
            )
    return found


def completed_shards(dst: Path) -> set[int]:
    """Shards whose Parquet part exists, reads back and has this schema version: the ones a resume skips."""
    return set(_parts(Path(dst)))


def read_audit(dst: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """All complete parts concatenated in shard order (an empty table with the schema when there are none)."""
    return _read_parts(_parts(Path(dst)), columns)


def _read_parts(parts: Mapping[int, Path], columns: Sequence[str] | None = None) -> pa.Table:
    cols = list(columns) if columns is not None else None
    schema = AUDIT_SCHEMA if cols is None else pa.schema([AUDIT_SCHEMA.field(c) for c in cols])
    schema = schema.with_metadata(AUDIT_SCHEMA.metadata)
    tables = [pq.read_table(parts[s], columns=cols) for s in sorted(parts)]
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables).replace_schema_metadata(schema.metadata)


def read_actions(dst: Path, shard: int) -> np.ndarray:
    """One shard's action-count matrix (rows x :data:`ACTION_NAMES`, int32) from the Zarr store."""
    import zarr

    group = zarr.open_group(actions_path(Path(dst)), mode="r")
    return np.asarray(group[_array_name(shard)][:], dtype=np.int32).reshape(-1, len(ACTION_NAMES))


# --- manifest ----------------------------------------------------------------------------------------------


def write_manifest(dst: Path, manifest: dict) -> Path:
    """Writes ``DST/.veil/manifest.json`` atomically with sorted keys; adds ``audit_schema_version`` when the
    caller did not set it. Values must be JSON (nothing is stringified behind the caller's back)."""
    content = dict(manifest)
    content.setdefault("audit_schema_version", AUDIT_SCHEMA_VERSION)
    text = json.dumps(content, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    final = manifest_path(Path(dst))
    with _atomic_file(final) as fh:
        fh.write(text.encode("utf-8"))
    return final


def read_manifest(dst: Path) -> dict:
    """The run manifest, or ``{}`` when none has been written yet (a malformed one raises)."""
    path = manifest_path(Path(dst))
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"{path}: the manifest is not a JSON object")
    return value


# --- summary -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditSummary:
    """The totals of a run's audit, for ``veil audit DST``; quarantined inputs are named by digest only."""

    files: int
    written: int
    skipped: int
    quarantined: int
    input_bytes: int
    output_bytes: int
    quarantine: list[tuple[str, str]]  # (input_digest, reason), sorted
    reasons: dict[str, int]  # non-empty reason -> rows, any status
    actions: dict[str, int]  # action name -> elements, in ACTION_NAMES order
    manifest: dict
    shards: int = 0
    key_ids: tuple[str, ...] = field(default=())  # more than one: the outputs mix keys
    recipes: tuple[str, ...] = field(default=())  # "name version hash": more than one mixes recipes
    pixel_redacted: int = 0  # rows whose pixels were redacted (burned-in text)
    pixel_records: int = 0  # of them, with boxes and a thumbnail in pixels.zarr
    pixel_store: str = ""  # where those records are, relative to DST
    pixel_before_sealed: int = 0  # of the records, with a sealed before-redaction thumbnail


def _total(table: pa.Table, column: str) -> int:
    import pyarrow.compute as pc  # here: the workers that write parts never need it (28 ms to import)

    value = pc.sum(table[column]).as_py()
    return int(value or 0)


def _tally(table: pa.Table, column: str) -> Counter[str]:
    import pyarrow.compute as pc

    return Counter({item["values"]: item["counts"] for item in pc.value_counts(table[column]).to_pylist()})


def summarize(dst: Path) -> AuditSummary:
    """Totals over every complete part of ``dst``'s audit, with its manifest (columnar: fine for millions)."""
    import pyarrow.compute as pc

    dst = Path(dst)
    parts = _parts(dst)
    table = _read_parts(parts)
    statuses = _tally(table, "status")
    held = table.filter(pc.equal(table["status"], "quarantined")).select(["input_digest", "reason"])
    quarantine = sorted(zip(held["input_digest"].to_pylist(), held["reason"].to_pylist(), strict=True))
    reasons = _tally(table, "reason")
    reasons.pop("", None)
    recipe_keys = table.group_by(["recipe_name", "recipe_version", "recipe_hash"]).aggregate([]).to_pylist()
    recipes = sorted(f"{r['recipe_name']} {r['recipe_version']} {r['recipe_hash']}" for r in recipe_keys)
    records = {s: r for s, r in read_pixel_records(dst).items() if s in parts}
    return AuditSummary(
        files=table.num_rows,
        written=statuses.get("written", 0),
        skipped=statuses.get("skipped", 0),
        quarantined=statuses.get("quarantined", 0),
        input_bytes=_total(table, "input_bytes"),
        output_bytes=_total(table, "output_bytes"),
        quarantine=quarantine,
        reasons=dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        actions={name: _total(table, _count_column(name)) for name in ACTION_NAMES},
        manifest=read_manifest(dst),
        shards=len(parts),
        key_ids=tuple(sorted(_tally(table, "key_id"))),
        recipes=tuple(recipes),
        pixel_redacted=int(pc.sum(pc.cast(table["pixel_redaction"], pa.int64())).as_py() or 0),
        pixel_records=sum(len(r) for r in records.values()),
        pixel_store=os.path.relpath(pixels_path(dst), dst),
        pixel_before_sealed=sum(rec.before_sealed for r in records.values() for rec in r),
    )


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_summary(summary: AuditSummary, *, quarantine_limit: int | None = None) -> str:
    """Plain text for ``veil audit DST``: manifest, totals, actions, reasons and the quarantine list (every
    entry unless ``quarantine_limit`` is given)."""
    s = summary
    lines: list[str] = []
    scalars = {k: v for k, v in sorted(s.manifest.items()) if isinstance(v, (str, int, float, bool))}
    if scalars:
        lines.append("run")
        width = max(len(k) for k in scalars)
        lines.extend(f"  {k:<{width}}  {v}" for k, v in scalars.items())
    else:
        lines.append("run: no manifest")
    totals = [
        ("shards", f"{s.shards:,}"),
        ("files", f"{s.files:,}"),
        ("  written", f"{s.written:,}"),
        ("  skipped", f"{s.skipped:,}"),
        ("  quarantined", f"{s.quarantined:,}"),
        ("bytes in", f"{_human_bytes(s.input_bytes)} ({s.input_bytes:,})"),
        ("bytes out", f"{_human_bytes(s.output_bytes)} ({s.output_bytes:,})"),
    ]
    totals += [("key id", k) for k in s.key_ids] + [("recipe", r) for r in s.recipes]
    lines.extend(f"{label:<14}{value}" for label, value in totals)
    if len(s.key_ids) > 1:
        lines.append("  WARNING: outputs were made with more than one key")
    if len(s.recipes) > 1:
        lines.append("  WARNING: outputs were made with more than one recipe")
    if s.pixel_redacted or s.pixel_records:
        lines.append(f"{'pixels':<14}{s.pixel_redacted:,} instances redacted (burned-in text), "
                     f"{s.pixel_records:,} with boxes and thumbnails in {s.pixel_store}")
        if s.pixel_records:
            lines.append(f"  {s.pixel_before_sealed:,} with the image before redaction sealed (see it with "
                         f"--review OUTDIR --key KEYFILE), {s.pixel_records - s.pixel_before_sealed:,} without "
                         f"(runs with no project key store none)")
        if s.pixel_records < s.pixel_redacted:  # an audit written before pixel records, or by hand
            lines.append(f"  {s.pixel_redacted - s.pixel_records:,} redacted instances have no pixel record")
    lines.append("actions")
    width = max(len(n) for n in ACTION_NAMES)
    lines.extend(f"  {name:<{width}}  {count:,}" for name, count in s.actions.items())
    if s.reasons:
        lines.append("reasons")
        lines.extend(f"  {count:>8,}  {reason}" for reason, count in s.reasons.items())
    lines.append(f"quarantine ({len(s.quarantine):,})")
    shown = s.quarantine if quarantine_limit is None else s.quarantine[:quarantine_limit]
    lines.extend(f"  {digest}  {reason}" for digest, reason in shown)
    if len(shown) < len(s.quarantine):
        lines.append(f"  ... and {len(s.quarantine) - len(shown):,} more")
    return "\n".join(lines) + "\n"
