"""The sealed re-identification table (new value -> original), kept apart from the outputs: its file format, the
per-shard journal a running job seals its rows into, and reading a table back with the key.

Re-identification table file (never inside the output tree)::

    b"VEILREID" | version (1 byte) | key id (8 bytes) | nonce (12 bytes) | AES-256-GCM(JSON) + tag (16 bytes)

The first 17 bytes are the associated data, so the header cannot be altered either. The AES key is
``Key(material).subkey("reid-table")`` (BLAKE3 derive_key, context ``veil 2026-11 reid-table``). The JSON is
``{"rows": [[kind, new, original], ...]}``, sorted; a value that is not UTF-8 is written as ``{"b64": ...}``.

Journal: while a run goes on, each shard's rows are sealed the same way into ``TABLE.journal/shard-N.bin``
(beside the table, so apart from SRC and DST too) *before* the shard's audit part marks it done; at the end of
the run the table is rewritten as the union of the table already there, every journal part and the rows in
memory, and the journal removed. So a run killed and resumed loses no row, and a table only grows.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veil.errors import KeyError_, VeilError
from veil.keys import Key

__all__ = [
    "REID_MAGIC",
    "REID_VERSION",
    "ReidTableError",
    "ReidSealer",
    "PathLike",
    "journal_dir",
    "normalise",
    "seal",
    "write_sealed",
    "write_reid_part",
    "read_reid_table",
]

REID_MAGIC = b"VEILREID"
REID_VERSION = 1
_KEY_ID_SIZE = 8  # Key.key_id is 16 hex digits
_HEADER_SIZE = len(REID_MAGIC) + 1 + _KEY_ID_SIZE
_NONCE_SIZE = 12
_TAG_SIZE = 16

PathLike = str | os.PathLike[str]


class ReidTableError(VeilError):
    """A re-identification table that cannot be written where asked, or read: not one, altered, damaged."""


@dataclass(frozen=True)
class ReidSealer:
    """The one sub-key that seals re-identification journal parts (``reid-table``), for worker processes on
    the driver's machine that write their shard's part themselves. It answers ``key_id`` and
    ``subkey("reid-table")`` only."""

    key_id: str
    reid_key: bytes = field(repr=False)

    def subkey(self, purpose: str) -> bytes:
        if purpose != "reid-table":
            raise KeyError_(f"a re-identification sealer holds no {purpose!r} sub-key")
        return self.reid_key


def journal_dir(table: PathLike) -> Path:
    """``TABLE.journal``: the per-shard parts of a re-identification table still being written."""
    target = Path(table)
    return target.with_name(target.name + ".journal")


def write_reid_part(journal: PathLike, shard: int, pairs: Sequence[tuple[str, bytes, bytes]],
                    sealer: Key | ReidSealer, part: str = "") -> Path:
    """Seals one shard's (kind, new, original) rows into ``journal/shard-N.bin`` (atomic, mode 0600); with
    ``part``, into ``shard-N.PART.bin``, merged with the rows that part already holds (that needs the key)."""
    folder = Path(journal)
    folder.mkdir(mode=0o700, parents=False, exist_ok=True)
    rows = {(kind, normalise(new), normalise(original)) for kind, new, original in pairs}
    target = folder / (f"shard-{shard:08d}.{part}.bin" if part else f"shard-{shard:08d}.bin")
    if part and target.exists():
        # A shard run again (its worker died) may ask for fewer values: the part keeps every number given out.
        rows.update((kind, new.encode("utf-8", "surrogateescape"), original.encode("utf-8", "surrogateescape"))
                    for kind, new, original in read_reid_table(target, cast(Key, sealer)))
    write_sealed(target, sorted(rows), cast(Key, sealer))
    return target


def normalise(value: bytes | str) -> bytes:
    """The value as bytes, without DICOM padding: PS3.5 6.2 makes leading and trailing spaces of SH/LO
    insignificant, and UI values are padded with NUL, so ``b"ABC "`` and ``b"ABC"`` are one identifier."""
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return raw.strip(b" \x00")


def _encode_value(value: bytes) -> str | dict[str, str]:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}


def _decode_value(value: Any) -> str:
    """A stored value as text; one that was not UTF-8 comes back with ``surrogateescape``, so
    ``text.encode("utf-8", "surrogateescape")`` gives its exact bytes."""
    if isinstance(value, str):
        return value
    return base64.b64decode(value["b64"], validate=True).decode("utf-8", "surrogateescape")


def _header(key: Key) -> bytes:
    return REID_MAGIC + bytes([REID_VERSION]) + bytes.fromhex(key.key_id)


def seal(rows: Sequence[tuple[str, bytes, bytes]], key: Key) -> bytes:
    """The table file's bytes for ``rows`` (kind, new, original), sealed under ``key``'s ``reid-table`` sub-key."""
    payload = json.dumps(
        {"rows": [[kind, _encode_value(new), _encode_value(original)] for kind, new, original in rows]},
        separators=(",", ":"),
    ).encode("utf-8")
    header = _header(key)
    nonce = os.urandom(_NONCE_SIZE)
    return header + nonce + AESGCM(key.subkey("reid-table")).encrypt(nonce, payload, header)


def write_sealed(target: Path, rows: Sequence[tuple[str, bytes, bytes]], key: Key) -> None:
    """Seals ``rows`` into ``target`` atomically (mode 0600): a reader sees the old table or the new one."""
    _write_atomic(target, seal(rows, key))


def _write_atomic(target: Path, data: bytes) -> None:
    """tmp file (mode 0600, same directory) + fsync + rename, so a reader sees the old table or the new one."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise ReidTableError(f"{target}: cannot write the re-identification table: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise ReidTableError(
                f"{target}: cannot write the re-identification table: {exc.strerror}"
            ) from None
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read_reid_table(path: PathLike, key_material: bytes | Key) -> list[tuple[str, str, str]]:
    """The rows (kind, new, original) of an encrypted re-identification table.

    Raises ``KeyError_`` for a table written with another key, ``ReidTableError`` for a file that is not a
    table, was altered or is damaged.
    """
    key = key_material if isinstance(key_material, Key) else Key(bytes(key_material))
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise ReidTableError(f"{path}: cannot read the re-identification table: {exc.strerror}") from None
    if blob[: len(REID_MAGIC)] != REID_MAGIC:
        raise ReidTableError(f"{path}: not a veil re-identification table")
    if len(blob) < _HEADER_SIZE + _NONCE_SIZE + _TAG_SIZE:
        raise ReidTableError(f"{path}: re-identification table is truncated")
    version = blob[len(REID_MAGIC)]
    if version != REID_VERSION:
        raise ReidTableError(
            f"{path}: re-identification table format {version}; this veil reads {REID_VERSION}"
        )
    header, nonce = blob[:_HEADER_SIZE], blob[_HEADER_SIZE : _HEADER_SIZE + _NONCE_SIZE]
    written_with = header[len(REID_MAGIC) + 1 :].hex()
    if written_with != key.key_id:
        raise KeyError_(f"{path}: re-identification table written with key {written_with}, not {key.key_id}")
    try:
        payload = AESGCM(key.subkey("reid-table")).decrypt(nonce, blob[_HEADER_SIZE + _NONCE_SIZE :], header)
    except InvalidTag:
        raise ReidTableError(
            f"{path}: re-identification table fails authentication: altered or damaged"
        ) from None
    try:
        rows = json.loads(payload)["rows"]
        return [(str(kind), _decode_value(new), _decode_value(original)) for kind, new, original in rows]
    except (ValueError, KeyError, TypeError) as exc:
        # Authenticated but unreadable: written by something other than this module.
        raise ReidTableError(f"{path}: re-identification table payload is malformed: {exc}") from None
