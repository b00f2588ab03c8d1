"""Which files belong to a series the recipe defaces: a header-only look at each file (pydicom, the header
only) during the per-file pass. A file that may be part of a head volume is set aside for its series' step; every
other file goes on along the native path."""

from __future__ import annotations

from typing import NamedTuple

from veil.recipes.deface import DefacePolicy

__all__ = ["Candidate", "candidate"]

_TAGS = ["Modality", "BodyPartExamined", "StudyInstanceUID", "SeriesInstanceUID", "Rows", "ImageType",
         "SamplesPerPixel"]


class Candidate(NamedTuple):
    """A file set aside: its series (original study and series UIDs, joined; the engine keeps only a keyed
    digest of it) and why (``body part``: a head by its header; ``check``: no body part, the volume decides)."""

    series: str
    why: str


def candidate(path: str, policy: DefacePolicy) -> Candidate | None:
    """Whether the file at ``path`` is an image of a CT or MR series the policy may deface. A file pydicom
    cannot read is not one (the per-file pass quarantines it)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_TAGS, force=True)
        modality = str(ds.get("Modality", "") or "").strip().upper()
        if modality not in policy.modalities or not ds.get("Rows"):
            return None
        if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
            return None
        image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
        if "LOCALIZER" in image_type:
            return None  # a projection, not a slice of the volume
        part = str(ds.get("BodyPartExamined", "") or "").strip().upper()
        series = f"{ds.get('StudyInstanceUID', '')}\\{ds.get('SeriesInstanceUID', '')}"
    except Exception:
        return None
    if part:
        return Candidate(series, "body part") if part in policy.body_parts else None
    return Candidate(series, "check") if policy.unknown_body_part == "check" else None
