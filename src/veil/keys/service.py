"""The key/mapping service of a run: one named Ray actor that holds the project key, hands each worker process
its derived sub-keys once, numbers counter-style pseudonyms, collects re-identification pairs and writes them
encrypted, apart from the outputs.

Everything here is a plain class or function; Ray is imported only where an actor is made or asked, so the
service runs in a test or in-process without Ray. The master key never leaves the service: workers get
:class:`WorkerKeys` (the ``uid``/``id``/``date``/``audit`` sub-keys) and build their
:class:`~veil.keys.KeyedFunctions` from those.

Re-identification table file (never inside the output tree)::

    b"VEILREID" | version (1 byte) | key id (8 bytes) | nonce (12 bytes) | AES-256-GCM(JSON) + tag (16 bytes)

The first 17 bytes are the associated data, so the header cannot be altered either. The AES key is
``Key(material).subkey("reid-table")`` (BLAKE3 derive_key, context ``veil 2026-11 reid-table``). The JSON is
``{"rows": [[kind, new, original], ...]}``, sorted; a value that is not UTF-8 is written as ``{"b64": ...}``.

Journal: while a run goes on, each shard's rows are sealed the same way into ``TABLE.journal/shard-N.bin``
(beside the table, so apart from SRC and DST too) *before* the shard's audit part marks it done; at the end of
the run the table is rewritten as the union of the table already there, every journal part and the rows in
memory, and the journal removed. So a run killed and resumed loses no row, and a table only grows.

Counter pseudonyms (``SUBJ-{counter:6}``) are rows of kind ``pseudonym``: the numbers handed out in a call for a
shard are sealed into ``TABLE.journal/shard-N.counters.bin`` before the call returns, so before any output
carries them. A run that uses counters first loads the table and its journal (:meth:`KeyService.load_reid`):
a value numbered before keeps its number, new values get numbers above the highest used.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from veil.errors import KeyError_, VeilError
from veil.keys import CounterFormat, Key, KeyedFunctions

__all__ = [
    "KeyService",
    "ReidTableError",
    "WorkerKeys",
    "functions_from_worker_keys",
    "get_or_create_actor",
    "read_reid_table",
    "ReidSealer",
    "journal_dir",
    "write_reid_part",
    "worker_functions",
    "REID_MAGIC",
    "REID_VERSION",
    "COUNTER_KIND",
]

logger = logging.getLogger(__name__)

REID_MAGIC = b"VEILREID"
REID_VERSION = 1
_KEY_ID_SIZE = 8  # Key.key_id is 16 hex digits
_HEADER_SIZE = len(REID_MAGIC) + 1 + _KEY_ID_SIZE
_NONCE_SIZE = 12
_TAG_SIZE = 16
_WORKER_PURPOSES = ("uid", "id", "date", "audit")
COUNTER_KIND = "pseudonym"  # the one numbering every counter pseudonym of a run shares

PathLike = str | os.PathLike[str]


class ReidTableError(VeilError):
    """A re-identification table that cannot be written where asked, or read: not one, altered, damaged."""


@dataclass(frozen=True)
class WorkerKeys:
    """What a worker needs to run the keyed functions: the key id and per-purpose sub-keys, never the key.

    It answers ``key_id`` and ``subkey(purpose)`` like a :class:`~veil.keys.Key` restricted to the worker
    purposes, so :class:`~veil.keys.KeyedFunctions` can be built from it unchanged.
    """

    key_id: str
    uid_key: bytes = field(repr=False)
    id_key: bytes = field(repr=False)
    date_key: bytes = field(repr=False)
    audit_key: bytes = field(repr=False)
    pseudonym_pattern: str | None = None
    shift_range: tuple[int, int] | None = None

    @classmethod
    def derive(
        cls, key: Key, pseudonym_pattern: str | None = None, shift_range: tuple[int, int] | None = None
    ) -> WorkerKeys:
        """The worker keys of ``key``."""
        return cls(
            key_id=key.key_id,
            uid_key=key.subkey("uid"),
            id_key=key.subkey("id"),
            date_key=key.subkey("date"),
            audit_key=key.subkey("audit"),
            pseudonym_pattern=pseudonym_pattern,
            shift_range=None if shift_range is None else (int(shift_range[0]), int(shift_range[1])),
        )

    def subkey(self, purpose: str) -> bytes:
        """The sub-key for a worker purpose; any other purpose (``reid-table``, ...) is refused."""
        if purpose not in _WORKER_PURPOSES:
            raise KeyError_(f"worker keys hold no {purpose!r} sub-key, only {', '.join(_WORKER_PURPOSES)}")
        return cast(bytes, getattr(self, f"{purpose}_key"))

    def key_parameters(self) -> dict[str, Any]:
        """Keyword arguments for ``KeyedFunctions``: only those set, so its defaults apply otherwise."""
        out: dict[str, Any] = {}
        if self.pseudonym_pattern is not None:
            out["pseudonym_pattern"] = self.pseudonym_pattern
        if self.shift_range is not None:
            out["shift_range"] = self.shift_range
        return out


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
    rows = {(kind, _normalise(new), _normalise(original)) for kind, new, original in pairs}
    target = folder / (f"shard-{shard:08d}.{part}.bin" if part else f"shard-{shard:08d}.bin")
    if part and target.exists():
        # A shard run again (its worker died) may ask for fewer values: the part keeps every number given out.
        rows.update((kind, new.encode("utf-8", "surrogateescape"), original.encode("utf-8", "surrogateescape"))
                    for kind, new, original in read_reid_table(target, cast(Key, sealer)))
    _write_atomic(target, _seal(sorted(rows), cast(Key, sealer)))
    return target


def functions_from_worker_keys(keys: WorkerKeys) -> KeyedFunctions:
    """The same ``KeyedFunctions`` as ``KeyedFunctions(Key(master), ...)``, built without the master key.

    ``KeyedFunctions`` reads only ``key.key_id`` and ``key.subkey(purpose)``; ``WorkerKeys`` answers both, so
    its own constructor runs (same validation, same attributes). Should it ever ask for a purpose a worker
    does not hold, ``WorkerKeys.subkey`` fails loudly rather than build something different.
    """
    return KeyedFunctions(cast(Key, keys), **keys.key_parameters())


def _normalise(value: bytes | str) -> bytes:
    """The value as bytes, without DICOM padding: PS3.5 6.2 makes leading and trailing spaces of SH/LO
    insignificant, and UI values are padded with NUL, so ``b"ABC "`` and ``b"ABC"`` are one identifier."""
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    return raw.strip(b" \x00")


class KeyService:
    """Holds the key of a run; serves worker keys, counter pseudonyms and the re-identification table.

    A plain class, testable without Ray; :func:`get_or_create_actor` makes it the named actor of a run.
    ``key_material`` may be ``None`` and given later with :meth:`load_key`: that is how the actor is made, so
    the key never sits in Ray's actor-creation record (kept by the GCS, persisted where GCS fault tolerance is
    on) and an actor restarted by Ray comes back without a key, refusing work rather than starting an empty
    table.

    Rows live in memory and, per shard, in the table's journal (:meth:`set_journal`); :meth:`write_reid_table`
    merges them with the table already on disk, so a resumed run's table holds every row. Counter numbers are
    such rows too: :meth:`load_reid` reads the table and its journal back, and the numbering goes on from them.

    It pickles (for the process that serves it to a local pool, :mod:`veil.engine`) with its key: never send
    it anywhere but to a process of this machine and user.
    """

    def __init__(
        self,
        key_material: bytes | None,
        pseudonym_pattern: str | None = None,
        shift_range: tuple[int, int] | None = None,
    ) -> None:
        self._pattern = pseudonym_pattern
        self._shift_range = None if shift_range is None else (int(shift_range[0]), int(shift_range[1]))
        self._key: Key | None = None
        self._worker_keys: WorkerKeys | None = None
        self._lock = threading.Lock()
        # (kind, new, original) in first-seen order; a dict keeps order and deduplicates.
        self._rows: dict[tuple[str, bytes, bytes], None] = {}
        self._original_of: dict[tuple[str, bytes], bytes] = {}
        self._collisions = 0
        self._counters: dict[str, dict[bytes, int]] = {}
        self._counter_next: dict[str, int] = {}
        self._counter_format: dict[str, CounterFormat] = {}
        self._workers_served = 0
        self._journal: Path | None = None
        if key_material is not None:
            self.load_key(key_material)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def load_key(self, key_material: bytes) -> str:
        """Gives the service its key (once; the same key again is a no-op); returns the key id."""
        key = Key(bytes(key_material))
        with self._lock:
            if self._key is not None:
                if self._key != key:
                    raise KeyError_(f"the key service already holds key {self._key.key_id}, not {key.key_id}")
                return key.key_id
            worker_keys = WorkerKeys.derive(key, self._pattern, self._shift_range)
            # Build once here, so a bad pattern or shift range is refused now rather than in every worker.
            functions_from_worker_keys(worker_keys)
            self._key, self._worker_keys = key, worker_keys
        return key.key_id

    def describe(self) -> tuple[str | None, str | None, tuple[int, int] | None]:
        """(key id or None before :meth:`load_key`, pseudonym pattern, shift range): to check an actor found
        by name was made for this run."""
        return (self._key.key_id if self._key else None, self._pattern, self._shift_range)

    def _require_key(self) -> Key:
        if self._key is None:
            raise KeyError_("the key service holds no key (was it restarted?); start the run again")
        return self._key

    def worker_keys(self) -> WorkerKeys:
        """The sub-keys a worker needs, without the master key; each worker process asks once."""
        self._require_key()
        with self._lock:
            self._workers_served += 1
        return cast(WorkerKeys, self._worker_keys)

    def _add_row(self, kind: str, new: bytes, original: bytes) -> None:
        row = (kind, new, original)
        if row in self._rows:
            return
        self._rows[row] = None
        seen = self._original_of.setdefault((kind, new), original)
        if seen != original:
            # Two originals behind one pseudonym (a short {hash:N}); logged by kind only, never by value.
            self._collisions += 1
            logger.warning("re-identification table: a %s pseudonym stands for more than one original", kind)

    def record_reid(self, pairs: Sequence[tuple[str, bytes, bytes]], shard: int | None = None) -> int:
        """Adds (kind, new, original) rows, e.g. ``("PatientID", b"SUBJ-000001", b"12345")``; deduplicated
        after removing DICOM padding. With ``shard`` and a journal (:meth:`set_journal`), the shard's rows are
        also sealed into the journal before this returns. Returns the number of rows in the table."""
        key = self._require_key()
        with self._lock:
            for kind, new, original in pairs:
                if not isinstance(kind, str) or not kind:
                    raise ValueError(f"re-identification kind must be a non-empty string, not {kind!r}")
                self._add_row(kind, _normalise(new), _normalise(original))
            count = len(self._rows)
        if shard is not None and self._journal is not None and pairs:
            write_reid_part(self._journal, shard, pairs, key)
        return count

    def set_journal(self, table: PathLike) -> str:
        """Journal this run's rows beside ``table`` (an absolute path); returns the journal folder."""
        if not Path(table).is_absolute():
            raise ReidTableError(f"{table}: the re-identification table needs absolute paths")
        self._journal = journal_dir(table)
        return str(self._journal)

    def reid_sealer(self) -> ReidSealer:
        """The sealing sub-key for worker processes of this machine that journal their own shards."""
        key = self._require_key()
        return ReidSealer(key.key_id, key.subkey("reid-table"))

    def load_reid(self, table: PathLike) -> int:
        """Reads the rows of ``table`` (when it exists) and of its journal (a killed run's shards) into memory,
        so counter pseudonyms go on from the numbers already handed out. Returns the rows now held."""
        key = self._require_key()
        target = Path(table)
        if not target.is_absolute():
            raise ReidTableError(f"{table}: the re-identification table needs absolute paths")
        journal = journal_dir(target)
        sources = ([target] if target.exists() else []) + (
            sorted(journal.glob("shard-*.bin")) if journal.is_dir() else []
        )
        earlier: list[tuple[str, str, str]] = []
        for source in sources:
            earlier.extend(read_reid_table(source, key))  # another key's table or a damaged part: refused
        with self._lock:
            if self._counters:
                raise ReidTableError("load the re-identification table before numbering any value")
            for kind, new, original in earlier:
                self._add_row(kind, new.encode("utf-8", "surrogateescape"),
                              original.encode("utf-8", "surrogateescape"))
            return len(self._rows)

    def _numbers(self, kind: str, fmt: CounterFormat) -> dict[bytes, int]:
        """The numbers of ``kind`` (under the lock): on first use, those the rows already hold in ``fmt``."""
        numbers = self._counters.get(kind)
        if numbers is None:
            numbers = self._counters[kind] = {}
            highest = 0
            for row_kind, new, original in self._rows:
                number = fmt.number_of(new) if row_kind == kind else None
                if number is None:
                    continue
                highest = max(highest, number)
                if numbers.get(original, number) >= number:  # an original numbered twice keeps its first
                    numbers[original] = number
            self._counter_next[kind] = highest + 1
        return numbers

    def counter_pseudonyms(self, kind: str, values: Sequence[bytes], prefix: str, width: int, suffix: str = "",
                           shard: int | None = None) -> list[bytes]:
        """``prefix`` + a zero-padded number + ``suffix`` per value (``SUBJ-000123``), one call per shard.

        The same value (padding removed) always gets the same number of its kind; new values get the next
        numbers in the order they arrive (after the highest in the rows loaded by :meth:`load_reid`), so
        numbers are stable within a run and a resumed run, and across runs that share a table, but not
        otherwise (use keyed pseudonyms for that). Each pair is recorded for re-identification and, with
        ``shard`` and a journal, sealed into the shard's journal part before this returns. An empty value
        stays empty. ``width`` is the least number of digits (at most ``width`` + 3, then the counter is
        exhausted: ``CounterPseudonymError``). A kind keeps the format of its first call.
        """
        key = self._require_key()
        if width < 1:
            raise ValueError(f"counter width must be at least 1, not {width}")
        if not (prefix + suffix).isascii():
            raise ValueError(f"counter prefix and suffix {prefix!r}, {suffix!r} must be ASCII")
        asked = CounterFormat(prefix, width, suffix)
        rows: list[tuple[str, bytes, bytes]] = []
        with self._lock:
            fmt = self._counter_format.setdefault(kind, asked)
            if fmt != asked:
                raise ValueError(f"{kind} counters are {fmt.pattern!r}, not {asked.pattern!r}")
            numbers = self._numbers(kind, fmt)
            out: list[bytes] = []
            for value in values:
                original = _normalise(value)
                if not original:
                    out.append(b"")
                    continue
                number = numbers.get(original)
                if number is None:
                    new = fmt.format(self._counter_next[kind])  # refuses a number past the widest checked
                    number = numbers[original] = self._counter_next[kind]
                    self._counter_next[kind] += 1
                else:
                    new = fmt.format(number)
                self._add_row(kind, new, original)
                rows.append((kind, new, original))
                out.append(new)
        if shard is not None and self._journal is not None and rows:
            write_reid_part(self._journal, shard, rows, key, part="counters")
        return out

    def stats(self) -> dict[str, int]:
        """Counts for the run log: rows, pseudonym collisions, numbered values, worker processes served."""
        with self._lock:
            return {
                "reid_rows": len(self._rows),
                "reid_collisions": self._collisions,
                "counter_values": sum(len(n) for n in self._counters.values()),
                "workers_served": self._workers_served,
            }

    def write_reid_table(
        self, path: PathLike, forbid_under: PathLike | Sequence[PathLike] | None = None
    ) -> int:
        """Writes the encrypted table atomically with mode 0600; refuses a path inside any ``forbid_under``
        directory (the outputs). Returns the number of rows written.

        Paths must be absolute: in a run this executes in the actor's process, whose working directory is
        not the driver's (the actor is pinned to the driver's node, so an absolute path means the same file).
        """
        key = self._require_key()
        dirs: list[PathLike] = []
        if forbid_under is not None:
            dirs = [forbid_under] if isinstance(forbid_under, (str, os.PathLike)) else list(forbid_under)
        for given in (path, *dirs):
            if not Path(given).is_absolute():
                raise ReidTableError(f"{given}: the re-identification table needs absolute paths")
        target = Path(path).resolve()
        for directory in dirs:
            forbidden = Path(directory).resolve()
            if target == forbidden or target.is_relative_to(forbidden):
                raise ReidTableError(
                    f"{target}: the re-identification table is never written inside {forbidden}"
                )
        journal = journal_dir(target)
        parts = sorted(journal.glob("shard-*.bin")) if journal.is_dir() else []
        earlier: list[tuple[str, str, str]] = []
        for source in ([target] if target.exists() else []) + parts:
            earlier.extend(read_reid_table(source, key))  # another key's table or a damaged part: refused
        with self._lock:
            for kind, new, original in earlier:
                self._add_row(kind, new.encode("utf-8", "surrogateescape"),
                              original.encode("utf-8", "surrogateescape"))
            rows = sorted(self._rows)
        _write_atomic(target, _seal(rows, key))
        for part in parts:
            part.unlink()
        if journal.is_dir():
            for stray in journal.glob(".shard-*.tmp"):  # half-written parts of a killed run
                with contextlib.suppress(OSError):
                    stray.unlink()
        with contextlib.suppress(OSError):
            journal.rmdir()
        logger.info("re-identification table: %d rows written (key %s)", len(rows), key.key_id)
        return len(rows)


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


def _seal(rows: Sequence[tuple[str, bytes, bytes]], key: Key) -> bytes:
    payload = json.dumps(
        {"rows": [[kind, _encode_value(new), _encode_value(original)] for kind, new, original in rows]},
        separators=(",", ":"),
    ).encode("utf-8")
    header = _header(key)
    nonce = os.urandom(_NONCE_SIZE)
    return header + nonce + AESGCM(key.subkey("reid-table")).encrypt(nonce, payload, header)


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


def get_or_create_actor(
    key_material: bytes,
    pseudonym_pattern: str | None,
    shift_range: tuple[int, int] | None,
    name: str = "veil-keys",
    namespace: str = "veil",
) -> Any:
    """The run's named key-service actor, created on the driver's node if it does not exist yet.

    The actor owns no CPU, lives as long as its owner (not detached), is never restarted, and is pinned to
    this node so ``write_reid_table(path)`` writes on the machine that asked. The key goes to it by a method
    call, not in its creation record. An actor of that name made with another key or other parameters is
    refused (``KeyError_``).
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    expected = KeyService(key_material, pseudonym_pattern, shift_range).describe()  # validates locally first
    actor = (
        ray.remote(KeyService)
        .options(
            name=name,
            namespace=namespace,
            get_if_exists=True,
            lifetime="non_detached",
            num_cpus=0,
            max_restarts=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(
                node_id=ray.get_runtime_context().get_node_id(), soft=False
            ),
        )
        .remote(None, pseudonym_pattern, shift_range)
    )
    ray.get(actor.load_key.remote(key_material))
    found = ray.get(actor.describe.remote())
    if tuple(found) != expected:
        raise KeyError_(
            f"key service {namespace}/{name} was made for key {found[0]}, pattern {found[1]!r}, shift range "
            f"{found[2]}; this run has key {expected[0]}, pattern {expected[1]!r}, shift range {expected[2]}"
        )
    return actor


_worker_cache: dict[str, KeyedFunctions] = {}
_worker_cache_lock = threading.Lock()


def worker_functions(actor: Any) -> KeyedFunctions:
    """This process's ``KeyedFunctions``, asked of the key-service actor once per process and cached.

    Cached by actor id rather than name: a new actor under the same name (another run, another key) is asked
    again. A plain :class:`KeyService` (in-process runs, tests) is accepted and asked directly.
    """
    if isinstance(actor, KeyService):
        return functions_from_worker_keys(actor.worker_keys())
    import ray

    cache_key = actor._actor_id.hex()  # ActorHandle hashes and compares by this id too
    with _worker_cache_lock:
        functions = _worker_cache.get(cache_key)
        if functions is None:
            functions = _worker_cache[cache_key] = functions_from_worker_keys(
                ray.get(actor.worker_keys.remote())
            )
        return functions
