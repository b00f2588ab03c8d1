"""The ``DST/.veil`` tree in one place: where the manifest, the audit parts, the Zarr stores and the quarantine
live, and the atomic-write and fsync helpers every writer of that tree uses.

Layout::

    DST/.veil/manifest.json                        the run (written by the driver through write_manifest)
    DST/.veil/audit/part-{shard:08d}.parquet       one per shard; its presence marks the shard complete
    DST/.veil/audit/actions.zarr/shard-{shard:08d} int32 (rows x actions), row i = row i of the part
    DST/.veil/audit/pixels.zarr/shard-{shard:08d}  the pixel redactions of the shard's instances
    DST/.veil/audit/changes/part-{shard:08d}.parquet   change records (clear: actions and final values)
    DST/.veil/audit/changes/originals-{shard:08d}.bin  their original values, sealed (purged by retention)
    DST/.veil/quarantine/{digest}.dcm|.json        a copy of each refused input and its reason
    DST/.veil/quarantine/{digest}.dcm.sealed       the copy, sealed to the custodian (custodian mode)
    DST/.veil/purges.jsonl                         one line per `veil audit --purge`: when, who, what, bytes
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = [
    "sweep_output_temporaries",
    "veil_dir",
    "audit_dir",
    "actions_path",
    "pixels_path",
    "part_path",
    "manifest_path",
    "quarantine_dir",
    "changes_dir",
    "deface_dir",
    "purges_path",
    "array_name",
    "PART_NAME",
    "fsync_dir",
    "fsync_tree",
    "atomic_file",
    "write_json_atomically",
    "sweep_temporaries",
]

PART_NAME = re.compile(r"part-(\d{8,})\.parquet")


def veil_dir(dst: Path | str) -> Path:
    """``DST/.veil``: everything a run writes beside its outputs."""
    return Path(dst) / ".veil"


def audit_dir(dst: Path | str) -> Path:
    """``DST/.veil/audit``: the Parquet parts and the Zarr store."""
    return veil_dir(dst) / "audit"


def actions_path(dst: Path | str) -> Path:
    """``DST/.veil/audit/actions.zarr``: one int32 array of action counts per shard."""
    return audit_dir(dst) / "actions.zarr"


def pixels_path(dst: Path | str) -> Path:
    """``DST/.veil/audit/pixels.zarr``: one group of pixel redaction records per shard that has any."""
    return audit_dir(dst) / "pixels.zarr"


def part_path(dst: Path | str, shard: int) -> Path:
    """The Parquet part of one shard; it exists under this name only once the shard is complete."""
    return audit_dir(dst) / f"part-{shard:08d}.parquet"


def manifest_path(dst: Path | str) -> Path:
    """``DST/.veil/manifest.json``."""
    return veil_dir(dst) / "manifest.json"


def quarantine_dir(dst: Path | str) -> Path:
    """``DST/.veil/quarantine``: refused inputs, each named by the keyed digest of its path, with its reason."""
    return veil_dir(dst) / "quarantine"


def deface_dir(dst: Path | str) -> Path:
    """``DST/.veil/audit/deface``: the files each shard set aside for a defaced series' step
    (``deferred-NNNNNN.json``) and the record of each series step (``series-NNNNNN.json``)."""
    return audit_dir(dst) / "deface"


def changes_dir(dst: Path | str) -> Path:
    """``DST/.veil/audit/changes``: the change records of a run made with ``--change-records``."""
    return audit_dir(dst) / "changes"


def purges_path(dst: Path | str) -> Path:
    """``DST/.veil/purges.jsonl``: the record of every retention purge, appended."""
    return veil_dir(dst) / "purges.jsonl"


def array_name(shard: int) -> str:
    """The name of a shard's array (actions) or group (pixel records) in the Zarr stores."""
    return f"shard-{shard:08d}"


def fsync_dir(path: Path) -> None:
    """Makes a rename in ``path`` durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsyncs every file and directory under ``root``, so a Parquet part never outlives its Zarr array."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            with contextlib.suppress(OSError), open(os.path.join(dirpath, name), "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(Path(dirpath))


@contextlib.contextmanager
def atomic_file(final: Path) -> Iterator[BinaryIO]:
    """Yields a binary file under a temporary name beside ``final``; fsynced and renamed on success, removed on
    failure, so ``final`` either does not exist or is complete."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}-{os.urandom(6).hex()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(final.parent)


def write_json_atomically(final: Path, document: dict[str, Any]) -> None:
    """``document`` as indented JSON under ``final``, written through :func:`atomic_file`."""
    with atomic_file(final) as fh:
        fh.write(json.dumps(document, indent=2).encode())


def sweep_temporaries(dst: Path | str) -> int:
    """Removes the temporary files a killed run left in ``DST/.veil`` (audit parts and the manifest half
    written); call it only when no other run writes into DST. Returns how many were removed."""
    removed = 0
    folder = veil_dir(dst)
    for pattern in (".part-*.parquet.*.tmp", ".manifest.json.*.tmp"):
        for directory in (folder, audit_dir(dst)):
            for stray in directory.glob(pattern):
                with contextlib.suppress(FileNotFoundError):
                    stray.unlink()
                    removed += 1
    return removed


def sweep_output_temporaries(dst: Path | str) -> int:
    """Removes the ``.NAME.veil-tmp`` files that stopped workers left beside the outputs (a write cut short by
    a full disk or a kill; a resumed shard would replace them, but on a full disk they hold space and look like
    output). Walks DST outside ``.veil``; call it only once the run's workers are stopped. Returns how many."""
    removed = 0
    for directory, folders, files in os.walk(dst):
        if directory == os.fspath(dst):
            folders[:] = [f for f in folders if f != veil_dir(dst).name]
        for name in files:
            if name.startswith(".") and name.endswith(".veil-tmp"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(directory, name))
                    removed += 1
    return removed
