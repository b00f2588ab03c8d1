"""The Plan: the flat action table the native core reads, and the value rules behind each action.

A recipe (:mod:`veil.recipes`) compiles to a :class:`Plan`; the Cython rewriter (``veil.core._core``) compiles a Plan once
into C arrays and applies it to every element of every file. The same semantics are implemented independently
on pydicom Datasets in ``tests/reference.py``: the two are compared element by element in the tests.

Semantics, per element of a data set (top level and inside every item of every sequence walked):

* Group length elements ``(gggg,0000)`` are always dropped (retired in data sets, PS3.5 7.2); the File Meta
  group is rebuilt, never copied.
* Lookup order for a *public* element (even group): an exact ``tags`` rule; else the first ``masks`` rule whose
  ``tag & mask == value``; else ``vr_defaults[vr]``; else ``default_public``.
* A *private creator* ``(gggg,0010-00FF)`` (odd group) is kept when some ``private`` rule for that group and
  creator keeps something (any action but REMOVE); otherwise it takes ``default_private``.
* A *private data element* ``(gggg,xxee)`` with ``xx >= 0x10`` is looked up as ``(gggg, creator, ee)`` where
  creator is the value of ``(gggg,00xx)`` in the same data set with trailing spaces and NULs stripped; with no
  rule, or no creator, it takes ``default_private``. Other odd-group elements take ``default_private``.
* The VR is the explicit VR; for implicit VR data sets, and for explicit ``UN`` whose tag the dictionary knows,
  the dictionary's VR (ambiguous VRs resolve to the first choice: ``US or SS`` -> US, ``OB or OW`` -> OB);
  private data elements read implicitly are ``UN``; private creators are ``LO``.

:func:`explain_rule` is this lookup order in Python, with the step that chose each rule (``veil inspect`` shows
it, ``veil verify`` uses it); :meth:`Plan.rule_for_public` shares its public part.

Actions (UID, SHIFT and PSEUDO split the value on backslash and strip each component of leading and trailing
spaces and NULs, AGE strips the whole value the same way; a value the Plan writes is padded to an even length with NUL for UI and binary VRs,
with a space otherwise):

KEEP     the element as it was, byte for byte (a kept sequence is copied whole, unexamined).
REMOVE   the element is dropped.
EMPTY    zero length value (a sequence with no items).
DUMMY    the dummy value for the VR (:data:`DUMMY_VALUES`); a sequence becomes empty.
REPLACE  the rule's own ``value``.
UID      each backslash-separated value is remapped by the keyed ``uid_fn`` unless it starts with
         ``1.2.840.10008.`` (standard UIDs) or is empty.
SHIFT    DA and DT values (each of a multi-value, both ends of a range) move by the file's ``shift_days``,
         see :func:`shift_date_value`; a value that cannot be parsed empties the element (fail closed). On any
         other VR the element is emptied.
PSEUDO   each backslash-separated non-empty value is replaced by the keyed ``id_fn(value)``.
AGE      an AS value of ``age_cap`` years or more (in any unit) becomes ``{age_cap:03d}Y``; an unparseable
         one empties the element.
RECURSE  a sequence: every item is rewritten under the same Plan. Any other VR is removed (fail closed).
CALL     the Plan's ``callback(tag, vr, value) -> bytes | None`` decides from the raw value bytes: the new
         value (padded as above), or None to remove.

Inserted elements (``insert``): after the Plan has been applied, each ``(tag, vr, value)`` is written at the
top level of the data set in tag order, replacing an element of the same tag whatever its rule said (this is
how outputs are marked: PatientIdentityRemoved, DeidentificationMethod, ...). A value is a text (ASCII, padded
as above) for a text VR, or for SQ a tuple of items, each a tuple of ``(tag, vr, text)``; items and the
sequence have defined lengths and are encoded in the data set's own transfer syntax. Inserted elements are
counted under REPLACE. SOPClassUID and SOPInstanceUID cannot be inserted (the File Meta follows them).

The output keeps the input's transfer syntax and the element's VR as written (an explicit ``UN`` stays ``UN``
even where its dictionary VR chose the action). A kept value of odd length is padded to even length.

Every element is counted under the action the Plan chose for it (an action may leave a value as it was:
a standard UID under UID, an empty value under SHIFT); everything the Plan does not change is copied unchanged.

Sequences: an explicit ``SQ``, an explicit ``UN`` of undefined length (its items are Implicit VR Little Endian,
PS3.5 6.2.2) or of a dictionary SQ tag, and in implicit VR data sets an undefined length or a dictionary SQ tag.
A sequence whose value is not made of items is malformed; the file is refused when the Plan walks it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Action",
    "Rule",
    "Plan",
    "DUMMY_VALUES",
    "STANDARD_UID_PREFIX",
    "shift_date_value",
    "clamp_age_value",
    "encode_inserted",
    "Inserted",
    "RuleChoice",
    "explain_rule",
]

STANDARD_UID_PREFIX = "1.2.840.10008."


class Action(enum.IntEnum):
    """One action per element; the integer is what the native core stores in its tables."""

    KEEP = 0
    REMOVE = 1
    EMPTY = 2
    DUMMY = 3
    REPLACE = 4
    UID = 5
    SHIFT = 6
    PSEUDO = 7
    AGE = 8
    RECURSE = 9
    CALL = 10


@dataclass(frozen=True)
class Rule:
    """An action and, for REPLACE, the value (text VRs as str, binary VRs as bytes in little endian)."""

    action: Action
    value: str | bytes | None = None


# Dummy values valid for each VR (PS3.5 6.2 lengths and character repertoires). Binary VRs get one zero value
# of the VR's size; bulk binary VRs (OB, OW, ...) and UN become empty; UI gets a fixed syntactically valid UID.
DUMMY_VALUES: Mapping[str, str | bytes] = {
    "AE": "ANONYMOUS",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000",
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMOUS",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "TM": "000000",
    "UC": "ANONYMIZED",
    "UI": "2.25.0",
    "UR": "",
    "UT": "ANONYMIZED",
    "AT": b"\x00\x00\x00\x00",
    "FL": b"\x00\x00\x00\x00",
    "FD": b"\x00" * 8,
    "SL": b"\x00\x00\x00\x00",
    "SS": b"\x00\x00",
    "SV": b"\x00" * 8,
    "UL": b"\x00\x00\x00\x00",
    "US": b"\x00\x00",
    "UV": b"\x00" * 8,
    "OB": b"",
    "OD": b"",
    "OF": b"",
    "OL": b"",
    "OV": b"",
    "OW": b"",
    "UN": b"",
    "SQ": b"",
}


# An element the Plan writes at the top level: (tag, VR, text) or (tag, "SQ", items of (tag, VR, text)).
Inserted = tuple[int, str, "str | tuple[tuple[tuple[int, str, str], ...], ...]"]


@dataclass(frozen=True)
class Plan:
    """A compiled de-identification plan; see the module docstring for the exact semantics."""

    tags: Mapping[int, Rule] = field(default_factory=dict)
    masks: tuple[tuple[int, int, Rule], ...] = ()
    private: Mapping[tuple[int, str, int], Rule] = field(default_factory=dict)
    vr_defaults: Mapping[str, Action] = field(default_factory=dict)
    default_public: Action = Action.REMOVE
    default_private: Action = Action.REMOVE
    age_cap: int = 90
    callback: Callable[[int, str, bytes], bytes | None] | None = None
    insert: tuple[Inserted, ...] = ()
    name: str = "plan"

    def rule_for_public(self, tag: int, vr: str) -> Rule:
        """The rule for a public element (exact tag, then masks, then VR default, then default)."""
        return self._public_lookup(tag, vr)[0]

    def _public_lookup(self, tag: int, vr: str) -> tuple[Rule, str, tuple[int, int] | None]:
        """The lookup order for a public element: (rule, which step chose it: "tag" | "mask" | "vr" |
        "default", the (mask, value) of a mask rule)."""
        rule = self.tags.get(tag)
        if rule is not None:
            return rule, "tag", None
        for mask, value, masked_rule in self.masks:
            if tag & mask == value:
                return masked_rule, "mask", (mask, value)
        action = self.vr_defaults.get(vr)
        if action is not None:
            return Rule(action), "vr", None
        return Rule(self.default_public), "default", None

    def rule_for_private(self, group: int, creator: str | None, element_byte: int) -> Rule:
        """The rule for a private data element of block ``creator`` in ``group``."""
        if creator is not None:
            rule = self.private.get((group, creator, element_byte))
            if rule is not None:
                return rule
        return Rule(self.default_private)

    def keeps_creator(self, group: int, creator: str) -> bool:
        """Whether some private rule of this creator in this group keeps an element."""
        return any(
            g == group and c == creator and r.action != Action.REMOVE for (g, c, _), r in self.private.items()
        )


# --- which rule chose the action: the lookup order above, with where each rule came from ------------------


@dataclass(frozen=True)
class RuleChoice:
    """The Plan's rule for one element and where it came from."""

    rule: Rule
    kind: str  # "tag" | "mask" | "vr" | "default" | "private" | "private creator" | "group length"
    label: str  # e.g. "tag (0010,0010) PatientName", "mask (60xx,3000)", "VR default PN", "default public"


def _mask_text(mask: int, value: int) -> str:
    digits = []
    for shift in range(28, -1, -4):
        digits.append(f"{(value >> shift) & 0xF:X}" if (mask >> shift) & 0xF == 0xF else "x")
    text = "".join(digits)
    return f"({text[:4]},{text[4:]})"


def explain_rule(plan: Plan, tag: int, vr: str, creator: str | None = None) -> RuleChoice:
    """The rule the Plan applies to an element (the lookup order of the module docstring) and its source.

    ``creator`` is the block's creator for a private data element, the element's own value for a private
    creator, None otherwise.
    """
    group, element = tag >> 16, tag & 0xFFFF
    if element == 0:
        return RuleChoice(Rule(Action.REMOVE), "group length", "group length (always dropped, PS3.5 7.2)")
    if group & 1:
        if 0x0010 <= element <= 0x00FF:
            if creator is not None and plan.keeps_creator(group, creator):
                return RuleChoice(
                    Rule(Action.KEEP), "private creator", f'private creator ({group:04X},"{creator}")'
                )
            return RuleChoice(Rule(plan.default_private), "default", "default private")
        if element >> 8 >= 0x10 and creator is not None:
            rule = plan.private.get((group, creator, element & 0xFF))
            if rule is not None:
                return RuleChoice(rule, "private", f'private ({group:04X},"{creator}",{element & 0xFF:02X})')
        return RuleChoice(Rule(plan.default_private), "default", "default private")
    rule, kind, masked = plan._public_lookup(tag, vr)
    if kind == "tag":
        # Imported here: the native core imports this module and never needs the dictionary's data.
        from veil.core.dictionary import dictionary_entry

        entry = dictionary_entry(tag)
        keyword = f" {entry[1]}" if entry and entry[1] else ""
        return RuleChoice(rule, "tag", f"tag ({group:04X},{element:04X}){keyword}")
    if masked is not None:
        return RuleChoice(rule, "mask", f"mask {_mask_text(*masked)}")
    if kind == "vr":
        return RuleChoice(rule, "vr", f"VR default {vr}")
    return RuleChoice(rule, "default", "default public")


def encode_inserted(element: Inserted, explicit: bool, little: bool) -> bytes:
    """One inserted element, header and value, in the given encoding (defined lengths throughout)."""
    tag, vr, value = element
    order: Literal["little", "big"] = "little" if little else "big"

    def header(t: int, v: str, length: int) -> bytes:
        head = (t >> 16).to_bytes(2, order) + (t & 0xFFFF).to_bytes(2, order)
        if not explicit:
            return head + length.to_bytes(4, order)
        if v in _LONG_VRS:
            return head + v.encode("ascii") + b"\x00\x00" + length.to_bytes(4, order)
        return head + v.encode("ascii") + length.to_bytes(2, order)

    if vr == "SQ":
        assert not isinstance(value, str)
        items = b""
        for item in value:
            body = b"".join(encode_inserted(e, explicit, little) for e in sorted(item))
            items += header(0xFFFEE000, "", len(body))[:4] + len(body).to_bytes(4, order) + body
        return header(tag, "SQ", len(items)) + items
    assert isinstance(value, str)
    raw = value.encode("ascii")
    if len(raw) % 2:
        raw += b"\x00" if vr == "UI" else b" "
    return header(tag, vr, len(raw)) + raw


_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})


# --- value rules shared by the reference implementation (the native core has its own C versions) ---------


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = y // 400  # floor division (the C original adjusts truncating division by hand)
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _civil_from_days(z: int) -> tuple[int, int, int]:
    z += 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return y + (m <= 2), m, d


def _days_in_month(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    return 30 if m in (4, 6, 9, 11) else 31


def _shift_ymd(text: str, days: int) -> str | None:
    """Shift the leading YYYY[MM[DD]] of a DA or DT; partial dates shift their first day, keep precision."""
    n = len(text)
    if n not in (4, 6, 8) or not text.isascii() or not text.isdigit():
        return None
    y = int(text[:4])
    m = int(text[4:6]) if n >= 6 else 1
    d = int(text[6:8]) if n == 8 else 1
    if not (1 <= m <= 12 and 1 <= d <= _days_in_month(y, m)):
        return None
    y, m, d = _civil_from_days(_days_from_civil(y, m, d) + days)
    if not 0 <= y <= 9999:
        return None
    return f"{y:04d}{m:02d}{d:02d}"[:n]


def _shift_dt(text: str, days: int) -> str | None:
    """Shift one DT value ``YYYY[MM[DD[HH[MM[SS[.F{1,6}]]]]]][&ZZXX]``: the date moves, time and offset stay."""
    body, offset = text, ""
    if len(text) >= 5 and text[-5] in "+-" and text[-4:].isascii() and text[-4:].isdigit():
        body, offset = text[:-5], text[-5:]
    whole, dot, fraction = body.partition(".")
    if dot and (not fraction or len(fraction) > 6 or not fraction.isascii() or not fraction.isdigit()):
        return None
    if len(whole) not in (4, 6, 8, 10, 12, 14) or not whole.isascii() or not whole.isdigit():
        return None
    if dot and len(whole) != 14:
        return None
    date = _shift_ymd(whole[: min(len(whole), 8)], days)
    if date is None:
        return None
    return date + whole[8:] + dot + fraction + offset


def _shift_one(value: str, vr: str, days: int) -> str | None:
    return _shift_ymd(value, days) if vr == "DA" else _shift_dt(value, days)


def _split_range(value: str, vr: str) -> tuple[str, str] | None:
    """Split ``A-B`` (either end may be empty) where the hyphen is the range separator, not a DT offset."""
    if vr == "DA":
        if value.count("-") != 1:
            return None
        start, _, stop = value.partition("-")
        return start, stop
    # DT: a hyphen is a range separator unless it begins a 4-digit offset that ends the value or a range end.
    for i, ch in enumerate(value):
        if ch != "-":
            continue
        tail = value[i + 1 :]
        if len(tail) >= 4 and tail[:4].isdigit() and (len(tail) == 4 or tail[4] == "-") and i >= 4:
            continue  # an offset &ZZXX
        return value[:i], tail
    return None


def shift_date_value(value: str, vr: str, days: int) -> str | None:
    """Shift a DA or DT element value (multi-valued, ranges) by ``days``; None when it cannot be parsed.

    Leading and trailing spaces are ignored; an empty value stays empty; each value of a multi-value and each
    end of a range moves by the same number of days so that every interval is kept (PS3.15 E.3.6).
    """
    out = []
    for one in value.split("\\"):
        one = one.strip(" \x00")
        if not one:
            out.append("")
            continue
        parts = _split_range(one, vr)
        if parts is None:
            shifted = _shift_one(one, vr, days)
            if shifted is None:
                return None
            out.append(shifted)
            continue
        start, stop = parts
        new_start = _shift_one(start, vr, days) if start else ""
        new_stop = _shift_one(stop, vr, days) if stop else ""
        if new_start is None or new_stop is None or not (start or stop):
            return None
        out.append(f"{new_start}-{new_stop}")
    return "\\".join(out)


# Age at or over the cap, per unit, in exact integer arithmetic (a year is 365.25 days, 12 months).
_AT_OR_OVER_CAP = {
    "D": lambda n, cap: 4 * n >= 1461 * cap,
    "W": lambda n, cap: 28 * n >= 1461 * cap,
    "M": lambda n, cap: n >= 12 * cap,
    "Y": lambda n, cap: n >= cap,
}


def clamp_age_value(value: str, cap: int) -> str | None:
    """Clamp an AS value ``nnnD|W|M|Y``: ``cap`` years or more become ``{cap:03d}Y`` (HIPAA: 90 or older).

    Returns the value unchanged when below the cap, None when it cannot be parsed (the caller empties it).
    """
    v = value.strip(" \x00")
    if v == "":
        return ""
    if len(v) != 4 or not v[:3].isascii() or not v[:3].isdigit() or v[3] not in _AT_OR_OVER_CAP:
        return None
    if _AT_OR_OVER_CAP[v[3]](int(v[:3]), cap):
        return f"{cap:03d}Y"
    return v
