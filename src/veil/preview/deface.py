"""The defacing preview of a folder (``veil inspect FOLDER``): which series a recipe's ``deface:`` section would
take, and what the step would do to each, with nothing written to DICOM.

The files are selected as a run selects them (:func:`veil.deface.select.candidate`, a header-only look),
grouped by series, de-identified in memory and defaced by the run's own series step
(:func:`veil.engine.series.deface_series`): the plane, the fraction of the head removed, or why a series would
be left as it is or quarantined. Only the frontal rendering AFTER defacing is kept (``--render`` writes it as
a PNG); the rendering before shows the face and is never written by a preview.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from veil.errors import RecipeError, VeilError
from veil.keys import KeyedFunctions
from veil.recipes import CompiledRecipe, Recipe

__all__ = ["DefacePreview", "SeriesPreview", "preview_defacing"]

# The series record's fields a preview shows: what the step decided and its parameters (never a file's value).
_SHOWN = ("status", "reason", "selected_by", "method", "modality", "slices", "rows", "columns", "voxel_mm",
          "plane_normal_lps", "plane_offset_mm", "head_fraction_removed", "voxels_changed", "atlas_fit", "options",
          "seconds")


@dataclass(frozen=True)
class SeriesPreview:
    """One series the recipe's ``deface:`` section takes: its first file (relative to the folder), how many
    files, and what the step would do (``defaced``, ``untouched`` or ``quarantined``, with the reason)."""

    first_file: str
    files: int
    selected_by: str
    status: str
    reason: str
    record: dict[str, Any]
    refused: int  # files the per-file step would quarantine on their own
    after: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"first_file": self.first_file, "files": self.files, "selected_by": self.selected_by,
                "status": self.status, "reason": self.reason, "refused": self.refused, "record": self.record}


@dataclass(frozen=True)
class DefacePreview:
    """The defacing preview of a folder: each series taken, and how many files go the per-file path."""

    folder: str
    recipe: str
    key_id: str | None
    throwaway_key: bool
    files: int
    per_file: int  # files no series step takes (not CT/MR images of a head, or not a volume's slice)
    series: tuple[SeriesPreview, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"folder": self.folder, "recipe": self.recipe, "key_id": self.key_id,
                "throwaway_key": self.throwaway_key, "files": self.files, "per_file": self.per_file,
                "series": [s.to_dict() for s in self.series]}


def preview_defacing(
    folder: str | os.PathLike[str],
    recipe: CompiledRecipe | Recipe | str | os.PathLike[str],
    functions: KeyedFunctions | None = None,
) -> DefacePreview:
    """What ``recipe``'s ``deface:`` section would do to the series under ``folder`` (see the module
    docstring); ``functions`` None means a throwaway key when the recipe needs one."""
    from veil.deface.select import candidate
    from veil.engine.listing import Entry, list_inputs
    from veil.engine.series import deface_series
    from veil.pipeline import Deidentifier
    from veil.preview.inspect import _compiled, _preview_counter, throwaway_functions

    compiled = _compiled(recipe)
    policy = compiled.recipe.deface
    if policy is None:
        raise RecipeError(f"recipe {compiled.plan.name}", None, "no deface: section (add the option "
                          "clean-recognizable-visual-features): there is no defacing to preview")
    root = Path(folder)
    if not root.is_dir():
        raise VeilError(f"{folder}: not a folder")
    throwaway = False
    if functions is None and compiled.recipe.requires_key:
        functions = throwaway_functions(compiled)
        throwaway = True
    worker = Deidentifier(compiled.plan, functions, compiled.recipe.pixels, pseudonyms=_preview_counter(compiled))
    files = list(list_inputs(os.fspath(root)))  # as the run lists them: same order, same refusals
    groups: dict[str, list[Entry]] = {}
    why: dict[str, str] = {}
    for entry in files:
        found = None if entry.error else candidate(entry.path, policy)
        if found is None:
            continue
        groups.setdefault(found.series, []).append(entry)
        if why.get(found.series) != "body part":
            why[found.series] = found.why
    series: list[SeriesPreview] = []
    for key, entries in groups.items():
        items: list[tuple[str, bytes]] = []
        unread = 0
        for entry in entries:
            try:
                items.append((entry.path, Path(entry.path).read_bytes()))
            except OSError:
                unread += 1
        done = deface_series(worker, policy, why[key], items)
        result = done.result
        record = {k: result.record[k] for k in _SHOWN if result is not None and k in result.record}
        series.append(SeriesPreview(
            first_file=entries[0].rel, files=len(entries), selected_by=why[key],
            status=result.status if result is not None else "quarantined",
            reason=result.reason if result is not None else "no file of the series could be de-identified",
            record=record, refused=unread + len(done.errors),
            after=result.after if result is not None and result.status == "defaced" else None,
        ))
    taken = sum(len(p) for p in groups.values())
    return DefacePreview(
        folder=os.fspath(folder), recipe=compiled.plan.name,
        key_id=None if functions is None or throwaway else functions.key_id, throwaway_key=throwaway,
        files=len(files), per_file=len(files) - taken, series=tuple(series),
    )
