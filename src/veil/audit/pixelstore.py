"""Pixel records in ``DST/.veil/audit/pixels.zarr``: where each redaction's boxes were, the image after it, and
the image before it sealed (AES-256-GCM) so that only a holder of the project key sees what was removed.

For each instance whose pixels were redacted (``pixel_redaction``), a person reviewing the run needs to see where
the boxes were and that the rest of the image is intact. ``pixels.zarr`` holds, per shard (one group, written by
that shard's worker alone), the Parquet row each record belongs to, the boxes blanked (frame, x, y, width,
height; frame -1 is every frame), the data regions kept (ultrasound: all else blanked) and a thumbnail of the
first redacted frame AFTER redaction (grey, uint8, longest side 128 px), which holds nothing the output file
does not.

The same frame BEFORE redaction shows the reviewer what was removed, and so carries the burned-in name, ID
and date (OCR reads them at 128 px): it is stored only sealed, never in clear. Each before-thumbnail (its
size and 128 x 128 bytes) is encrypted with AES-256-GCM under a random 12-byte nonce, with associated data
binding it to the run id, key id, shard and row of its Parquet row, so a blob moved to another row, shard or
run fails authentication. The key is ``BLAKE3 derive_key("veil 2026-11 audit before-thumbnail", K)`` where K
is the run's audit sub-key (``Key.subkey("audit")``, which the workers already hold; they never get the
project key): only a holder of the project key can derive it (:func:`before_thumbnail_key`). A run without a
project key has an audit key derived from the public run id, so it stores no before-thumbnail at all (the
group's ``before_thumbnails`` attribute says "omitted"), never a weakly protected one.

That is single-user mode (``before_thumbnails: "sealed"``). In custodian mode (a run given
``--custodian-public``) the same blobs are sealed under a fresh random data key per shard instead, wrapped for
the custodian's public key (:meth:`~veil.keys.custodian.CustodianPublicKey.wrap`, context
``before-thumbnails RUN shard N``); the group's attributes hold the wrapped key (base64) and the custodian key
id (``before_thumbnails: "sealed-custodian"``), so only the custodian's private key opens them and the run key
cannot. ``veil audit --purge`` deletes a shard's ``before_sealed`` array and sets ``"purged"``.

:func:`read_pixel_records` with the project key (single-user) or the custodian's private key (custodian mode)
opens them (the wrong key or key kind raises ``KeyError_``, an altered blob ``AuditError``); :func:`review_image`
then shows before and after side by side.
"""

from __future__ import annotations

import base64
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3
import numpy as np
import pyarrow.parquet as pq

from veil.audit.layout import array_name, fsync_tree, part_path, pixels_path
from veil.audit.read import part_is_complete
from veil.audit.schema import AUDIT_SCHEMA_VERSION, AuditRow
from veil.errors import AuditError, KeyError_
from veil.keys import Key

if TYPE_CHECKING:  # the custodian key (cryptography) only where a run or a reader uses one
    from veil.keys.custodian import CustodianPrivateKey, CustodianPublicKey

__all__ = [
    "PixelRecord",
    "BEFORE_THUMBNAIL_CONTEXT",
    "before_thumbnail_key",
    "write_pixels",
    "read_pixel_records",
    "review_image",
]


@dataclass(frozen=True)
class PixelRecord:
    """What a pixel redaction did to the instance in Parquet row ``row`` of its shard (see the module
    docstring): boxes (frame, x, y, width, height; frame -1 every frame), kept regions (x, y, width, height),
    the image size, the AFTER-redaction thumbnail (uint8, rows x columns, longest side 128 at most) and the
    BEFORE one: set when writing, and when read back only with the project key (None otherwise).
    ``before_sealed`` says, when read back, whether the store holds a sealed before-thumbnail for it.
    ``source`` says what found the boxes (``Redaction.source``: a pixel rule's name, "ultrasound regions",
    "detector", "series", "redact-all", joined by " + "); empty in stores written before it was recorded."""

    row: int
    boxes: tuple[tuple[int, int, int, int, int], ...]
    kept: tuple[tuple[int, int, int, int], ...]
    rows: int
    columns: int
    thumbnail: np.ndarray | None = field(default=None, repr=False, compare=False)
    before: np.ndarray | None = field(default=None, repr=False, compare=False)
    before_sealed: bool = field(default=False, compare=False)
    source: str = ""

    @classmethod
    def from_redaction(cls, row: int, redaction: Any) -> PixelRecord:
        """From a ``veil.pixels.redact.Redaction`` (not imported here: the audit needs no pixel codecs)."""
        return cls(row, tuple(redaction.boxes), tuple(redaction.kept), redaction.rows, redaction.columns,
                   redaction.thumbnail, getattr(redaction, "before", None),
                   source=str(getattr(redaction, "source", "") or ""))


_THUMBNAIL = 128
BEFORE_THUMBNAIL_CONTEXT = "veil 2026-11 audit before-thumbnail"
_BEFORE_FORMAT = 1
_NONCE_SIZE = 12
_TAG_SIZE = 16
_BEFORE_PLAIN = 4 + _THUMBNAIL * _THUMBNAIL  # rows, columns (uint16 LE each), then 128 x 128 bytes
_BEFORE_BLOB = _NONCE_SIZE + _BEFORE_PLAIN + _TAG_SIZE
_BEFORE_SEALED = "sealed"
_BEFORE_SEALED_CUSTODIAN = "sealed-custodian"
_BEFORE_OMITTED = "omitted"
_BEFORE_PURGED = "purged"
_WITH_ARRAY = (_BEFORE_SEALED, _BEFORE_SEALED_CUSTODIAN)
_STATES = (*_WITH_ARRAY, _BEFORE_OMITTED, _BEFORE_PURGED)


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


def _wrap_context(run_id: str, shard: int) -> bytes:
    """What a shard's wrapped data key is bound to (custodian mode)."""
    return f"before-thumbnails {run_id} shard {shard}".encode()


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


def write_pixels(dst: Path, shard: int, records: Sequence[PixelRecord], rows: Sequence[AuditRow],
                 before_key: bytes | CustodianPublicKey | None) -> None:
    """The shard's pixel records as one group of arrays; a shard rewritten without records loses its group.
    Before-thumbnails are sealed with ``before_key`` (single-user: the 32-byte :func:`before_thumbnail_key`;
    custodian mode: the custodian's public key; see the module docstring), or left out without one."""
    import shutil

    name = array_name(shard)
    folder = pixels_path(dst) / name
    if not records:
        if folder.exists():  # an earlier attempt at this shard wrote records this one does not have
            shutil.rmtree(folder)
        return
    aead = None
    state: dict[str, Any] = {
        "before_thumbnails": _BEFORE_OMITTED,
        "reason": "no project key: the audit key of this run is derived from its run id, which is not secret"}
    if isinstance(before_key, (bytes, bytearray)):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if len(before_key) != 32:
            raise ValueError(f"the before-thumbnail key is 32 bytes, not {len(before_key)}")
        if any(not rows[r.row].key_id for r in records):
            raise ValueError("before-thumbnails are sealed only in runs with a project key (rows name no key id)")
        aead = AESGCM(bytes(before_key))
        state = {"before_thumbnails": _BEFORE_SEALED, "cipher": "AES-256-GCM",
                 "key": f"BLAKE3 derive_key({BEFORE_THUMBNAIL_CONTEXT!r}, audit sub-key)"}
    elif before_key is not None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        from veil.keys.custodian import CustodianPublicKey

        if not isinstance(before_key, CustodianPublicKey):
            raise TypeError(f"before-thumbnails are sealed with bytes or a custodian public key, not "
                            f"{type(before_key).__name__}")
        data_key = AESGCM.generate_key(bit_length=256)
        wrapped = before_key.wrap(data_key, _wrap_context(rows[records[0].row].run_id, shard))
        aead = AESGCM(data_key)
        state = {"before_thumbnails": _BEFORE_SEALED_CUSTODIAN, "cipher": "AES-256-GCM",
                 "key": "a random data key for this shard, wrapped for the custodian (X25519)",
                 "custodian_key_id": before_key.key_id,
                 "wrapped_key": base64.b64encode(wrapped).decode("ascii")}
    root = _open_store_group(pixels_path(dst), {"veil.audit.schema": AUDIT_SCHEMA_VERSION})
    group = root.create_group(name, overwrite=True, attributes={
        "shard": shard, **state, "sources": [record.source for record in records]})
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
    arrays: dict[str, np.ndarray] = {
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
    fsync_tree(folder)


def _part_rows(dst: Path, shard: int) -> list[dict[str, str]]:
    """The run id and key id of every row of one shard's complete Parquet part (for the associated data)."""
    path = part_path(dst, shard)
    if not part_is_complete(path):
        raise AuditError(f"shard {shard} has no complete audit part: its sealed before-thumbnails cannot be "
                         f"checked (resume the run, or read this shard without a key)")
    rows: list[dict[str, str]] = pq.read_table(path, columns=["run_id", "key_id"]).to_pylist()
    return rows


def _group_aead(key: Key | CustodianPrivateKey, state: str, attrs: Any, number: int,
                part: list[dict[str, str]], rows: list[int]) -> Any:
    """The AES-GCM that opens one shard group's before-thumbnails with ``key``, or ``KeyError_`` saying which
    key they need (the run key in single-user mode, the custodian's private key in custodian mode)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if state == _BEFORE_SEALED:
        if not isinstance(key, Key):
            kid = next((part[r]["key_id"] for r in rows if 0 <= r < len(part)), "") or "none"
            raise KeyError_(f"shard {number}: before-thumbnails were sealed in single-user mode with run key "
                            f"{kid}; open them with that key (--key), not a custodian key")
        return AESGCM(before_thumbnail_key(key.subkey("audit")))
    custodian = str(attrs.get("custodian_key_id", ""))
    if isinstance(key, Key):
        raise KeyError_(f"shard {number}: before-thumbnails are sealed to custodian key {custodian}; only that "
                        f"custodian's private key opens them (the run key cannot)")
    if key.key_id != custodian:
        raise KeyError_(f"shard {number}: before-thumbnails are sealed to custodian key {custodian}, "
                        f"not {key.key_id}")
    if not rows or not 0 <= rows[0] < len(part):
        raise AuditError(f"shard {number}: pixel records name rows not in the shard's part")
    try:
        wrapped = base64.b64decode(str(attrs["wrapped_key"]), validate=True)
        data_key = key.unwrap(wrapped, _wrap_context(part[rows[0]]["run_id"], number))
    except (KeyError, ValueError, KeyError_):
        raise AuditError(f"shard {number}: the wrapped before-thumbnail key fails authentication: altered, "
                         f"damaged or moved from another shard or run") from None
    return AESGCM(data_key)


def read_pixel_records(dst: Path | str, shard: int | None = None,
                       key: Key | CustodianPrivateKey | None = None) -> dict[int, list[PixelRecord]]:
    """Shard -> its pixel records (in row order), for one shard or every shard that has any. Join a record to
    its audit row by shard and ``row`` (the row's index in that shard's Parquet part).

    With ``key`` (the project key for a single-user run, the custodian's private key for a custodian run), the
    sealed before-thumbnails are opened into ``PixelRecord.before`` (a shard needs its complete Parquet part for
    that); a wrong key or key kind raises ``KeyError_``, a blob altered, damaged or moved raises ``AuditError``.
    Without it, where none was stored, or where a purge removed them, ``before`` is None (``before_sealed``
    says whether the store still holds one)."""
    dst = Path(dst)
    store = pixels_path(dst)
    if not store.is_dir():
        return {}
    import zarr

    root: Any = zarr.open_group(store, mode="r")
    names = sorted(root.group_keys()) if shard is None else [array_name(shard)]
    out: dict[int, list[PixelRecord]] = {}
    for name in names:
        if name not in root:
            continue
        group = root[name]
        number = int(group.attrs["shard"])
        state = group.attrs.get("before_thumbnails", _BEFORE_OMITTED)
        # A purge sets "purged" before it deletes the array: one cut short in between still reads as purged.
        if state not in _STATES or ((state in _WITH_ARRAY) != ("before_sealed" in group) and state != _BEFORE_PURGED):
            raise AuditError(f"{store.name}/{name}: before-thumbnail state {state!r} does not match its arrays")
        rows = np.asarray(group["row"][:])
        sizes = np.asarray(group["size"][:])
        boxes = np.asarray(group["boxes"][:]).reshape(-1, 6)
        kept = np.asarray(group["kept"][:]).reshape(-1, 5)
        thumbnails = np.asarray(group["thumbnail"][:])
        sources = list(group.attrs.get("sources", []))
        sealed = np.asarray(group["before_sealed"][:]) if state in _WITH_ARRAY and key is not None else None
        part = _part_rows(dst, number) if sealed is not None else []
        aead = (_group_aead(key, state, group.attrs, number, part, rows.tolist())
                if sealed is not None and key is not None else None)
        records = []
        for i, row in enumerate(rows.tolist()):
            t_rows, t_cols = int(sizes[i, 2]), int(sizes[i, 3])
            before = None
            if sealed is not None and aead is not None:
                if not 0 <= row < len(part):
                    raise AuditError(f"{store.name}/{name}: record {i} names row {row}, not in the shard's part")
                run_id, key_id = part[row]["run_id"], part[row]["key_id"]
                if state == _BEFORE_SEALED and isinstance(key, Key) and key_id != key.key_id:
                    raise KeyError_(f"shard {number}: before-thumbnails were sealed with key {key_id or 'none'}, "
                                    f"not {key.key_id}")
                before = _open_before(aead, sealed[i], _before_associated_data(run_id, key_id, number, row),
                                      f"{store.name}/{name} row {row}")
            records.append(PixelRecord(
                row=int(row),
                boxes=tuple((int(b[1]), int(b[2]), int(b[3]), int(b[4]), int(b[5])) for b in boxes[boxes[:, 0] == i]),
                kept=tuple((int(k[1]), int(k[2]), int(k[3]), int(k[4])) for k in kept[kept[:, 0] == i]),
                rows=int(sizes[i, 0]),
                columns=int(sizes[i, 1]),
                thumbnail=thumbnails[i, :t_rows, :t_cols].copy(),
                before=before,
                before_sealed=state in _WITH_ARRAY,
                source=str(sources[i]) if i < len(sources) else "",
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
