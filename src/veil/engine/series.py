"""The series step of a run whose recipe defaces (``deface:``): defacing needs a whole volume, so the per-file
pass sets aside the files of CT and MR series that may be heads (:func:`veil.deface.select.candidate`) and the
engine runs one task per such series after it.

- **Set aside.** A shard writes which of its files it set aside, by their place in the shard and a keyed digest
  of their series (``DST/.veil/audit/deface/deferred-NNNNNN.json``), before its audit part; those files get no
  row there.
- **Series tasks.** When every shard is done, the driver lists SRC again (the listing is stable, as resume
  relies on) to find the set-aside files, groups them by series and runs one task per series through the same
  executor, numbered after the last shard: a series task is a shard whose entries are one series
  (:class:`SeriesBatch`) and whose audit part marks it done, so a killed run resumes it like any shard.
- **The task** de-identifies each file in memory as the per-file pass would, defaces the volume
  (:func:`veil.deface.step.deface_outputs`) and writes every file, or quarantines every file of a head series
  that cannot be defaced. Its record (``series-NNNNNN.json``: plane, fraction removed, method and version, no
  value from the files) is written before its audit part; its first row carries the frontal renderings after
  and (sealed) before, as the pixel record of a redaction.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from veil.audit import deface_dir
from veil.engine.listing import Entry
from veil.errors import MalformedDicom, VeilError
from veil.pipeline import Deidentifier, FileOutcome, refused, reid_pairs, write_output

if TYPE_CHECKING:
    from veil.deface.step import SeriesOutcome
    from veil.recipes.deface import DefacePolicy

__all__ = ["DefacedSeries", "SeriesBatch", "change_record", "deface_series", "read_deferred", "series_outcomes",
           "series_tasks", "write_deferred"]


class SeriesBatch(list[Entry]):
    """The entries of one series, as a series task's shard: ``why`` it was set aside (``body part`` or
    ``check``) and the keyed digest of its series."""

    def __init__(self, entries: list[Entry], why: str, key: str) -> None:
        super().__init__(entries)
        self.why = why
        self.key = key


def _write_json(path: Path, content: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(content, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_deferred(dst: str, run_id: str, shard: int, items: list[tuple[int, str, str]]) -> None:
    """A shard's set-aside files: (index in the shard, series digest, why), for the series tasks."""
    _write_json(deface_dir(dst) / f"deferred-{shard:06d}.json",
                {"run_id": run_id, "shard": shard, "files": [list(item) for item in items]})


def read_deferred(dst: str, run_id: str) -> dict[int, list[tuple[int, str, str]]]:
    """Every shard's set-aside files, of this run only."""
    found: dict[int, list[tuple[int, str, str]]] = {}
    folder = deface_dir(dst)
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("deferred-*.json")):
        with open(path, encoding="utf-8") as fh:
            content = json.load(fh)
        if content.get("run_id") == run_id:
            found[int(content["shard"])] = [(int(i), str(k), str(w)) for i, k, w in content["files"]]
    return found


def series_tasks(dst: str, run_id: str, listing: Iterator[tuple[int, Sequence[Entry]]]) -> list[tuple[int, SeriesBatch]]:
    """The series tasks of a run whose shards are done: ``listing`` is the run's shards cut again; each series
    set aside becomes one task, numbered after the last shard in the order its first file was listed."""
    deferred = read_deferred(dst, run_id)
    groups: dict[str, list[Entry]] = {}
    why: dict[str, str] = {}
    count = 0
    for number, entries in listing:
        count = number + 1
        for index, key, reason in deferred.get(number, ()):
            if index < len(entries):
                groups.setdefault(key, []).append(entries[index])
                if why.get(key) != "body part":
                    why[key] = reason
    return [(count + i, SeriesBatch(entries, why[key], key)) for i, (key, entries) in enumerate(groups.items())]


def series_outcomes(
    ctx: Any,
    number: int,
    worker: Deidentifier,
    batch: SeriesBatch,
    destination: Callable[[Entry, dict[str, object]], str],
    want_reid: bool,
    changes: list[tuple[int, list[Any]]] | None = None,
) -> list[FileOutcome | None]:
    """One outcome per entry of a series task (in its order; None for an entry the listing refused), the
    outputs written; the series record is written beside the audit. An entry the per-file step refuses is
    quarantined on its own; if that leaves a head series incomplete, the step refuses the rest too (a gap in the
    volume). With ``changes``
    (``--change-records``), each written file's change record goes there under its row: its place in the
    batch (every entry of a series task is one audit row, in order)."""
    from veil.core._core import peek

    started = time.perf_counter_ns()
    policy = ctx.plan_recipe.recipe.deface
    outcomes: list[FileOutcome | None] = [None] * len(batch)
    read: list[int] = []
    items: list[tuple[str, bytes]] = []
    for i, entry in enumerate(batch):
        if entry.error:
            continue
        try:
            with open(entry.path, "rb") as fh:
                data = fh.read()
            if not data:
                raise MalformedDicom(entry.path, 0, "empty file")
        except (VeilError, OSError) as exc:
            outcomes[i] = refused(entry.path, exc, started)
            continue
        read.append(i)
        items.append((entry.path, data))
    done = deface_series(worker, policy, batch.why, items)
    for j, problem in done.errors.items():
        outcomes[read[j]] = refused(batch[read[j]].path, problem, started)
    kept = [read[j] for j in done.kept]
    datas = [items[j][1] for j in done.kept]
    result, counts, redactions = done.result, done.counts, done.redactions
    record: dict[str, Any] = {"series_digest": batch.key, "files": len(batch)}
    if result is not None:
        record.update(result.record)
    _write_json(deface_dir(ctx.dst) / f"series-{number:06d}.json", record)
    if result is None:
        return outcomes
    writer = worker  # the Deidentifier that rewrote the written files (the marking one, for a defaced series)
    if result.status == "defaced":
        from veil.deface.series import marking

        writer = worker.marked(marking(worker.plan.insert))
    first = True
    for j, i in enumerate(kept):
        entry = batch[i]
        if result.status == "quarantined":
            outcomes[i] = FileOutcome(entry.path, None, "quarantined", reason=result.reason)
            continue
        out = result.outputs[j]
        new = peek(out, entry.path)
        dst = destination(entry, new)
        try:
            written = write_output(dst, out, worker.direct)
        except OSError as exc:
            outcomes[i] = refused(entry.path, exc, started)
            continue
        if changes is not None:
            changes.append((i, change_record(writer, datas[j], out, entry.path)))
        pixel_record = redactions[j]
        if result.status == "defaced" and first:
            pixel_record = _rendering(result, new, pixel_record)
            first = False
        outcomes[i] = FileOutcome(
            entry.path, dst, "written", "", len(datas[j]), written, str(new["sop_class_uid"] or ""),
            str(new["sop_instance_uid"] or ""), str(new["study_instance_uid"] or ""),
            str(new["series_instance_uid"] or ""), str(new["modality"] or ""), str(new["transfer_syntax"] or ""),
            counts[j], (time.perf_counter_ns() - started) // 1000, pixel_record is not None, pixel_record,
            reid_pairs(peek(datas[j], entry.path), new) if want_reid else (),
        )
    return outcomes


class DefacedSeries(NamedTuple):
    """:func:`deface_series`'s answer: the step's outcome (None when no file could be rewritten), which of
    the items were rewritten (their indexes) with their counts and pixel records, and the refusals by index."""

    result: SeriesOutcome | None
    kept: list[int]
    counts: list[tuple[int, ...]]
    redactions: list[Any]
    errors: dict[int, VeilError | OSError]


def deface_series(worker: Deidentifier, policy: DefacePolicy, why: str,
                  items: Sequence[tuple[str, bytes]]) -> DefacedSeries:
    """De-identifies the files of one series in memory (``items``: path and bytes) as the per-file pass would
    and defaces the volume (:func:`veil.deface.step.deface_outputs`); nothing is written. A run's series task
    and ``veil inspect`` on a folder (:mod:`veil.preview.deface`) both go through it."""
    from veil.deface.series import marking
    from veil.deface.step import deface_outputs

    # Rewritten as defaced outputs are marked (RecognizableVisualFeatures NO, code 113102): the core writes the
    # marks, the step writes the defaced voxels over the pixels in place.
    marker = worker.marked(marking(worker.plan.insert))
    kept: list[int] = []
    datas: list[bytes] = []
    outputs: list[bytes] = []
    counts: list[tuple[int, ...]] = []
    redactions: list[Any] = []
    places: list[tuple[int, int] | None] = []
    errors: dict[int, VeilError | OSError] = {}
    for i, (path, data) in enumerate(items):
        try:
            out, row, redaction, at = marker.rewritten(data, path)
        except (VeilError, OSError) as exc:
            errors[i] = exc
            continue
        kept.append(i)
        datas.append(data)
        outputs.append(out)
        counts.append(row)
        redactions.append(redaction)
        places.append(at)
    result = deface_outputs(outputs, policy, why, places) if outputs else None
    if result is not None and result.status == "untouched" and marker is not worker:
        # Not defaced: written unmarked, as any other file (the same rewrite without the defacing marks).
        plain = [worker.rewritten(data, items[i][0]) for i, data in zip(kept, datas, strict=True)]
        result.outputs = [p.data for p in plain]
        counts = [p.counts_row for p in plain]
    return DefacedSeries(result, kept, counts, redactions, errors)


def change_record(writer: Deidentifier, before: bytes, after: bytes, path: str) -> list[Any]:
    """The change record of one written file (``--change-records``): the input rewritten again in memory by the
    Deidentifier that wrote it, for the rewriter's record of what it did (deterministic), both files read with
    pydicom, and :func:`~veil.audit.changes.change_rows` of the two; a file that fails here gets a record
    saying so. The per-file loop and a series task (whose defaced files the marking Plan wrote) both use it."""
    from veil.audit.changes import change_rows, unavailable

    try:
        touched = dict(writer.rewrite(before, path).touched())
        return change_rows(before, after, touched, writer.plan)
    except (VeilError, OSError) as exc:
        return [unavailable(type(exc).__name__)]


def _rendering(result: Any, new: dict[str, object], redaction: Any) -> Any:
    """The pixel record of the series' first file: its frontal renderings after and before defacing."""
    from veil.pixels.redact import Redaction

    after, before = result.after, result.before
    source = f"deface {result.record['method']}"
    if redaction is not None:
        source = f"{redaction.source} + {source}"
    return Redaction(b"", tuple(redaction.boxes) if redaction is not None else (), (), after,
                     int(after.shape[0]), int(after.shape[1]), str(new["transfer_syntax"] or ""), before, source)
