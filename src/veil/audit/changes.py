"""Change records: what a run did to every element of each written instance, and the original value sealed.

The element diff (:func:`element_rows`) is the one ``veil inspect`` shows: "before" walked from the input with
pydicom, "after" from the output read back, the action from the rewriter's own record
(``RewriteResult.touched()``) and the rule from the Plan's lookup order (:func:`veil.core.plan.explain_rule`).
A run with ``--change-records`` keeps it per instance, so ``veil report`` can show it after SRC is gone::

    DST/.veil/audit/changes/part-{shard:08d}.parquet   clear: row (the instance's row in the shard's audit
                                                        part), path, tag, keyword, vr, action, rule, after,
                                                        present_after; nothing the output does not hold
    DST/.veil/audit/changes/originals-{shard:08d}.bin  ONE sealed envelope (veil.keys.envelope): the JSON list
                                                        of the ``before`` values, aligned with the part's rows,
                                                        context ``change-records RUN shard N``

Both are written atomically before the shard's audit part (whose presence marks the shard complete). The
originals are sealed to the run's :data:`~veil.keys.envelope.SealTarget`: the custodian's public key (only
the custodian opens them) or, in single-user mode, :func:`audit_seal` of the run key. Values are cut to
:data:`CHANGE_VALUE_LIMIT` characters. An originals file that is gone (``veil audit --purge``) reads as
``before = None`` with the instance flagged ``"purged"``.
"""

from __future__ import annotations

import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from veil.audit.layout import atomic_file, audit_dir
from veil.core.dictionary import dictionary_entry
from veil.core.plan import Action, Plan, RuleChoice, explain_rule
from veil.errors import AuditError, MalformedDicom

if TYPE_CHECKING:  # pydicom and the sealing (cryptography) are imported where used: every worker imports audit
    from pydicom.dataset import Dataset

    from veil.core.dataset import Node
    from veil.keys import Key
    from veil.keys.envelope import Opener, SealTarget, SymmetricSeal

__all__ = [
    "CHANGE_VALUE_LIMIT",
    "DISPLAY_LIMIT",
    "ChangeRecord",
    "ElementRow",
    "InstanceChanges",
    "audit_seal",
    "change_part_path",
    "change_rows",
    "changed_shards",
    "changes_dir",
    "display_value",
    "effective_action",
    "element_rows",
    "originals_path",
    "path_key",
    "read_changes",
    "read_dicom",
    "unavailable",
    "write_changes",
]

DISPLAY_LIMIT = 64  # veil inspect's default cut
CHANGE_VALUE_LIMIT = 1024  # change records keep values this long
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_INSERTED = "inserted (de-identification marking, PS3.15 E.1.1)"
_FORMAT = 1
_METADATA_KEY = b"veil.changes"
_PART = re.compile(r"part-(\d{8,})\.parquet")


# --- the element diff (shared with veil inspect) ------------------------------------------------------------


def _cut(text: str, limit: int = DISPLAY_LIMIT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def display_value(ds: Dataset, tag: int, limit: int = DISPLAY_LIMIT) -> str:
    """A short readable value: text as text, sequences as an item count, binary as a size and hex prefix."""
    try:
        element = ds[tag]
    except Exception:
        from veil.core.dataset import element_bytes

        raw = element_bytes(ds, tag)
        return _cut(f"<{len(raw)} bytes, unreadable>", limit)
    if element.VR == "SQ":
        return f"<{len(element.value)} item{'s' if len(element.value) != 1 else ''}>"
    if tag in _PIXEL_TAGS:
        size = len(element.value) if element.value is not None else 0
        return f"<{size} bytes>"
    value = element.value
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        data = bytes(value)
        stripped = data.rstrip(b"\x00 ")
        if stripped and all(32 <= b < 127 for b in stripped):
            return _cut(stripped.decode("ascii"), limit)
        return _cut(f"<{len(data)} bytes> {data[:24].hex(' ')}", limit)
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return _cut("\\".join(str(v) for v in value), limit)
    return _cut(str(value), limit)


@dataclass(frozen=True)
class ElementRow:
    """One element of the preview (``after`` is "" for an element the output does not have)."""

    path: str
    tag: str
    keyword: str
    vr: str
    before: str
    after: str
    action: str
    rule: str
    present_after: bool


def effective_action(
    node: Node, plan: Plan, touched: dict[str, str], inherited: dict[str, tuple[str, str]]
) -> tuple[str, str, RuleChoice, bool]:
    """(action, rule label, choice, own) of one element: the rewriter's record where it walked the element
    (``own``), else the enclosing sequence's fate (an element inside a removed, emptied or kept-whole sequence).

    Records the fate of a sequence the rewriter did not walk in ``inherited`` for its items' elements.
    """
    choice = explain_rule(plan, node.tag, node.vr, node.creator)
    if node.parent in inherited:
        action, label = inherited[node.parent]
        if node.sequence:
            inherited[node.path] = (action, label)
        return action, label, choice, False
    recorded = touched.get(node.path)
    if recorded is not None:
        action = recorded
    else:
        action = "RECURSE" if node.sequence and choice.rule.action == Action.RECURSE else "KEEP"
    if node.sequence and action != "RECURSE":
        how = "copied whole" if action == "KEEP" else "removed"
        inherited[node.path] = (
            "KEEP" if action == "KEEP" else "REMOVE",
            f"{how} with its sequence {node.path}",
        )
    return action, choice.label, choice, True


def element_rows(
    before: Dataset, after: Dataset, touched: dict[str, str], plan: Plan, limit: int = DISPLAY_LIMIT
) -> tuple[list[ElementRow], dict[str, int]]:
    """Every element of ``before`` (and each element the Plan inserts) with its fate in ``after``, in document
    order, and the elements per action: the rows of ``veil inspect`` and of a change record."""
    from veil.core.dataset import walk_dataset

    after_nodes = {node.path: node for node in walk_dataset(after)}
    inserted = {tag for tag, _, _ in plan.insert}
    inherited: dict[str, tuple[str, str]] = {}
    rows: list[ElementRow] = []
    counts: Counter[str] = Counter()
    seen: set[str] = set()
    for node in walk_dataset(before):
        action, label, _, _ = effective_action(node, plan, touched, inherited)
        if node.depth == 0 and node.tag in inserted:
            label = _INSERTED
        counts[action] += 1
        seen.add(node.path)
        out = after_nodes.get(node.path)
        rows.append(ElementRow(
            path=node.path,
            tag=node.path[-11:],
            keyword=node.keyword,
            vr=node.vr,
            before=display_value(node.dataset, node.tag, limit),
            after=display_value(out.dataset, out.tag, limit) if out is not None else "",
            action=action,
            rule=label,
            present_after=out is not None,
        ))
    for tag, vr, _ in plan.insert:
        path = f"({tag >> 16:04X},{tag & 0xFFFF:04X})"
        if path in seen:
            continue
        out = after_nodes.get(path)
        counts["REPLACE"] += 1
        entry = dictionary_entry(tag)
        rows.append(ElementRow(
            path=path,
            tag=path,
            keyword=entry[1] if entry else "",
            vr=vr,
            before="",
            after=display_value(out.dataset, out.tag, limit) if out is not None else "",
            action="REPLACE",
            rule=_INSERTED,
            present_after=out is not None,
        ))
    rows.sort(key=lambda r: path_key(r.path))
    return rows, dict(sorted(counts.items()))


def path_key(path: str) -> tuple[Any, ...]:
    """Document order of paths: tags compared as numbers, item indices as numbers."""
    parts: list[Any] = []
    for piece in path.replace("]", "").split("("):
        if not piece:
            continue
        tag_text, _, index = piece.partition(")")
        group, element = tag_text.split(",")
        parts.append((int(group, 16), int(element, 16), int(index[1:]) if index.startswith("[") else -1))
    return tuple(parts)


def read_dicom(data: bytes, path: str) -> Dataset:
    """pydicom's reading of ``data`` (forced); ``MalformedDicom`` when it cannot."""
    import pydicom

    try:
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception as exc:
        raise MalformedDicom(path, 0, f"pydicom cannot read it: {type(exc).__name__}: {exc}") from None


def change_rows(before: bytes, after: bytes, touched: dict[str, str], plan: Plan,
                limit: int = CHANGE_VALUE_LIMIT) -> list[ElementRow]:
    """The change record of one written instance: :func:`element_rows` of its input and output bytes.

    An input or output pydicom cannot read gives one row of action ``ERROR`` saying so (the report shows it;
    the reason names the exception type only, never a value)."""
    try:
        rows, _ = element_rows(read_dicom(before, ""), read_dicom(after, ""), touched, plan, limit)
    except MalformedDicom as exc:
        return [unavailable(exc.reason.partition(":")[2].partition(":")[0].strip() or "unreadable")]
    return rows


def unavailable(why: str) -> ElementRow:
    """The one row of an instance whose change record could not be made (``why``: a kind, never a value)."""
    return ElementRow("", "", "", "", "", "", "ERROR", f"no change record: the files could not be read ({why})",
                      False)


# --- the store ----------------------------------------------------------------------------------------------


def changes_dir(dst: Path | str) -> Path:
    """``DST/.veil/audit/changes``."""
    return audit_dir(dst) / "changes"


def change_part_path(dst: Path | str, shard: int) -> Path:
    """A shard's clear change part (Parquet)."""
    return changes_dir(dst) / f"part-{shard:08d}.parquet"


def originals_path(dst: Path | str, shard: int) -> Path:
    """A shard's sealed originals (one envelope)."""
    return changes_dir(dst) / f"originals-{shard:08d}.bin"


def _context(run_id: str, shard: int) -> bytes:
    return f"change-records {run_id} shard {shard}".encode()


def audit_seal(key: Key) -> SymmetricSeal:
    """The single-user seal of change records (and other audit parts) from the run key: the same as the driver
    gives workers, ``symmetric_seal(key.subkey("audit"), "audit-parts", key.key_id)``; it opens them too."""
    from veil.keys.envelope import symmetric_seal

    return symmetric_seal(key.subkey("audit"), "audit-parts", key.key_id)


def _schema() -> Any:
    import pyarrow as pa

    return pa.schema([
        ("row", pa.int32()), ("path", pa.string()), ("tag", pa.string()), ("keyword", pa.string()),
        ("vr", pa.string()), ("action", pa.string()), ("rule", pa.string()), ("after", pa.string()),
        ("present_after", pa.bool_()),
    ])


def write_changes(dst: Path | str, shard: int, run_id: str,
                  records: Sequence[tuple[int, Sequence[ElementRow]]], seal_to: SealTarget | None) -> Path:
    """Writes one shard's change records: ``records`` is (row of the instance in the shard's audit part, its
    element rows) per written instance. The originals are sealed to ``seal_to`` (``ValueError`` without one:
    they are never stored in clear). Sealed originals first, then the clear part; both atomic. Returns the
    part. Call it before the shard's audit part is written."""
    if seal_to is None:
        raise ValueError("change records hold original values: they need a seal target (a key or a custodian)")
    if shard < 0:
        raise ValueError(f"shard must be >= 0, not {shard}")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from veil.keys.custodian import CustodianPublicKey
    from veil.keys.envelope import seal_bytes

    columns: dict[str, list[Any]] = {name: [] for name in _schema().names}
    before: list[str] = []
    for row, elements in records:
        for e in elements:
            columns["row"].append(row)
            columns["path"].append(e.path)
            columns["tag"].append(e.tag)
            columns["keyword"].append(e.keyword)
            columns["vr"].append(e.vr)
            columns["action"].append(e.action)
            columns["rule"].append(e.rule)
            columns["after"].append(e.after)
            columns["present_after"].append(e.present_after)
            before.append(e.before)
    sealing = "custodian" if isinstance(seal_to, CustodianPublicKey) else "single-user"
    meta = {"format": _FORMAT, "run_id": run_id, "shard": shard, "sealing": sealing, "key_id": seal_to.key_id,
            "value_limit": CHANGE_VALUE_LIMIT}
    schema = _schema().with_metadata({_METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})
    table = pa.Table.from_pydict(columns, schema=schema)
    sealed = seal_bytes(json.dumps(before, ensure_ascii=False).encode("utf-8"), seal_to, _context(run_id, shard))
    with atomic_file(originals_path(dst, shard)) as fh:
        fh.write(sealed)
    final = change_part_path(dst, shard)
    with atomic_file(final) as fh:
        pq.write_table(table, fh, compression="zstd")
    return final


class ChangeRecord(NamedTuple):
    """One element of a written instance as read back; ``before`` is None unless the originals were opened."""

    path: str
    tag: str
    keyword: str
    vr: str
    before: str | None
    after: str
    action: str
    rule: str
    present_after: bool


@dataclass(frozen=True)
class InstanceChanges:
    """The change record of the instance in row ``row`` of shard ``shard``'s audit part. ``originals``:
    ``"opened"`` (``before`` filled), ``"sealed"`` (not opened: no key given) or ``"purged"`` (removed by
    ``veil audit --purge``; ``before`` None)."""

    shard: int
    row: int
    elements: tuple[ChangeRecord, ...]
    originals: str
    sealing: str  # "custodian" | "single-user"
    key_id: str  # the key the originals are sealed to
    run_id: str  # the run that wrote it (a shard redone by a later run without change records has a stale one)


def changed_shards(dst: Path | str) -> list[int]:
    """The shards that have a change part, in order."""
    folder = changes_dir(dst)
    if not folder.is_dir():
        return []
    return sorted(int(m.group(1)) for p in folder.iterdir() if (m := _PART.fullmatch(p.name)))


def _part_metadata(table: Any, where: str) -> dict[str, Any]:
    raw = (table.schema.metadata or {}).get(_METADATA_KEY)
    try:
        meta = json.loads(raw) if raw else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise AuditError(f"{where}: not a veil change part of format {_FORMAT}")
    return meta


def _read_one(dst: Path, shard: int, opener: Opener | None) -> list[InstanceChanges]:
    import pyarrow.parquet as pq

    from veil.keys.envelope import open_bytes

    path = change_part_path(dst, shard)
    where = f"{path.parent.name}/{path.name}"
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise AuditError(f"{where}: unreadable change part ({type(exc).__name__})") from None
    meta = _part_metadata(table, where)
    if int(meta["shard"]) != shard:
        raise AuditError(f"{where}: holds shard {meta['shard']}, not {shard}")
    columns = table.to_pydict()
    n = table.num_rows
    before: list[str | None] = [None] * n
    originals_file = originals_path(dst, shard)
    state = "sealed"
    if not originals_file.exists():
        state = "purged"
    elif opener is not None:
        opened = json.loads(open_bytes(originals_file.read_bytes(), opener, _context(str(meta["run_id"]), shard),
                                       f"change-record originals of shard {shard}"))
        if not isinstance(opened, list) or len(opened) != n:
            raise AuditError(f"shard {shard}: change-record originals do not match the change part")
        before, state = opened, "opened"
    by_row: dict[int, list[ChangeRecord]] = {}
    for i in range(n):
        by_row.setdefault(columns["row"][i], []).append(ChangeRecord(
            columns["path"][i], columns["tag"][i], columns["keyword"][i], columns["vr"][i], before[i],
            columns["after"][i], columns["action"][i], columns["rule"][i], columns["present_after"][i]))
    sealing, key_id, run_id = str(meta["sealing"]), str(meta["key_id"]), str(meta["run_id"])
    return [InstanceChanges(shard, row, tuple(elements), state, sealing, key_id, run_id)
            for row, elements in sorted(by_row.items())]


def read_changes(dst: Path | str, shard: int | None = None,
                 opener: Opener | None = None) -> dict[int, list[InstanceChanges]]:
    """Shard -> the change record of each of its written instances (in row order), for one shard or every
    shard that has a change part. With ``opener`` (the custodian's private key in custodian mode,
    :func:`audit_seal` of the run key in single-user mode) the originals are opened into ``before``; the wrong
    key kind raises ``KeyError_`` naming the key needed, an altered or moved file ``AuditError``."""
    dst = Path(dst)
    shards: Iterable[int] = changed_shards(dst) if shard is None else [shard]
    out: dict[int, list[InstanceChanges]] = {}
    for number in shards:
        if change_part_path(dst, number).exists():
            out[number] = _read_one(dst, number, opener)
    return out
