"""Where the shipped recipes and pixel rule libraries lie: package data in ``veil/recipes/shipped/``."""

from __future__ import annotations

from pathlib import Path

__all__ = ["pixel_rules_dir", "recipes_dir"]


def recipes_dir() -> Path:
    """The directory of the shipped recipes (package data ``veil/recipes/shipped``). veil is never imported from a zip
    (its core is a compiled extension), so the folder beside this module is it; importlib.resources would
    cost every start 3 ms of imports for the same answer."""
    return Path(__file__).resolve().parent / "shipped"


def pixel_rules_dir() -> Path:
    """The shipped pixel rule library (package data ``veil/recipes/shipped/pixels``)."""
    return recipes_dir() / "pixels"
