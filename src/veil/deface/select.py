"""Which files belong to a series the recipe defaces: a header-only look at each file (the core's ``peek``,
a walk of the top level that stops before the pixels) during the per-file pass. A file that may be part of a
head volume is set aside for its series' step; every other file goes on along the native path."""

from __future__ import annotations

import mmap
import os
from typing import NamedTuple

from veil.recipes.deface import DefacePolicy

__all__ = ["Candidate", "candidate"]

_READ_WHOLE = 1 << 20  # files up to this size are read; larger ones mapped (peek reads only their header)


class Candidate(NamedTuple):
    """A file set aside: its series (original study and series UIDs, joined; the engine keeps only a keyed
    digest of it) and why (``body part``: a head by its header; ``check``: no body part, the volume decides)."""

    series: str
    why: str


def _peek(path: str) -> dict[str, object]:
    from veil.core._core import peek

    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        if size <= _READ_WHOLE:
            return peek(os.read(fd, size), path)
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as mm:
            return peek(mm, path)
    finally:
        os.close(fd)


def candidate(path: str, policy: DefacePolicy) -> Candidate | None:
    """Whether the file at ``path`` is an image of a CT or MR series the policy may deface. A file the core
    cannot read is not one (the per-file pass quarantines it)."""
    try:
        found = _peek(path)
    except Exception:
        return None
    modality = str(found["modality"] or "").upper()
    if modality not in policy.modalities or not found["rows"]:
        return None
    if found["samples_per_pixel"] not in (None, 1):
        return None
    if "LOCALIZER" in (v.strip() for v in str(found["image_type"] or "").upper().split("\\")):
        return None  # a projection, not a slice of the volume
    part = str(found["body_part_examined"] or "").upper()
    series = f"{found['study_instance_uid'] or ''}\\{found['series_instance_uid'] or ''}"
    if part:
        return Candidate(series, "body part") if part in policy.body_parts else None
    return Candidate(series, "check") if policy.unknown_body_part == "check" else None
