"""The audit of a run: the ``DST/.veil`` layout, the per-instance row schema, the Parquet and Zarr writers and
readers, the sealed before-thumbnails and the one tally type. ``from veil import audit; audit.read_audit(dst)``.

Imported from their modules where used (each costs a worker process an import it rarely needs):
:mod:`veil.audit.changes` (change records: each element's action, rule and final value, the originals sealed),
:mod:`veil.audit.quarantine` (quarantined originals, sealed to a custodian), :mod:`veil.audit.retention`
(the retention policy and ``veil audit --purge``).

The names below load on first use (PEP 562): a run's driver needs the layout and the manifest before its first
file, not pyarrow and numpy (which the writers and readers import)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from veil.system import lazy_exports

if TYPE_CHECKING:
    from veil.audit.layout import (
        actions_path,
        audit_dir,
        changes_dir,
        deface_dir,
        manifest_path,
        part_path,
        pixels_path,
        purges_path,
        quarantine_dir,
        sweep_output_temporaries,
        sweep_temporaries,
        veil_dir,
    )
    from veil.audit.pixelstore import (
        BEFORE_THUMBNAIL_CONTEXT,
        PixelRecord,
        before_thumbnail_key,
        read_pixel_records,
        review_image,
    )
    from veil.audit.read import completed_shards, iter_instances, read_actions, read_audit, read_manifest
    from veil.audit.schema import (
        ACTION_NAMES,
        AUDIT_COLUMNS,
        AUDIT_SCHEMA,
        AUDIT_SCHEMA_VERSION,
        STATUSES,
        AuditColumns,
        AuditRow,
        RowContext,
        counts_from_mapping,
        counts_matrix,
        input_digest,
        iso_time,
        parse_iso_time,
        row_from_outcome,
    )
    from veil.audit.tally import AuditSummary, Tally, TallyCounts, format_summary, summarize
    from veil.audit.write import write_manifest, write_shard

__all__ = [
    "AUDIT_SCHEMA_VERSION",
    "ACTION_NAMES",
    "AUDIT_COLUMNS",
    "AUDIT_SCHEMA",
    "STATUSES",
    "AuditColumns",
    "AuditRow",
    "RowContext",
    "row_from_outcome",
    "AuditSummary",
    "Tally",
    "TallyCounts",
    "veil_dir",
    "audit_dir",
    "actions_path",
    "part_path",
    "manifest_path",
    "quarantine_dir",
    "deface_dir",
    "input_digest",
    "counts_from_mapping",
    "write_shard",
    "counts_matrix",
    "sweep_output_temporaries",
    "sweep_temporaries",
    "completed_shards",
    "read_audit",
    "read_actions",
    "iter_instances",
    "iso_time",
    "parse_iso_time",
    "changes_dir",
    "purges_path",
    "PixelRecord",
    "pixels_path",
    "BEFORE_THUMBNAIL_CONTEXT",
    "before_thumbnail_key",
    "read_pixel_records",
    "review_image",
    "write_manifest",
    "read_manifest",
    "summarize",
    "format_summary",
]

_HOMES = {
    "actions_path": "layout",
    "audit_dir": "layout",
    "changes_dir": "layout",
    "deface_dir": "layout",
    "manifest_path": "layout",
    "part_path": "layout",
    "pixels_path": "layout",
    "purges_path": "layout",
    "quarantine_dir": "layout",
    "sweep_output_temporaries": "layout",
    "sweep_temporaries": "layout",
    "veil_dir": "layout",
    "BEFORE_THUMBNAIL_CONTEXT": "pixelstore",
    "PixelRecord": "pixelstore",
    "before_thumbnail_key": "pixelstore",
    "read_pixel_records": "pixelstore",
    "review_image": "pixelstore",
    "completed_shards": "read",
    "iter_instances": "read",
    "read_actions": "read",
    "read_audit": "read",
    "read_manifest": "read",
    "ACTION_NAMES": "schema",
    "AUDIT_COLUMNS": "schema",
    "AUDIT_SCHEMA": "schema",
    "AUDIT_SCHEMA_VERSION": "schema",
    "STATUSES": "schema",
    "AuditColumns": "schema",
    "AuditRow": "schema",
    "RowContext": "schema",
    "counts_from_mapping": "schema",
    "counts_matrix": "schema",
    "input_digest": "schema",
    "iso_time": "schema",
    "parse_iso_time": "schema",
    "row_from_outcome": "schema",
    "AuditSummary": "tally",
    "Tally": "tally",
    "TallyCounts": "tally",
    "format_summary": "tally",
    "summarize": "tally",
    "write_manifest": "write",
    "write_shard": "write",
}

__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
