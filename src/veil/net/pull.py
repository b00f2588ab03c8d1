"""``veil pull``: studies from a PACS (C-FIND + C-MOVE or C-GET, or QIDO-RS + WADO-RS), de-identified into a
folder through the same engine as ``veil run``, then optionally sent on.

    WORK/spool/incoming/STUDY/SOP.dcm   retrieved instances (each renamed into place whole)
    WORK/retrieved                      the keyed digests of the studies retrieved whole (one per line, fsynced
                                        after the study's instances were synced: the commit point of a study)
    WORK/query                          the query's digest where the pull has no key (it stays out of DST)
    DST/.veil/pull/state.json           phase (retrieving, deidentifying, done), the query's keyed digest, counts

A killed pull goes on where it stopped: studies already retrieved are not asked for again, a half-retrieved
one is asked for again whole (the same instances land on the same paths), and a de-identification that was
running is resumed (the spool no longer changes once every study is in). WORK holds the originals and is
removed once DST is complete. Nothing printed or logged names a patient, a study or a value from a file.
"""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import blake3

from veil.errors import MalformedDicom, VeilError
from veil.net.retrieve import Query, RetrieveError
from veil.net.spool import Spool, append_durable, write_durable
from veil.system import sync_filesystem

__all__ = ["PullResult", "Source", "pull"]


class Source(Protocol):
    def label(self) -> str: ...

    def start(self, sink: Callable[[bytes], bool]) -> None: ...

    def find(self, keys: dict[str, str]) -> list[str]: ...

    def retrieve(self, study_uid: str, sink: Callable[[bytes], bool]) -> int: ...

    def close(self) -> None: ...


@dataclass
class PullResult:
    studies: int = 0
    retrieved_now: int = 0
    already: int = 0
    failed: list[str] = field(default_factory=list)  # messages without identifiers
    instances: int = 0
    summary: Any = None  # the engine's RunSummary, once de-identified
    complete: bool = False


def _state_path(dst: Path) -> Path:
    return dst / ".veil" / "pull" / "state.json"


def read_state(dst: Path) -> dict[str, Any]:
    try:
        data = json.loads(_state_path(dst).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_state(dst: Path, state: dict[str, Any]) -> None:
    path = _state_path(dst)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_durable(path, (json.dumps(state, sort_keys=True) + "\n").encode(), 0o644)


def _query_digest(query: Query, key: bytes | None) -> str:
    text = json.dumps([sorted(query.patient_ids), sorted(query.accessions), sorted(query.study_uids), query.dates,
                       sorted(query.modalities)]).encode()
    return (blake3.blake3(text, key=key) if key is not None else blake3.blake3(text)).hexdigest()[:32]


def _recorded_query(query_digest: str, digest_key: bytes | None, work: Path) -> str:
    """What DST's state must say for this query: its keyed digest; with no key, nothing (the digest of the
    query's patient IDs would be a guessable hash in DST), and then only the pull whose WORK still holds the
    same digest goes on."""
    if digest_key is not None:
        return query_digest
    try:
        same = (work / "query").read_text() == query_digest
    except OSError:
        same = False
    return "" if same else "(another query)"


class _Retrieved:
    """The append-only, fsynced list of studies retrieved whole."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            self.done = {line for line in path.read_text().splitlines() if line}
        except OSError:
            self.done = set()

    def add(self, digest: str) -> None:
        with self._lock:
            append_durable(self.path, digest)
            self.done.add(digest)


def make_sink(spool: Spool) -> Callable[[bytes], bool]:
    """Writes one retrieved instance into its study's folder (named by keyed digests), without a sync of its
    own: a study counts as retrieved only after one sync of the spool. An instance whose UIDs cannot be read is
    kept too (named by its content digest), for the engine to quarantine and record."""
    from veil.core._core import peek

    def sink(data: bytes) -> bool:
        try:
            info = peek(data, "retrieved")
            study, sop = str(info.get("study_instance_uid") or ""), str(info.get("sop_instance_uid") or "")
        except MalformedDicom:
            study = sop = ""
        if not study or not sop:
            study, sop = "unreadable", blake3.blake3(data).hexdigest()
        try:
            spool.receive(study, sop, data, sync=False)
        except OSError:
            return False
        return True

    return sink


def pull(source: Source, query: Query, dst: Path, work: Path, *, recipe: Any, key: Any, workers: int = 1,
         parallel: int = 2, progress: Callable[[str], None] | None = None, operator: str | None = None) -> PullResult:
    """Finds, retrieves and de-identifies (see the module docstring). ``source`` is a
    :class:`~veil.net.retrieve.DimseSource` or a :class:`~veil.net.retrieve.WebSource`; it is started here
    (the Storage SCP of a C-MOVE) and closed by the caller."""
    from veil.api import deidentify

    say = progress or (lambda _text: None)
    digest_key = key.subkey("audit") if key is not None else None
    query_digest = _query_digest(query, digest_key)
    state = read_state(dst)
    if state and state.get("query") != _recorded_query(query_digest, digest_key, work):
        raise VeilError(f"{dst} holds a pull of another query (or a finished pull without a key); pull into a "
                        "new folder")
    result = PullResult()
    if state.get("phase") == "done":
        result.complete, result.studies = True, int(state.get("studies", 0))
        result.already = result.studies
        return result
    spool = Spool(work, digest_key)
    retrieved = _Retrieved(work / "retrieved")
    recorded = query_digest if digest_key is not None else ""  # a keyless digest of patient IDs stays in WORK
    if digest_key is None:
        write_durable(work / "query", query_digest.encode())
    deidentifying = state.get("phase") == "deidentifying"
    if not deidentifying:
        _write_state(dst, {"phase": "retrieving", "query": recorded})
        found: dict[str, None] = {}  # every study once, in the order the queries found them
        for keys in query.matches():
            found.update(dict.fromkeys(source.find(keys)))
        uids = list(found)
        result.studies = len(uids)
        todo = [u for u in uids if spool.digest(u) not in retrieved.done]
        result.already = len(uids) - len(todo)
        say(f"{len(uids):,} studies match; {result.already:,} retrieved before, {len(todo):,} to retrieve")
        sink = make_sink(spool)
        source.start(sink)
        started = time.monotonic()

        def one(uid: str) -> int:
            count = source.retrieve(uid, sink)
            sync_filesystem(spool.incoming)  # the study's instances on disk before it counts as retrieved
            retrieved.add(spool.digest(uid))
            return count

        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            futures = [pool.submit(one, uid) for uid in todo]
            for n, future in enumerate(as_completed(futures), 1):
                try:
                    result.instances += future.result()
                    result.retrieved_now += 1
                except (RetrieveError, OSError) as exc:
                    result.failed.append(str(exc) if isinstance(exc, RetrieveError) else f"OS error {exc.errno}")
                say(f"retrieved {n:,}/{len(todo):,} studies, {result.instances:,} instances "
                    f"({time.monotonic() - started:.1f} s)")
        if result.failed:
            return result  # nothing de-identified until every study is in: rerun to go on
        if not any(spool.incoming.glob("*/*.dcm")):
            _write_state(dst, {"phase": "done", "query": recorded, "studies": result.studies, "instances": 0})
            shutil.rmtree(work, ignore_errors=True)
            result.complete = True
            return result
        _write_state(dst, {"phase": "deidentifying", "query": recorded, "studies": result.studies})
    say("de-identifying")
    result.summary = deidentify(spool.incoming, dst, recipe=recipe, key=key, workers=workers, layout="study",
                                resume=deidentifying, operator=operator)
    totals = result.summary.totals
    _write_state(dst, {"phase": "done", "query": recorded, "studies": result.studies or len(retrieved.done),
                       "instances": totals.files if totals is not None else 0})
    shutil.rmtree(work, ignore_errors=True)  # the originals: DST is complete
    result.complete = True
    return result


def default_work(dst: Path) -> Path:
    return dst.parent / f".{dst.name}.pull-work"


def stderr_progress(text: str) -> None:
    end = "\r" if sys.stderr.isatty() else "\n"
    print(f"veil pull: {text}", file=sys.stderr, end=end, flush=True)
