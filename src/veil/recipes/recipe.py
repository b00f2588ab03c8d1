"""Recipes: versioned YAML that names an action per element, validated with file and line, compiled to a Plan.

A recipe file (``recipes/README.md`` has the full reference)::

    name: research                 # lower case, digits, ``. + -``; a shipped recipe's file is <name>.yml
    version: "1.0"                 # a string; recorded in the audit with the content hash
    edition: 2026d                 # the PS3.15 edition the rules follow (inherited through ``extends``)
    kind: profile                  # ``profile`` (default) or ``option`` (an overlay named in ``options``)
    description: one line for ``veil recipe list``
    extends: ps3.15-basic          # a profile whose resolved rules this one starts from
    options: [retain-uids]         # option overlays applied on top, in order; a later one wins
    defaults: {public: keep, private: remove, sequence: recurse}
    parameters:
      date_shift_days: [-3650, -1] # whole days, the range may not include 0
      pseudonym_pattern: "{hash:16}"  # or "SUBJ-{counter:6}": numbered by the run's key service (--reid-table)
      age_cap: 90
      dummy: {PN: ANONYMOUS}       # dummy values per VR (else veil.plan.DUMMY_VALUES)
    rules:
      - {keyword: PatientName, action: empty}
      - {tag: "(0008,0050)", action: pseudonym}
      - {tag: "(60xx,3000)", action: remove}                     # x digits: a mask (repeating groups)
      - {tag: '(0019,"SIEMENS MR HEADER",0C)', action: keep}     # private: group, creator, element byte
      - {vr: PN, action: remove}                                 # what an unnamed element of that VR gets
      - {keyword: StudyComments, action: replace, value: "none"}

Resolution: the ``extends`` profile's resolved rules, then each option's rules in order, then the recipe's own
rules; a later layer replaces an earlier one's rule for the same element. Within one file two rules for the same
element are an error. Actions, and what they compile to (:class:`veil.plan.Action`):

keep       KEEP; on a sequence RECURSE (PS3.15 Table E.1-1a K: "cleaned for Sequences"; never copied unexamined)
remove     REMOVE                         empty      EMPTY (a sequence with no items)
dummy      DUMMY, or REPLACE with ``parameters.dummy[VR]``; on a sequence EMPTY
replace    REPLACE with ``value`` (a string for text VRs, a number for US SS UL SL FL FD SV UV)
uid        UID (UI only)                  pseudonym  PSEUDO (AE CS LO LT PN SH ST UC UT; the pattern must fit)
shift      SHIFT on DA and DT; on TM KEEP: a whole-day shift leaves the time of day as it is (PS3.15 E.3.6)
age        AGE (AS only; ``parameters.age_cap``)
recurse    RECURSE (SQ only)
clean      CALL with :func:`veil.freetext.clean_element` on AE CS LO LT SH ST UC UT; on a sequence RECURSE

The VR of a named element comes from pydicom's data dictionary (read by ``veil.dictionary``), supplemented by the 2026d attributes it lacks;
an element the dictionary does not know (and every private element) is not VR-checked. Errors are
:class:`veil.errors.RecipeError` naming the file, the YAML line and the problem.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import os
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from veil._version import __version__
from veil.core import dictionary
from veil.core.plan import DUMMY_VALUES, Action, Inserted, Plan, Rule
from veil.errors import RecipeError
from veil.keys import COUNTER_MAX_WIDTH, CounterFormat, counter_format
from veil.recipes.freetext import CLEANABLE_VRS, clean_element

__all__ = [
    "ACTIONS",
    "Recipe",
    "RecipeInfo",
    "RecipeRule",
    "CompiledRecipe",
    "check_recipe",
    "compile_recipe",
    "diff_recipes",
    "dictionary_entry",
    "list_recipes",
    "load_pixel_rules",
    "load_recipe",
    "PixelPolicy",
    "PixelRule",
    "pixel_policy",
    "parse_tag",
    "recipes_dir",
]

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
_TOP_KEYS = {
    "name",
    "version",
    "edition",
    "kind",
    "description",
    "extends",
    "options",
    "defaults",
    "parameters",
    "rules",
    "pixels",
}
_OPTION_KEYS = {"name", "version", "edition", "kind", "description", "rules"}
_RULE_KEYS = {"keyword", "tag", "vr", "action", "value", "name"}
_DEFAULT_KEYS = {"public", "private", "sequence"}
_PARAMETER_KEYS = {"date_shift_days", "pseudonym_pattern", "age_cap", "dummy"}
_DEFAULT_ACTIONS = {
    "public": ("keep", "remove"),
    "private": ("keep", "remove"),
    "sequence": ("recurse", "remove", "empty"),
}
_NAME = re.compile(r"[a-z0-9][a-z0-9.+-]*")
_EDITION = re.compile(r"\d{4}[a-z]")
_ALL_VRS = frozenset(DUMMY_VALUES)

# 2026d attributes (in Table E.1-1) that pydicom 3.0.2's dictionary does not have yet (PS3.6 2026d).
_DICTIONARY_SUPPLEMENT: dict[int, tuple[str, str]] = {
    0x00081301: ("SQ", "PrincipalDiagnosisCodeSequence"),
    0x00081302: ("SQ", "PrimaryDiagnosisCodeSequence"),
    0x00081303: ("SQ", "SecondaryDiagnosesCodeSequence"),
    0x00081304: ("SQ", "HistologicalDiagnosesCodeSequence"),
    0x00100011: ("SQ", "PersonNamesToUseSequence"),
    0x00100012: ("LT", "NameToUse"),
    0x00100013: ("UT", "NameToUseComment"),
    0x00100014: ("SQ", "ThirdPersonPronounsSequence"),
    0x00100015: ("SQ", "PronounCodeSequence"),
    0x00100016: ("UT", "PronounComment"),
    0x00100041: ("SQ", "GenderIdentitySequence"),
    0x00100042: ("UT", "SexParametersForClinicalUseCategoryComment"),
    0x00100043: ("SQ", "SexParametersForClinicalUseCategorySequence"),
    0x00100044: ("SQ", "GenderIdentityCodeSequence"),
    0x00100045: ("UT", "GenderIdentityComment"),
    0x00100046: ("SQ", "SexParametersForClinicalUseCategoryCodeSequence"),
    0x00100047: ("UR", "SexParametersForClinicalUseCategoryReference"),
    0x00102162: ("UC", "EthnicGroups"),
    0x0040A034: ("DT", "EffectiveStartDateTime"),
    0x0040A035: ("DT", "EffectiveStopDateTime"),
    0x0040B034: ("DT", "AnnotationDateTime"),
    0x0040B036: ("DT", "SegmentDefinitionDateTime"),
    0x0040B03B: ("LT", "MontageName"),
    0x0040B03F: ("LO", "MontageChannelLabel"),
    0x0040E012: ("UR", "DisplayURI"),
    0x3004007F: ("LO", "DoseCalculationModelName"),
}
_KEYWORD_SUPPLEMENT = {kw: tag for tag, (_, kw) in _DICTIONARY_SUPPLEMENT.items()}

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
_PSEUDONYM_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UT"}
_PATTERN_FIELD = re.compile(r"\{hash(?::(\d+))?\}")
_COUNTER_FIELD = re.compile(r"\{counter(?::(\d+))?\}")
_PSEUDONYM_MAX_HASH = 40  # KeyedFunctions.pseudonym draws 40 base32 characters

_TAG = re.compile(r"\(\s*([0-9A-Fa-fXx]{4})\s*,\s*([0-9A-Fa-fXx]{4})\s*\)")
_PRIVATE = re.compile(r'\(\s*([0-9A-Fa-f]{4})\s*,\s*"([^"]*)"\s*,\s*([0-9A-Fa-f]{2})\s*\)')


# --- the data dictionary --------------------------------------------------------------------------------


def dictionary_entry(tag: int) -> tuple[str, str] | None:
    """``(VR, keyword)`` of a public tag from pydicom's dictionary (repeaters included) or the 2026d supplement.

    The VR is the dictionary's text, e.g. ``US or SS``; None when neither knows the tag.
    """
    if tag in _DICTIONARY_SUPPLEMENT:
        return _DICTIONARY_SUPPLEMENT[tag]
    return dictionary.entry(tag)


def _keyword_tag(keyword: str) -> int | None:
    tag = dictionary.keyword_tag(keyword)
    return tag if tag is not None else _KEYWORD_SUPPLEMENT.get(keyword)


def _vr_choices(vr: str | None) -> tuple[str, ...]:
    """``US or SS`` -> ("US", "SS"); None or an unknown VR -> ()."""
    if not vr:
        return ()
    return tuple(v for v in (p.strip() for p in vr.split(" or ")) if v in _ALL_VRS)


def parse_tag(text: str) -> tuple[str, Any]:
    """Classifies a ``tag:`` text: ("tag", int), ("mask", (mask, value)) or ("private", (group, creator, byte)).

    Raises ValueError with the problem for anything else.
    """
    m = _PRIVATE.fullmatch(text.strip())
    if m:
        group = int(m.group(1), 16)
        creator = m.group(2).rstrip(" \x00")
        if not group & 1:
            raise ValueError(f"{text}: a private element needs an odd group, not {group:04X}")
        if group in (0x0001, 0x0003, 0x0005, 0x0007, 0xFFFF):
            raise ValueError(f"{text}: group {group:04X} cannot hold private elements (PS3.5 7.8.1)")
        if not creator or len(creator) > 64 or "\\" in creator or not creator.isprintable():
            raise ValueError(f"{text}: a private creator is 1 to 64 printable characters without backslash")
        return "private", (group, creator, int(m.group(3), 16))
    m = _TAG.fullmatch(text.strip())
    if not m:
        raise ValueError(
            f'bad tag {text!r}: write "(gggg,eeee)", a pattern with x digits such as "(60xx,3000)", '
            "or a private element as '(gggg,\"CREATOR\",ee)'"
        )
    digits = (m.group(1) + m.group(2)).upper()
    if "X" in digits:
        mask = int("".join("0" if d == "X" else "F" for d in digits), 16)
        value = int(digits.replace("X", "0"), 16)
        if mask == 0:
            raise ValueError(f"{text}: a pattern matching every tag; use defaults.public")
        if (mask >> 16) == 0xFFFF and (value >> 16) & 1:
            raise ValueError(f"{text}: an odd group is private; match private elements by creator")
        if (mask >> 16) == 0xFFFF and value >> 16 == 0x0002:
            raise ValueError(f"{text}: group 0002 (File Meta) is rebuilt by the core, never taken from rules")
        return "mask", (mask, value)
    tag = int(digits, 16)
    group, element = tag >> 16, tag & 0xFFFF
    if group == 0x0002:
        raise ValueError(f"{text}: group 0002 (File Meta) is rebuilt by the core, never taken from rules")
    if group & 1:
        raise ValueError(f"{text}: an odd group is private; write '({group:04X},\"CREATOR\",ee)'")
    if element == 0:
        raise ValueError(f"{text}: group length elements are always dropped (PS3.5 7.2)")
    if group == 0xFFFE:
        raise ValueError(f"{text}: item and delimitation tags are not data elements")
    return "tag", tag


def _element(match: str, label: str) -> str:
    """How messages name an element: the match and, when known, its keyword."""
    return f"{match} {label}" if label else match


def _mask_text(mask: int, value: int) -> str:
    digits = "".join("x" if (mask >> s) & 0xF == 0 else f"{(value >> s) & 0xF:X}" for s in range(28, -4, -4))
    return f"({digits[:4]},{digits[4:]})"


def _private_text(group: int, creator: str, element: int) -> str:
    return f'({group:04X},"{creator}",{element:02X})'


# --- YAML with line numbers -----------------------------------------------------------------------------

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _line(node: yaml.Node | None) -> int | None:
    return node.start_mark.line + 1 if node is not None else None


class _Reader:
    """Reads a composed YAML node tree, checking shapes and keys; every error names the file and the line."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._constructor = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node | int | None, problem: str) -> RecipeError:
        line = node if isinstance(node, int) or node is None else _line(node)
        return RecipeError(self.path, line, problem)

    def compose(self, text: str) -> yaml.Node:
        try:
            loader = _Loader(text)
            try:
                node = loader.get_single_node()
            finally:
                loader.dispose()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            raise self.fail(
                mark.line + 1 if mark else None, f"not valid YAML: {exc.problem or exc}"
            ) from None
        except yaml.YAMLError as exc:
            raise self.fail(None, f"not valid YAML: {exc}") from None
        if node is None:
            raise self.fail(1, "empty recipe")
        return node

    def scalar(self, node: yaml.Node, what: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, f"{what} must be a single value")
        return self._constructor.construct_object(node)

    def string(self, node: yaml.Node, what: str) -> str:
        value = self.scalar(node, what)
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise self.fail(node, f"{what} must be a string (quote it), not {value!r}")
        return str(value)

    def integer(self, node: yaml.Node, what: str) -> int:
        value = self.scalar(node, what)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(node, f"{what} must be a whole number, not {value!r}")
        return value

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, f"{what} must be a list")
        return list(node.value)

    def mapping(
        self, node: yaml.Node, what: str, allowed: Iterable[str]
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{what} must be a mapping of keys to values")
        allowed = set(allowed)
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, f"a key of {what}")
            if not isinstance(key, str):
                raise self.fail(key_node, f"a key of {what} must be a name, not {key!r}")
            if key not in allowed:
                hint = difflib.get_close_matches(key, sorted(allowed), n=1)
                extra = (
                    f" (did you mean {hint[0]!r}?)" if hint else f"; known keys: {', '.join(sorted(allowed))}"
                )
                raise self.fail(key_node, f"unknown key {key!r} in {what}{extra}")
            if key in out:
                raise self.fail(
                    key_node, f"duplicate key {key!r} in {what} (first at line {_line(out[key][0])})"
                )
            out[key] = (key_node, value_node)
        return out


# --- the parsed file and the resolved recipe ------------------------------------------------------------


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


@dataclass(frozen=True)
class _Layer:
    """One file as written: its own rules and settings, with the lines they came from."""

    path: str
    name: str
    version: str
    edition: str | None
    kind: str
    description: str
    extends: tuple[str, int] | None
    options: tuple[tuple[str, int], ...]
    defaults: dict[str, tuple[str, int]]
    parameters: dict[str, tuple[Any, int]]
    rules: tuple[RecipeRule, ...]
    base_dir: Path | None
    pixels: _PixelSection | None = None


@dataclass(frozen=True)
class RecipeInfo:
    """What ``veil recipe list`` shows of a shipped recipe."""

    name: str
    version: str
    edition: str
    kind: str
    description: str
    path: str


@dataclass(frozen=True)
class Recipe:
    """A resolved recipe: every rule from ``extends``, ``options`` and its own, ready to compile."""

    name: str
    version: str
    edition: str
    kind: str
    description: str
    path: str
    extends: str | None
    options: tuple[str, ...]
    defaults: dict[str, str]
    parameters: dict[str, Any]
    rules: tuple[RecipeRule, ...]
    layers: tuple[str, ...] = field(default=())  # "name version" of every file that contributed, base first
    pixels: PixelPolicy | None = None  # the resolved ``pixels:`` section; None when no layer has one

    @property
    def requires_key(self) -> bool:
        """Whether compiling this recipe yields keyed actions (UID, pseudonym, date shift)."""
        return any(r.action in _KEYED_ACTIONS for r in self.rules)

    def canonical(self) -> dict[str, Any]:
        """The resolved content that the hash covers (name and version are not content)."""
        params = dict(self.parameters)
        if "date_shift_days" in params:
            params["date_shift_days"] = list(params["date_shift_days"])
        out: dict[str, Any] = {
            "defaults": dict(sorted(self.defaults.items())),
            "parameters": {k: params[k] for k in sorted(params)},
            "rules": [r.canonical() for r in self.rules],
        }
        if self.pixels is not None:  # only then: recipes without pixel rules keep their content hash
            out["pixels"] = self.pixels.canonical()
        return out

    @functools.cached_property
    def content_hash(self) -> str:
        """SHA-256 of the canonical JSON of the resolved defaults, parameters and rules (for the audit)."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def info(self) -> RecipeInfo:
        return RecipeInfo(self.name, self.version, self.edition, self.kind, self.description, self.path)

    def show(self) -> str:
        """The resolved rules, one per line: element, keyword, action, the Plan action it compiles to, source."""
        lines = [
            f"recipe {self.name} {self.version} ({self.kind}, PS3.15 {self.edition})",
            f"  file: {self.path}",
            f"  content sha256: {self.content_hash}",
        ]
        if self.description:
            lines.append(f"  {self.description}")
        if self.extends:
            lines.append(f"  extends: {self.extends}")
        if self.options:
            lines.append(f"  options: {', '.join(self.options)}")
        if self.defaults:
            lines.append("defaults: " + ", ".join(f"{k} {v}" for k, v in sorted(self.defaults.items())))
        if self.parameters:
            lines.append(
                "parameters: " + ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(self.parameters.items()))
            )
        lines.append(f"rules ({len(self.rules)}):")
        dummies = self.parameters.get("dummy", {})
        for r in self.rules:
            element = f"{r.match} {r.label}".rstrip()
            action = r.action if r.value is None else f"{r.action} {r.value!r}"
            plan_action = _compile_rule(r, dummies).action.name
            lines.append(f"  {element:<50}  {action:<16}  {plan_action:<8}  {r.source}")
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, tuple):
        return str(list(value))
    return str(value)


@dataclass(frozen=True)
class CompiledRecipe:
    """A recipe compiled for the core: the Plan and the parameters of :class:`veil.keys.KeyedFunctions`."""

    recipe: Recipe
    plan: Plan
    shift_range: tuple[int, int] | None
    pseudonym_pattern: str | None

    @property
    def counter(self) -> CounterFormat | None:
        """The ``{counter:N}`` format when the pseudonyms are numbered by the run's key service, else None."""
        return counter_format(self.pseudonym_pattern)

    @property
    def key_parameters(self) -> dict[str, Any]:
        """Keyword arguments for ``KeyedFunctions(key, **key_parameters)``."""
        out: dict[str, Any] = {}
        if self.shift_range is not None:
            out["shift_range"] = self.shift_range
        if self.pseudonym_pattern is not None:
            out["pseudonym_pattern"] = self.pseudonym_pattern
        return out


# --- parsing one file -----------------------------------------------------------------------------------


def recipes_dir() -> Path:
    """The directory of the shipped recipes (package data ``veil/recipes/shipped``). veil is never imported from a zip
    (its core is a compiled extension), so the folder beside this module is it; importlib.resources would
    cost every start 3 ms of imports for the same answer."""
    return Path(__file__).resolve().parent / "shipped"


_PARSED: dict[tuple[str, int, int], _Layer] = {}


def _parse_file(path: Path) -> _Layer:
    shown = str(path)
    try:
        st = path.stat()
        cache_key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
        if cache_key in _PARSED:
            return _PARSED[cache_key]
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(shown, None, "no such recipe file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(shown, None, f"cannot read recipe: {exc}") from None
    layer = _parse_text(text, shown, path.parent)
    _PARSED[cache_key] = layer
    return layer


def _parse_text(text: str, path: str, base_dir: Path | None) -> _Layer:
    rd = _Reader(path)
    root = rd.compose(text)
    top = rd.mapping(root, "the recipe", _TOP_KEYS)
    for required in ("name", "version", "rules"):
        if required not in top:
            raise rd.fail(root, f"missing key {required!r}")
    name = rd.string(top["name"][1], "name")
    if not _NAME.fullmatch(name):
        raise rd.fail(top["name"][1], f"name {name!r}: use lower case letters, digits and . + -")
    version_value = rd.scalar(top["version"][1], "version")
    if isinstance(version_value, float):
        raise rd.fail(top["version"][1], f"version {version_value!r} must be a string: quote it")
    version = rd.string(top["version"][1], "version")
    kind = rd.string(top["kind"][1], "kind") if "kind" in top else "profile"
    if kind not in ("profile", "option"):
        raise rd.fail(top["kind"][1], f"kind must be 'profile' or 'option', not {kind!r}")
    if kind == "option":
        for key, (key_node, _) in top.items():
            if key not in _OPTION_KEYS:
                raise rd.fail(key_node, f"an option overlay holds rules only; {key!r} belongs in a profile")
    edition = None
    if "edition" in top:
        edition = rd.string(top["edition"][1], "edition")
        if not _EDITION.fullmatch(edition):
            raise rd.fail(top["edition"][1], f"edition {edition!r}: write a PS3.15 edition such as 2026d")
    description = rd.string(top["description"][1], "description") if "description" in top else ""
    extends = None
    if "extends" in top:
        node = top["extends"][1]
        extends = (rd.string(node, "extends"), _line(node) or 0)
    options: list[tuple[str, int]] = []
    if "options" in top:
        for node in rd.sequence(top["options"][1], "options"):
            option = rd.string(node, "an option")
            if any(option == o for o, _ in options):
                raise rd.fail(node, f"option {option!r} is listed twice")
            options.append((option, _line(node) or 0))
    defaults: dict[str, tuple[str, int]] = {}
    if "defaults" in top:
        for key, (_, node) in rd.mapping(top["defaults"][1], "defaults", _DEFAULT_KEYS).items():
            action = rd.string(node, f"defaults.{key}")
            if action not in _DEFAULT_ACTIONS[key]:
                allowed = ", ".join(_DEFAULT_ACTIONS[key])
                raise rd.fail(node, f"defaults.{key}: {action!r} is not one of {allowed}")
            defaults[key] = (action, _line(node) or 0)
    parameters = _parse_parameters(rd, top["parameters"][1]) if "parameters" in top else {}
    rules = _parse_rules(rd, top["rules"][1], parameters)
    if "sequence" in defaults:
        for r in rules:
            if r.kind == "vr" and r.key == "SQ":
                raise rd.fail(
                    defaults["sequence"][1],
                    f"defaults.sequence and the rule at {r.source} both decide unnamed sequences; keep one",
                )
    return _Layer(
        path,
        name,
        version,
        edition,
        kind,
        description,
        extends,
        tuple(options),
        defaults,
        parameters,
        tuple(rules),
        base_dir,
        _parse_pixels(rd, top["pixels"][1], base_dir) if "pixels" in top else None,
    )


def _parse_parameters(rd: _Reader, node: yaml.Node) -> dict[str, tuple[Any, int]]:
    out: dict[str, tuple[Any, int]] = {}
    for key, (_, value_node) in rd.mapping(node, "parameters", _PARAMETER_KEYS).items():
        line = _line(value_node) or 0
        if key == "date_shift_days":
            items = rd.sequence(value_node, "date_shift_days")
            if len(items) != 2:
                raise rd.fail(value_node, "date_shift_days is a range of whole days: [lowest, highest]")
            lo, hi = (rd.integer(n, "date_shift_days") for n in items)
            if lo > hi:
                raise rd.fail(value_node, f"date_shift_days [{lo}, {hi}] is empty: lowest first")
            if lo <= 0 <= hi:
                raise rd.fail(
                    value_node,
                    f"date_shift_days [{lo}, {hi}] includes 0: some patients would keep their real dates",
                )
            if max(abs(lo), abs(hi)) > 36525:
                raise rd.fail(value_node, "date_shift_days beyond 100 years")
            out[key] = ((lo, hi), line)
        elif key == "pseudonym_pattern":
            pattern = rd.string(value_node, "pseudonym_pattern")
            problem = _pattern_problem(pattern)
            if problem:
                raise rd.fail(value_node, problem)
            out[key] = (pattern, line)
        elif key == "age_cap":
            cap = rd.integer(value_node, "age_cap")
            if not 0 < cap < 1000:
                raise rd.fail(value_node, f"age_cap {cap}: an AS age has three digits (1 to 999)")
            out[key] = (cap, line)
        else:
            dummies: dict[str, str] = {}
            for vr, (_, v_node) in rd.mapping(value_node, "parameters.dummy", _MAX_LENGTH).items():
                value = rd.string(v_node, f"dummy {vr}")
                problem = _value_problem(vr, value)
                if problem:
                    raise rd.fail(v_node, f"dummy {vr}: {problem}")
                if value == "":
                    raise rd.fail(
                        v_node, f"dummy {vr}: a dummy is a non-empty value (Table E.1-1a D); use empty"
                    )
                dummies[vr] = value
            out[key] = (dummies, line)
    return out


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
            return (f"pseudonym_pattern {pattern!r}: write {{counter:N}}, N the least number of digits "
                    f"(1 to {COUNTER_MAX_WIDTH})")
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


def _parse_rules(rd: _Reader, node: yaml.Node, parameters: dict[str, tuple[Any, int]]) -> list[RecipeRule]:
    seen: dict[str, RecipeRule] = {}
    out: list[RecipeRule] = []
    for rule_node in rd.sequence(node, "rules"):
        rule = _parse_rule(rd, rule_node, parameters)
        first = seen.get(rule.match)
        if first is not None:
            what = "conflicting" if (first.action, first.value) != (rule.action, rule.value) else "duplicate"
            raise rd.fail(
                rule_node,
                f"{what} rules for {_element(rule.match, rule.label)}: "
                f"{first.action} at {first.source}, {rule.action} here",
            )
        seen[rule.match] = rule
        out.append(rule)
    return out


def _parse_rule(rd: _Reader, node: yaml.Node, parameters: dict[str, tuple[Any, int]]) -> RecipeRule:
    fields = rd.mapping(node, "a rule", _RULE_KEYS)
    matchers = [k for k in ("keyword", "tag", "vr") if k in fields]
    if len(matchers) != 1:
        raise rd.fail(node, "a rule matches by exactly one of keyword, tag or vr")
    if "action" not in fields:
        raise rd.fail(node, "a rule needs an action")
    line = _line(node) or 0
    source = f"{os.path.basename(rd.path)}:{line}"
    label = rd.string(fields["name"][1], "name") if "name" in fields else ""
    how = matchers[0]
    match_node = fields[how][1]
    text = rd.string(match_node, how)
    vr: str | None = None
    if how == "keyword":
        tag = _keyword_tag(text)
        if tag is None:
            hint = difflib.get_close_matches(text, dictionary.keywords() + list(_KEYWORD_SUPPLEMENT), n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise rd.fail(match_node, f"unknown keyword {text!r}{extra}")
        if tag >> 16 == 0x0002:
            raise rd.fail(
                match_node, f"{text}: group 0002 (File Meta) is rebuilt by the core, never taken from rules"
            )
        if (tag >> 16) & 1 or tag & 0xFFFF == 0:
            raise rd.fail(match_node, f"{text} cannot take a rule")
        kind, key = "tag", tag
    elif how == "tag":
        try:
            kind, key = parse_tag(text)
        except ValueError as exc:
            raise rd.fail(match_node, str(exc)) from None
    else:
        if text not in _ALL_VRS:
            raise rd.fail(match_node, f"unknown VR {text!r}")
        kind, key = "vr", text
    if kind == "tag":
        entry = dictionary_entry(key)
        vr = entry[0] if entry else None
        label = label or (entry[1] if entry else "")
        match = f"({key >> 16:04X},{key & 0xFFFF:04X})"
    elif kind == "mask":
        match = _mask_text(*key)
        entry = dictionary.repeater(match[1:5].lower() + match[6:10].lower())
        if entry is not None:
            vr = entry[0]
            label = label or entry[1]
    elif kind == "private":
        match = _private_text(*key)
    else:
        vr = key
        match = f"vr {key}"
    action_node = fields["action"][1]
    action = rd.string(action_node, "action")
    if action not in ACTIONS:
        hint = difflib.get_close_matches(action, ACTIONS, n=1)
        extra = f" (did you mean {hint[0]!r}?)" if hint else f"; actions: {', '.join(ACTIONS)}"
        raise rd.fail(action_node, f"unknown action {action!r}{extra}")
    problem = _action_problem(action, kind, vr, parameters)
    if problem:
        raise rd.fail(action_node, f"{_element(match, label)}: {problem}")
    value: str | int | float | None = None
    if action == "replace":
        if "value" not in fields:
            raise rd.fail(node, f"{_element(match, label)}: replace needs a value")
        value_node = fields["value"][1]
        value = rd.scalar(value_node, "value")
        problem = _replace_problem(value, _vr_choices(vr))
        if problem:
            raise rd.fail(value_node, f"{_element(match, label)}: {problem}")
    elif "value" in fields:
        raise rd.fail(fields["value"][0], f"value is for replace only, not {action}")
    return RecipeRule(match, kind, key, action, value, label, vr, source)


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


# --- pixel rules (the ``pixels:`` section and the rule library in recipes/pixels/) ---------------------
#
#   pixels:
#     library: [ultrasound]          # rule files in recipes/pixels/ (or beside the recipe), one rule a line
#     ultrasound_regions: true       # US: blank everything outside the SequenceOfUltrasoundRegions regions
#     at_risk: detect                # images at risk that no rule matches: detect | redact-all | quarantine | flag
#     text: identifiers              # what detection redacts: identifiers (the file's own values) | all
#     margin: 4                      # pixels added around each detected box
#     fill: 0                        # the value written into redacted pixels
#     output: rle                    # compressed inputs after redaction: rle | jpeg-ls | jpeg2000 | uncompressed
#                                    # (lossless each; native inputs keep their transfer syntax)
#     rules:
#       - {match: {Modality: US, Manufacturer: "ACME*", Rows: 480, Columns: 640}, regions: [[0, 0, 640, 40]]}
#       - {match: {Modality: XA}, regions: [[0, 0, 200, 30]], frames: [0]}
#
# A match holds header keywords, each a value or a list of values (any of them), with DICOM wildcards
# ``*`` and ``?`` (PS3.4 C.2.2.2.4), compared without regard to case; every keyword must match. The first
# matching rule wins: a recipe's own rules, then its libraries in order, then those of the recipe it extends.

PIXEL_MATCH_KEYS: dict[str, str] = {
    "Modality": "modality",
    "Manufacturer": "manufacturer",
    "ManufacturerModelName": "manufacturer_model_name",
    "SoftwareVersions": "software_versions",
    "Rows": "rows",
    "Columns": "columns",
    "ImageType": "image_type",
    "SOPClassUID": "sop_class_uid",
    "BurnedInAnnotation": "burned_in_annotation",
}
AT_RISK_ACTIONS = ("detect", "redact-all", "quarantine", "flag")
_PIXEL_SECTION_KEYS = {"library", "ultrasound_regions", "at_risk", "text", "margin", "fill", "output", "rules"}
_PIXEL_RULE_KEYS = {"match", "regions", "frames", "ultrasound_regions", "name"}
_PIXEL_LIBRARY_KEYS = {"name", "version", "description", "rules"}
_PIXEL_TEXT = ("identifiers", "all")
_PIXEL_OUTPUT = ("rle", "jpeg-ls", "jpeg2000", "uncompressed")


@dataclass(frozen=True)
class PixelRule:
    """Regions to blank in images whose header signature matches; frames None means every frame."""

    match: tuple[tuple[str, tuple[str, ...]], ...]  # (keyword, patterns: any of them)
    regions: tuple[tuple[int, int, int, int], ...] = ()  # (x, y, width, height)
    frames: tuple[int, ...] | None = None
    ultrasound_regions: bool = False
    name: str = ""
    source: str = ""  # "file.yml:12"

    def canonical(self) -> list[Any]:
        return [
            [[k, list(v)] for k, v in self.match],
            [list(r) for r in self.regions],
            "all" if self.frames is None else list(self.frames),
            self.ultrasound_regions,
        ]


@dataclass(frozen=True)
class PixelPolicy:
    """A recipe's resolved pixel section: the rules in matching order and what to do with the rest."""

    rules: tuple[PixelRule, ...] = ()
    ultrasound_regions: bool = False
    at_risk: str = "detect"
    text: str = "identifiers"
    margin: int = 4
    fill: int = 0
    output: str = "rle"

    def canonical(self) -> dict[str, Any]:
        return {
            "rules": [r.canonical() for r in self.rules],
            "ultrasound_regions": self.ultrasound_regions,
            "at_risk": self.at_risk,
            "text": self.text,
            "margin": self.margin,
            "fill": self.fill,
            "output": self.output,
        }


@dataclass(frozen=True)
class _PixelSection:
    """A ``pixels:`` section as one file wrote it: the options it sets, and its rules in the order they are
    tried (its own, then its libraries')."""

    options: dict[str, Any]
    rules: tuple[PixelRule, ...]


def pixel_rules_dir() -> Path:
    """The shipped pixel rule library (package data ``veil/recipes/shipped/pixels``)."""
    return recipes_dir() / "pixels"


def _pixel_pattern(rd: _Reader, node: yaml.Node, key: str) -> str:
    value = rd.scalar(node, f"match.{key}")
    if key in ("Rows", "Columns"):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
            raise rd.fail(node, f"match.{key} must be a whole number from 1 to 65535, not {value!r}")
        return str(value)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise rd.fail(node, f"match.{key} must be a string (quote it), not {value!r}")
    text = str(value)
    if not text or not text.isprintable() or "\\" in text:
        raise rd.fail(node, f"match.{key} {text!r}: a non-empty printable value without backslash")
    return text


def _parse_pixel_rule(rd: _Reader, node: yaml.Node) -> PixelRule:
    fields = rd.mapping(node, "a pixel rule", _PIXEL_RULE_KEYS)
    source = f"{os.path.basename(rd.path)}:{_line(node) or 0}"
    if "match" not in fields:
        raise rd.fail(node, "a pixel rule needs a match (header keywords and values)")
    match: list[tuple[str, tuple[str, ...]]] = []
    match_node = fields["match"][1]
    for key, (_, value_node) in rd.mapping(match_node, "match", PIXEL_MATCH_KEYS).items():
        if isinstance(value_node, yaml.SequenceNode):
            items = rd.sequence(value_node, f"match.{key}")
            if not items:
                raise rd.fail(value_node, f"match.{key}: an empty list matches nothing")
            patterns = tuple(_pixel_pattern(rd, n, key) for n in items)
        else:
            patterns = (_pixel_pattern(rd, value_node, key),)
        match.append((key, patterns))
    if not match:
        raise rd.fail(match_node, "an empty match would apply to every image; name at least one keyword")
    regions: list[tuple[int, int, int, int]] = []
    if "regions" in fields:
        for region_node in rd.sequence(fields["regions"][1], "regions"):
            numbers = rd.sequence(region_node, "a region")
            if len(numbers) != 4:
                raise rd.fail(region_node, "a region is [x, y, width, height]")
            x, y, w, h = (rd.integer(n, "a region coordinate") for n in numbers)
            if x < 0 or y < 0 or w <= 0 or h <= 0 or max(x + w, y + h) > 65535:
                raise rd.fail(region_node, f"region [{x}, {y}, {w}, {h}]: x, y >= 0; width, height > 0")
            regions.append((x, y, w, h))
    ultrasound = False
    if "ultrasound_regions" in fields:
        ultrasound = rd.scalar(fields["ultrasound_regions"][1], "ultrasound_regions")
        if not isinstance(ultrasound, bool):
            raise rd.fail(fields["ultrasound_regions"][1], "ultrasound_regions is true or false")
    if not regions and not ultrasound:
        raise rd.fail(node, "a pixel rule needs regions (or ultrasound_regions: true)")
    frames: tuple[int, ...] | None = None
    if "frames" in fields:
        frames_node = fields["frames"][1]
        if isinstance(frames_node, yaml.ScalarNode):
            if rd.string(frames_node, "frames") != "all":
                raise rd.fail(frames_node, "frames is all or a list of frame numbers (from 0)")
        else:
            listed = [rd.integer(n, "a frame number") for n in rd.sequence(frames_node, "frames")]
            if not listed or any(f < 0 for f in listed) or len(set(listed)) != len(listed):
                raise rd.fail(frames_node, "frames lists distinct frame numbers from 0")
            frames = tuple(sorted(listed))
    name = rd.string(fields["name"][1], "name") if "name" in fields else ""
    return PixelRule(tuple(match), tuple(regions), frames, ultrasound, name, source)


def _parse_pixel_rules(rd: _Reader, node: yaml.Node) -> list[PixelRule]:
    out: list[PixelRule] = []
    seen: dict[str, PixelRule] = {}
    for rule_node in rd.sequence(node, "pixels.rules"):
        rule = _parse_pixel_rule(rd, rule_node)
        key = json.dumps(rule.canonical()[0])
        if key in seen:
            raise rd.fail(rule_node, f"a pixel rule with the same match is at {seen[key].source}")
        seen[key] = rule
        out.append(rule)
    return out


def _find_pixel_library(name: str, base_dir: Path | None) -> Path | None:
    dirs = ([base_dir / "pixels", base_dir] if base_dir is not None else []) + [pixel_rules_dir()]
    for directory in dirs:
        candidate = directory / f"{name}.yml"
        if candidate.is_file():
            return candidate
    return None


def _parse_pixels(rd: _Reader, node: yaml.Node, base_dir: Path | None) -> _PixelSection:
    fields = rd.mapping(node, "pixels", _PIXEL_SECTION_KEYS)
    options: dict[str, Any] = {}
    for key in ("ultrasound_regions",):
        if key in fields:
            value = rd.scalar(fields[key][1], f"pixels.{key}")
            if not isinstance(value, bool):
                raise rd.fail(fields[key][1], f"pixels.{key} is true or false")
            options[key] = value
    for key, allowed in (("at_risk", AT_RISK_ACTIONS), ("text", _PIXEL_TEXT), ("output", _PIXEL_OUTPUT)):
        if key in fields:
            value = rd.string(fields[key][1], f"pixels.{key}")
            if value not in allowed:
                raise rd.fail(fields[key][1], f"pixels.{key}: {value!r} is not one of {', '.join(allowed)}")
            options[key] = value
    for key, top in (("margin", 256), ("fill", 2**32 - 1)):
        if key in fields:
            value = rd.integer(fields[key][1], f"pixels.{key}")
            if not 0 <= value <= top:
                raise rd.fail(fields[key][1], f"pixels.{key} {value}: from 0 to {top}")
            options[key] = value
    rules = _parse_pixel_rules(rd, fields["rules"][1]) if "rules" in fields else []
    if "library" in fields:
        names = rd.sequence(fields["library"][1], "pixels.library")
        for name_node in names:
            name = rd.string(name_node, "a pixel rule library")
            found = _find_pixel_library(name, base_dir)
            if found is None:
                shipped = ", ".join(sorted(p.stem for p in pixel_rules_dir().glob("*.yml")))
                raise rd.fail(name_node, f"unknown pixel rule library {name!r}; shipped: {shipped}")
            rules.extend(load_pixel_rules(found))
    return _PixelSection(options, tuple(rules))


def _merge_pixels(base: PixelPolicy | None, section: _PixelSection | None) -> PixelPolicy | None:
    if section is None:
        return base
    base = base or PixelPolicy()
    return PixelPolicy(
        rules=section.rules + base.rules,
        ultrasound_regions=section.options.get("ultrasound_regions", base.ultrasound_regions),
        at_risk=section.options.get("at_risk", base.at_risk),
        text=section.options.get("text", base.text),
        margin=section.options.get("margin", base.margin),
        fill=section.options.get("fill", base.fill),
        output=section.options.get("output", base.output),
    )


def load_pixel_rules(name_or_path: str | os.PathLike[str]) -> tuple[PixelRule, ...]:
    """The rules of a pixel rule library: a shipped one by name (``ultrasound``) or a file by path."""
    text = os.fspath(name_or_path)
    if isinstance(name_or_path, os.PathLike) or text.endswith((".yml", ".yaml")) or os.sep in text:
        path = Path(text)
    else:
        found = _find_pixel_library(text, None)
        if found is None:
            raise RecipeError(text, None, f"no shipped pixel rule library named {text!r}")
        path = found
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(str(path), None, "no such pixel rule file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(str(path), None, f"cannot read pixel rules: {exc}") from None
    rd = _Reader(str(path))
    root = rd.compose(content)
    top = rd.mapping(root, "the pixel rule library", _PIXEL_LIBRARY_KEYS)
    for required in ("name", "version", "rules"):
        if required not in top:
            raise rd.fail(root, f"missing key {required!r}")
    name = rd.string(top["name"][1], "name")
    if not _NAME.fullmatch(name):
        raise rd.fail(top["name"][1], f"name {name!r}: use lower case letters, digits and . + -")
    if isinstance(rd.scalar(top["version"][1], "version"), float):
        raise rd.fail(top["version"][1], "version must be a string: quote it")
    return tuple(_parse_pixel_rules(rd, top["rules"][1]))


def pixel_policy(recipe: Recipe) -> PixelPolicy:
    """The recipe's pixel policy; a recipe without a ``pixels:`` section gets the defaults (no rules)."""
    return recipe.pixels if recipe.pixels is not None else PixelPolicy()


# --- resolution -----------------------------------------------------------------------------------------


def _find_file(name: str, base_dir: Path | None) -> Path | None:
    for directory in ([base_dir] if base_dir is not None else []) + [recipes_dir()]:
        candidate = directory / f"{name}.yml"
        if candidate.is_file():
            return candidate
    return None



def _named_layer(name: str, kind: str, base_dir: Any, line: int, fail: Any) -> Any:
    """The layer a recipe names in ``extends`` (kind profile) or ``options`` (kind option), checked."""
    found = _find_file(name, base_dir)
    profile = kind == "profile"
    if found is None:
        if profile:
            raise fail(line, f"unknown recipe {name!r} in extends; shipped: {', '.join(_shipped_names())}")
        raise fail(line, f"unknown option {name!r}; shipped: {', '.join(_shipped_names('option'))}")
    named = _parse_file(found)
    if named.name != name:
        raise fail(line, f"{found} is named {named.name!r}, not {name!r}")
    if named.kind != kind:
        if profile:
            raise fail(line, f"{name!r} is an option overlay: name it in options, not extends")
        raise fail(line, f"{name!r} is a profile: name it in extends, not options")
    return named


def _resolve(layer: _Layer, stack: tuple[str, ...] = ()) -> Recipe:
    def fail(line: int | None, problem: str) -> RecipeError:
        return RecipeError(layer.path, line, problem)

    if layer.kind == "option":
        rules = tuple(sorted(layer.rules, key=RecipeRule.sort_key))
        return Recipe(
            layer.name,
            layer.version,
            layer.edition or "",
            "option",
            layer.description,
            layer.path,
            None,
            (),
            {},
            {},
            rules,
            (f"{layer.name} {layer.version}",),
        )
    rules: dict[str, RecipeRule] = {}
    defaults: dict[str, str] = {}
    parameters: dict[str, Any] = {}
    edition = layer.edition
    layers: tuple[str, ...] = ()
    base_name = None
    base_pixels: PixelPolicy | None = None
    if layer.extends is not None:
        base_name, line = layer.extends
        if base_name in stack or base_name == layer.name:
            raise fail(
                line, f"extends {base_name!r} makes a cycle: {' -> '.join(stack + (layer.name, base_name))}"
            )
        base_layer = _named_layer(base_name, "profile", layer.base_dir, line, fail)
        base = _resolve(base_layer, stack + (layer.name,))
        base_pixels = base.pixels
        if edition is not None and base.edition and edition != base.edition:
            raise fail(line, f"edition {edition} but {base_name} follows PS3.15 {base.edition}")
        edition = edition or base.edition
        rules = {r.match: r for r in base.rules}
        defaults = dict(base.defaults)
        parameters = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.parameters.items()}
        layers = base.layers
    elif edition is None:
        raise fail(1, "a profile without extends must name its PS3.15 edition")
    option_lines: dict[str, int] = {}
    for option_name, line in layer.options:
        option = _named_layer(option_name, "option", layer.base_dir, line, fail)
        if option.edition and edition and option.edition != edition:
            raise fail(line, f"option {option_name} follows PS3.15 {option.edition}, this recipe {edition}")
        for r in option.rules:
            rules[r.match] = r
            option_lines[r.match] = line
        layers += (f"{option.name} {option.version}",)
    for r in layer.rules:
        rules[r.match] = r
        option_lines.pop(r.match, None)
    for key, (action, _) in layer.defaults.items():
        defaults[key] = action
    for key, (value, _) in layer.parameters.items():
        if key == "dummy":
            parameters["dummy"] = {**parameters.get("dummy", {}), **value}
        else:
            parameters[key] = value
    for key in ("public", "private"):
        if key not in defaults:
            raise fail(1, f"defaults.{key} is not set (and there is no extends to inherit it from)")
    defaults.setdefault("sequence", "recurse")
    # Checks on the resolved rules: parameters that keyed and replace actions need.
    line_of = {r.match: int(r.source.rsplit(":", 1)[1]) for r in layer.rules}
    for match, r in rules.items():
        if r.action == "shift" and "date_shift_days" not in parameters:
            if match in option_lines:
                raise fail(
                    option_lines[match],
                    f"the option's rule at {r.source} shifts {_element(match, r.label)} but "
                    "parameters.date_shift_days is not set",
                )
            raise fail(
                line_of.get(match, 1), f"{_element(match, r.label)}: shift needs parameters.date_shift_days"
            )
        if r.action == "pseudonym":
            problem = _action_problem(
                "pseudonym",
                r.kind,
                r.vr,
                {"pseudonym_pattern": (parameters.get("pseudonym_pattern", "{hash:16}"), 0)},
            )
            if problem:
                pattern_line = layer.parameters.get("pseudonym_pattern", (None, None))[1]
                line = option_lines.get(match) or line_of.get(match) or pattern_line or 1
                raise fail(line, f"{_element(match, r.label)}: {problem}")
    ordered = tuple(sorted(rules.values(), key=RecipeRule.sort_key))
    layers += (f"{layer.name} {layer.version}",)
    return Recipe(
        layer.name,
        layer.version,
        edition or "",
        "profile",
        layer.description,
        layer.path,
        base_name,
        tuple(o for o, _ in layer.options),
        defaults,
        parameters,
        ordered,
        layers,
        _merge_pixels(base_pixels, layer.pixels),
    )


def _shipped_files() -> list[Path]:
    directory = recipes_dir()
    return sorted(directory.glob("*.yml")) if directory.is_dir() else []


def _shipped_names(kind: str | None = None) -> list[str]:
    names = []
    for path in _shipped_files():
        if kind is None or _parse_file(path).kind == kind:
            names.append(path.stem)
    return names


# --- public functions -----------------------------------------------------------------------------------


def load_recipe(name_or_path: str | os.PathLike[str]) -> Recipe:
    """A shipped recipe by name (``research``), or a recipe file by path; resolved and validated."""
    text = os.fspath(name_or_path)
    is_path = isinstance(name_or_path, os.PathLike) or text.endswith((".yml", ".yaml")) or os.sep in text
    if is_path:
        return _resolve(_parse_file(Path(text)))
    found = _find_file(text, None)
    if found is None:
        raise RecipeError(
            text, None, f"no shipped recipe named {text!r}; shipped: {', '.join(_shipped_names())}"
        )
    return _resolve(_parse_file(found))


def check_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Validates a recipe file with everything it extends and applies; raises RecipeError naming file and line."""
    recipe = _resolve(_parse_file(Path(path)))
    if recipe.kind == "profile":
        compile_recipe(recipe)
    return recipe


def list_recipes() -> list[RecipeInfo]:
    """Every shipped recipe and option overlay, by name."""
    return [load_recipe(path).info() for path in _shipped_files()]


def diff_recipes(a: str | os.PathLike[str] | Recipe, b: str | os.PathLike[str] | Recipe) -> str:
    """The resolved differences between two recipes (names or paths): defaults, parameters and rules."""
    ra = a if isinstance(a, Recipe) else load_recipe(a)
    rb = b if isinstance(b, Recipe) else load_recipe(b)
    lines = [f"--- {ra.name} {ra.version} ({ra.path})", f"+++ {rb.name} {rb.version} ({rb.path})"]
    for key in sorted(set(ra.defaults) | set(rb.defaults)):
        if ra.defaults.get(key) != rb.defaults.get(key):
            lines.append(f"defaults.{key}: {ra.defaults.get(key, '-')} -> {rb.defaults.get(key, '-')}")
    for key in sorted(set(ra.parameters) | set(rb.parameters)):
        va, vb = ra.parameters.get(key), rb.parameters.get(key)
        if va != vb:
            lines.append(
                f"parameters.{key}: {_fmt(va) if va is not None else '-'} -> "
                f"{_fmt(vb) if vb is not None else '-'}"
            )
    rules_a = {r.match: r for r in ra.rules}
    rules_b = {r.match: r for r in rb.rules}

    def text(r: RecipeRule | None) -> str:
        if r is None:
            return "(no rule)"
        return r.action if r.value is None else f"{r.action} {r.value!r}"

    changed = 0
    all_rules = sorted({**rules_a, **rules_b}.values(), key=RecipeRule.sort_key)
    for r in all_rules:
        x, y = rules_a.get(r.match), rules_b.get(r.match)
        if x is None or y is None or (x.action, x.value) != (y.action, y.value):
            changed += 1
            lines.append(f"{r.match} {r.label}".rstrip() + f": {text(x)} -> {text(y)}")
    if len(lines) == 2:
        lines.append(f"no differences (content sha256 {ra.content_hash})")
    else:
        lines.append(f"{changed} rules differ")
    return "\n".join(lines)


# --- compilation ----------------------------------------------------------------------------------------


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


# PS3.16 CID 7050 De-identification Method: the code of the profile and of each option a recipe applies.
METHOD_CODES: dict[str, tuple[str, str]] = {
    "ps3.15-basic": ("113100", "Basic Application Confidentiality Profile"),
    "clean-graphics": ("113103", "Clean Graphics Option"),
    "clean-structured-content": ("113104", "Clean Structured Content Option"),
    "clean-descriptors": ("113105", "Clean Descriptors Option"),
    "retain-long-full-dates": ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    "retain-long-modified-dates": ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
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
    shifts = any(r.action == Action.SHIFT for r in (*tags.values(), *private.values())) or any(
        m[2].action == Action.SHIFT for m in masks
    ) or Action.SHIFT in vr_defaults.values()
    plan = Plan(
        tags=tags,
        masks=tuple(masks),
        private=private,
        vr_defaults=vr_defaults,
        default_public=Action.KEEP if recipe.defaults["public"] == "keep" else Action.REMOVE,
        default_private=Action.KEEP if recipe.defaults["private"] == "keep" else Action.REMOVE,
        age_cap=int(recipe.parameters.get("age_cap", 90)),
        callback=clean_element if uses_call else None,
        insert=marking(recipe, shifts),
        name=f"{recipe.name} {recipe.version}",
    )
    shift = recipe.parameters.get("date_shift_days")
    return CompiledRecipe(
        recipe=recipe,
        plan=plan,
        shift_range=tuple(shift) if shift is not None else None,  # type: ignore[arg-type]
        pseudonym_pattern=recipe.parameters.get("pseudonym_pattern"),
    )
