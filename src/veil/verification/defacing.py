"""Defacing: an output that says RecognizableVisualFeatures NO (where its input did not) claims its face was
removed. Each such series must have pixels that differ from its inputs', and each such instance must carry the
Clean Recognizable Visual Features code (113102) in DeidentificationMethodCodeSequence. Pixels are compared
decoded (pydicom), one instance after another, until one differs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from veil.core.dataset import read_dataset
from veil.verification.report import Finding

__all__ = ["DefacingCheck"]

CLEAN_VISUAL_FEATURES = "113102"


def _says_no(ds: Dataset) -> bool:
    return str(ds.get("RecognizableVisualFeatures", "") or "").strip().upper() == "NO"


class DefacingCheck:
    """Collects the pairs whose output claims defacing (:meth:`add`), then checks them (:meth:`findings`)."""

    def __init__(self) -> None:
        self.series: dict[str, list[tuple[str, Path, Path]]] = {}
        self.checked = 0

    def add(self, rel_out: str, before: Dataset, after: Dataset, src: Path, dst: Path) -> list[Finding]:
        """Notes a pair; the findings of the output alone (its code) come back at once."""
        if not _says_no(after) or _says_no(before):
            return []
        series = str(after.get("SeriesInstanceUID", "") or "")
        self.series.setdefault(series, []).append((rel_out, src, dst))
        codes = after.get("DeidentificationMethodCodeSequence") or []
        if not any(str(getattr(c, "CodeValue", "")) == CLEAN_VISUAL_FEATURES for c in codes):
            return [Finding("integrity", rel_out, "(0012,0064)", "DeidentificationMethodCodeSequence",
                            detail="RecognizableVisualFeatures NO without the Clean Recognizable Visual Features "
                                   "code (113102)")]
        return []

    def findings(self) -> list[Finding]:
        """A finding per series marked defaced whose pixels are all as its inputs' (or cannot be compared)."""
        out: list[Finding] = []
        for members in self.series.values():
            self.checked += 1
            changed = False
            problem = ""
            for _, src, dst in members:
                try:
                    before = read_dataset(src.read_bytes(), pixels=True).pixel_array
                    after = read_dataset(dst.read_bytes(), pixels=True).pixel_array
                except Exception as exc:
                    problem = f"pixels cannot be compared: {type(exc).__name__}"
                    continue
                if before.shape != after.shape or not np.array_equal(before, after):
                    changed = True
                    break
            if not changed:
                out.append(Finding("integrity", members[0][0], "(0028,0302)", "RecognizableVisualFeatures",
                                   detail=problem or f"marked NO (defaced) yet none of the {len(members)} "
                                                     "instances of its series has changed pixels"))
        return out
