"""The series step: a head series' de-identified files, defaced together. It decides what happens to the
series and gives the files to write and the record the audit keeps of it; the engine does the reading, the
writing and the rows (:mod:`veil.engine.series`)."""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from veil._version import __version__
from veil.deface.method import METHOD_VERSION, DefaceError, DefaceOptions, deface
from veil.deface.series import NotAVolume, assemble, background, native_frames, splice, write_back
from veil.recipes.deface import DefacePolicy

__all__ = ["SeriesOutcome", "deface_outputs"]


@dataclass
class SeriesOutcome:
    """``status``: ``defaced`` (``outputs`` hold the defaced files), ``untouched`` (not a head, or not a
    volume: ``outputs`` are the files as given) or ``quarantined`` (a head that cannot be defaced safely: no
    output, ``reason`` says why). ``record`` is the audit's JSON of the series (no value from the files);
    ``after`` and ``before`` are the frontal renderings (uint8, at most 128 pixels a side; ``before`` shows
    the face and is stored sealed only)."""

    status: str
    reason: str
    outputs: list[bytes]
    record: dict[str, Any]
    after: np.ndarray | None = field(default=None, repr=False)
    before: np.ndarray | None = field(default=None, repr=False)


def _thumbnail(image: np.ndarray) -> np.ndarray:
    from PIL import Image

    from veil.pixels.thumbnails import THUMBNAIL_SIZE

    picture = Image.fromarray(image)
    picture.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BOX)
    return np.asarray(picture, dtype=np.uint8)


def deface_outputs(outputs: list[bytes], policy: DefacePolicy, why: str,
                   pixels_at: Sequence[tuple[int, int] | None] | None = None) -> SeriesOutcome:
    """Defaces the series whose de-identified files are ``outputs`` (in any order), selected ``why``
    (``body part`` or ``check``, see :mod:`veil.deface.select`).

    With ``pixels_at`` (where each output's Pixel Data value lies, see
    :meth:`veil.pipeline.Deidentifier.rewritten`), outputs already marked by the core (their Plan's insert
    made with :func:`veil.deface.series.marking`) whose pixels are uncompressed get the defaced voxels written
    over them in place; others are decoded, marked and re-encoded with pydicom."""
    import pydicom

    started = time.perf_counter()
    record: dict[str, Any] = {"selected_by": why, "instances": len(outputs), "method": METHOD_VERSION,
                              "veil_version": __version__}
    quarantine = why == "body part"  # a head by its header: what cannot be defaced is quarantined

    def refuse(reason: str) -> SeriesOutcome:
        if quarantine:
            return SeriesOutcome("quarantined", f"deface: {reason}", [], {**record, "status": "quarantined",
                                                                            "reason": reason})
        # No body part and no head found in it: not a head series, written as the rest of the recipe says.
        return SeriesOutcome("untouched", reason, outputs, {**record, "status": "untouched", "reason": reason})

    frames = None
    try:
        datasets = [pydicom.dcmread(io.BytesIO(data), force=True, stop_before_pixels=True) for data in outputs]
        if pixels_at is not None:
            frames = native_frames(datasets, outputs, pixels_at)
        if frames is None:  # decoded by pydicom: the whole files
            datasets = [pydicom.dcmread(io.BytesIO(data), force=True) for data in outputs]
    except Exception as exc:
        return refuse(f"an output cannot be read back: {type(exc).__name__}")
    modality = str(datasets[0].get("Modality", "")).strip().upper()
    try:
        assembled = assemble(datasets, modality, policy.min_slices, frames)
    except NotAVolume as exc:
        return SeriesOutcome("untouched", str(exc), outputs, {**record, "status": "untouched", "reason": str(exc)})
    except DefaceError as exc:
        return refuse(str(exc))
    volume = assembled.volume
    options = DefaceOptions(policy.method, policy.margin, policy.depth, policy.shell, policy.ears)
    try:
        found = deface(volume, options)
    except DefaceError as exc:
        return refuse(str(exc))
    values = volume.data.copy()
    values[found.removed] = background(datasets, volume)
    changed = int(np.count_nonzero(values != volume.data))
    if changed == 0:
        return refuse("the face plane removes nothing from this volume")
    from veil.deface.render import frontal_render

    after = _thumbnail(frontal_render(volume, values))
    before = _thumbnail(frontal_render(volume))
    try:
        if frames is not None:
            assert pixels_at is not None
            written = splice(outputs, pixels_at, assembled, values)
        else:
            write_back(datasets, assembled, values, policy.output)
            written = []
            for ds in datasets:
                out = io.BytesIO()
                ds.save_as(out, enforce_file_format=True)
                written.append(out.getvalue())
    except DefaceError as exc:
        return refuse(str(exc))
    except Exception as exc:
        return refuse(f"the defaced files cannot be written: {type(exc).__name__}")
    record.update(
        status="defaced", reason="", modality=modality, slices=int(volume.data.shape[0]),
        rows=int(volume.data.shape[1]), columns=int(volume.data.shape[2]),
        voxel_mm=[round(v, 3) for v in volume.spacing], plane_normal_lps=[round(v, 4) for v in found.normal],
        plane_offset_mm=round(found.offset, 2), head_fraction_removed=round(found.fraction, 4),
        voxels_changed=changed, atlas_fit=round(found.fit, 4), parameters=found.parameters,
        options={"method": policy.method, "margin_mm": policy.margin, "depth_mm": policy.depth,
                 "shell_mm": policy.shell, "ears": policy.ears},
        seconds=round(time.perf_counter() - started, 3))
    return SeriesOutcome("defaced", "", written, record, after, before)
