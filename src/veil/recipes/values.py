"""The value checks of the string and binary VRs a recipe may write (PS3.5 6.2), without the YAML reader:
the recipe model and its rules use them where a recipe is loaded from the compiled-recipe cache."""

from __future__ import annotations

import re

from veil.core.plan import DUMMY_VALUES

__all__ = ["CLEANABLE_VRS"]

_ALL_VRS = frozenset(DUMMY_VALUES)

# Text VRs the free-text cleaner (veil.recipes.freetext) works on; everything else is removed by its callback
# (fail closed).
CLEANABLE_VRS = frozenset({"AE", "CS", "LO", "LT", "SH", "ST", "UC", "UT"})

# PS3.5 6.2: maximum value lengths (characters) of the string VRs a recipe may write.
_MAX_LENGTH = {
    "AE": 16,
    "AS": 4,
    "CS": 16,
    "DA": 8,
    "DS": 16,
    "DT": 26,
    "IS": 12,
    "LO": 64,
    "LT": 10240,
    "PN": 64,
    "SH": 16,
    "ST": 1024,
    "TM": 14,
    "UC": None,
    "UI": 64,
    "UR": None,
    "UT": None,
}
_VALUE_SYNTAX = {
    "AS": re.compile(r"\d{3}[DWMY]"),
    "CS": re.compile(r"[A-Z0-9 _]*"),
    "DA": re.compile(r"\d{8}"),
    "DS": re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"),
    "DT": re.compile(r"\d{4,14}(\.\d{1,6})?([+-]\d{4})?"),
    "IS": re.compile(r"[+-]?\d{1,11}"),
    "TM": re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?"),
    "UI": re.compile(r"(0|[1-9]\d*)(\.(0|[1-9]\d*))*"),
}
_BINARY_FORMATS = {
    "US": "<H",
    "SS": "<h",
    "UL": "<I",
    "SL": "<i",
    "FL": "<f",
    "FD": "<d",
    "SV": "<q",
    "UV": "<Q",
}

def _vr_choices(vr: str | None) -> tuple[str, ...]:
    """``US or SS`` -> ("US", "SS"); None or an unknown VR -> ()."""
    if not vr:
        return ()
    return tuple(v for v in (p.strip() for p in vr.split(" or ")) if v in _ALL_VRS)


def _value_problem(vr: str, value: str) -> str | None:
    """Why ``value`` is not a valid single value of the string VR ``vr`` (PS3.5 6.2), or None."""
    limit = _MAX_LENGTH.get(vr)
    if limit is not None and len(value) > limit:
        return f"{value!r} is longer than {vr} allows ({limit})"
    if "\\" in value and vr not in ("LT", "ST", "UT"):
        return f"{value!r}: one value only (no backslash)"
    control_ok = "\r\n\t\f" if vr in ("LT", "ST", "UT") else ""
    if any(not (c.isprintable() or c in control_ok) for c in value):
        return f"{value!r} holds control characters"
    syntax = _VALUE_SYNTAX.get(vr)
    if syntax is not None and value and not syntax.fullmatch(value):
        return f"{value!r} is not a valid {vr} value"
    return None
