"""The key service of a run: it holds the project key, hands each worker process its derived sub-keys once, numbers
counter-style pseudonyms and collects re-identification rows (sealed by :mod:`veil.keys.reid`).

A plain class, with no Ray: it runs in a test, in this process, behind the manager of a local pool
(:mod:`veil.keys.server`) or as the run's Ray actor (:mod:`veil.keys.actor`). The master key never leaves the
service: workers get :class:`WorkerKeys` (the ``uid``/``id``/``date``/``audit`` sub-keys) and build their
:class:`~veil.keys.KeyedFunctions` from those.

Counter pseudonyms (``SUBJ-{counter:6}``) are rows of kind ``pseudonym``: the numbers handed out in a call for a
shard are sealed into ``TABLE.journal/shard-N.counters.bin`` before the call returns, so before any output
carries them. A run that uses counters first loads the table and its journal (:meth:`KeyService.load_reid`):
a value numbered before keeps its number, new values get numbers above the highest used.

Custodian mode (``KeyService(..., seal_to=CustodianPublicKey)``, a run given ``--custodian-public``): every row
is sealed to the custodian's public key, in the journal and in the table, and the service never opens the table
(it cannot; see :mod:`veil.keys.reid`). Counter numbers then come from the counter index beside the table
(``TABLE.counters``): a value is found by the keyed digest of its original under the run key. Holding the run
key lets one test a guessed original against that index, as against any keyed pseudonym; it does not list the
originals, nor open the table.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from veil.errors import KeyError_
from veil.keys import CounterFormat, Key, KeyedFunctions
from veil.keys.custodian import CustodianPublicKey
from veil.keys.reid import (
    PathLike,
    ReidSealer,
    ReidTableError,
    counter_digest,
    custodian_records,
    index_parts,
    index_path,
    journal_dir,
    normalise,
    read_counter_index,
    read_reid_table,
    seal_custodian_record,
    table_parts,
    write_counter_index,
    write_custodian_table,
    write_index_part,
    write_reid_part,
    write_sealed,
)
from veil.system import LazyLogger

__all__ = [
    "KeyService",
    "WorkerKeys",
    "functions_from_worker_keys",
    "COUNTER_KIND",
]

logger = LazyLogger(__name__)

_WORKER_PURPOSES = ("uid", "id", "date", "audit")
COUNTER_KIND = "pseudonym"  # the one numbering every counter pseudonym of a run shares


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



def functions_from_worker_keys(keys: WorkerKeys) -> KeyedFunctions:
    """The same ``KeyedFunctions`` as ``KeyedFunctions(Key(master), ...)``, built without the master key.

    ``KeyedFunctions`` reads only ``key.key_id`` and ``key.subkey(purpose)``; ``WorkerKeys`` answers both, so
    its own constructor runs (same validation, same attributes). Should it ever ask for a purpose a worker
    does not hold, ``WorkerKeys.subkey`` fails loudly rather than build something different.
    """
    return KeyedFunctions(cast(Key, keys), **keys.key_parameters())


class KeyService:
    """Holds the key of a run; serves worker keys, counter pseudonyms and the re-identification table.

    A plain class, testable without Ray; :func:`veil.keys.actor.get_or_create_actor` makes it the named actor of
    a run. ``key_material`` may be ``None`` and given later with :meth:`load_key`: that is how the actor is made, so
    the key never sits in Ray's actor-creation record (kept by the GCS, persisted where GCS fault tolerance is
    on) and an actor restarted by Ray comes back without a key, refusing work rather than starting an empty
    table.

    Rows live in memory and, per shard, in the table's journal (:meth:`set_journal`); :meth:`write_reid_table`
    merges them with the table already on disk, so a resumed run's table holds every row. Counter numbers are
    such rows too: :meth:`load_reid` reads the table and its journal back, and the numbering goes on from them.

    With ``seal_to`` (a custodian's public key) rows are sealed to the custodian instead: the journal parts
    and the table are append-only records the service never opens, and counter numbers go on from the counter
    index (module docstring).

    It pickles (for the process that serves it to a local pool, :mod:`veil.engine.local`) with its key: never
    send it anywhere but to a process of this machine and user.
    """

    def __init__(
        self,
        key_material: bytes | None,
        pseudonym_pattern: str | None = None,
        shift_range: tuple[int, int] | None = None,
        *,
        seal_to: CustodianPublicKey | None = None,
    ) -> None:
        if seal_to is not None and not isinstance(seal_to, CustodianPublicKey):
            raise TypeError(f"seal_to is a custodian public key, not {type(seal_to).__name__}")
        self._seal_to = seal_to
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
        # Custodian mode: counter-index rows (kind, new, digest), and the rows already sealed (journal or table).
        self._index: dict[tuple[str, bytes, bytes], None] = {}
        self._sealed: set[tuple[str, bytes, bytes]] = set()
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

    def custodian(self) -> str | None:
        """The key id of the custodian the rows are sealed to, or None (single-user mode)."""
        return self._seal_to.key_id if self._seal_to is not None else None

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
        added: list[tuple[str, bytes, bytes]] = []
        with self._lock:
            for kind, new, original in pairs:
                if not isinstance(kind, str) or not kind:
                    raise ValueError(f"re-identification kind must be a non-empty string, not {kind!r}")
                added.append((kind, normalise(new), normalise(original)))
                self._add_row(*added[-1])
            count = len(self._rows)
        if shard is not None and self._journal is not None and pairs:
            if self._seal_to is None:
                write_reid_part(self._journal, shard, pairs, key)
            else:
                write_reid_part(self._journal, shard, pairs, self._seal_to)
                with self._lock:
                    self._sealed.update(added)
        return count

    def set_journal(self, table: PathLike) -> str:
        """Journal this run's rows beside ``table`` (an absolute path); returns the journal folder."""
        if not Path(table).is_absolute():
            raise ReidTableError(f"{table}: the re-identification table needs absolute paths")
        if self._seal_to is not None:
            self._check_custodian_table(Path(table))  # another custodian's table is refused before any work
        self._journal = journal_dir(table)
        return str(self._journal)

    def _check_custodian_table(self, table: Path) -> None:
        """``KeyError_`` unless the table and its journal hold only records sealed to this run's custodian
        (their headers are read, nothing is opened)."""
        custodian = cast(CustodianPublicKey, self._seal_to)
        for source in ([table] if table.exists() else []) + table_parts(journal_dir(table)):
            custodian_records(source, custodian.key_id)

    def reid_sealer(self) -> ReidSealer | CustodianPublicKey:
        """What worker processes of this machine that journal their own shards seal with: the ``reid-table``
        sub-key, or in custodian mode the custodian's public key."""
        key = self._require_key()
        if self._seal_to is not None:
            return self._seal_to
        return ReidSealer(key.key_id, key.subkey("reid-table"))

    def load_reid(self, table: PathLike) -> int:
        """Reads the rows of ``table`` (when it exists) and of its journal (a killed run's shards) into memory,
        so counter pseudonyms go on from the numbers already handed out. Returns the rows now held."""
        key = self._require_key()
        target = Path(table)
        if not target.is_absolute():
            raise ReidTableError(f"{table}: the re-identification table needs absolute paths")
        if self._seal_to is not None:
            return self._load_index(target, key)
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

    def _load_index(self, target: Path, key: Key) -> int:
        """Custodian mode's :meth:`load_reid`: the counter index of ``target`` and of its journal."""
        self._check_custodian_table(target)
        index, journal = index_path(target), journal_dir(target)
        if target.exists() and not index.exists():
            raise ReidTableError(f"{index}: the counter index of this custodian-sealed table is missing; counter "
                                 f"numbers cannot go on without it (restore it beside the table)")
        earlier: list[tuple[str, bytes, bytes]] = []
        for source in ([index] if index.exists() else []) + index_parts(journal):
            earlier.extend(read_counter_index(source, key))  # another run key's index: refused
        with self._lock:
            if self._counters:
                raise ReidTableError("load the re-identification table before numbering any value")
            self._index.update(dict.fromkeys(earlier))
            return len(self._index)

    def _numbers(self, kind: str, fmt: CounterFormat) -> dict[bytes, int]:
        """The numbers of ``kind`` (under the lock): on first use, those the rows already hold in ``fmt``; in
        custodian mode those of the counter index, by digest."""
        numbers = self._counters.get(kind)
        if numbers is None:
            numbers = self._counters[kind] = {}
            highest = 0
            for row_kind, new, original in self._index if self._seal_to is not None else self._rows:
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
        index: list[tuple[str, bytes, bytes]] = []
        index_key = key.subkey("counter-index") if self._seal_to is not None else None
        with self._lock:
            fmt = self._counter_format.setdefault(kind, asked)
            if fmt != asked:
                raise ValueError(f"{kind} counters are {fmt.pattern!r}, not {asked.pattern!r}")
            numbers = self._numbers(kind, fmt)
            out: list[bytes] = []
            for value in values:
                original = normalise(value)
                if not original:
                    out.append(b"")
                    continue
                found = original if index_key is None else counter_digest(index_key, original)
                number = numbers.get(found)
                if number is None:
                    new = fmt.format(self._counter_next[kind])  # refuses a number past the widest checked
                    number = numbers[found] = self._counter_next[kind]
                    self._counter_next[kind] += 1
                else:
                    new = fmt.format(number)
                self._add_row(kind, new, original)
                rows.append((kind, new, original))
                if index_key is not None:
                    index.append((kind, new, found))
                    self._index[index[-1]] = None
                out.append(new)
        if shard is not None and self._journal is not None and rows:
            if self._seal_to is None:
                write_reid_part(self._journal, shard, rows, key, part="counters")
            else:
                # The index first: killed between the two, a number is reserved with no row, never reused.
                write_index_part(self._journal, shard, index, key)
                write_reid_part(self._journal, shard, rows, self._seal_to, part="counters")
                with self._lock:
                    self._sealed.update(rows)
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
        if self._seal_to is not None:
            return self._write_custodian_table(target, journal, key)
        parts = sorted(journal.glob("shard-*.bin")) if journal.is_dir() else []
        earlier: list[tuple[str, str, str]] = []
        for source in ([target] if target.exists() else []) + parts:
            earlier.extend(read_reid_table(source, key))  # another key's table or a damaged part: refused
        with self._lock:
            for kind, new, original in earlier:
                self._add_row(kind, new.encode("utf-8", "surrogateescape"),
                              original.encode("utf-8", "surrogateescape"))
            rows = sorted(self._rows)
        write_sealed(target, rows, key)
        _remove_journal(journal, parts)
        logger.info("re-identification table: %d rows written (key %s)", len(rows), key.key_id)
        return len(rows)

    def _write_custodian_table(self, target: Path, journal: Path, key: Key) -> int:
        """Custodian mode's :meth:`write_reid_table`: the table's records and the journal's, kept unopened,
        then one record of the rows not journaled yet; the counter index merged beside it. Returns the rows
        this service holds (those journaled by pool workers are in the table, uncounted)."""
        custodian = cast(CustodianPublicKey, self._seal_to)
        parts, index_journal = table_parts(journal), index_parts(journal)
        records: list[bytes] = []
        for source in ([target] if target.exists() else []) + parts:
            records.extend(custodian_records(source, custodian.key_id))  # another custodian's: refused
        index = index_path(target)
        earlier: list[tuple[str, bytes, bytes]] = []
        for source in ([index] if index.exists() else []) + index_journal:
            earlier.extend(read_counter_index(source, key))
        with self._lock:
            self._index.update(dict.fromkeys(earlier))
            fresh = [row for row in sorted(self._rows) if row not in self._sealed]
            held, index_rows = len(self._rows), sorted(self._index)
        if fresh or not records:  # never a table without a record: it names its custodian
            records.append(seal_custodian_record(fresh, custodian))
        if index.exists() or not target.exists() or index_rows:
            write_counter_index(index, index_rows, key)
        else:  # left missing, so that a run numbering values is refused rather than numbering from 1 again
            logger.warning("re-identification table: its counter index %s is missing", index.name)
        write_custodian_table(target, records)
        with self._lock:
            self._sealed.update(fresh)
        _remove_journal(journal, parts + index_journal)
        logger.info("re-identification table: %d records sealed to custodian key %s", len(records),
                    custodian.key_id)
        return held


def _remove_journal(journal: Path, parts: Sequence[Path]) -> None:
    """The journal's parts, now in the table, then its half-written parts and the folder itself."""
    for part in parts:
        part.unlink()
    if journal.is_dir():
        for stray in journal.glob(".shard-*.tmp"):  # half-written parts of a killed run
            with contextlib.suppress(OSError):
                stray.unlink()
    with contextlib.suppress(OSError):
        journal.rmdir()
