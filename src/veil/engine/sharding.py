"""Shards: how a listing is cut (:func:`choose_shard_files`, :func:`shards`) and the one shard function every
executor runs (:func:`process_shard`): each file through the pipeline, its audit row, quarantine copies (sealed
to the custodian in custodian mode), its change record (``--change-records``), then the shard's audit part,
last."""

from __future__ import annotations

import bisect
import errno
import itertools
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from veil._version import __version__
from veil.audit.layout import quarantine_dir
from veil.audit.schema import (
    ACTION_NAMES,
    AuditColumns,
    AuditRow,
    RowContext,
    counts_matrix,
    input_digester,
    row_from_outcome,
)
from veil.audit.tally import Tally
from veil.audit.write import write_shard
from veil.engine.executor import FatalRunError
from veil.engine.listing import Entry, EntryBlock, pack
from veil.engine.series import SeriesBatch, change_record, series_outcomes, write_deferred
from veil.keys import KeyedFunctions
from veil.pipeline import CounterLookup, Deidentifier, FileOutcome, refusal_reason
from veil.recipes import CompiledRecipe
from veil.system import sync_filesystem

if TYPE_CHECKING:  # change records are imported by the runs that keep them (their module costs a worker 4 ms)
    from veil.audit.changes import ElementRow
    from veil.audit.pixelstore import PixelRecord

__all__ = [
    "SHARD_FILES",
    "MIN_SHARD_FILES",
    "SHARDS_PER_WORKER",
    "ShardContext",
    "ShardResult",
    "NumberSource",
    "choose_shard_files",
    "shards",
    "process_shard",
    "service_numbers",
]

# Shards the core can do alone go through it in one call (_native_shard); False sends every file through the
# per-file loop, as before (the tests compare the two).
NATIVE_BATCH = True
SHARD_FILES = 1024  # files per shard, unless the job is small (see choose_shard_files)
MIN_SHARD_FILES = 64
SHARDS_PER_WORKER = 8


@dataclass(frozen=True)
class ShardContext:
    """What every shard task needs; shipped once per run (``ray.put``), never the master key."""

    run_id: str
    dst: str
    layout: str
    plan_recipe: CompiledRecipe
    quarantine_copy: bool
    reid: bool
    key_id: str
    # Where PHI-bearing parts are sealed: a SealTarget (a SymmetricSeal in single-user mode, a
    # CustodianPublicKey in custodian mode) or None (a keyless run). Set by the driver.
    seal_to: Any = None
    # Write change records (the row diff of each written file, originals sealed to seal_to).
    change_records: bool = False
    # "shard": outputs under their final names; "file": temporary names, renamed (RunOptions.atomic).
    atomic: str = "file"


class ShardResult(NamedTuple):
    """What one shard did (its :class:`~veil.audit.Tally`) and the machine that did it."""

    shard: int
    tally: Tally
    host: str = ""


Listed = Entry | EntryBlock  # what a listing yields: an entry, or a run of plain files (listing.list_blocks)


def choose_shard_files(entries: Iterator[Listed], workers: int) -> tuple[int, Iterator[Listed]]:
    """Files per shard for a run that was given none, and the entries to run (the same, looked ahead).

    A job that the listing shows to be small (it ends within two full shards per worker) is cut into about
    :data:`SHARDS_PER_WORKER` shards per worker, of :data:`MIN_SHARD_FILES` files at least: with shards of the
    full size, 2,000 files on 2 workers are two shards, and the worker whose shard holds the slow files (a
    deflated data set is recompressed) finishes long after the other. Larger jobs, or one worker, keep
    :data:`SHARD_FILES`. The choice is written to the manifest, so a resumed run cuts the same shards.
    """
    if workers <= 1:
        return SHARD_FILES, entries
    horizon = min(2 * workers * SHARD_FILES, 16_384)
    head: list[Listed] = []
    seen = 0
    for item in entries:
        head.append(item)
        seen += len(item) if type(item) is EntryBlock else 1
        if seen >= horizon:
            return SHARD_FILES, itertools.chain(head, entries)
    per_shard = -(-seen // (SHARDS_PER_WORKER * workers))
    return max(MIN_SHARD_FILES, min(SHARD_FILES, per_shard)), iter(head)


def shards(entries: Iterator[Listed], max_files: int, max_bytes: int) -> Iterator[tuple[int, Sequence[Entry]]]:
    """Consecutive shards bounded by file count and bytes, numbered in listing order (stable across runs): a
    shard ends at the first entry that brings it to ``max_files`` files or ``max_bytes`` bytes. A shard of plain
    files is an :class:`~veil.engine.listing.EntryBlock` (:func:`~veil.engine.listing.pack`).

    The listing may come as entries or with runs of plain files as blocks (:func:`~veil.engine.listing.
    list_blocks`): a block is cut where its running total of sizes passes the bound (``bisect`` over
    ``accumulate``), so the shards are the same either way, and a shard made of blocks alone is joined as
    columns, with no object per file."""
    pieces: list[Any] = []  # the shard so far: entries, and blocks (slices of the listing's)
    blocks = False  # a block among them
    count = size = number = 0
    for item in entries:
        if type(item) is not EntryBlock:  # (not isinstance: EntryBlock's ABC check costs an entry 0.5 us)
            pieces.append(item)
            count += 1
            size += cast(Entry, item).size
            if count >= max_files or size >= max_bytes:
                yield number, _joined(pieces, blocks)
                number += 1
                pieces, blocks, count, size = [], False, 0, 0
            continue
        block = item
        start, end = 0, len(block)
        totals = list(itertools.accumulate(block.sizes))
        while start < end:
            # Files of the block the shard can take: up to the count bound, or to the first file at which
            # its bytes reach the byte bound.
            before = totals[start - 1] if start else 0
            take = min(end - start, max_files - count,
                       bisect.bisect_left(totals, max_bytes - size + before, start, end) - start + 1)
            stop = start + take
            pieces.append(block if (start, stop) == (0, end) else
                          EntryBlock(block.prefix, block.rels[start:stop], block.sizes[start:stop]))
            blocks = True
            count += take
            size += totals[stop - 1] - before
            start = stop
            if count >= max_files or size >= max_bytes:
                yield number, _joined(pieces, blocks)
                number += 1
                pieces, blocks, count, size = [], False, 0, 0
    if pieces:
        yield number, _joined(pieces, blocks)


def _joined(pieces: list[Any], blocks: bool) -> Sequence[Entry]:
    """One shard of :func:`shards` from its pieces: :func:`~veil.engine.listing.pack` of entries; a block when
    they are blocks of one prefix; else pack of every entry (a shard with a refusal or a link among blocks)."""
    if not blocks:
        return pack(pieces)
    first = pieces[0]
    if all(type(piece) is EntryBlock and piece.prefix == first.prefix for piece in pieces):
        if len(pieces) == 1:
            return cast(EntryBlock, first)
        rels: list[str] = []
        sizes: list[int] = []
        for piece in pieces:
            rels += piece.rels
            sizes += piece.sizes
        return EntryBlock(first.prefix, rels, sizes)
    entries: list[Entry] = []
    for piece in pieces:
        if type(piece) is EntryBlock:
            entries.extend(piece)
        else:
            entries.append(piece)
    return pack(entries)


# --- the shard function (runs in this process, in a pool process or as a Ray task) -------------------------

_WORKERS: dict[str, Deidentifier] = {}


def _deidentifier(ctx: ShardContext, functions_source: Callable[[], KeyedFunctions | None]) -> Deidentifier:
    worker = _WORKERS.get(ctx.run_id)
    if worker is None:
        _WORKERS.clear()
        # Counter pseudonyms: the numbers this worker was handed, looked up (never a keyed hash instead).
        lookup = CounterLookup() if ctx.plan_recipe.counter is not None else None
        worker = Deidentifier(ctx.plan_recipe.plan, functions_source(), ctx.plan_recipe.recipe.pixels, lookup,
                              direct=ctx.atomic == "shard")
        _WORKERS[ctx.run_id] = worker
    return worker


# (shard, values) -> their counter pseudonyms, from the run's key service: one call per shard.
NumberSource = Callable[[int, list[bytes]], list[bytes]]


def service_numbers(service: Any, counter: Any) -> NumberSource:
    """Counter pseudonyms from a :class:`~veil.keys.service.KeyService`, or a proxy of one (a pool process):
    one call per shard, for the values ``counter`` (the recipe's counter format) numbers."""
    from veil.keys.service import COUNTER_KIND

    def numbers(shard: int, values: list[bytes]) -> list[bytes]:
        result: list[bytes] = service.counter_pseudonyms(COUNTER_KIND, values, counter.prefix, counter.width,
                                                         counter.suffix, shard)
        return result

    return numbers


def _number_values(worker: Deidentifier, shard: int, entries: Sequence[Entry], number_source: NumberSource | None) -> None:
    """Before a shard is rewritten: the values its files will pseudonymise that this worker has no number for
    yet, numbered by the key service in one call (which journals them before it answers)."""
    lookup = worker.pseudonyms
    if not isinstance(lookup, CounterLookup):
        raise FatalRunError("counter pseudonyms need a worker built for them")
    if number_source is None:
        raise FatalRunError("counter pseudonyms need the run's key service")
    unknown = lookup.unknown(worker.pseudonym_values(entry.path for entry in entries if not entry.error))
    if unknown:
        lookup.add(unknown, list(number_source(shard, unknown)))


def process_shard(
    ctx: ShardContext,
    shard: int,
    entries: Sequence[Entry],
    functions_source: Callable[[], KeyedFunctions | None],
    audit_key: bytes,
    reid_sink: Callable[[int, list[tuple[str, bytes, bytes]]], object] | None = None,
    number_source: NumberSource | None = None,
) -> ShardResult:
    """De-identifies one shard's files and writes its audit part (last: its presence marks completion).

    Each file goes through :meth:`~veil.pipeline.Deidentifier.process` (which chooses the native or the Python
    path) and its row is made from the outcome by :func:`~veil.audit.row_from_outcome`. With counter
    pseudonyms, ``number_source`` numbers the shard's new values first (one call)."""
    worker = _deidentifier(ctx, functions_source)
    if ctx.plan_recipe.counter is not None:
        _number_values(worker, shard, entries, number_source)
    dst = ctx.dst
    rows: list[AuditRow] = []
    pixel_records: list[PixelRecord] = []
    reasons: Counter[str] = Counter()
    reid: list[tuple[str, bytes, bytes]] = []
    written = quarantined = input_bytes = output_bytes = 0
    recipe = ctx.plan_recipe.recipe
    prefix = dst.rstrip(os.sep) + os.sep
    row_context = RowContext(ctx.run_id, shard, ctx.key_id, recipe.name, recipe.version, recipe.content_hash,
                             __version__, prefix)
    want_reid = ctx.reid
    by_study = _by_study(dst) if ctx.layout != "mirror" else None
    process = worker.process
    # Custodian mode: before-thumbnails and quarantine copies sealed to the custodian's public key.
    custodian = _custodian(ctx.seal_to)
    changes: list[tuple[int, list[ElementRow]]] | None = None
    if ctx.change_records:  # the per-file loop below is the same without them
        changes = []
        process = _recording(worker, changes, rows)
    digest_of = input_digester(audit_key)  # as audit.input_digest, of the path relative to SRC
    if (NATIVE_BATCH and worker.native and not want_reid and by_study is None and changes is None and recipe.deface is None
            and not isinstance(entries, SeriesBatch)):
        # The common case: the core does the whole shard in one call, the audit kept as columns.
        return _native_shard(ctx, shard, entries, worker, row_context, digest_of, custodian)
    import numpy as np  # the per-file loop (its pixel records, its counts matrix)

    from veil.audit.pixelstore import PixelRecord, before_thumbnail_key

    # Defacing recipes: files of series that may be heads are set aside for their series' task (which comes
    # here as a SeriesBatch: its outcomes made by the series step).
    deface = recipe.deface
    deferred: list[tuple[int, str, str]] = []
    series: list[FileOutcome | None] | None = None
    if isinstance(entries, SeriesBatch):
        series = series_outcomes(ctx, shard, worker, entries, _series_destination(prefix, by_study), want_reid,
                                 changes)
    elif deface is not None:
        from veil.deface.select import candidate
    for index, entry in enumerate(entries):
        digest = digest_of(entry.rel)  # relative to SRC: the same whatever the mount
        if entry.error:
            outcome = FileOutcome(entry.path, None, "quarantined", reason=entry.error)
        elif series is not None:
            outcome = series[index] or FileOutcome(entry.path, None, "quarantined", reason="not processed")
        else:
            if deface is not None:
                found = candidate(entry.path, deface)
                if found is not None:
                    deferred.append((index, digest_of(b"series\0" + found.series.encode()), found.why))
                    continue
            outcome = process(entry.path, prefix + entry.rel if by_study is None else by_study, reid=want_reid)
        # One unpacking of the fields the tally needs (this runs once per file; FileOutcome's field order).
        _, _, status, reason, in_bytes, out_bytes = outcome[:6]
        if status == "written":
            written += 1
            input_bytes += in_bytes
            output_bytes += out_bytes
            if want_reid and outcome.reid_pairs:
                reid.extend(outcome.reid_pairs)
        else:
            quarantined += 1
            reasons[reason] += 1
            if ctx.quarantine_copy and not entry.error:
                _quarantine(dst, entry, digest, reason, custodian)
        if outcome.pixel_record is not None:
            pixel_records.append(PixelRecord.from_redaction(len(rows), outcome.pixel_record))
        rows.append(row_from_outcome(outcome, row_context, digest, entry.size))
    if deface is not None and series is None:
        write_deferred(dst, ctx.run_id, shard, deferred)  # before the audit part, too
    if reid and reid_sink is not None:
        reid_sink(shard, reid)  # journaled before the audit part marks the shard done
    if changes is not None:
        from veil.audit.changes import write_changes

        write_changes(dst, shard, ctx.run_id, changes, ctx.seal_to)  # before the audit part, too
    # Before-thumbnails carry the burned-in text: sealed to the custodian in custodian mode; else under a key
    # derived from the audit sub-key when that comes from the project key (key_id set); a keyless run's audit
    # key is derived from the public run id, so then none is stored at all. (write_shard passes it through to
    # write_pixels, which takes bytes or a custodian public key.)
    before_key: Any = None
    if pixel_records:
        before_key = custodian if custodian is not None else before_thumbnail_key(audit_key) if ctx.key_id else None
    matrix = counts_matrix(rows)
    # The outputs this part marks done reach the disk first (one syncfs for the shard): after a power loss, a
    # shard the audit calls complete has all its outputs; one cut short has no part and is redone.
    if rows:
        sync_filesystem(dst)
    write_shard(Path(dst), shard, rows, pixel_records, before_key, matrix=matrix)
    totals = matrix.sum(axis=0, dtype=np.int64)
    actions = Counter({name: int(n) for name, n in zip(ACTION_NAMES, totals, strict=True) if n})
    tally = Tally(len(entries) - len(deferred), written, 0, quarantined, input_bytes, output_bytes, reasons, actions)
    return ShardResult(shard, tally, os.uname().nodename)


def _native_shard(ctx: ShardContext, shard: int, entries: Sequence[Entry], worker: Deidentifier,
                  context: RowContext, digest_of: Callable[[str | bytes], str], custodian: Any) -> ShardResult:
    """:func:`process_shard` for a shard the core can do alone (a native Deidentifier; no re-identification
    pairs, change records, defacing or study layout): one call into the core for all its files
    (:meth:`~veil.pipeline.Deidentifier.native_files`), the audit made as columns (no object per file), the
    same rows, quarantine copies and part as the per-file loop."""
    prefix = context.dst_prefix
    n = len(entries)
    if isinstance(entries, EntryBlock):  # plain files, as columns: no Entry is made
        rels, sources, sizes = entries.rels, entries.paths(), entries.sizes
    else:
        files = [entry for entry in entries if not entry.error]
        rels, sources, sizes = [e.rel for e in files], [e.path for e in files], [e.size for e in files]
    (in_bytes, out_bytes, sop_class, sop_instance, study, series, modality, counts, micros, times,
     failures) = worker.native_files(sources, [prefix + rel for rel in rels], sizes)
    import numpy as np  # after the files: a run's first file waits for no import it does not need

    matrix = np.frombuffer(counts, dtype=np.int32).reshape(len(rels), len(ACTION_NAMES))
    status = ["written"] * len(rels)
    reason = [""] * len(rels)
    output_path = list(rels)
    for position, exc in failures:
        status[position] = "quarantined"
        reason[position] = refusal_reason(exc)  # a full disk raised in the core already
        output_path[position] = ""
        in_bytes[position] = sizes[position]
    if len(rels) < n:
        # Listing refusals (a symlink out of SRC, an unreadable folder) get rows of their own, in listing order:
        # each column spread over every entry, a refusal's value where an entry has an error.
        done = iter(range(len(rels)))
        at = [-1 if entry.error else next(done) for entry in entries]

        def spread(values: list[Any], refused: Any) -> list[Any]:
            return [refused if i < 0 else values[i] for i in at]

        now = time.time_ns() // 1000
        in_bytes = [entry.size if i < 0 else in_bytes[i] for entry, i in zip(entries, at, strict=True)]
        reason = [entry.error if i < 0 else reason[i] for entry, i in zip(entries, at, strict=True)]
        out_bytes, micros, times = spread(out_bytes, 0), spread(micros, 0), spread(times, now)
        output_path, status = spread(output_path, ""), spread(status, "quarantined")
        sop_class, modality, study = spread(sop_class, ""), spread(modality, ""), spread(study, "")
        series, sop_instance = spread(series, ""), spread(sop_instance, "")
        wide = np.zeros((n, len(ACTION_NAMES)), dtype=np.int32)
        wide[[index for index, i in enumerate(at) if i >= 0]] = matrix
        matrix = wide
    all_rels = rels if len(rels) == n else [entry.rel for entry in entries]
    digests = list(map(digest_of, all_rels))
    reasons: Counter[str] = Counter()
    quarantined = 0
    if failures or len(rels) < n:
        for index, entry in enumerate(entries):
            if status[index] != "written":
                quarantined += 1
                reasons[reason[index]] += 1
                if ctx.quarantine_copy and not entry.error:
                    _quarantine(ctx.dst, entry, digests[index], reason[index], custodian)
    audit = AuditColumns(context, digests, in_bytes, out_bytes, output_path, sop_class, modality, study, series,
                         sop_instance, matrix, [False] * n, status, reason, micros, times)
    if n:
        sync_filesystem(ctx.dst)  # the outputs this part marks done reach the disk first (see process_shard)
    write_shard(Path(ctx.dst), shard, audit)
    written = n - quarantined
    totals = matrix.sum(axis=0, dtype=np.int64)
    actions = Counter({name: int(v) for name, v in zip(ACTION_NAMES, totals, strict=True) if v})
    input_total = sum(size for size, done in zip(in_bytes, status, strict=True) if done == "written")
    tally = Tally(n, written, 0, quarantined, input_total, sum(out_bytes), reasons, actions)
    return ShardResult(shard, tally, os.uname().nodename)


def _custodian(seal_to: object) -> Any:
    """The run's custodian public key in custodian mode, else None (single-user or keyless)."""
    if seal_to is None:
        return None
    from veil.keys.custodian import CustodianPublicKey

    return seal_to if isinstance(seal_to, CustodianPublicKey) else None


def _recording(worker: Deidentifier, changes: list[tuple[int, list[ElementRow]]],
               rows: list[AuditRow]) -> Callable[..., FileOutcome]:
    """``worker.process`` that also makes the change record of each written file (``--change-records``,
    :func:`~veil.engine.series.change_record`); the instance's audit row is the next one of ``rows``."""
    from veil.audit.changes import unavailable

    process = worker.process

    def recording(source: str, destination: Any, *, reid: bool = False) -> FileOutcome:
        outcome = process(source, destination, reid=reid)
        if outcome.status == "written" and outcome.destination:
            try:
                before = Path(source).read_bytes()
                after = Path(outcome.destination).read_bytes()
            except OSError as exc:  # the input changed under the run, or went: say so, go on
                elements = [unavailable(type(exc).__name__)]
            else:
                elements = change_record(worker, before, after, source)
            changes.append((len(rows), elements))
        return outcome

    return recording


def _by_study(dst: str) -> Callable[[dict[str, object]], str]:
    """The ``study`` layout: DST/study/series/instance.dcm, from the output's own (new) UIDs."""

    def by_study(info: dict[str, object]) -> str:
        # New identifiers only: the layout must not leak what the data set no longer carries.
        study = str(info.get("study_instance_uid") or "no-study")
        series = str(info.get("series_instance_uid") or "no-series")
        instance = str(info.get("sop_instance_uid") or "no-instance")
        return os.path.join(dst, study, series, f"{instance}.dcm")

    return by_study


def _series_destination(prefix: str, by_study: Callable[[dict[str, object]], str] | None
                        ) -> Callable[[Entry, dict[str, object]], str]:
    """Where a series task writes an entry's output, from the output's own identity (``peek``)."""

    def destination(entry: Entry, new: dict[str, object]) -> str:
        return prefix + entry.rel if by_study is None else by_study(new)

    return destination


def _quarantine(dst: str, entry: Entry, digest: str, reason: str, custodian: Any = None) -> None:
    """A copy of the refused input under DST/.veil/quarantine, named by its keyed digest, with the reason: in
    clear (single-user and keyless runs), or sealed to the custodian and never in clear (custodian mode)."""
    folder = quarantine_dir(dst)
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, digest + ".dcm")
    try:
        if custodian is not None:
            from veil.audit.quarantine import write_sealed_quarantine

            write_sealed_quarantine(dst, digest, entry.path, custodian)
        else:
            tmp = target + ".tmp"
            shutil.copyfile(entry.path, tmp)
            os.replace(tmp, target)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        reason = f"{reason} (not copied: {exc.strerror})"
    with open(os.path.join(folder, digest + ".json"), "w", encoding="utf-8") as fh:
        json.dump({"input_digest": digest, "reason": reason}, fh)
