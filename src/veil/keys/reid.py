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

Custodian mode (``veil run --custodian-public NAME.pub``): the table is sealed to the custodian's public key
(:mod:`veil.keys.envelope`), so the run key cannot open it, and a process that cannot open it cannot merge it.
Such a table is append-only::

    b"VEILRTC1" | repeated [u32 big-endian length | envelope (context b"reid-table")]

each envelope holding the same JSON as above (``{"rows": [...]}``). A journal part has the same format (each
call appends one record: the part is never opened either). At the end of a run the table is rewritten as the
records already there, kept byte for byte, then every journal part's records, then one record of the rows in
memory not yet journaled. Readers (the custodian, :func:`read_reid_table` with the private key) deduplicate.

Counter pseudonyms need to know which originals were numbered, which the operator cannot read back from such a
table. Beside it, ``TABLE.counters`` (journal parts ``shard-N.counters-index.bin``) keeps rows (kind,
pseudonym, digest) sealed in single-user mode under the run key (``symmetric_seal(key, "counter-index")``,
context ``b"counter-index"``), the digest a keyed BLAKE3 (hex) of the original without padding under
``key.subkey("counter-index")``. The trade-off: whoever holds the run key can test a guessed original against
the index, as they can against any keyed pseudonym; they cannot list the originals, nor read the table.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import blake3

from veil.errors import AuditError, KeyError_, VeilError
from veil.keys import Key
from veil.keys.custodian import CustodianPrivateKey, CustodianPublicKey
from veil.keys.envelope import envelope_info, open_bytes, seal_bytes, symmetric_seal

__all__ = [
    "CUSTODIAN_MAGIC",
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
    "counter_digest",
    "custodian_records",
    "index_path",
    "index_parts",
    "read_counter_index",
    "seal_custodian_record",
    "table_parts",
    "write_counter_index",
    "write_custodian_table",
    "write_index_part",
]

REID_MAGIC = b"VEILREID"
REID_VERSION = 1
_KEY_ID_SIZE = 8  # Key.key_id is 16 hex digits
_HEADER_SIZE = len(REID_MAGIC) + 1 + _KEY_ID_SIZE
_NONCE_SIZE = 12
_TAG_SIZE = 16
CUSTODIAN_MAGIC = b"VEILRTC1"
_REID_CONTEXT = b"reid-table"
_INDEX_CONTEXT = b"counter-index"
_INDEX_PART = "counters-index"
_LENGTH = struct.Struct(">I")

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
                    sealer: Key | ReidSealer | CustodianPublicKey, part: str = "") -> Path:
    """Seals one shard's (kind, new, original) rows into ``journal/shard-N.bin`` (atomic, mode 0600); with
    ``part``, into ``shard-N.PART.bin``, merged with the rows that part already holds (that needs the key).

    Sealed to a custodian public key, the part cannot be read back: the rows are appended to it as one more
    record (with or without ``part``), the records already there kept as they are."""
    folder = Path(journal)
    folder.mkdir(mode=0o700, parents=False, exist_ok=True)
    rows = {(kind, normalise(new), normalise(original)) for kind, new, original in pairs}
    target = folder / (f"shard-{shard:08d}.{part}.bin" if part else f"shard-{shard:08d}.bin")
    if isinstance(sealer, CustodianPublicKey):
        earlier = custodian_records(target, sealer.key_id) if target.exists() else []
        write_custodian_table(target, [*earlier, seal_custodian_record(sorted(rows), sealer)])
        return target
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


def _payload(rows: Sequence[tuple[str, bytes, bytes]]) -> bytes:
    return json.dumps(
        {"rows": [[kind, _encode_value(new), _encode_value(original)] for kind, new, original in rows]},
        separators=(",", ":"),
    ).encode("utf-8")


def seal(rows: Sequence[tuple[str, bytes, bytes]], key: Key) -> bytes:
    """The table file's bytes for ``rows`` (kind, new, original), sealed under ``key``'s ``reid-table`` sub-key."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    payload = _payload(rows)
    header = _header(key)
    nonce = os.urandom(_NONCE_SIZE)
    return header + nonce + AESGCM(key.subkey("reid-table")).encrypt(nonce, payload, header)


def write_sealed(target: Path, rows: Sequence[tuple[str, bytes, bytes]], key: Key) -> None:
    """Seals ``rows`` into ``target`` atomically (mode 0600): a reader sees the old table or the new one."""
    _write_atomic(target, seal(rows, key))


def _write_atomic(target: Path, data: bytes) -> None:
    """tmp file (mode 0600, same directory) + fsync + rename, so a reader sees the old table or the new one."""
    import tempfile  # here: a run's start-up does not import it (and random) for a table it may never write

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


def read_reid_table(
    path: PathLike, opener: bytes | Key | ReidSealer | CustodianPrivateKey
) -> list[tuple[str, str, str]]:
    """The rows (kind, new, original) of an encrypted re-identification table: a single-user table opened with
    the run key (``Key``, its material, or a :class:`ReidSealer`), a custodian table with the custodian's
    private key (rows deduplicated and sorted).

    Raises ``KeyError_`` for a table written with another key or sealed for the other kind of key (the message
    names the key needed), ``ReidTableError`` for a file that is not a table, was altered or is damaged.
    """
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise ReidTableError(f"{path}: cannot read the re-identification table: {exc.strerror}") from None
    if blob[: len(CUSTODIAN_MAGIC)] == CUSTODIAN_MAGIC:
        return _read_custodian_table(path, blob, opener)
    if isinstance(opener, CustodianPrivateKey):
        if blob[: len(REID_MAGIC)] == REID_MAGIC and len(blob) >= _HEADER_SIZE:
            raise KeyError_(
                f"{path}: a single-user re-identification table, sealed with run key "
                f"{blob[len(REID_MAGIC) + 1:_HEADER_SIZE].hex()}: open it with that key (--key), not with "
                f"custodian key {opener.key_id}"
            )
        raise ReidTableError(f"{path}: not a veil re-identification table")
    key = opener if isinstance(opener, (Key, ReidSealer)) else Key(bytes(opener))
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


# --- custodian mode ---------------------------------------------------------------------------------------------


def seal_custodian_record(rows: Sequence[tuple[str, bytes, bytes]], custodian: CustodianPublicKey) -> bytes:
    """One record of a custodian table (length prefix included): ``rows`` sealed to ``custodian``."""
    envelope = seal_bytes(_payload(rows), custodian, _REID_CONTEXT)
    return _LENGTH.pack(len(envelope)) + envelope


def _frames(path: PathLike, blob: bytes) -> list[tuple[int, int]]:
    """(start, end) of each record's envelope in a custodian table's bytes; ``ReidTableError`` when cut."""
    frames, offset = [], len(CUSTODIAN_MAGIC)
    while offset < len(blob):
        if offset + _LENGTH.size > len(blob):
            raise ReidTableError(f"{path}: re-identification table is truncated")
        (length,) = _LENGTH.unpack_from(blob, offset)
        start, offset = offset + _LENGTH.size, offset + _LENGTH.size + length
        if offset > len(blob):
            raise ReidTableError(f"{path}: re-identification table is truncated")
        frames.append((start, offset))
    return frames


def _custodian_of(path: PathLike, envelope: bytes) -> str:
    try:
        mode, key_id = envelope_info(envelope, str(path))
    except AuditError as exc:
        raise ReidTableError(str(exc)) from None
    if mode != "custodian":
        raise ReidTableError(f"{path}: a record of this re-identification table is not sealed to a custodian")
    return key_id


def custodian_records(path: PathLike, custodian_key_id: str) -> list[bytes]:
    """The records of a custodian table or journal part, byte for byte (length prefix included), without
    opening them; ``KeyError_`` when the file is a single-user table or sealed to another custodian key."""
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise ReidTableError(f"{path}: cannot read the re-identification table: {exc.strerror}") from None
    if blob[: len(REID_MAGIC)] == REID_MAGIC and len(blob) >= _HEADER_SIZE:
        raise KeyError_(
            f"{path}: a single-user re-identification table (run key {blob[len(REID_MAGIC) + 1:_HEADER_SIZE].hex()}"
            f"); a run sealed to custodian key {custodian_key_id} cannot add to it: give another --reid-table"
        )
    if blob[: len(CUSTODIAN_MAGIC)] != CUSTODIAN_MAGIC:
        raise ReidTableError(f"{path}: not a veil re-identification table")
    records = []
    for start, end in _frames(path, blob):
        sealed_to = _custodian_of(path, blob[start:end])
        if sealed_to != custodian_key_id:
            raise KeyError_(f"{path}: re-identification table sealed to custodian key {sealed_to}, not "
                            f"{custodian_key_id}: give another --reid-table (one table per custodian)")
        records.append(blob[start - _LENGTH.size:end])
    return records


def write_custodian_table(target: PathLike, records: Sequence[bytes]) -> None:
    """A custodian table (or journal part) of ``records`` (from :func:`seal_custodian_record` or
    :func:`custodian_records`), written atomically with mode 0600."""
    _write_atomic(Path(target), CUSTODIAN_MAGIC + b"".join(records))


def _read_custodian_table(path: PathLike, blob: bytes, opener: object) -> list[tuple[str, str, str]]:
    frames = _frames(path, blob)
    if not isinstance(opener, CustodianPrivateKey):
        sealed_to = _custodian_of(path, blob[frames[0][0]:frames[0][1]]) if frames else "(none recorded)"
        raise KeyError_(f"{path}: re-identification table sealed to custodian key {sealed_to}; the run key cannot "
                        f"open it: give the custodian's private key (--custodian-key NAME.key)")
    rows: set[tuple[str, str, str]] = set()
    for start, end in frames:
        try:
            payload = open_bytes(blob[start:end], opener, _REID_CONTEXT, str(path))
        except AuditError as exc:
            raise ReidTableError(str(exc)) from None
        try:
            rows.update((str(kind), _decode_value(new), _decode_value(original))
                        for kind, new, original in json.loads(payload)["rows"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ReidTableError(f"{path}: re-identification table payload is malformed: {exc}") from None
    return sorted(rows, key=lambda row: tuple(v.encode("utf-8", "surrogateescape") for v in row))


def index_path(table: PathLike) -> Path:
    """``TABLE.counters``: the counter index beside a custodian table."""
    target = Path(table)
    return target.with_name(target.name + ".counters")


def table_parts(journal: Path) -> list[Path]:
    """The journal's re-identification parts (``shard-N.bin``, ``shard-N.counters.bin``), not its index parts."""
    if not journal.is_dir():
        return []
    return sorted(p for p in journal.glob("shard-*.bin") if not p.name.endswith(f".{_INDEX_PART}.bin"))


def index_parts(journal: Path) -> list[Path]:
    """The journal's counter-index parts (``shard-N.counters-index.bin``)."""
    return sorted(journal.glob(f"shard-*.{_INDEX_PART}.bin")) if journal.is_dir() else []


def counter_digest(index_key: bytes, original: bytes) -> bytes:
    """The index's digest of an original (padding removed): keyed BLAKE3 under ``key.subkey("counter-index")``,
    64 hex digits as ASCII bytes."""
    return blake3.blake3(normalise(original), key=index_key).hexdigest().encode("ascii")


def write_counter_index(target: PathLike, rows: Sequence[tuple[str, bytes, bytes]], key: Key) -> None:
    """The counter index (kind, pseudonym, digest) sealed under the run key, written atomically (mode 0600)."""
    payload = json.dumps({"rows": [[kind, _encode_value(new), digest.decode("ascii")] for kind, new, digest in rows]},
                         separators=(",", ":")).encode("utf-8")
    _write_atomic(Path(target), seal_bytes(payload, symmetric_seal(key, "counter-index"), _INDEX_CONTEXT))


def read_counter_index(path: PathLike, key: Key) -> list[tuple[str, bytes, bytes]]:
    """The rows (kind, pseudonym, digest) of a counter index; ``KeyError_`` for another run key."""
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise ReidTableError(f"{path}: cannot read the counter index: {exc.strerror}") from None
    try:
        payload = open_bytes(blob, symmetric_seal(key, "counter-index"), _INDEX_CONTEXT, str(path))
    except AuditError as exc:
        raise ReidTableError(str(exc)) from None
    try:
        return [(str(kind), _decode_value(new).encode("utf-8", "surrogateescape"), str(digest).encode("ascii"))
                for kind, new, digest in json.loads(payload)["rows"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ReidTableError(f"{path}: counter index payload is malformed: {exc}") from None


def write_index_part(journal: PathLike, shard: int, rows: Sequence[tuple[str, bytes, bytes]], key: Key) -> Path:
    """Seals one shard's counter-index rows into ``journal/shard-N.counters-index.bin``, merged with the rows
    that part already holds."""
    folder = Path(journal)
    folder.mkdir(mode=0o700, parents=False, exist_ok=True)
    target = folder / f"shard-{shard:08d}.{_INDEX_PART}.bin"
    merged = set(rows)
    if target.exists():
        merged.update(read_counter_index(target, key))
    write_counter_index(target, sorted(merged), key)
    return target
