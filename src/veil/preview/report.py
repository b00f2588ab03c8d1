"""The change report (``veil report``): per written instance, what the run did to each attribute, from the change
records the run kept (``veil run --change-records``; :mod:`veil.audit.changes`), so it works after SRC is gone.

Each instance is named by its output path (relative to DST) and its new SOP Instance UID; each row gives the
tag path, keyword, VR, action, the rule that decided it and the final value, as ``veil inspect`` shows them for
the same file (row for row, values cut at 1,024 characters). The original value is there only when the sealed
originals were opened: with the custodian's private key for a run sealed to a custodian, with the run key for a
single-user run. By default only the changed rows are listed (action neither KEEP nor RECURSE); ``all_rows``
lists every element.

Writers: CSV, Parquet and a self-contained HTML page (one table per instance, every value escaped, and a banner
when it holds original values).
"""

from __future__ import annotations

import csv
import html
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from veil.audit.changes import ChangeRecord, InstanceChanges, changed_shards, read_changes
from veil.audit.layout import audit_dir
from veil.errors import AuditError

if TYPE_CHECKING:
    from veil.keys.envelope import Opener

__all__ = [
    "FORMATS",
    "InstanceReport",
    "change_report",
    "parse_selection",
    "report_bytes",
    "save_report",
    "write_csv",
    "write_html",
    "write_parquet",
]

FORMATS = ("html", "csv", "parquet")
_UNCHANGED = frozenset({"KEEP", "RECURSE"})
_COLUMNS = ("output_path", "sop_instance_uid", "shard", "row", "path", "tag", "keyword", "vr", "action", "rule",
            "after", "present_after", "before", "originals")


@dataclass(frozen=True)
class InstanceReport:
    """One written instance's change rows. ``originals``: "opened" (``before`` filled), "sealed" (no key given)
    or "purged" (removed by a purge)."""

    output_path: str
    sop_instance_uid: str
    shard: int
    row: int
    originals: str
    sealing: str
    rows: tuple[ChangeRecord, ...]

    @property
    def has_originals(self) -> bool:
        return self.originals == "opened"


def parse_selection(text: str) -> list[str] | int:
    """``--instances``: comma-separated new SOP Instance UIDs or output paths relative to DST, ``@FILE`` (one
    per line) or ``sample:N`` (returned as the int N)."""
    text = text.strip()
    if text.startswith("sample:"):
        try:
            count = int(text[len("sample:"):])
        except ValueError:
            raise AuditError(f"--instances {text}: sample:N needs a whole number") from None
        if count < 1:
            raise AuditError("--instances sample:N needs N >= 1")
        return count
    if text.startswith("@"):
        try:
            lines = Path(text[1:]).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise AuditError(f"--instances {text}: cannot read: {exc.strerror}") from None
        return [line.strip() for line in lines if line.strip()]
    return [part.strip() for part in text.split(",") if part.strip()]


def _written(dst: Path) -> list[tuple[int, int, str, str, str]]:
    """(shard, row, output path, new SOP Instance UID, run id) of every written instance of a complete part."""
    from veil.audit.read import read_audit

    table = read_audit(dst, columns=["run_id", "shard", "output_path", "sop_instance_uid", "status"]).to_pydict()
    out = []
    last, row = None, 0
    for run_id, shard, path, uid, status in zip(table["run_id"], table["shard"], table["output_path"],
                                                table["sop_instance_uid"], table["status"], strict=True):
        row = row + 1 if shard == last else 0
        last = shard
        if status == "written":
            out.append((shard, row, path, uid, run_id))
    return out


def _select(candidates: list[tuple[int, int, str, str, str]],
            instances: str | Sequence[str] | int | None) -> list[tuple[int, int, str, str, str]]:
    selection = parse_selection(instances) if isinstance(instances, str) else instances
    if selection is None:
        return candidates
    if isinstance(selection, int):
        if selection >= len(candidates):
            return candidates
        # Evenly spread over the run (in shard and row order): the same N for the same audit, every time.
        return [candidates[i * len(candidates) // selection] for i in range(selection)]
    wanted = [os.path.normpath(s) for s in selection]
    by_name: dict[str, list[tuple[int, int, str, str, str]]] = {}
    for c in candidates:  # a UID names every instance that has it (copies of one input share their new UID)
        by_name.setdefault(c[3], []).append(c)
        by_name.setdefault(os.path.normpath(c[2]), []).append(c)
    missing = [w for w in wanted if w not in by_name]
    if missing:
        raise AuditError(f"{len(missing)} of the instances asked for have no change record in this run "
                         f"(first: {missing[0]}); give new SOP Instance UIDs or output paths relative to DST")
    chosen = {c for w in wanted for c in by_name[w]}
    return [c for c in candidates if c in chosen]


def change_report(dst: str | os.PathLike[str], opener: Opener | None = None,
                  instances: str | Sequence[str] | int | None = None,
                  all_rows: bool = False) -> list[InstanceReport]:
    """The change report of the run in ``dst``, per written instance (all, or ``instances``: see
    :func:`parse_selection`; an int is ``sample:N``). ``opener`` opens the originals (the custodian's private key,
    or :func:`~veil.audit.changes.audit_seal` of the run key for a single-user run); the wrong key kind raises
    ``KeyError_``. ``AuditError`` when the run kept no change records."""
    root = Path(dst)
    if not audit_dir(root).is_dir():
        raise AuditError(f"{dst}: no veil audit here")
    if not changed_shards(root):
        raise AuditError(f"{dst}: this run kept no change records: run with --change-records to have them")
    shards_with_changes = set(changed_shards(root))
    candidates = [c for c in _written(root) if c[0] in shards_with_changes]
    chosen = _select(candidates, instances)
    by_shard: dict[int, dict[int, InstanceChanges]] = {}
    for shard in sorted({c[0] for c in chosen}):
        by_shard[shard] = {i.row: i for i in read_changes(root, shard, opener).get(shard, [])}
    reports = []
    for shard, row, path, uid, run_id in chosen:
        changes = by_shard[shard].get(row)
        if changes is None or changes.run_id != run_id:
            raise AuditError(f"shard {shard} row {row}: no change record of this run for this instance (the "
                             f"shard was redone without --change-records?)")
        rows = changes.elements if all_rows else tuple(r for r in changes.elements if r.action not in _UNCHANGED)
        reports.append(InstanceReport(path, uid, shard, row, changes.originals, changes.sealing, rows))
    return reports


# --- writers ------------------------------------------------------------------------------------------------


def _records(reports: Sequence[InstanceReport]) -> list[dict[str, Any]]:
    return [
        {"output_path": r.output_path, "sop_instance_uid": r.sop_instance_uid, "shard": r.shard, "row": r.row,
         "path": e.path, "tag": e.tag, "keyword": e.keyword, "vr": e.vr, "action": e.action, "rule": e.rule,
         "after": e.after, "present_after": e.present_after, "before": e.before, "originals": r.originals}
        for r in reports for e in r.rows
    ]


def write_csv(reports: Sequence[InstanceReport], fh: IO[str]) -> None:
    """One line per row, with the instance's output path and new UID; ``before`` empty where not opened."""
    writer = csv.writer(fh, lineterminator="\n")
    writer.writerow(_COLUMNS)
    for record in _records(reports):
        writer.writerow(["" if record[c] is None else record[c] for c in _COLUMNS])


def write_parquet(reports: Sequence[InstanceReport], path: str | os.PathLike[str] | IO[bytes]) -> None:
    """The rows as one Parquet table (``before`` null where not opened)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([
        ("output_path", pa.string()), ("sop_instance_uid", pa.string()), ("shard", pa.int64()),
        ("row", pa.int64()), ("path", pa.string()), ("tag", pa.string()), ("keyword", pa.string()),
        ("vr", pa.string()), ("action", pa.string()), ("rule", pa.string()), ("after", pa.string()),
        ("present_after", pa.bool_()), ("before", pa.string()), ("originals", pa.string()),
    ])
    records = _records(reports)
    table = pa.Table.from_pydict({c: [r[c] for r in records] for c in _COLUMNS}, schema=schema)
    pq.write_table(table, path, compression="zstd")


_STYLE = """body{font-family:system-ui,sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:2em}
td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;vertical-align:top;text-align:left}
th{background:#eee}.phi{background:#b00;color:#fff;padding:.6em;font-weight:bold}.removed{color:#888}
td.v{font-family:ui-monospace,monospace;white-space:pre-wrap;word-break:break-all}"""


def write_html(reports: Sequence[InstanceReport], fh: IO[str], title: str = "veil change report") -> None:
    """A self-contained page: one table per instance, every value escaped; a banner when it holds originals."""
    e = html.escape
    originals = any(r.has_originals for r in reports)
    fh.write(f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>'
             f"<style>{_STYLE}</style></head><body>\n<h1>{e(title)}</h1>\n")
    if originals:
        fh.write('<p class="phi">This report contains original values (PHI). Keep it with the custodian; do not '
                 "share it with the de-identified data.</p>\n")
    fh.write(f"<p>{len(reports)} instance{'s' if len(reports) != 1 else ''}.</p>\n")
    columns = ["path", "tag", "keyword", "VR", "action", "rule", "final value"] + (["original"] if originals else [])
    for r in reports:
        note = {"opened": "originals shown", "sealed": "originals sealed (not shown)",
                "purged": "originals purged"}.get(r.originals, r.originals)
        fh.write(f"<h2>{e(r.output_path)}</h2>\n<p>SOP Instance UID {e(r.sop_instance_uid)} · shard {r.shard} row "
                 f"{r.row} · {e(note)}</p>\n<table><tr>" + "".join(f"<th>{e(c)}</th>" for c in columns) + "</tr>\n")
        for row in r.rows:
            after = '<span class="removed">(removed)</span>' if not row.present_after else e(row.after)
            cells = [e(row.path), e(row.tag), e(row.keyword), e(row.vr), e(row.action), e(row.rule)]
            fh.write("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + f'<td class="v">{after}</td>')
            if originals:
                fh.write(f'<td class="v">{e(row.before) if row.before is not None else ""}</td>')
            fh.write("</tr>\n")
        fh.write("</table>\n")
    fh.write("</body></html>\n")


def report_bytes(reports: Sequence[InstanceReport], fmt: str) -> bytes:
    """The report in ``fmt`` (one of :data:`FORMATS`) as bytes."""
    if fmt == "parquet":
        sink = io.BytesIO()
        write_parquet(reports, sink)
        return sink.getvalue()
    text = io.StringIO()
    if fmt == "csv":
        write_csv(reports, text)
    elif fmt == "html":
        write_html(reports, text)
    else:
        raise ValueError(f"report format {fmt!r}: one of {', '.join(FORMATS)}")
    return text.getvalue().encode("utf-8")


def save_report(reports: Sequence[InstanceReport], fmt: str, out: str | os.PathLike[str],
                dst: str | os.PathLike[str]) -> Path:
    """Writes the report to ``out``. A report with originals is refused inside DST (it would travel with the
    de-identified data) and written mode 0600; atomic, never through a symbolic link."""
    target = Path(os.path.realpath(out))
    root = Path(os.path.realpath(dst))
    if any(r.has_originals for r in reports) and (target == root or root in target.parents):
        raise AuditError(f"{out}: a report with original values must be written outside DST")
    data = report_bytes(reports, fmt)
    private = any(r.has_originals for r in reports)
    mode = 0o600 if private else 0o644
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if private:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return target
