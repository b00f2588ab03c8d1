"""The ``research`` pixel policy over the shared corpus, computed once per session (OCR is slow): for every
corpus image the policy does not simply keep, what the per-file path does with its pixels (redacted with its
record, kept because detection found nothing identifying, or quarantined with a reason).

Shared by test_research_corpus.py (pixels unchanged outside the redacted boxes) and test_burned_in_corpus.py
(the burned-in text is gone).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pydicom
from corpus import CORPUS_ROOT, corpus_file_list

from veil.errors import MalformedDicom
from veil.keys import Key, KeyedFunctions
from veil.pipeline import Deidentifier
from veil.pixels.policy import decide
from veil.pixels.redact import Redaction
from veil.recipes import compile_recipe, load_recipe

TEST_KEY = Key(bytes(range(32)))


@dataclass(repr=False)
class PixelCase:
    name: str
    action: str  # what veil.pixels.policy.decide said: redact (a rule) or the at-risk policy (detect)
    rule: str  # the rule's name, or ''
    outcome: str  # "redacted" | "kept" | "quarantined"
    reason: str
    source: bytes
    redaction: Redaction | None  # with the output file's bytes

    def __repr__(self) -> str:
        return f"PixelCase({self.name!r}, {self.outcome})"


@lru_cache(maxsize=1)
def research_pixel_cases() -> dict[str, PixelCase]:
    """name -> what ``research`` does to the pixels of each corpus image it does not simply keep."""
    from veil.core._core import peek

    recipe = load_recipe("research")
    compiled = compile_recipe(recipe)
    policy = recipe.pixels
    assert policy is not None
    worker = Deidentifier(compiled.plan, KeyedFunctions(TEST_KEY, **compiled.key_parameters), policy)
    cases: dict[str, PixelCase] = {}
    for path in corpus_file_list():
        name = path.relative_to(CORPUS_ROOT).as_posix()
        source = path.read_bytes()
        try:
            info = peek(source, name)
            result = worker.rewrite(source, name)
        except MalformedDicom:
            continue  # refused by the core before any pixel work: test_differential.py's business
        decision = decide(policy, info)
        if decision.action == "keep" or not info["rows"]:
            continue
        rule = decision.rule.name if decision.rule is not None else ""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                redaction = worker._pixels(source, result, name)
        except MalformedDicom as exc:
            cases[name] = PixelCase(name, decision.action, rule, "quarantined", exc.reason, source, None)
            continue
        outcome = "kept" if redaction is None else "redacted"
        cases[name] = PixelCase(name, decision.action, rule, outcome, "", source, redaction)
    return cases


def frames_of(data: bytes) -> np.ndarray:
    """(frames, rows, columns, samples) as pydicom decodes them (YBR converted to RGB, as veil's decode does)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        array = ds.pixel_array
    if int(ds.get("NumberOfFrames", 1) or 1) == 1:
        array = array[None]
    return array if array.ndim == 4 else array[..., None]


def redacted_mask(redaction: Redaction, frames: int) -> np.ndarray:
    """(frames, rows, columns): True where the record says pixels were blanked."""
    mask = np.zeros((frames, redaction.rows, redaction.columns), dtype=bool)
    if redaction.kept:
        outside = np.ones((redaction.rows, redaction.columns), dtype=bool)
        for x, y, w, h in redaction.kept:
            outside[max(y, 0) : y + h, max(x, 0) : x + w] = False
        mask |= outside
    for frame, x, y, w, h in redaction.boxes:
        chosen = slice(None) if frame == -1 else frame
        mask[chosen, max(y, 0) : y + h, max(x, 0) : x + w] = True
    return mask


def unchanged_outside_and_blank_inside(case: PixelCase) -> list[str]:
    """Problems: a pixel outside the recorded boxes that differs from the decoded input, or a box that is not
    one uniform value (the fill, as the output's colour space shows it)."""
    assert case.redaction is not None
    before, after = frames_of(case.source), frames_of(case.redaction.data)
    problems = []
    if before.shape != after.shape:
        return [f"shape {before.shape} -> {after.shape}"]
    mask = redacted_mask(case.redaction, before.shape[0])
    if not np.array_equal(before[~mask], after[~mask]):
        changed = int((before != after).any(axis=-1)[~mask].sum())
        problems.append(f"{changed} pixels outside the redacted boxes changed")
    inside = after[mask].reshape(-1, after.shape[-1])
    if inside.size and len(np.unique(inside, axis=0)) != 1:
        problems.append("a redacted box holds more than one value")
    if not mask.any():
        problems.append("the record names no redacted pixel")
    return problems
