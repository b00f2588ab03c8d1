"""Recipes: YAML files read, validated, resolved through their layers and compiled to a Plan; free-text cleaning;
the pixel rules. The shipped recipes are package data in ``veil/recipes/shipped/``.

The names below load on first use (PEP 562): a run whose recipe comes from the compiled-recipe cache
(:mod:`veil.recipes.cache`) loads the recipe model alone, without the YAML reader and the data dictionary that
parsing a recipe needs; the pipeline imports :mod:`veil.recipes.freetext` only for a plan that cleans text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from veil.system import lazy_exports

if TYPE_CHECKING:
    from veil.recipes.compile import METHOD_CODES, check_recipe, compile_recipe, marking
    from veil.recipes.deface import HEAD_BODY_PARTS, DefacePolicy
    from veil.recipes.model import CompiledRecipe, Recipe, RecipeInfo, pixel_policy
    from veil.recipes.paths import pixel_rules_dir, recipes_dir
    from veil.recipes.pixelrules import (
        AT_RISK_ACTIONS,
        PIXEL_MATCH_KEYS,
        PixelPolicy,
        PixelRule,
        load_pixel_rules,
    )
    from veil.recipes.reader import parse_tag
    from veil.recipes.resolve import diff_recipes, list_recipes, load_recipe
    from veil.recipes.rules import ACTIONS, RecipeRule

__all__ = [
    "ACTIONS",
    "AT_RISK_ACTIONS",
    "METHOD_CODES",
    "PIXEL_MATCH_KEYS",
    "CompiledRecipe",
    "DefacePolicy",
    "HEAD_BODY_PARTS",
    "PixelPolicy",
    "PixelRule",
    "Recipe",
    "RecipeInfo",
    "RecipeRule",
    "check_recipe",
    "compile_recipe",
    "diff_recipes",
    "list_recipes",
    "load_pixel_rules",
    "load_recipe",
    "marking",
    "parse_tag",
    "pixel_policy",
    "pixel_rules_dir",
    "recipes_dir",
]

# Each public name and the module that holds it.
_HOMES = {
    "METHOD_CODES": "compile",
    "check_recipe": "compile",
    "compile_recipe": "compile",
    "marking": "compile",
    "DefacePolicy": "deface",
    "HEAD_BODY_PARTS": "deface",
    "CompiledRecipe": "model",
    "Recipe": "model",
    "RecipeInfo": "model",
    "pixel_policy": "model",
    "pixel_rules_dir": "paths",
    "recipes_dir": "paths",
    "AT_RISK_ACTIONS": "pixelrules",
    "PIXEL_MATCH_KEYS": "pixelrules",
    "PixelPolicy": "pixelrules",
    "PixelRule": "pixelrules",
    "load_pixel_rules": "pixelrules",
    "parse_tag": "reader",
    "diff_recipes": "resolve",
    "list_recipes": "resolve",
    "load_recipe": "resolve",
    "ACTIONS": "rules",
    "RecipeRule": "rules",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
