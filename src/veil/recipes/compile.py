"""Compiling a resolved recipe to the Plan the core runs, with the elements that mark an output de-identified
(PS3.15 E.1.1); ``check_recipe`` validates a file by resolving and compiling it."""

from __future__ import annotations

import os
from pathlib import Path

from veil._version import __version__
from veil.core.plan import Action, Inserted, Plan, Rule
from veil.errors import RecipeError
from veil.recipes.freetext import Cleaner, clean_element
from veil.recipes.model import CompiledRecipe, Recipe
from veil.recipes.parse import _parse_file
from veil.recipes.resolve import _resolve, load_recipe
from veil.recipes.rules import _compile_rule

__all__ = ["METHOD_CODES", "check_recipe", "compile_recipe", "marking"]

METHOD_CODES: dict[str, tuple[str, str]] = {
    "ps3.15-basic": ("113100", "Basic Application Confidentiality Profile"),
    "clean-graphics": ("113103", "Clean Graphics Option"),
    "clean-structured-content": ("113104", "Clean Structured Content Option"),
    "clean-descriptors": ("113105", "Clean Descriptors Option"),
    "retain-long-full-dates": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "retain-long-modified-dates": (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    "retain-patient-characteristics": ("113108", "Retain Patient Characteristics Option"),
    "retain-device-identity": ("113109", "Retain Device Identity Option"),
    "retain-uids": ("113110", "Retain UIDs Option"),
    "retain-safe-private": ("113111", "Retain Safe Private Option"),
    "retain-institution-identity": ("113112", "Retain Institution Identity Option"),
}


def marking(recipe: Recipe, shifts_dates: bool) -> tuple[Inserted, ...]:
    """The elements that say an output was de-identified and how (PS3.15 E.1.1, PS3.3 C.12.1):
    PatientIdentityRemoved YES, DeidentificationMethod (veil and the recipe's name and version),
    DeidentificationMethodCodeSequence (CID 7050 code of the profile and of every option applied), and
    LongitudinalTemporalInformationModified (UNMODIFIED with full dates, MODIFIED where dates moved, REMOVED
    otherwise, since the Basic Profile removes or replaces them)."""
    names = [layer.rsplit(" ", 1)[0] for layer in recipe.layers]
    codes = [METHOD_CODES[name] for name in names if name in METHOD_CODES]
    items = tuple(
        ((0x00080100, "SH", value), (0x00080102, "SH", "DCM"), (0x00080104, "LO", meaning))
        for value, meaning in codes
    )
    if "retain-long-full-dates" in names:
        temporal = "UNMODIFIED"
    elif shifts_dates:
        temporal = "MODIFIED"
    else:
        temporal = "REMOVED"
    method = f"veil {__version__} {recipe.name} {recipe.version}"[:64]
    inserted: list[Inserted] = [(0x00120062, "CS", "YES"), (0x00120063, "LO", method)]
    if items:
        inserted.append((0x00120064, "SQ", items))
    inserted.append((0x00280303, "CS", temporal))
    return tuple(inserted)


def _cleaner(recipe: Recipe) -> Cleaner:
    """The free-text callback: the shipped vocabulary, extended by the recipe's ``vocabulary:`` words (a
    :class:`~veil.recipes.freetext.Cleaner` pickles with its words: process-pool and Ray workers get them)."""
    extra = tuple(getattr(recipe, "vocabulary", ()) or ())
    return Cleaner(extra) if extra else clean_element


def compile_recipe(recipe: Recipe | str | os.PathLike[str]) -> CompiledRecipe:
    """The Plan of a resolved profile, and the keyed-function parameters it needs."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    if recipe.kind != "profile":
        raise RecipeError(recipe.path, None, "an option overlay is not a complete recipe; name it in options")
    dummies = recipe.parameters.get("dummy", {})
    tags: dict[int, Rule] = {}
    masks: list[tuple[int, int, Rule]] = []
    private: dict[tuple[int, str, int], Rule] = {}
    vr_defaults: dict[str, Action] = {}
    for r in recipe.rules:
        rule = _compile_rule(r, dummies)
        if r.kind == "tag":
            tags[r.key] = rule
        elif r.kind == "mask":
            masks.append((r.key[0], r.key[1], rule))
        elif r.kind == "private":
            private[r.key] = rule
        else:
            vr_defaults[r.key] = rule.action
    # The first matching mask wins: the most specific first, so (60xx,3000) comes before (60xx,xxxx).
    masks.sort(key=lambda m: (-bin(m[0]).count("1"), m[1], m[0]))
    if "SQ" not in vr_defaults:
        vr_defaults["SQ"] = {"recurse": Action.RECURSE, "remove": Action.REMOVE, "empty": Action.EMPTY}[
            recipe.defaults["sequence"]
        ]
    uses_call = (
        any(rule.action == Action.CALL for rule in (*tags.values(), *private.values()))
        or any(m[2].action == Action.CALL for m in masks)
        or Action.CALL in vr_defaults.values()
    )
    shifts = (
        any(r.action == Action.SHIFT for r in (*tags.values(), *private.values()))
        or any(m[2].action == Action.SHIFT for m in masks)
        or Action.SHIFT in vr_defaults.values()
    )
    plan = Plan(
        tags=tags,
        masks=tuple(masks),
        private=private,
        vr_defaults=vr_defaults,
        default_public=Action.KEEP if recipe.defaults["public"] == "keep" else Action.REMOVE,
        default_private=Action.KEEP if recipe.defaults["private"] == "keep" else Action.REMOVE,
        age_cap=int(recipe.parameters.get("age_cap", 90)),
        callback=_cleaner(recipe) if uses_call else None,
        insert=marking(recipe, shifts),
        name=f"{recipe.name} {recipe.version}",
    )
    shift = recipe.parameters.get("date_shift_days")
    return CompiledRecipe(
        recipe=recipe,
        plan=plan,
        shift_range=tuple(shift) if shift is not None else None,
        pseudonym_pattern=recipe.parameters.get("pseudonym_pattern"),
    )


def check_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Validates a recipe file with everything it extends and applies; raises RecipeError naming file and line."""
    recipe = _resolve(_parse_file(Path(path)))
    if recipe.kind == "profile":
        compile_recipe(recipe)
    return recipe
