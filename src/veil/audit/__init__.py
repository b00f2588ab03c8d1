"""The audit of a run: the ``DST/.veil`` layout, the per-instance row schema, the Parquet and Zarr writers and
readers, the sealed before-thumbnails and the one tally type. ``from veil import audit; audit.read_audit(dst)``.

Imported from their modules where used (each costs a worker process an import it rarely needs):
:mod:`veil.audit.changes` (change records: each element's action, rule and final value, the originals sealed),
:mod:`veil.audit.quarantine` (quarantined originals, sealed to a custodian), :mod:`veil.audit.retention`
(the retention policy and ``veil audit --purge``)."""

from __future__ import annotations

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
