"""The driver of ``veil run``: lazy listing, shards, bounded tasks in flight, resume, quarantine, audit.

One shard function does all the work, wherever it runs: in this process (``--workers 1``, or a job of one
shard), in a pool of worker processes on this machine (``--workers N``: they start in milliseconds), or as Ray
tasks (``--ray`` on this machine, ``--address`` on a cluster; Ray costs seconds to start and pays off on a
cluster). Every output byte is a pure
function of (input bytes, recipe, key), so a retried or resumed shard writes exactly what it would have; a
shard is complete when its audit part exists, and ``--resume`` skips those.

Counter pseudonyms (``SUBJ-{counter:6}``) are the one exception to "a function of the key": their numbers come
from the run's :class:`~veil.mapping.KeyService`. Before a shard is rewritten, its worker lists the values it will
pseudonymise (a collecting pass with the same Plan) and asks the service once for those it has no number for:
directly in this process, through the Ray key actor, or, for a local pool, through a ``BaseManager`` process
(:mod:`veil.keyserver`) that serves the service (started before the pool, dying with the driver). The service
journals the numbers before it answers; a run with counters loads the table and its journal first, so a resumed
run goes on.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import stat
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import blake3
import numpy as np

from veil._version import __version__
from veil.audit import store as audit
from veil.core._core import SCAN_DIRECTORY, SCAN_ERROR, SCAN_FILE, SCAN_SYMLINK, scan_directory
from veil.errors import VeilError
from veil.keys import Key, KeyedFunctions
from veil.pipeline import CounterLookup, Deidentifier, FileOutcome, refused
from veil.recipes.recipe import CompiledRecipe
from veil.system import die_with_parent

log = logging.getLogger(__name__)

__all__ = ["RunOptions", "RunSummary", "Entry", "list_inputs", "shards", "run", "FatalRunError"]



class FatalRunError(VeilError):
    """A run that cannot go on (unwritable DST, disk full, a shard that keeps failing)."""


class Entry(NamedTuple):
    """One listed input: a file to process, or a path recorded with the reason it cannot be (``error``).
    A named tuple: a million of them flow through the driver and are pickled to the workers."""

    path: str
    rel: str
    size: int = 0
    error: str = ""


@dataclass(frozen=True)
class RunOptions:
    src: str
    dst: str
    layout: str = "mirror"  # "mirror" | "study"
    workers: int = 1
    address: str | None = None
    resume: bool = False
    files_from: str | None = None
    reid_table: str | None = None
    quarantine_copy: bool = True
    shard_files: int | None = None  # None: chosen by the run (see choose_shard_files)
    shard_bytes: int = 256 << 20
    max_in_flight: int = 0  # 0: twice the workers
    force_ray: bool = False  # workers on a local Ray rather than a process pool


@dataclass
class RunSummary:
    run_id: str
    files: int = 0
    written: int = 0
    skipped: int = 0
    quarantined: int = 0
    input_bytes: int = 0
    output_bytes: int = 0
    shards: int = 0
    shards_resumed: int = 0
    seconds: float = 0.0
    reasons: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    mode: str = "in-process"
    audit_dir: str = ""
    listed: int | None = None  # files in the whole job, once the listing has been read to its end
    hosts: set[str] = field(default_factory=set)  # machines that did work in this run
    totals: RunTotals | None = None  # the whole audit of DST (all runs into it), at the end

    def add(self, result: ShardResult) -> None:
        self.files += result.files
        self.written += result.written
        self.skipped += result.skipped
        self.quarantined += result.quarantined
        self.input_bytes += result.input_bytes
        self.output_bytes += result.output_bytes
        self.reasons.update(result.reasons)
        self.actions.update(result.actions)
        self.shards += 1
        if result.host:
            self.hosts.add(result.host)


@dataclass(frozen=True)
class RunTotals:
    """Totals over every audit row in DST (this run's and earlier runs' into it)."""

    files: int
    written: int
    quarantined: int
    input_bytes: int
    output_bytes: int
    reasons: dict[str, int]  # quarantine reason -> inputs, most frequent first

    @classmethod
    def of_audit(cls, dst: Path) -> RunTotals:
        s = audit.summarize(dst)
        return cls(s.files, s.written, s.quarantined, s.input_bytes, s.output_bytes, dict(s.reasons))

    @classmethod
    def of_run(cls, summary: RunSummary) -> RunTotals:
        reasons = dict(sorted(summary.reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        return cls(summary.files, summary.written, summary.quarantined, summary.input_bytes,
                   summary.output_bytes, reasons)


@dataclass(frozen=True)
class ShardResult:
    shard: int
    files: int
    written: int
    skipped: int
    quarantined: int
    input_bytes: int
    output_bytes: int
    reasons: dict[str, int]
    actions: dict[str, int]
    host: str = ""


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


# --- listing ----------------------------------------------------------------------------------------------


def list_inputs(src: str, files_from: str | None = None) -> Iterator[Entry]:
    """Inputs in a stable order, lazily: a recursive walk of SRC (one directory's names in memory at a time),
    or the lines of a listing file. Unreadable directories, loops and symlinks out of SRC are yielded as
    entries with an ``error`` so the run records them and goes on."""
    root = os.path.realpath(src)
    if files_from is not None:
        yield from _list_file(root, files_from)
        return
    if os.path.isfile(root):
        yield _entry(root, os.path.basename(root), root)
        return
    yield from _walk(root, "", root, {_dir_id(root)})


def _dir_id(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _entry(path: str, rel: str, root: str) -> Entry:
    real = os.path.realpath(path)
    if real != root and not real.startswith(root + os.sep):
        return Entry(path, rel, error="symlink out of SRC")
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return Entry(path, rel, error="vanished before it was read")
    except OSError as exc:
        return Entry(path, rel, error=f"cannot stat: {exc.strerror}")
    if not stat.S_ISREG(st.st_mode):
        return Entry(path, rel, error="not a regular file")
    return Entry(path, rel, st.st_size)


def _walk(top: str, rel: str, root: str, ancestors: set[tuple[int, int]]) -> Iterator[Entry]:
    """Depth first, names sorted, one frame per open directory on an explicit stack (no generator per level:
    each entry is yielded once, not passed up through every parent). Each directory is read by the core's
    ``scan_directory``: one pass, and an ``lstat`` relative to the directory for each file."""
    inside = root + os.sep
    stack: list[list] = [[top, rel, frozenset(ancestors), None]]  # type: ignore[type-arg]
    while stack:
        frame = stack[-1]
        directory, rel, ancestors, items = frame
        if items is None:
            try:
                listed = sorted(scan_directory(directory))
            except OSError as exc:
                stack.pop()
                yield Entry(directory, rel or ".", error=f"cannot list directory: {exc.strerror}")
                continue
            items = frame[3] = iter(listed)
        prefix = f"{rel}/" if rel else ""
        folder = directory if directory.endswith(os.sep) else directory + os.sep
        for name, kind, value in items:
            if name.startswith(".veil"):
                continue
            path = folder + name
            if kind == SCAN_FILE:
                # A plain file under a directory already known to be inside SRC: its size came with the scan.
                yield Entry(path, prefix + name, value)
                continue
            child_rel = prefix + name
            is_link = kind == SCAN_SYMLINK
            if kind == SCAN_DIRECTORY or (is_link and os.path.isdir(path)):
                if is_link:
                    real = os.path.realpath(path)
                    if real != root and not real.startswith(inside):
                        yield Entry(path, child_rel, error="symlink out of SRC")
                        continue
                try:
                    ident = _dir_id(path)
                except OSError as exc:
                    yield Entry(path, child_rel, error=f"cannot stat directory: {exc.strerror}")
                    continue
                if ident in ancestors:
                    yield Entry(path, child_rel, error="directory loop")
                    continue
                stack.append([path, child_rel, ancestors | {ident}, None])
                break  # the child first; this directory's iterator resumes after it
            if is_link:
                yield _entry(path, child_rel, root)
            elif kind == SCAN_ERROR:
                yield Entry(path, child_rel, error=f"cannot stat: {os.strerror(value)}")
            else:
                yield Entry(path, child_rel, error="not a regular file")
        else:
            stack.pop()


def _list_file(root: str, listing: str) -> Iterator[Entry]:
    """The lines of a listing file as entries. Each directory is resolved once (listings come grouped by
    directory), then each file costs one ``lstat``: a plain file under a directory known to be inside SRC is
    inside SRC; a symlink is resolved in full."""
    directories: dict[str, str | None] = {}  # directory as listed -> its real path (None: outside SRC)
    inside = root + os.sep
    with open(listing, encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            path = line.rstrip("\n")
            if not path.strip():
                continue
            full = path if os.path.isabs(path) else os.path.join(root, path)
            folder, name = os.path.split(full)
            real_folder = directories.get(folder, "")
            if real_folder == "":
                real_folder = os.path.realpath(folder)
                if real_folder != root and not real_folder.startswith(inside):
                    real_folder = None
                if len(directories) > 65536:
                    directories.clear()
                directories[folder] = real_folder
            if real_folder is None:
                yield Entry(full, os.path.basename(full), error="listed path is outside SRC")
                continue
            if os.path.isabs(path):
                rel = os.path.join(real_folder[len(inside):], name) if real_folder != root else name
            else:
                rel = os.path.normpath(path)  # as listed (through an in-SRC symlinked folder too)
                if rel.startswith(".."):
                    yield Entry(full, os.path.basename(full), error="listed path is outside SRC")
                    continue
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                yield Entry(full, rel, error="vanished before it was read")
                continue
            except OSError as exc:
                yield Entry(full, rel, error=f"cannot stat: {exc.strerror}")
                continue
            if stat.S_ISLNK(st.st_mode):
                yield _entry(full, rel, root)
            elif stat.S_ISREG(st.st_mode):
                yield Entry(full, rel, st.st_size)
            else:
                yield Entry(full, rel, error="not a regular file")


SHARD_FILES = 1024  # files per shard, unless the job is small (see choose_shard_files)
MIN_SHARD_FILES = 64
SHARDS_PER_WORKER = 8


def choose_shard_files(entries: Iterator[Entry], workers: int) -> tuple[int, Iterator[Entry]]:
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
    head = list(itertools.islice(entries, horizon))
    if len(head) >= horizon:
        return SHARD_FILES, itertools.chain(head, entries)
    per_shard = -(-len(head) // (SHARDS_PER_WORKER * workers))
    return max(MIN_SHARD_FILES, min(SHARD_FILES, per_shard)), iter(head)


def shards(entries: Iterator[Entry], max_files: int, max_bytes: int) -> Iterator[tuple[int, list[Entry]]]:
    """Consecutive shards bounded by file count and bytes, numbered in listing order (stable across runs)."""
    batch: list[Entry] = []
    size = 0
    number = 0
    for entry in entries:
        batch.append(entry)
        size += entry.size
        if len(batch) >= max_files or size >= max_bytes:
            yield number, batch
            number += 1
            batch, size = [], 0
    if batch:
        yield number, batch


# --- the shard function (runs in-process or as a Ray task) ---------------------------------------------

_WORKERS: dict[str, Deidentifier] = {}


def _deidentifier(ctx: ShardContext, functions_source: Callable[[], KeyedFunctions | None]) -> Deidentifier:
    worker = _WORKERS.get(ctx.run_id)
    if worker is None:
        _WORKERS.clear()
        # Counter pseudonyms: the numbers this worker was handed, looked up (never a keyed hash instead).
        lookup = CounterLookup() if ctx.plan_recipe.counter is not None else None
        worker = Deidentifier(ctx.plan_recipe.plan, functions_source(), ctx.plan_recipe.recipe.pixels, lookup)
        _WORKERS[ctx.run_id] = worker
    return worker


# (shard, values) -> their counter pseudonyms, from the run's key service: one call per shard.
NumberSource = Callable[[int, list[bytes]], list[bytes]]


def _number_values(worker: Deidentifier, shard: int, entries: list[Entry], number_source: NumberSource | None) -> None:
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
    entries: list[Entry],
    functions_source: Callable[[], KeyedFunctions | None],
    audit_key: bytes,
    reid_sink: Callable[[int, list[tuple[str, bytes, bytes]]], object] | None = None,
    number_source: NumberSource | None = None,
) -> ShardResult:
    """De-identifies one shard's files and writes its audit part (last: its presence marks completion).

    With counter pseudonyms, ``number_source`` numbers the shard's new values first (one call)."""
    worker = _deidentifier(ctx, functions_source)
    if ctx.plan_recipe.counter is not None:
        _number_values(worker, shard, entries, number_source)
    dst = ctx.dst
    rows: list[audit.AuditRow] = []
    pixel_records: list[audit.PixelRecord] = []
    reasons: Counter[str] = Counter()
    reid: list[tuple[str, bytes, bytes]] = []
    written = quarantined = input_bytes = output_bytes = 0
    recipe = ctx.plan_recipe.recipe
    recipe_name, recipe_version, recipe_hash = recipe.name, recipe.version, recipe.content_hash
    run_id, key_id, layout, want_reid = ctx.run_id, ctx.key_id, ctx.layout, ctx.reid
    no_counts = (0,) * len(audit.ACTION_NAMES)
    prefix = dst.rstrip(os.sep) + os.sep
    Row = audit.AuditRow
    keyed = blake3.blake3(key=audit_key)
    # The native path, for the files it can take: the core reads, rewrites and writes each one, and its result
    # becomes the audit row directly (no FileOutcome).
    native = worker.native and layout == "mirror" and not want_reid
    clock = time.perf_counter_ns
    for entry in entries:
        # As audit.input_digest: the keyed digest of the path relative to SRC (the same whatever the mount).
        hasher = keyed.copy()
        hasher.update(os.fsencode(entry.rel))
        digest = hasher.hexdigest()
        if native and not entry.error:
            started = clock()
            try:
                result, size, out_size = worker.native_file(entry.path, prefix + entry.rel)
            except (VeilError, OSError) as exc:
                outcome = refused(entry.path, exc, started)
            else:
                written += 1
                input_bytes += size
                output_bytes += out_size
                rows.append(Row(run_id, shard, digest, size, out_size, entry.rel, result.sop_class_uid,
                                result.modality, result.study_instance_uid, result.series_instance_uid,
                                result.sop_instance_uid, key_id, recipe_name, recipe_version, recipe_hash,
                                __version__, result.counts_row, False, "written", "", (clock() - started) // 1000))
                continue
        elif entry.error:
            outcome = FileOutcome(entry.path, None, "quarantined", reason=entry.error)
        elif layout == "mirror":
            outcome = worker.deidentify_file(entry.path, prefix + entry.rel, reid=want_reid)
        else:
            outcome = worker.deidentify_file(entry.path, _destination(dst, entry.rel, layout), reid=want_reid)
        destination = outcome.destination
        if outcome.status == "written":
            written += 1
            input_bytes += outcome.input_bytes
            output_bytes += outcome.output_bytes
            if outcome.reid_pairs:
                reid.extend(outcome.reid_pairs)
        else:
            quarantined += 1
            reasons[outcome.reason] += 1
            if ctx.quarantine_copy and not entry.error:
                _quarantine(dst, entry, digest, outcome.reason)
        if outcome.pixel_record is not None:
            pixel_records.append(audit.PixelRecord.from_redaction(len(rows), outcome.pixel_record))
        rows.append(
            Row(
                run_id,
                shard,
                digest,
                outcome.input_bytes or entry.size,
                outcome.output_bytes,
                (destination[len(prefix):] if destination.startswith(prefix) else _relative(destination, dst))
                if destination else "",
                outcome.sop_class_uid,
                outcome.modality,
                outcome.study_instance_uid,
                outcome.series_instance_uid,
                outcome.sop_instance_uid,
                key_id,
                recipe_name,
                recipe_version,
                recipe_hash,
                __version__,
                outcome.counts_row or no_counts,
                outcome.pixel_redaction,
                outcome.status,
                outcome.reason,
                outcome.microseconds,
            )
        )
    if reid and reid_sink is not None:
        reid_sink(shard, reid)  # journaled before the audit part marks the shard done
    # Before-thumbnails carry the burned-in text: sealed under a key derived from the audit sub-key when that
    # comes from the project key (key_id set); a keyless run's audit key is derived from the public run id,
    # so then none is stored at all.
    before_key = audit.before_thumbnail_key(audit_key) if key_id and pixel_records else None
    matrix = audit.counts_matrix(rows)
    audit.write_shard(Path(dst), shard, rows, pixel_records, before_key, matrix=matrix)
    totals = matrix.sum(axis=0, dtype=np.int64)
    actions = {name: int(n) for name, n in zip(audit.ACTION_NAMES, totals, strict=True) if n}
    return ShardResult(shard, len(entries), written, 0, quarantined, input_bytes, output_bytes,
                       dict(reasons), actions, os.uname().nodename)


def _relative(path: str | None, dst: str) -> str:
    if not path:
        return ""
    prefix = dst.rstrip(os.sep) + os.sep
    return path[len(prefix):] if path.startswith(prefix) else os.path.relpath(path, dst)


def _destination(dst: str, rel: str, layout: str) -> str | Callable[[dict[str, object]], str]:
    if layout == "mirror":
        return os.path.join(dst, rel)

    def by_study(info: dict[str, object]) -> str:
        # New identifiers only: the layout must not leak what the data set no longer carries.
        study = str(info.get("study_instance_uid") or "no-study")
        series = str(info.get("series_instance_uid") or "no-series")
        instance = str(info.get("sop_instance_uid") or "no-instance")
        return os.path.join(dst, study, series, f"{instance}.dcm")

    return by_study


def _quarantine(dst: str, entry: Entry, digest: str, reason: str) -> None:
    """A copy of the refused input under DST/.veil/quarantine, named by its keyed digest, with the reason."""
    folder = os.path.join(dst, ".veil", "quarantine")
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, digest + ".dcm")
    try:
        tmp = target + ".tmp"
        import shutil

        shutil.copyfile(entry.path, tmp)
        os.replace(tmp, target)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        reason = f"{reason} (not copied: {exc.strerror})"
    with open(os.path.join(folder, digest + ".json"), "w", encoding="utf-8") as fh:
        json.dump({"input_digest": digest, "reason": reason}, fh)


# --- the driver ---------------------------------------------------------------------------------------------


def check_destination(options: RunOptions) -> None:
    """Fatal problems known before any work: DST inside SRC, DST not writable, re-id table inside DST."""
    src = os.path.realpath(options.src)
    dst = os.path.realpath(options.dst)
    if not os.path.exists(src):
        raise FatalRunError(f"{options.src}: no such file or directory")
    if dst == src or dst.startswith(src + os.sep):
        raise FatalRunError("DST must not be inside SRC")
    try:
        os.makedirs(os.path.join(dst, ".veil"), exist_ok=True)
        probe = os.path.join(dst, ".veil", f".probe-{os.getpid()}")
        with open(probe, "w") as fh:
            fh.write("ok")
        os.unlink(probe)
    except OSError as exc:
        raise FatalRunError(f"{options.dst}: cannot write: {exc.strerror}") from None
    if options.reid_table:
        table = os.path.realpath(options.reid_table)
        if table.startswith(dst + os.sep) or table.startswith(src + os.sep):
            raise FatalRunError("the re-identification table must be stored apart from SRC and DST")


def run(
    options: RunOptions,
    compiled: CompiledRecipe,
    key: Key | None,
    progress: Callable[[RunSummary, int | None], None] | None = None,
) -> RunSummary:
    """Runs (or resumes) a whole job; returns the totals. Raises FatalRunError for a run that cannot go on."""
    from veil.keys import service as mapping

    counter = compiled.counter
    if counter is not None and not options.reid_table:
        raise FatalRunError(
            f"pseudonym pattern {counter.pattern!r} numbers values: give --reid-table. The numbers handed out "
            "live in that (encrypted) table, which keeps them consistent across resumed runs and is the only way "
            "back from a number to its original"
        )
    if counter is not None and key is None:
        raise FatalRunError(f"pseudonym pattern {counter.pattern!r} needs a key (--key or VEIL_KEY)")
    check_destination(options)
    dst = Path(options.dst)
    started = time.time()
    previous = audit.read_manifest(dst) if options.resume and (dst / ".veil" / "manifest.json").exists() else {}
    run_id = previous.get("run_id") or os.urandom(16).hex()  # as uuid4().hex: 128 random bits
    shard_bytes = int(previous.get("shard_bytes", options.shard_bytes))
    inputs = list_inputs(options.src, options.files_from)
    if "shard_files" in previous:
        shard_files = int(previous["shard_files"])  # a resumed run cuts the same shards, whatever its --workers
    elif options.shard_files is not None:
        shard_files = options.shard_files
    else:
        shard_files, inputs = choose_shard_files(inputs, options.workers)
    done = audit.completed_shards(dst) if options.resume else set()
    fresh = not options.resume and not audit.completed_shards(dst)  # no audit row from an earlier run
    if options.resume:
        audit.sweep_temporaries(dst)  # what the killed run was half-way through writing
    if previous.get("reid_table") and not options.reid_table and done:
        raise FatalRunError("this run keeps a re-identification table: resume it with --reid-table (the same path)")
    service = mapping.KeyService(
        key.material if key else bytes(32),
        compiled.pseudonym_pattern,
        compiled.shift_range,
    ) if key is not None else None
    summary = RunSummary(run_id=run_id, audit_dir=str(audit.audit_dir(dst)))
    audit_key = key.subkey("audit") if key else blake3.blake3(run_id.encode()).digest()
    manifest = {
        "run_id": run_id,
        # The source path may name a patient (exports are often filed by name): only a keyed digest of it.
        "src_digest": blake3.blake3(os.path.realpath(options.src).encode(), key=audit_key).hexdigest()[:32],
        "recipe": {"name": compiled.recipe.name, "version": compiled.recipe.version,
                   "hash": compiled.recipe.content_hash, "layers": list(compiled.recipe.layers)},
        "key_id": key.key_id if key else None,
        "veil_version": __version__,
        "layout": options.layout,
        "shard_files": shard_files,
        "shard_bytes": shard_bytes,
        "started": previous.get("started", started),
        "status": "running",
        "reid_table": bool(options.reid_table) or bool(previous.get("reid_table")),
    }
    audit.write_manifest(dst, manifest)
    reid_table = os.path.realpath(options.reid_table) if options.reid_table and key is not None else None
    if reid_table is not None and service is not None:
        service.set_journal(reid_table)
        if counter is not None:
            # The numbers already handed out (a resumed run's journal, the table of earlier runs) go on.
            service.load_reid(reid_table)
    ctx = ShardContext(
        run_id=run_id,
        dst=str(dst),
        layout=options.layout,
        plan_recipe=compiled,
        quarantine_copy=options.quarantine_copy,
        reid=bool(options.reid_table) and key is not None,
        key_id=key.key_id if key else "",
    )
    listing = shards(inputs, shard_files, shard_bytes)
    # Look ahead one shard: a job of one shard has nothing to share out, it stays in this process.
    head: list[tuple[int, list[Entry]]] = list(itertools.islice(listing, 2))
    all_shards = _counted(_chain(head, listing), summary)
    local = options.address is None and not options.force_ray
    actor = None
    try:
        if local and options.workers > 1 and len(head) > 1:
            _run_on_pool(options, ctx, service, audit_key, all_shards, done, summary, progress)
        elif local:
            summary.mode = "in-process"
            functions = _local_functions(service)
            for number, entries in all_shards:
                if number in done:
                    summary.shards_resumed += 1
                    continue
                sink = (lambda n, pairs: service.record_reid(pairs, n)) if service is not None else None
                numbers = _service_numbers(service, counter) if counter is not None else None
                summary.add(process_shard(ctx, number, entries, lambda: functions, audit_key, sink, numbers))
                if progress:
                    progress(summary, None)
        else:
            actor = _run_on_ray(options, ctx, key, audit_key, all_shards, done, summary, progress)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise FatalRunError(f"{options.dst}: disk full; finished shards are kept, rerun with --resume") from None
        raise
    if options.reid_table and key is not None:
        table = os.path.realpath(options.reid_table)
        apart = [os.path.realpath(options.src), os.path.realpath(options.dst)]
        if actor is not None:
            import ray

            ray.get(actor.write_reid_table.remote(table, forbid_under=apart))
        elif service is not None:
            service.write_reid_table(table, forbid_under=apart)
    summary.seconds = time.time() - started
    # A run into an empty audit holds every row it counted: no need to read the parts back.
    totals = summary.totals = RunTotals.of_run(summary) if fresh else RunTotals.of_audit(dst)
    manifest.update(
        status="complete",
        finished=time.time(),
        hosts=max(1, len(summary.hosts)),
        mode=summary.mode,
        totals={"files": totals.files, "written": totals.written, "quarantined": totals.quarantined,
                "input_bytes": totals.input_bytes, "output_bytes": totals.output_bytes},
    )
    audit.write_manifest(dst, manifest)
    return summary


def _counted(items: Iterator[tuple[int, list[Entry]]], summary: RunSummary) -> Iterator[tuple[int, list[Entry]]]:
    """Passes shards through; when the listing ends, the job's size is known (for the ETA)."""
    seen = 0
    for number, entries in items:
        seen += len(entries)
        yield number, entries
    summary.listed = seen


def _chain(head: list[tuple[int, list[Entry]]], rest: Iterator[tuple[int, list[Entry]]]):
    yield from head
    yield from rest


def _service_numbers(service, counter) -> NumberSource:  # type: ignore[no-untyped-def]
    """Counter pseudonyms from a KeyService, or a proxy of one (a pool process): one call per shard."""
    from veil.keys import service as mapping

    def numbers(shard: int, values: list[bytes]) -> list[bytes]:
        return service.counter_pseudonyms(mapping.COUNTER_KIND, values, counter.prefix, counter.width,
                                          counter.suffix, shard)

    return numbers


def _local_functions(service) -> KeyedFunctions | None:  # type: ignore[no-untyped-def]
    from veil.keys import service as mapping

    if service is None:
        return None
    return mapping.functions_from_worker_keys(service.worker_keys())


# --- one machine: a pool of worker processes ----------------------------------------------------------------

_POOL_STATE: dict[str, object] = {}


def _pool_init(ctx: ShardContext, worker_keys: object, audit_key: bytes, sealer: object, journal: str | None,
               key_service: tuple[object, bytes] | None = None) -> None:
    """Runs once in each pool process: the run's context and the worker sub-keys (never the master key), and
    where the run keeps a re-identification table, the journal folder and the sub-key that seals its parts;
    with counter pseudonyms, a proxy of the key service (its address and authentication key)."""
    from veil.keys import service as mapping

    die_with_parent()
    _POOL_STATE["ctx"] = ctx
    _POOL_STATE["functions"] = mapping.functions_from_worker_keys(worker_keys) if worker_keys is not None else None
    _POOL_STATE["audit_key"] = audit_key
    _POOL_STATE["sealer"] = sealer
    _POOL_STATE["journal"] = journal
    _POOL_STATE["numbers"] = None
    if key_service is not None:
        address, authkey = key_service
        from veil.keys.server import KeyServiceManager

        manager = KeyServiceManager(address=address, authkey=authkey)
        manager.connect()
        _POOL_STATE["numbers"] = _service_numbers(manager.key_service(), ctx.plan_recipe.counter)  # type: ignore[attr-defined]


def _pool_shard(number: int, entries: list[Entry]) -> ShardResult:
    """One shard in a pool process; its re-identification rows are sealed into the journal by this process,
    before its audit part (the driver merges the journal into the table at the end)."""
    from veil.keys import service as mapping

    ctx = _POOL_STATE["ctx"]
    functions = _POOL_STATE["functions"]
    sealer, journal = _POOL_STATE["sealer"], _POOL_STATE["journal"]

    def sink(shard: int, pairs: list[tuple[str, bytes, bytes]]) -> None:
        mapping.write_reid_part(journal, shard, pairs, sealer)  # type: ignore[arg-type]

    return process_shard(ctx, number, entries, lambda: functions, _POOL_STATE["audit_key"],  # type: ignore[arg-type]
                         sink if ctx.reid and journal is not None else None,  # type: ignore[attr-defined]
                         _POOL_STATE["numbers"])  # type: ignore[arg-type]


def _pool_context():  # type: ignore[no-untyped-def]
    """``fork`` when this process runs no other Python thread and no Ray (the workers start in milliseconds,
    already holding the imported modules); else ``forkserver``, whose clean server process makes forking safe
    in a threaded caller (a notebook, a service) at the price of one interpreter start."""
    import multiprocessing
    import sys
    import threading

    ray_module = sys.modules.get("ray")
    ray_running = ray_module is not None and ray_module.is_initialized()
    if "fork" in multiprocessing.get_all_start_methods() and threading.active_count() == 1 and not ray_running:
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["veil.engine"])
    return context


POOL_RETRIES = 3  # a shard whose worker process died is run again this many times before the run stops


def _run_on_pool(options, ctx, service, audit_key, all_shards, done, summary, progress) -> None:  # type: ignore[no-untyped-def]
    """Shards on ``options.workers`` processes of this machine, at most twice as many in flight as workers.

    A worker process that dies (killed, out of memory) breaks the pool: a new pool is made and the shards that
    were in flight are run again (each output is a pure function of its input, so a redone shard writes the
    same bytes); a shard that has killed its worker ``POOL_RETRIES`` times stops the run.
    """
    from concurrent.futures import ProcessPoolExecutor

    from veil.keys import service as mapping

    summary.mode = "local-pool"
    worker_keys = service.worker_keys() if service is not None else None
    sealer = service.reid_sealer() if service is not None and ctx.reid else None
    journal = str(mapping.journal_dir(os.path.realpath(options.reid_table))) if sealer is not None else None
    context = _pool_context()
    limit = options.max_in_flight or 2 * options.workers
    manager = None
    served: tuple[object, bytes] | None = None
    if ctx.plan_recipe.counter is not None:
        if service is None:
            raise FatalRunError("counter pseudonyms need the run's key service")
        # Started before the pool; the service it holds has the journal set and the earlier numbers loaded.
        authkey = os.urandom(32)
        from veil.keys.server import KeyServiceManager, serve

        manager = KeyServiceManager(authkey=authkey, ctx=context)
        manager.start(serve, (service,))
        served = (manager.address, authkey)

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=options.workers, mp_context=context, initializer=_pool_init,
                                   initargs=(ctx, worker_keys, audit_key, sealer, journal, served))

    try:
        _pool_loop(options, all_shards, done, summary, progress, new_pool, limit)
    finally:
        if manager is not None:
            manager.shutdown()


def _pool_loop(options, all_shards, done, summary, progress, new_pool, limit) -> None:  # type: ignore[no-untyped-def]
    """The shards of :func:`_run_on_pool` through pools made by ``new_pool``."""
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    pool = new_pool()
    in_flight: dict = {}  # future -> (shard number, entries)

    def submit(number: int, entries: list[Entry]) -> None:
        in_flight[pool.submit(_pool_shard, number, entries)] = (number, entries)

    def record(result: ShardResult) -> None:
        summary.add(result)
        if progress:
            progress(summary, len(in_flight))

    def isolate(broken: list[tuple[int, list[Entry]]]) -> None:
        """A broken pool fails every shard in flight: rerun them one at a time on fresh pools, so a shard that
        kills its worker again is known for certain and the others are not blamed."""
        nonlocal pool
        for number, entries in sorted(broken, key=lambda item: item[0]):
            for attempt in range(1, POOL_RETRIES + 1):
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
                log.warning("shard %d: a worker process died; running it again alone (try %d)", number, attempt)
                try:
                    result = pool.submit(_pool_shard, number, entries).result()
                except BrokenProcessPool:
                    continue
                record(result)
                break
            else:
                raise FatalRunError(f"shard {number}: its worker process died on each of {POOL_RETRIES} tries "
                                    "(out of memory? a crash on one of its files?)")
        pool.shutdown(wait=False, cancel_futures=True)
        pool = new_pool()

    def collect() -> None:
        finished, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
        broken: list[tuple[int, list[Entry]]] = []
        for future in finished:
            number, entries = in_flight.pop(future)
            try:
                result = future.result()
            except BrokenProcessPool:
                broken.append((number, entries))
                continue
            record(result)
        if broken:
            # Every shard still in flight ran on the broken pool too.
            broken.extend(in_flight.values())
            in_flight.clear()
            isolate(broken)

    try:
        for number, entries in all_shards:
            if number in done:
                summary.shards_resumed += 1
                continue
            while len(in_flight) >= limit:
                collect()
            submit(number, entries)
        while in_flight:
            collect()
    except BaseException:
        _stop_pool(pool)  # a fatal error or an interrupt: stop the workers now, their shards are redone on resume
        raise
    pool.shutdown(wait=True)


def _stop_pool(pool) -> None:  # type: ignore[no-untyped-def]
    """Cancels what has not started and kills the pool's worker processes (a shard cut short leaves at most
    a temporary file, which its rerun replaces)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.kill()
    for process in processes:
        process.join(timeout=5)


def _run_on_ray(options, ctx, key, audit_key, all_shards, done, summary, progress):  # type: ignore[no-untyped-def]
    """Shards as Ray tasks, at most ``limit`` in flight; returns the key actor (or None without a key)."""
    import ray

    from veil.keys import service as mapping

    if not ray.is_initialized():
        if options.address:
            ray.init(address=options.address, log_to_driver=False, namespace="veil")
        else:
            ray.init(num_cpus=max(1, options.workers), include_dashboard=False, log_to_driver=False,
                     namespace="veil")
    summary.mode = "ray-cluster" if options.address else "ray-local"
    actor = None
    if key is not None:
        actor = mapping.get_or_create_actor(
            key.material, ctx.plan_recipe.pseudonym_pattern, ctx.plan_recipe.shift_range,
            name=f"veil-keys-{ctx.run_id}",
        )
        if ctx.reid and options.reid_table:
            ray.get(actor.set_journal.remote(os.path.realpath(options.reid_table)))
            if ctx.plan_recipe.counter is not None:
                ray.get(actor.load_reid.remote(os.path.realpath(options.reid_table)))
    ctx_ref = ray.put(ctx)
    task = ray.remote(_ray_shard).options(max_retries=3, retry_exceptions=False)
    in_flight: dict = {}
    # Twice the CPUs that will run shards: this machine's workers, or the whole cluster's.
    cpus = int(ray.cluster_resources().get("CPU", 1)) if options.address else options.workers
    limit = options.max_in_flight or max(2, 2 * max(1, cpus))

    def collect(block: bool) -> None:
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=None if block else 0)
        for ref in ready:
            in_flight.pop(ref)
            try:
                summary.add(ray.get(ref))
            except ray.exceptions.RayTaskError as exc:
                cause = exc.cause if hasattr(exc, "cause") else None
                if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise cause from None
                raise FatalRunError(f"a shard failed: {exc}") from None
            if progress:
                progress(summary, len(in_flight))

    for number, entries in all_shards:
        if number in done:
            summary.shards_resumed += 1
            continue
        while len(in_flight) >= limit:
            collect(True)
        in_flight[task.remote(ctx_ref, number, entries, actor, audit_key)] = number
    while in_flight:
        collect(True)
    return actor


def _ray_shard(ctx: ShardContext, number: int, entries: list[Entry], actor, audit_key: bytes) -> ShardResult:  # type: ignore[no-untyped-def]
    from veil.keys import service as mapping

    def functions() -> KeyedFunctions | None:
        return mapping.worker_functions(actor) if actor is not None else None

    def sink(shard: int, pairs: list[tuple[str, bytes, bytes]]) -> object:
        import ray

        return ray.get(actor.record_reid.remote(pairs, shard))  # journaled before the shard counts as done

    def numbers(shard: int, values: list[bytes]) -> list[bytes]:
        import ray

        counter = ctx.plan_recipe.counter
        return ray.get(actor.counter_pseudonyms.remote(mapping.COUNTER_KIND, values, counter.prefix, counter.width,
                                                       counter.suffix, shard))

    return process_shard(ctx, number, entries, functions, audit_key, sink if actor is not None and ctx.reid else None,
                         numbers if actor is not None else None)
