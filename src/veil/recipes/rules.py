"""One recipe rule: the element it matches and its action; which VRs each action applies to, and the Plan rule
(:class:`veil.core.plan.Rule`) it compiles to.

Actions, and what they compile to (:class:`veil.core.plan.Action`):

keep       KEEP; on a sequence RECURSE (PS3.15 Table E.1-1a K: "cleaned for Sequences"; never copied unexamined)
remove     REMOVE                         empty      EMPTY (a sequence with no items)
dummy      DUMMY, or REPLACE with ``parameters.dummy[VR]``; on a sequence EMPTY
replace    REPLACE with ``value`` (a string for text VRs, a number for US SS UL SL FL FD SV UV)
uid        UID (UI only)                  pseudonym  PSEUDO (AE CS LO LT PN SH ST UC UT; the pattern must fit)
shift      SHIFT on DA and DT; on TM KEEP: a whole-day shift leaves the time of day as it is (PS3.15 E.3.6)
age        AGE (AS only; ``parameters.age_cap``)
recurse    RECURSE (SQ only)
clean      CALL with :func:`veil.recipes.freetext.clean_element` on AE CS LO LT SH ST UC UT; on a sequence RECURSE
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from veil.core.plan import Action, Rule
from veil.keys import COUNTER_MAX_WIDTH, counter_format
from veil.recipes.values import _BINARY_FORMATS, _MAX_LENGTH, CLEANABLE_VRS, _value_problem, _vr_choices

__all__ = ["ACTIONS", "RecipeRule"]

ACTIONS = (
    "keep",
    "remove",
    "empty",
    "dummy",
    "replace",
    "uid",
    "shift",
    "pseudonym",
    "age",
    "recurse",
    "clean",
)
_KEYED_ACTIONS = {"uid", "pseudonym", "shift"}
_PSEUDONYM_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"}
_PATTERN_FIELD = re.compile(r"\{hash(?::(\d+))?\}")
_COUNTER_FIELD = re.compile(r"\{counter(?::(\d+))?\}")
_PSEUDONYM_MAX_HASH = 40  # KeyedFunctions.pseudonym draws 40 base32 characters


@dataclass(frozen=True)
class RecipeRule:
    """One resolved rule: the element it matches, the action and its value, and where it was written."""

    match: str  # canonical: "(0010,0010)", "(60xx,3000)", '(0019,"CREATOR",0C)' or "vr PN"
    kind: str  # "tag" | "mask" | "private" | "vr"
    key: Any  # int tag, (mask, value), (group, creator, byte) or the VR
    action: str
    value: str | int | float | None = None
    label: str = ""  # keyword or the rule's name
    vr: str | None = None  # the dictionary VR text ("US or SS"), the VR of a vr rule, None when unknown
    source: str = ""  # "file.yml:12"

    def sort_key(self) -> tuple[int, Any]:
        order = {"tag": 0, "mask": 1, "private": 2, "vr": 3}[self.kind]
        key = self.key if self.kind != "mask" else (self.key[1], self.key[0])
        return order, key

    def canonical(self) -> list[Any]:
        return [self.match, self.action, self.value]


def _pattern_problem(pattern: str) -> str | None:
    counters = list(_COUNTER_FIELD.finditer(pattern))
    hashes = list(_PATTERN_FIELD.finditer(pattern))
    if not counters and not hashes:
        return f"pseudonym_pattern {pattern!r} has no {{hash}}, {{hash:N}} or {{counter:N}} field"
    if counters and hashes:
        return f"pseudonym_pattern {pattern!r}: {{hash}} and {{counter}} fields cannot be mixed"
    if len(counters) > 1:
        return f"pseudonym_pattern {pattern!r}: one {{counter:N}} field only"
    for m in counters:
        if m.group(1) is None or not 1 <= int(m.group(1)) <= COUNTER_MAX_WIDTH:
            return (
                f"pseudonym_pattern {pattern!r}: write {{counter:N}}, N the least number of digits "
                f"(1 to {COUNTER_MAX_WIDTH})"
            )
    for m in hashes:
        n = int(m.group(1) or 16)
        if not 1 <= n <= _PSEUDONYM_MAX_HASH:
            return f"pseudonym_pattern {pattern!r}: {{hash:N}} takes 1 to {_PSEUDONYM_MAX_HASH} characters"
    literal = _COUNTER_FIELD.sub("", _PATTERN_FIELD.sub("", pattern))
    if not literal.isascii() or not all(c.isalnum() or c in " -_." for c in literal):
        return f"pseudonym_pattern {pattern!r}: literal text may hold letters, digits, space, - _ . only"
    return None


def _pattern_length(pattern: str) -> int:
    """The longest pseudonym of ``pattern``: ``{hash:N}`` is N characters; ``{counter:N}`` is N digits until
    the numbers outgrow them, and the key service hands out at most N + COUNTER_EXTRA_DIGITS digits."""
    fmt = counter_format(pattern)
    if fmt is not None:
        return fmt.max_length
    return len(_PATTERN_FIELD.sub("", pattern)) + sum(
        int(m.group(1) or 16) for m in _PATTERN_FIELD.finditer(pattern)
    )


def _action_problem(
    action: str, kind: str, vr: str | None, parameters: dict[str, tuple[Any, int]]
) -> str | None:
    """Why ``action`` cannot apply to an element of ``vr`` (None when it can or the VR is unknown)."""
    if kind == "vr" and action == "replace":
        return "replace needs a value per element; name the elements"
    choices = _vr_choices(vr)
    if not choices:
        return None

    def every(allowed: Iterable[str]) -> bool:
        return all(c in allowed for c in choices)

    if action == "uid" and not every({"UI"}):
        return f"uid applies to UI elements, not {vr}"
    if action == "shift" and not every({"DA", "DT", "TM"}):
        return f"shift applies to DA, DT and TM elements, not {vr}"
    if action == "age" and not every({"AS"}):
        return f"age applies to AS elements, not {vr}"
    if action == "recurse" and not every({"SQ"}):
        return f"recurse applies to sequences, not {vr}"
    if action == "clean" and not every(CLEANABLE_VRS | {"SQ"}):
        return f"clean applies to text ({', '.join(sorted(CLEANABLE_VRS))}) and sequences, not {vr}"
    if action == "pseudonym":
        if not every(_PSEUDONYM_VRS):
            return f"pseudonym applies to {', '.join(sorted(_PSEUDONYM_VRS))}, not {vr}"
        pattern = parameters.get("pseudonym_pattern", ("{hash:16}", 0))[0]
        for c in choices:
            limit = _MAX_LENGTH.get(c)
            if limit is not None and _pattern_length(pattern) > limit:
                return f"pseudonyms of pattern {pattern!r} are {_pattern_length(pattern)} characters; {c} holds {limit}"
    if action == "replace" and "SQ" in choices:
        return "replace cannot write a sequence"
    return None


def _replace_problem(value: Any, choices: tuple[str, ...]) -> str | None:
    if value is None or isinstance(value, bool):
        return f"replace value {value!r} is not a string or number"
    for vr in choices:
        if vr in _BINARY_FORMATS:
            if not isinstance(value, (int, float)) or (vr not in ("FL", "FD") and not isinstance(value, int)):
                return f"replace value for {vr} must be a number, not {value!r}"
            try:
                struct.pack(_BINARY_FORMATS[vr], value)
            except (struct.error, OverflowError):
                return f"replace value {value!r} does not fit {vr}"
        elif vr in _MAX_LENGTH:
            if not isinstance(value, (str, int, float)):
                return f"replace value {value!r} is not text"
            problem = _value_problem(vr, str(value))
            if problem:
                return problem
        else:
            return f"replace cannot write a {vr} value"
    if not choices and not isinstance(value, (str, int, float)):
        return f"replace value {value!r} is not text"
    return None


def _binary_value(vr: str, value: int | float) -> bytes:
    return struct.pack(_BINARY_FORMATS[vr], value)


def _compile_rule(r: RecipeRule, dummies: dict[str, str]) -> Rule:
    choices = _vr_choices(r.vr)
    sequence = choices == ("SQ",)
    a = r.action
    if a == "keep":
        return Rule(Action.RECURSE if sequence else Action.KEEP)
    if a == "remove":
        return Rule(Action.REMOVE)
    if a == "empty":
        return Rule(Action.EMPTY)
    if a == "dummy":
        if sequence:
            return Rule(Action.EMPTY)
        if len(choices) == 1 and choices[0] in dummies and r.kind != "vr":
            return Rule(Action.REPLACE, dummies[choices[0]])
        return Rule(Action.DUMMY)
    if a == "replace":
        assert r.value is not None
        if choices and all(c in _BINARY_FORMATS for c in choices):  # validated for every choice
            return Rule(Action.REPLACE, _binary_value(choices[0], r.value))  # type: ignore[arg-type]
        return Rule(Action.REPLACE, str(r.value))
    if a == "uid":
        return Rule(Action.UID)
    if a == "shift":
        if choices and all(c == "TM" for c in choices):
            return Rule(Action.KEEP)  # a whole-day shift leaves the time of day unchanged
        return Rule(Action.SHIFT)
    if a == "pseudonym":
        return Rule(Action.PSEUDO)
    if a == "age":
        return Rule(Action.AGE)
    if a == "recurse":
        return Rule(Action.RECURSE)
    if a == "clean":
        return Rule(Action.RECURSE if sequence else Action.CALL)
    raise AssertionError(a)
