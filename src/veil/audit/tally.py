"""One tally type for every count veil reports: a shard's result, a run's summary, and ``veil audit``'s totals
(:class:`Tally`), with the audit summary and its plain-text form."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from veil.audit.layout import pixels_path
from veil.audit.read import complete_parts, read_manifest, read_parts
from veil.audit.schema import ACTION_NAMES, count_column

if TYPE_CHECKING:  # pyarrow where an audit is summarised, not where a tally is only added up
    import pyarrow as pa

__all__ = ["Tally", "TallyCounts", "AuditSummary", "summarize", "format_summary"]


def _ranked(counts: Counter[str]) -> Counter[str]:
    """Most frequent first, ties by name: the order every report lists reasons in."""
    return Counter(dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))))


@dataclass(slots=True)
class Tally:
    """Inputs and what became of them: files, written, skipped, quarantined, bytes in and out, refusal reasons
    (reason -> inputs) and elements per action (action name -> elements). Tallies add up (:meth:`add`, ``+``)
    from a shard's to a run's, and :meth:`of_table` counts an audit's rows the same way."""

    files: int = 0
    written: int = 0
    skipped: int = 0
    quarantined: int = 0
    input_bytes: int = 0
    output_bytes: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)

    def add(self, other: Tally) -> Tally:
        """Adds ``other`` into this tally; returns it."""
        self.files += other.files
        self.written += other.written
        self.skipped += other.skipped
        self.quarantined += other.quarantined
        self.input_bytes += other.input_bytes
        self.output_bytes += other.output_bytes
        self.reasons.update(other.reasons)
        self.actions.update(other.actions)
        return self

    def __add__(self, other: Tally) -> Tally:
        return self.copy().add(other)

    def copy(self) -> Tally:
        return Tally(self.files, self.written, self.skipped, self.quarantined, self.input_bytes,
                     self.output_bytes, Counter(self.reasons), Counter(self.actions))

    def ranked(self) -> Tally:
        """A copy whose reasons are in report order (most frequent first, ties by name)."""
        out = self.copy()
        out.reasons = _ranked(self.reasons)
        return out

    @classmethod
    def of_table(cls, table: pa.Table) -> Tally:
        """The tally of audit rows (a table of :data:`~veil.audit.schema.AUDIT_SCHEMA`), columnar: fine for
        millions. Reasons are those of rows of any status, ranked; actions every action, in plan order."""
        statuses = _value_counts(table, "status")
        reasons = _value_counts(table, "reason")
        reasons.pop("", None)
        return cls(
            files=table.num_rows,
            written=statuses.get("written", 0),
            skipped=statuses.get("skipped", 0),
            quarantined=statuses.get("quarantined", 0),
            input_bytes=_total(table, "input_bytes"),
            output_bytes=_total(table, "output_bytes"),
            reasons=_ranked(reasons),
            actions=Counter({name: _total(table, count_column(name)) for name in ACTION_NAMES}),
        )

    @classmethod
    def of_audit(cls, dst: Path | str) -> Tally:
        """The tally of every complete audit part in ``dst`` (this run's and earlier runs' into it)."""
        return cls.of_table(read_parts(complete_parts(dst), ["status", "reason", "input_bytes", "output_bytes",
                                                             *(count_column(name) for name in ACTION_NAMES)]))


def _total(table: pa.Table, column: str) -> int:
    import pyarrow.compute as pc  # here: the workers that write parts never need it (28 ms to import)

    value = pc.sum(table[column]).as_py()
    return int(value or 0)


def _value_counts(table: pa.Table, column: str) -> Counter[str]:
    import pyarrow.compute as pc

    return Counter({item["values"]: item["counts"] for item in pc.value_counts(table[column]).to_pylist()})


class TallyCounts:
    """The counters of the :class:`Tally` an object holds (``self.tally``), answered as its own: a run's summary
    and an audit's summary both count through one Tally."""

    tally: Tally

    @property
    def files(self) -> int:
        return self.tally.files

    @property
    def written(self) -> int:
        return self.tally.written

    @property
    def skipped(self) -> int:
        return self.tally.skipped

    @property
    def quarantined(self) -> int:
        return self.tally.quarantined

    @property
    def input_bytes(self) -> int:
        return self.tally.input_bytes

    @property
    def output_bytes(self) -> int:
        return self.tally.output_bytes

    @property
    def reasons(self) -> Counter[str]:
        """Non-empty reason -> rows, any status, most frequent first."""
        return self.tally.reasons

    @property
    def actions(self) -> Counter[str]:
        """Action name -> elements, every action in plan order."""
        return self.tally.actions


@dataclass(frozen=True)
class AuditSummary(TallyCounts):
    """The totals of a run's audit, for ``veil audit DST``; quarantined inputs are named by digest only."""

    tally: Tally
    quarantine: list[tuple[str, str]]  # (input_digest, reason), sorted
    manifest: dict[str, Any]
    shards: int = 0
    key_ids: tuple[str, ...] = field(default=())  # more than one: the outputs mix keys
    recipes: tuple[str, ...] = field(default=())  # "name version hash": more than one mixes recipes
    pixel_redacted: int = 0  # rows whose pixels were redacted (burned-in text)
    pixel_records: int = 0  # of them, with boxes and a thumbnail in pixels.zarr
    pixel_store: str = ""  # where those records are, relative to DST
    pixel_before_sealed: int = 0  # of the records, with a sealed before-redaction thumbnail
    due: dict[str, dict[str, int]] = field(default_factory=dict)  # class -> counts due for purge (policy)
    purges: list[dict[str, Any]] = field(default_factory=list)  # every purge recorded, oldest first

    def to_dict(self) -> dict[str, Any]:
        """The totals as JSON values (``veil audit --json``'s ``summary``); quarantined inputs by digest."""
        return {
            "shards": self.shards, "files": self.files, "written": self.written, "skipped": self.skipped,
            "quarantined": self.quarantined, "input_bytes": self.input_bytes, "output_bytes": self.output_bytes,
            "key_ids": list(self.key_ids), "recipes": list(self.recipes), "actions": dict(self.actions),
            "reasons": dict(self.reasons),
            "quarantine": [{"input_digest": d, "reason": r} for d, r in self.quarantine],
            "pixels": {"redacted": self.pixel_redacted, "records": self.pixel_records,
                       "before_sealed": self.pixel_before_sealed, "store": self.pixel_store},
            "due_for_purge": self.due, "purges": self.purges,
        }


def summarize(dst: Path | str) -> AuditSummary:
    """Totals over every complete part of ``dst``'s audit, with its manifest (columnar: fine for millions)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from veil.audit.pixelstore import read_pixel_records
    from veil.audit.retention import plan_purge, read_purges

    dst = Path(dst)
    parts = complete_parts(dst)
    table = read_parts(parts)
    manifest = read_manifest(dst)
    policy = manifest.get("retention")
    plan = plan_purge(dst, policy=policy if isinstance(policy, dict) else {}, table=table)
    held = table.filter(pc.equal(table["status"], "quarantined")).select(["input_digest", "reason"])
    quarantine = sorted(zip(held["input_digest"].to_pylist(), held["reason"].to_pylist(), strict=True))
    recipe_keys = table.group_by(["recipe_name", "recipe_version", "recipe_hash"]).aggregate([]).to_pylist()
    recipes = sorted(f"{r['recipe_name']} {r['recipe_version']} {r['recipe_hash']}" for r in recipe_keys)
    records = {s: r for s, r in read_pixel_records(dst).items() if s in parts}
    return AuditSummary(
        tally=Tally.of_table(table),
        quarantine=quarantine,
        manifest=manifest,
        shards=len(parts),
        key_ids=tuple(sorted(_value_counts(table, "key_id"))),
        recipes=tuple(recipes),
        pixel_redacted=int(pc.sum(pc.cast(table["pixel_redaction"], pa.int64())).as_py() or 0),
        pixel_records=sum(len(r) for r in records.values()),
        pixel_store=os.path.relpath(pixels_path(dst), dst),
        pixel_before_sealed=sum(rec.before_sealed for r in records.values() for rec in r),
        due={kind: counts for kind, counts in plan.counts().items() if counts["files"]},
        purges=read_purges(dst),
    )


def _run_record(s: AuditSummary) -> list[str]:
    """The custodian, the recipe's text size and every invocation into DST (a resume is one more)."""
    lines: list[str] = []
    custodian = s.manifest.get("custodian")
    if isinstance(custodian, dict):
        lines.append(f"  custodian  {custodian.get('name')} (key id {custodian.get('key_id')}): the re-identification "
                     "table and sealed parts open only with its private key")
    elif s.manifest.get("sealing") == "single-user":
        lines.append("  custodian  none: sealed parts open with the run key (single-user mode)")
    versions = s.manifest.get("versions")
    if isinstance(versions, dict):
        lines.append("  versions   " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    runs = s.manifest.get("runs")
    if isinstance(runs, list) and runs:
        lines.append(f"invocations ({len(runs)})")
        for entry in runs:
            if isinstance(entry, dict):
                lines.append(f"  {entry.get('started')} .. {entry.get('finished') or 'not finished'}  "
                             f"{entry.get('operator')}@{entry.get('host')}  {' '.join(entry.get('command') or [])}")
    return lines


def _retention(s: AuditSummary) -> list[str]:
    """The retention policy, what it makes due for purge now, and the purges done."""
    lines: list[str] = []
    policy = s.manifest.get("retention")
    if isinstance(policy, dict) and policy:
        lines.append("retention  " + ", ".join(f"{k} {v}" for k, v in policy.items()))
    if s.due:
        what = ", ".join(f"{k} {c['items']:,} ({_human_bytes(c['bytes'])})" for k, c in s.due.items())
        lines.append(f"  due for purge under this policy: {what} (veil audit DST --purge)")
    elif isinstance(policy, dict) and policy:
        lines.append("  nothing due for purge under this policy")
    if s.purges:
        lines.append(f"purges ({len(s.purges)})")
        for record in s.purges:
            removed = record.get("removed") or {}
            what = ", ".join(f"{k} {c.get('items', 0):,}" for k, c in removed.items() if isinstance(c, dict))
            limit = f"older than {record['older_than']}" if record.get("older_than") else "by policy"
            lines.append(f"  {record.get('time')}  {record.get('operator')}  {limit}: {what}")
    return lines


def _human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_summary(summary: AuditSummary, *, quarantine_limit: int | None = None) -> str:
    """Plain text for ``veil audit DST``: manifest, totals, actions, reasons and the quarantine list (every
    entry unless ``quarantine_limit`` is given)."""
    s = summary
    lines: list[str] = []
    scalars = {k: v for k, v in sorted(s.manifest.items()) if isinstance(v, (str, int, float, bool))}
    if scalars:
        lines.append("run")
        width = max(len(k) for k in scalars)
        lines.extend(f"  {k:<{width}}  {v}" for k, v in scalars.items())
    else:
        lines.append("run: no manifest")
    lines.extend(_run_record(s))
    totals = [
        ("shards", f"{s.shards:,}"),
        ("files", f"{s.files:,}"),
        ("  written", f"{s.written:,}"),
        ("  skipped", f"{s.skipped:,}"),
        ("  quarantined", f"{s.quarantined:,}"),
        ("bytes in", f"{_human_bytes(s.input_bytes)} ({s.input_bytes:,})"),
        ("bytes out", f"{_human_bytes(s.output_bytes)} ({s.output_bytes:,})"),
    ]
    totals += [("key id", k) for k in s.key_ids] + [("recipe", r) for r in s.recipes]
    lines.extend(f"{label:<14}{value}" for label, value in totals)
    if len(s.key_ids) > 1:
        lines.append("  WARNING: outputs were made with more than one key")
    if len(s.recipes) > 1:
        lines.append("  WARNING: outputs were made with more than one recipe")
    if s.pixel_redacted or s.pixel_records:
        lines.append(f"{'pixels':<14}{s.pixel_redacted:,} instances redacted (burned-in text), "
                     f"{s.pixel_records:,} with boxes and thumbnails in {s.pixel_store}")
        if s.pixel_records:
            lines.append(f"  {s.pixel_before_sealed:,} with the image before redaction sealed (see it with "
                         f"--review OUTDIR --key KEYFILE), {s.pixel_records - s.pixel_before_sealed:,} without "
                         f"(runs with no project key store none)")
        if s.pixel_records < s.pixel_redacted:  # an audit written before pixel records, or by hand
            lines.append(f"  {s.pixel_redacted - s.pixel_records:,} redacted instances have no pixel record")
    lines.append("actions")
    width = max(len(n) for n in ACTION_NAMES)
    lines.extend(f"  {name:<{width}}  {count:,}" for name, count in s.actions.items())
    if s.reasons:
        lines.append("reasons")
        lines.extend(f"  {count:>8,}  {reason}" for reason, count in s.reasons.items())
    lines.extend(_retention(s))
    lines.append(f"quarantine ({len(s.quarantine):,})")
    shown = s.quarantine if quarantine_limit is None else s.quarantine[:quarantine_limit]
    lines.extend(f"  {digest}  {reason}" for digest, reason in shown)
    if len(shown) < len(s.quarantine):
        lines.append(f"  ... and {len(s.quarantine) - len(shown):,} more")
    return "\n".join(lines) + "\n"
