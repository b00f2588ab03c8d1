"""The driver of ``veil run``: lazy listing, shards, an executor chosen for the run, resume, the manifest and
progress.

One shard function (:func:`~veil.engine.sharding.process_shard`) does all the work, through one executor
interface (:mod:`veil.engine.executor`) wherever it runs: in this process (``--workers 1``, or a job of one
shard), in a pool of worker processes on this machine (``--workers N``: they start in milliseconds), or as Ray
tasks (``--ray`` on this machine, ``--address`` on a cluster; Ray costs seconds to start and pays off on a
cluster). Every output byte is a pure function of (input bytes, recipe, key), so a retried or resumed shard
writes exactly what it would have; a shard is complete when its audit part exists, and ``--resume`` skips those.

Counter pseudonyms (``SUBJ-{counter:6}``) are the one exception to "a function of the key": their numbers come
from the run's :class:`~veil.keys.service.KeyService`. Before a shard is rewritten, its worker lists the values
it will pseudonymise (a collecting pass with the same Plan) and asks the service once for those it has no number
for: directly in this process, through the Ray key actor, or, for a local pool, through a ``BaseManager``
process (:mod:`veil.keys.server`) that serves the service (started before the pool, dying with the driver). The
service journals the numbers before it answers; a run with counters loads the table and its journal first, so a
resumed run goes on.

The manifest (``DST/.veil/manifest.json``) is the run's record: ISO 8601 UTC times, the operator and host, the
versions of veil, Python, pydicom and the native core, the command with every path replaced by a keyed digest
(paths can hold names), the recipe with its full resolved text, the key ids, the sealing mode (custodian,
single-user or none), the retention policy, and one entry per invocation (``runs``: a resume is one more).
"""

from __future__ import annotations

import errno
import functools
import itertools
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3

from veil._version import __version__
from veil.audit import (
    Tally,
    TallyCounts,
    audit_dir,
    completed_shards,
    manifest_path,
    read_manifest,
    sweep_output_temporaries,
    sweep_temporaries,
    veil_dir,
    write_manifest,
)
from veil.audit.retention import resolve_policy
from veil.audit.schema import iso_time
from veil.engine.executor import Executor, FatalRunError
from veil.engine.listing import Entry, list_blocks
from veil.engine.series import series_tasks
from veil.engine.sharding import ShardContext, ShardResult, choose_shard_files, shards
from veil.keys import Key
from veil.recipes import CompiledRecipe
from veil.recipes.cache import recipe_text
from veil.system import cache_home, login_name, read_private, write_private

__all__ = ["RunOptions", "RunSummary", "RunTotals", "run", "check_destination", "audit_key", "FatalRunError"]


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
    operator: str | None = None  # who runs it, for the manifest (None: the login name)
    command: tuple[str, ...] | None = None  # the command line, recorded with its paths digested (None: omitted)
    custodian_public: str | None = None  # the custodian's public key file: custodian mode
    change_records: bool = False  # record every changed attribute, originals sealed
    retention: dict[str, str] | None = None  # class -> age or "keep", over the recipe's retention
    # "shard": outputs under their final names, a shard done once its outputs are synced (redone whole if cut
    # short); "file": each output under a temporary name, renamed (for DSTs others read during a run). None:
    # shard for a new DST, what the manifest says for a resumed one, file for a DST written before.
    atomic: str | None = None


# The totals of a run, or of every audit row in DST (this run's and earlier runs' into it): one Tally. The name
# is kept for callers (``RunTotals.of_audit(dst)``).
RunTotals = Tally


@dataclass
class RunSummary(TallyCounts):
    """One run: what its shards did (a :class:`~veil.audit.Tally`, whose counts it answers as its own) and the
    run's own facts: id, mode, shards, resumed shards, hosts, seconds."""

    run_id: str
    tally: Tally = field(default_factory=Tally)
    shards: int = 0
    shards_resumed: int = 0
    seconds: float = 0.0
    mode: str = "in-process"
    audit_dir: str = ""
    listed: int | None = None  # files in the whole job, once the listing has been read to its end
    hosts: set[str] = field(default_factory=set)  # machines that did work in this run
    totals: Tally | None = None  # the whole audit of DST (all runs into it), at the end

    def add(self, result: ShardResult) -> None:
        self.tally.add(result.tally)
        self.shards += 1
        if result.host:
            self.hosts.add(result.host)


def check_destination(options: RunOptions) -> None:
    """Fatal problems known before any work: DST inside SRC, DST not writable, re-id table inside DST."""
    src = os.path.realpath(options.src)
    dst = os.path.realpath(options.dst)
    if not os.path.exists(src):
        raise FatalRunError(f"{options.src}: no such file or directory")
    if dst == src or dst.startswith(src + os.sep):
        raise FatalRunError("DST must not be inside SRC")
    try:
        os.makedirs(veil_dir(dst), exist_ok=True)
        probe = os.path.join(veil_dir(dst), f".probe-{os.getpid()}")
        with open(probe, "w") as fh:
            fh.write("ok")
        os.unlink(probe)
    except OSError as exc:
        raise FatalRunError(f"{options.dst}: cannot write: {exc.strerror}") from None
    if options.reid_table:
        table = os.path.realpath(options.reid_table)
        if table.startswith(dst + os.sep) or table.startswith(src + os.sep):
            raise FatalRunError("the re-identification table must be stored apart from SRC and DST")


def audit_key(key: Key | None, run_id: str) -> bytes:
    """The key of a run's audit digests: the project key's ``audit`` sub-key, or without a project key one
    derived from the (public) run id."""
    return key.subkey("audit") if key else blake3.blake3(run_id.encode()).digest()


def run(
    options: RunOptions,
    compiled: CompiledRecipe,
    key: Key | None,
    progress: Callable[[RunSummary, int | None], None] | None = None,
) -> RunSummary:
    """Runs (or resumes) a whole job; returns the totals. Raises FatalRunError for a run that cannot go on."""
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
    prior = _prior_manifest(dst, strict=options.resume)
    previous = prior if options.resume else {}
    run_id = previous.get("run_id") or os.urandom(16).hex()  # as uuid4().hex: 128 random bits
    shard_bytes = int(previous.get("shard_bytes", options.shard_bytes))
    custodian, seal_to = _sealing(options, key, previous)
    atomic = _atomic_mode(options, prior)
    change_records = options.change_records or bool(previous.get("change_records"))
    if change_records and seal_to is None:
        raise FatalRunError("change records are sealed: give --key or --custodian-public")
    try:
        retention = resolve_policy(compiled.recipe.retention, options.retention)
    except ValueError as exc:
        raise FatalRunError(str(exc)) from None
    inputs = list_blocks(options.src, options.files_from)  # runs of plain files as blocks: no object each
    if "shard_files" in previous:
        shard_files = int(previous["shard_files"])  # a resumed run cuts the same shards, whatever its --workers
    elif options.shard_files is not None:
        shard_files = options.shard_files
    else:
        shard_files, inputs = choose_shard_files(inputs, options.workers)
    completed = completed_shards(dst)
    done = completed if options.resume else set()
    fresh = not options.resume and not completed  # no audit row from an earlier run
    if options.resume:
        sweep_temporaries(dst)  # what the killed run was half-way through writing
    if previous.get("reid_table") and not options.reid_table and done:
        raise FatalRunError("this run keeps a re-identification table: resume it with --reid-table (the same path)")
    service = _key_service(key, compiled, custodian)
    summary = RunSummary(run_id=run_id, audit_dir=str(audit_dir(dst)))
    run_audit_key = audit_key(key, run_id)
    operator = options.operator or login_name()
    invocation: dict[str, Any] = {"run_id": run_id, "started": iso_time(int(started * 1e6)), "finished": None,
                                  "operator": operator, "host": os.uname().nodename, "resumed": options.resume}
    if options.command is not None:
        invocation["command"] = _command_record(options.command, options, run_audit_key)
    runs = _earlier_runs(prior) + [invocation]
    manifest: dict[str, Any] = {
        "run_id": run_id,
        # The source path may name a patient (exports are often filed by name): only a keyed digest of it.
        "src_digest": _path_digest(options.src, run_audit_key),
        "recipe": {"name": compiled.recipe.name, "version": compiled.recipe.version,
                   "hash": compiled.recipe.content_hash, "layers": list(compiled.recipe.layers),
                   "text": recipe_text(compiled)},
        "key_id": key.key_id if key else None,
        "custodian": custodian.describe() if custodian is not None else None,
        "sealing": "custodian" if custodian is not None else "single-user" if seal_to is not None else "none",
        "change_records": change_records,
        "retention": retention,
        "veil_version": __version__,
        "versions": software_versions(),
        "operator": operator,
        "host": invocation["host"],
        "layout": options.layout,
        "atomic": atomic,
        "shard_files": shard_files,
        "shard_bytes": shard_bytes,
        "started": _iso(previous.get("started")) or invocation["started"],
        "status": "running",
        "reid_table": bool(options.reid_table) or bool(previous.get("reid_table")),
        "runs": runs,
    }
    if "command" in invocation:
        manifest["command"] = invocation["command"]
    write_manifest(dst, manifest)
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
        seal_to=seal_to,
        change_records=change_records,
        atomic=atomic,
    )
    listing = shards(inputs, shard_files, shard_bytes)
    # Look ahead one shard: a job of one shard has nothing to share out, it stays in this process.
    head: list[tuple[int, Sequence[Entry]]] = list(itertools.islice(listing, 2))
    all_shards = _counted(itertools.chain(head, listing), summary)
    reid_writer: Callable[..., object] | None = service.write_reid_table if service is not None else None
    try:
        executor: Executor[ShardResult]
        local = options.address is None and not options.force_ray
        # Each executor's module is imported where it runs (the pool's multiprocessing costs a run in this
        # process 12 ms of start-up).
        if local and options.workers > 1 and len(head) > 1:
            from veil.engine import local as local_pool

            executor = local_pool.shard_executor(options, ctx, service, run_audit_key)
        elif local:
            from veil.engine import inline

            executor = inline.shard_executor(ctx, service, run_audit_key)
        else:
            from veil.engine import ray as on_ray

            executor, reid_writer = on_ray.shard_executor(options, ctx, key, run_audit_key)
        summary.mode = executor.mode
        with executor:
            for result in executor.run(_pending(all_shards, done, summary)):
                summary.add(result)
                if progress:
                    progress(summary, executor.in_flight)
            if compiled.recipe.deface is not None:
                # Defacing: the series set aside by the shards, one task each (veil.engine.series), once every
                # shard is done; the listing is cut again the same way to find their files.
                relisted = shards(list_blocks(options.src, options.files_from), shard_files, shard_bytes)
                tasks = series_tasks(str(dst), run_id, relisted)
                for result in executor.run(_pending(iter(tasks), done, summary)):
                    summary.add(result)
                    if progress:
                        progress(summary, executor.in_flight)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # The executor has stopped its workers (leaving the with block): what they were half-way through
            # writing goes, so every output left is whole and the space is free for the resume.
            sweep_output_temporaries(dst)
            raise FatalRunError(f"{options.dst}: disk full; finished shards are kept, rerun with --resume") from None
        raise
    if options.reid_table and key is not None and reid_writer is not None:
        table = os.path.realpath(options.reid_table)
        reid_writer(table, forbid_under=[os.path.realpath(options.src), os.path.realpath(options.dst)])
    finished = time.time()
    summary.seconds = finished - started
    # A run into an empty audit holds every row it counted: no need to read the parts back.
    totals = summary.totals = summary.tally.ranked() if fresh else Tally.of_audit(dst)
    invocation["finished"] = iso_time(int(finished * 1e6))
    manifest.update(
        status="complete",
        finished=invocation["finished"],
        hosts=max(1, len(summary.hosts)),
        mode=summary.mode,
        totals={"files": totals.files, "written": totals.written, "quarantined": totals.quarantined,
                "input_bytes": totals.input_bytes, "output_bytes": totals.output_bytes},
    )
    write_manifest(dst, manifest)
    return summary


def _counted(items: Iterator[tuple[int, Sequence[Entry]]], summary: RunSummary) -> Iterator[tuple[int, Sequence[Entry]]]:
    """Passes shards through; when the listing ends, the job's size is known (for the ETA)."""
    seen = 0
    for number, entries in items:
        seen += len(entries)
        yield number, entries
    summary.listed = seen


def _pending(items: Iterator[tuple[int, Sequence[Entry]]], done: set[int],
             summary: RunSummary) -> Iterator[tuple[Any, ...]]:
    """The shards still to run: those a resumed run finished before are counted and skipped."""
    for number, entries in items:
        if number in done:
            summary.shards_resumed += 1
            continue
        yield number, entries


# --- the run record ------------------------------------------------------------------------------------------

# Options of `veil run` whose values are recorded as given; every other value (SRC, DST, key, table, listing,
# custodian key, a recipe file) is a path and recorded as a keyed digest: fail closed, a new path option is
# digested without anyone listing it.
_PLAIN_VALUES = frozenset({"--workers", "--layout", "--quarantine", "--shard-files", "--sample", "--operator",
                           "--retention", "--address"})
_VERBS = frozenset({"run", "deidentify"})
_PATH_ROLES = {"--key": "key", "--reid-table": "reid-table", "--files-from": "files-from",
               "--custodian-public": "custodian-public", "--recipe": "recipe"}


def _path_digest(path: str, audit_key: bytes) -> str:
    """32 hex digits of the keyed BLAKE3 digest of a path made absolute (the manifest's ``src_digest``)."""
    return blake3.blake3(os.fsencode(os.path.realpath(path)), key=audit_key).hexdigest()[:32]


def _command_record(command: tuple[str, ...], options: RunOptions, audit_key: bytes) -> list[str]:
    """The command line with each path replaced by ``<ROLE:DIGEST>`` (role: src, dst, key, reid-table,
    files-from, custodian-public, recipe, or path); the program by its name; option names and the values of
    :data:`_PLAIN_VALUES` as given. A shipped recipe's name is kept, a recipe file digested."""
    known = {os.path.realpath(p): role for p, role in ((options.src, "src"), (options.dst, "dst"),
             (options.reid_table, "reid-table"), (options.files_from, "files-from"),
             (options.custodian_public, "custodian-public")) if p}

    def digested(value: str, role: str | None) -> str:
        if role == "recipe" and os.sep not in value and not value.endswith((".yml", ".yaml")):
            return value
        role = known.get(os.path.realpath(value), role or "path")
        return f"<{role}:{_path_digest(value, audit_key)}>"

    if not command:
        return []
    out = [os.path.basename(command[0])]
    pending: str | None = None  # the option whose value comes next
    for token in command[1:]:
        if pending is not None:
            out.append(token if pending in _PLAIN_VALUES else digested(token, _PATH_ROLES.get(pending)))
            pending = None
        elif token.startswith("--") and "=" in token:
            name, _, value = token.partition("=")
            out.append(f"{name}={value if name in _PLAIN_VALUES else digested(value, _PATH_ROLES.get(name))}")
        elif token.startswith("-") and len(token) > 1:
            out.append(token)
            pending = token if token in _PLAIN_VALUES or token in _PATH_ROLES else None
        elif len(out) == 1 and token in _VERBS:
            out.append(token)
        else:
            out.append(digested(token, None))
    return out


@functools.lru_cache(maxsize=1)
def software_versions() -> dict[str, str]:
    """veil's, Python's, pydicom's and the native core's versions: the core's is the veil version it was built
    from with the first 16 hex digits of the SHA-256 of its library (a rebuild shows)."""
    import importlib.util

    pydicom = _distribution_version("pydicom")
    core = "absent"
    spec = importlib.util.find_spec("veil.core._core")
    if spec is not None and spec.origin:
        from veil.core import _core

        core = f"{getattr(_core, '_VEIL_VERSION', __version__)}+sha256.{_library_digest(spec.origin)[:16]}"
    return {"veil": __version__, "python": sys.version.split()[0], "pydicom": pydicom, "core": core}


def _library_digest(path: str) -> str:
    """SHA-256 of the core's library (4 ms for its 4 MB), kept in the user's cache under the file's identity
    (device, inode, size, modification and change times: a rebuild or any write changes the last), as Python
    keeps byte code; worked out again when the cache has no entry for the file as it is now."""
    import hashlib

    st = os.stat(path)
    stamp = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{path}"
    home = cache_home()
    memo = home / "core-digest" if home is not None else None
    if memo is not None:
        known_stamp, _, known = (read_private(memo, 4096) or b"").decode("utf-8", "surrogateescape").rpartition("\n")
        if known_stamp == stamp and len(known) == 64:
            return known
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    if memo is not None:
        write_private(memo, f"{stamp}\n{value}".encode("utf-8", "surrogateescape"))
    return value


def _distribution_version(name: str) -> str:
    """An installed distribution's version, or "absent": from the ``NAME-VERSION.dist-info`` folder beside the
    package (what ``importlib.metadata`` finds, without its 15-25 ms import), else ``importlib.metadata``."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        return "absent"
    site = Path(spec.origin).parent.parent
    found = sorted(site.glob(f"{name}-*.dist-info"))
    if len(found) == 1:
        return found[0].name[len(name) + 1:-len(".dist-info")]
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _iso(value: object) -> str | None:
    """A manifest time as ISO 8601 UTC: as recorded, or from the epoch seconds of a manifest before them."""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return iso_time(int(value * 1e6))
    return None


def _prior_manifest(dst: Path, strict: bool) -> dict[str, Any]:
    """The manifest an earlier run into DST left (a resume goes on from it; any run keeps its ``runs``). A
    damaged one stops a resume (its shards could not be cut the same way); a fresh run writes a new one."""
    if not manifest_path(dst).exists():
        return {}
    try:
        return read_manifest(dst)
    except ValueError as exc:
        if strict:
            raise FatalRunError(f"{manifest_path(dst)}: damaged manifest, the run cannot be resumed ({exc})") from None
        return {}


def _earlier_runs(prior: dict[str, Any]) -> list[dict[str, Any]]:
    """The invocations an earlier manifest records; one from before ``runs`` becomes a single entry."""
    runs = prior.get("runs")
    if isinstance(runs, list):
        return [r for r in runs if isinstance(r, dict)]
    if prior.get("run_id"):
        return [{"run_id": prior["run_id"], "started": _iso(prior.get("started")),
                 "finished": _iso(prior.get("finished"))}]
    return []


ATOMIC_MODES = ("shard", "file")


def _atomic_mode(options: RunOptions, prior: dict[str, Any]) -> str:
    """The run's atomic unit (see :class:`RunOptions`): a resumed run keeps its manifest's."""
    if options.atomic is not None and options.atomic not in ATOMIC_MODES:
        raise FatalRunError(f"--atomic is one of {', '.join(ATOMIC_MODES)}")
    recorded = prior.get("atomic") if prior else None
    if options.resume and prior:
        mode = str(recorded or "file")  # a manifest from before the choice: renamed files
        if options.atomic is not None and options.atomic != mode:
            raise FatalRunError(f"this run writes with --atomic {mode}: resume it so")
        return mode
    return options.atomic or ("file" if prior else "shard")


def _sealing(options: RunOptions, key: Key | None, previous: dict[str, Any]) -> tuple[Any, Any]:
    """(the custodian public key or None, the SealTarget of the run's PHI-bearing parts or None): custodian mode
    with ``--custodian-public``, else single-user (a seal from the run key's audit sub-key, which the workers
    hold) with a key, else none. A resumed run must seal to the custodian its manifest names."""
    from veil.keys import envelope
    from veil.keys.custodian import load_custodian_public

    custodian = load_custodian_public(options.custodian_public) if options.custodian_public else None
    if options.resume and previous:
        before = previous.get("custodian")
        before_id = before.get("key_id") if isinstance(before, dict) else None
        now_id = custodian.key_id if custodian is not None else None
        if before_id != now_id:
            sealed = f"to custodian key {before_id}" if before_id else "without a custodian key"
            expected = f"--custodian-public of custodian key {before_id}" if before_id else "no --custodian-public"
            raise FatalRunError(f"this run was sealed {sealed}: resume it with {expected}")
    if custodian is not None:
        return custodian, custodian
    if key is not None:
        return None, envelope.audit_parts_seal(key)
    return None, None


def _key_service(key: Key | None, compiled: CompiledRecipe, custodian: Any) -> Any:
    """The run's key service (None without a key); in custodian mode its table is sealed to the custodian."""
    if key is None:
        return None
    from veil.keys.service import KeyService

    return KeyService(key.material, compiled.pseudonym_pattern, compiled.shift_range, seal_to=custodian)
