"""An inventory of an archive before de-identifying it (``veil profile``): what is in it, and what is at risk.

Per file (:func:`profile_file`, a pure function of the bytes, so the same code runs in-process or in a Ray
task): SOP class, modality, transfer syntax, character set, the header values of the burned-in text
signature, every tag at any depth (private data elements by creator: ``(0019,"CREATOR",0C)``) and every
private creator. :func:`aggregate` (or :class:`ArchiveProfile`, which merges partial results) counts them
over the archive; :func:`write_profile` writes Parquet tables and :meth:`ArchiveProfile.summary_lines` the
summary.

Images at risk of burned-in text: Burned In Annotation (0028,0301) is YES, or it is absent on a modality that
often carries text in its pixels (:data:`BURNED_IN_MODALITIES`: ultrasound, secondary capture, angiography and
fluoroscopy, endoscopy, photography, scanned documents, other). Their header signature (Modality,
Manufacturer, Manufacturer's Model Name, Rows, Columns) is what pixel redaction rules are written for.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veil.core._core import peek
from veil.core.dictionary import dictionary_entry
from veil.core.part10 import ParseError, RawElement, read_part10, walk_elements
from veil.errors import VeilError

__all__ = [
    "BURNED_IN_MODALITIES",
    "ArchiveProfile",
    "aggregate",
    "profile_archive",
    "profile_file",
    "write_profile",
]

#: Modalities whose images often have text burned into the pixels (PS3.3 C.7.3.1.1.1 defined terms).
BURNED_IN_MODALITIES = frozenset(
    {"US", "IVUS", "SC", "XA", "RF", "ES", "OT", "XC", "GM", "OP", "DOC", "PX", "IO", "SM", "DG"}
)

_PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)


def _tag_key(element: RawElement, creators: dict[tuple[str, int, int], str]) -> str:
    """Public tags as ``(gggg,eeee)``; a private data element by its block's creator,
    ``(gggg,"CREATOR",ee)``; a private creator as ``(gggg,"CREATOR") creator``."""
    group, number = element.tag >> 16, element.tag & 0xFFFF
    if not group & 1:
        return f"({group:04X},{number:04X})"
    if 0x0010 <= number <= 0x00FF:
        return f'({group:04X},"{creators.get((_prefix(element), group, number), "")}") creator'
    if number >> 8 >= 0x10:
        creator = creators.get((_prefix(element), group, number >> 8))
        if creator is not None:
            return f'({group:04X},"{creator}",{number & 0xFF:02X})'
        return f"({group:04X},{number:04X}) without creator"
    return f"({group:04X},{number:04X})"


def _prefix(element: RawElement) -> str:
    return element.path[: -len("(gggg,eeee)")]


def profile_file(data: bytes, path: str) -> dict[str, Any]:
    """The inventory of one file: header values, every tag with its count, private creators, burned-in risk.

    Never raises for a bad file: ``error`` says why and the rest is what could be read. No identifying value
    is recorded (only SOP class, modality, equipment and image size, which the signature needs).
    """
    record: dict[str, Any] = {
        "path": path,
        "bytes": len(data),
        "error": None,
        "sop_class_uid": None,
        "modality": None,
        "transfer_syntax": None,
        "specific_character_set": None,
        "manufacturer": None,
        "manufacturer_model_name": None,
        "rows": None,
        "columns": None,
        "burned_in_annotation": None,
        "burned_in_risk": False,
        "tags": {},
        "private_creators": [],
    }
    try:
        info = peek(data, path)
    except VeilError as exc:
        record["error"] = getattr(exc, "reason", None) or str(exc)
        return record
    except Exception as exc:  # a file peek cannot take stays in the inventory with its reason
        record["error"] = f"{type(exc).__name__}: {exc}"
        return record
    record["sop_class_uid"] = info.get("sop_class_uid")
    record["modality"] = info.get("modality")
    record["transfer_syntax"] = info.get("transfer_syntax")
    record["specific_character_set"] = info.get("specific_character_set") or "(default)"
    record["manufacturer"] = info.get("manufacturer")
    record["manufacturer_model_name"] = info.get("manufacturer_model_name")
    record["rows"] = info.get("rows")
    record["columns"] = info.get("columns")
    burned = info.get("burned_in_annotation")
    record["burned_in_annotation"] = burned
    is_image = record["rows"] is not None and record["columns"] is not None
    record["burned_in_risk"] = bool(
        is_image
        and (
            (burned or "").upper() == "YES"
            or (not burned and (record["modality"] or "") in BURNED_IN_MODALITIES)
        )
    )
    try:
        part = read_part10(data)
        elements = walk_elements(part, nested=True)
    except ParseError as exc:
        record["error"] = f"tag walk: {exc}"
        return record
    creators: dict[tuple[str, int, int], str] = {}
    buffer = part.dataset
    for element in elements:
        group, number = element.tag >> 16, element.tag & 0xFFFF
        if group & 1 and 0x0010 <= number <= 0x00FF:
            value = bytes(buffer[element.value : element.end]).rstrip(b" \x00").decode("latin-1")
            creators[(_prefix(element), group, number)] = value
    tags: Counter[str] = Counter(_tag_key(e, creators) for e in elements)
    record["tags"] = dict(tags)
    record["private_creators"] = sorted({f'({g:04X},"{c}")' for (_, g, _), c in creators.items()})
    return record


def signature(record: dict[str, Any]) -> tuple[str, str, str, int, int]:
    """The burned-in text signature of a file: Modality, Manufacturer, Model Name, Rows, Columns."""
    return (
        record.get("modality") or "",
        record.get("manufacturer") or "",
        record.get("manufacturer_model_name") or "",
        int(record.get("rows") or 0),
        int(record.get("columns") or 0),
    )


@dataclass
class ArchiveProfile:
    """Counts over an archive; :meth:`add` one file's record, :meth:`merge` another partial profile."""

    files: int = 0
    bytes: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    sop_classes: Counter[str] = field(default_factory=Counter)
    modalities: Counter[str] = field(default_factory=Counter)
    transfer_syntaxes: Counter[str] = field(default_factory=Counter)
    character_sets: Counter[str] = field(default_factory=Counter)
    tag_files: Counter[str] = field(default_factory=Counter)  # files holding the tag
    tag_elements: Counter[str] = field(default_factory=Counter)  # elements, all depths
    private_creators: Counter[str] = field(default_factory=Counter)  # files holding the creator
    burned_in: Counter[tuple[str, str, str, int, int]] = field(default_factory=Counter)  # signature -> files

    def add(self, record: dict[str, Any]) -> None:
        self.files += 1
        self.bytes += int(record.get("bytes") or 0)
        if record.get("error"):
            self.errors[str(record["error"])] += 1
        for counter, name in (
            (self.sop_classes, "sop_class_uid"),
            (self.modalities, "modality"),
            (self.transfer_syntaxes, "transfer_syntax"),
            (self.character_sets, "specific_character_set"),
        ):
            if record.get(name):
                counter[str(record[name])] += 1
        tags = record.get("tags") or {}
        self.tag_files.update(tags.keys())
        self.tag_elements.update(tags)
        self.private_creators.update(record.get("private_creators") or ())
        if record.get("burned_in_risk"):
            self.burned_in[signature(record)] += 1

    def merge(self, other: ArchiveProfile) -> ArchiveProfile:
        self.files += other.files
        self.bytes += other.bytes
        for name in (
            "errors",
            "sop_classes",
            "modalities",
            "transfer_syntaxes",
            "character_sets",
            "tag_files",
            "tag_elements",
            "private_creators",
            "burned_in",
        ):
            getattr(self, name).update(getattr(other, name))
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "bytes": self.bytes,
            "errors": dict(self.errors.most_common()),
            "sop_classes": {
                f"{uid} {_uid_name(uid)}".strip(): n for uid, n in self.sop_classes.most_common()
            },
            "modalities": dict(self.modalities.most_common()),
            "transfer_syntaxes": {
                f"{uid} {_uid_name(uid)}".strip(): n for uid, n in self.transfer_syntaxes.most_common()
            },
            "character_sets": dict(self.character_sets.most_common()),
            "tags": len(self.tag_files),
            "private_creators": dict(self.private_creators.most_common()),
            "burned_in_risk": [
                {
                    "modality": s[0],
                    "manufacturer": s[1],
                    "model": s[2],
                    "rows": s[3],
                    "columns": s[4],
                    "files": n,
                }
                for s, n in self.burned_in.most_common()
            ],
        }

    def summary_lines(self, top: int = 10) -> list[str]:
        lines = [
            f"profile: {self.files} files ({self.bytes / 1e6:.1f} MB), {len(self.tag_files)} distinct tags, "
            f"{len(self.private_creators)} private creators, {sum(self.errors.values())} unreadable"
        ]

        def block(title: str, counter: Counter[Any], name: Any = None) -> None:
            if not counter:
                return
            lines.append(f"  {title}:")
            for value, n in counter.most_common(top):
                label = f"{value} {name(value)}".rstrip() if name else str(value)
                lines.append(f"    {n:8d}  {label}")
            if len(counter) > top:
                lines.append(f"    ... and {len(counter) - top} more")

        block("SOP classes", self.sop_classes, _uid_name)
        block("modalities", self.modalities)
        block("transfer syntaxes", self.transfer_syntaxes, _uid_name)
        block("character sets", self.character_sets)
        block("private creators (files)", self.private_creators)
        if self.burned_in:
            lines.append(f"  at risk of burned-in text ({sum(self.burned_in.values())} files):")
            for (modality, maker, model, rows, cols), n in self.burned_in.most_common(top):
                lines.append(f"    {n:8d}  {modality} {maker} {model} {rows}x{cols}".rstrip())
        else:
            lines.append("  at risk of burned-in text: none")
        block("unreadable", self.errors)
        return lines


def _uid_name(uid: str) -> str:
    try:
        from pydicom.uid import UID

        name = UID(uid).name
        return "" if name == uid else f"({name})"
    except Exception:
        return ""


def aggregate(records: Iterable[dict[str, Any]]) -> ArchiveProfile:
    """Counts per-file records (from :func:`profile_file`) over an archive."""
    profile = ArchiveProfile()
    for record in records:
        profile.add(record)
    return profile


_FILE_COLUMNS = (
    "path", "bytes", "error", "sop_class_uid", "modality", "transfer_syntax", "specific_character_set",
    "manufacturer", "manufacturer_model_name", "rows", "columns", "burned_in_annotation", "burned_in_risk",
    "tags", "private_creators",
)  # fmt: skip


def _file_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("path", pa.string()), ("bytes", pa.int64()), ("error", pa.string()), ("sop_class_uid", pa.string()),
            ("modality", pa.string()), ("transfer_syntax", pa.string()), ("specific_character_set", pa.string()),
            ("manufacturer", pa.string()), ("manufacturer_model_name", pa.string()), ("rows", pa.int32()),
            ("columns", pa.int32()), ("burned_in_annotation", pa.string()), ("burned_in_risk", pa.bool_()),
            ("tags", pa.list_(pa.string())), ("private_creators", pa.list_(pa.string())),
        ]
    )  # fmt: skip


class _FileTable:
    """Per-file rows written to ``files.parquet`` in batches (memory stays flat however large the archive)."""

    def __init__(self, path: Path, batch: int = 2048) -> None:
        import pyarrow.parquet as pq

        self.schema = _file_schema()
        self.writer = pq.ParquetWriter(path, self.schema)
        self.rows: list[dict[str, Any]] = []
        self.batch = batch

    def add(self, record: dict[str, Any]) -> None:
        row = {name: record.get(name) for name in _FILE_COLUMNS}
        row["tags"] = sorted(record.get("tags") or {})
        self.rows.append(row)
        if len(self.rows) >= self.batch:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        self.flush()
        self.writer.close()


def _profile_shard(number: int, entries: list[Any]) -> tuple[ArchiveProfile, list[dict[str, Any]]]:
    """One shard of ``veil run``'s listing profiled: the partial profile and its per-file records."""
    profile = ArchiveProfile()
    records = []
    for entry in entries:
        if entry.error:
            record = profile_file(b"", entry.rel)
            record["error"] = entry.error
        else:
            try:
                data = Path(entry.path).read_bytes()
            except OSError as exc:
                record = profile_file(b"", entry.rel)
                record["error"] = f"cannot read: {exc.strerror}"
            else:
                record = profile_file(data, entry.rel)
        profile.add(record)
        records.append(record)
    return profile, records


def profile_archive(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    workers: int = 1,
    address: str | None = None,
    ray: bool = False,
) -> ArchiveProfile:
    """Profiles every file under ``src``: in this process, on a process pool of this machine (``workers`` >
    1), or on Ray (``ray``: a local Ray of ``workers``; ``address``: a cluster), the partial profiles merged;
    with ``out``, writes the Parquet tables there. The shards of ``veil run``'s lazy listing go through the
    engine's executors, as a run's do."""
    from veil.engine import Executor, InlineExecutor, LocalPoolExecutor, RayExecutor, list_inputs, shards

    root = Path(src)
    profile = ArchiveProfile()
    table = None
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        table = _FileTable(Path(out) / "files.parquet")
    executor: Executor[tuple[ArchiveProfile, list[dict[str, Any]]]]
    try:
        if address or ray:
            executor = RayExecutor(_profile_shard, workers, address)
        elif workers > 1:
            executor = LocalPoolExecutor(_profile_shard, workers)
        else:
            executor = InlineExecutor(_profile_shard)
        with executor:
            for partial, records in executor.run(shards(list_inputs(str(root)), 256, 256 << 20)):
                profile = profile.merge(partial)
                if table is not None:
                    for record in records:
                        table.add(record)
    finally:
        if table is not None:
            table.close()
    if out is not None:
        write_profile(profile, out, files_table=False)
    return profile


def write_profile(
    profile: ArchiveProfile,
    out: str | os.PathLike[str],
    records: Iterable[dict[str, Any]] = (),
    *,
    files_table: bool = True,
) -> list[Path]:
    """Writes the archive tables to the directory ``out``: ``tags.parquet`` (tag, keyword, files, elements),
    ``private_creators.parquet``, ``burned_in_risk.parquet`` (signature, files), ``counts.parquet`` (category,
    value, files: SOP classes, modalities, transfer syntaxes, character sets, errors) and, from ``records``,
    ``files.parquet`` (one row per file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    if files_table:
        table = _FileTable(directory / "files.parquet")
        for record in records:
            table.add(record)
        table.close()
        written.append(directory / "files.parquet")

    def keyword(tag_key: str) -> str:
        if '"' in tag_key or "creator" in tag_key or len(tag_key) != 11:
            return ""
        entry = dictionary_entry(int(tag_key[1:5] + tag_key[6:10], 16))
        return entry[1] if entry else ""

    tags = sorted(profile.tag_files)
    tables = {
        "tags": pa.table(
            {
                "tag": tags,
                "keyword": [keyword(t) for t in tags],
                "files": [profile.tag_files[t] for t in tags],
                "elements": [profile.tag_elements[t] for t in tags],
            }
        ),
        "private_creators": pa.table(
            {
                "group": [c[1:5] for c in sorted(profile.private_creators)],
                "creator": [c[7:-2] for c in sorted(profile.private_creators)],
                "files": [profile.private_creators[c] for c in sorted(profile.private_creators)],
            }
        ),
        "burned_in_risk": pa.table(
            {
                "modality": [s[0] for s in profile.burned_in],
                "manufacturer": [s[1] for s in profile.burned_in],
                "manufacturer_model_name": [s[2] for s in profile.burned_in],
                "rows": pa.array([s[3] for s in profile.burned_in], pa.int32()),
                "columns": pa.array([s[4] for s in profile.burned_in], pa.int32()),
                "files": [n for n in profile.burned_in.values()],
            }
        ),
    }
    counts: list[tuple[str, str, int]] = []
    for category, counter in (
        ("sop_class", profile.sop_classes),
        ("modality", profile.modalities),
        ("transfer_syntax", profile.transfer_syntaxes),
        ("character_set", profile.character_sets),
        ("error", profile.errors),
    ):
        counts += [(category, value, n) for value, n in counter.most_common()]
    tables["counts"] = pa.table(
        {"category": [c[0] for c in counts], "value": [c[1] for c in counts], "files": [c[2] for c in counts]}
    )
    for name, table in tables.items():
        path = directory / f"{name}.parquet"
        pq.write_table(table, path)
        written.append(path)
    return written
