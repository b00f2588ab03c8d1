"""Parsing one recipe file into a layer: its keys, defaults, parameters and rules checked, each error naming
the file and the YAML line. A recipe file (``recipes/shipped/README.md`` has the full reference)::

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
      dummy: {PN: ANONYMOUS}       # dummy values per VR (else veil.core.plan.DUMMY_VALUES)
    retention: {quarantine: 30d, before_images: 30d, change_records: keep}  # what `veil audit --purge` removes
    rules:
      - {keyword: PatientName, action: empty}
      - {tag: "(0008,0050)", action: pseudonym}
      - {tag: "(60xx,3000)", action: remove}                     # x digits: a mask (repeating groups)
      - {tag: '(0019,"SIEMENS MR HEADER",0C)', action: keep}     # private: group, creator, element byte
      - {vr: PN, action: remove}                                 # what an unnamed element of that VR gets
      - {keyword: StudyComments, action: replace, value: "none"}

The VR of a named element comes from pydicom's data dictionary (read by :mod:`veil.core.dictionary`),
supplemented by the 2026d attributes it lacks; an element the dictionary does not know (and every private
element) is not VR-checked. Errors are :class:`veil.errors.RecipeError` naming the file, the YAML line and the
problem.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import yaml

from veil.core import dictionary
from veil.errors import RecipeError
from veil.recipes.deface import parse_deface
from veil.recipes.model import RETENTION_CLASSES, _Layer, retention_problem
from veil.recipes.pixelrules import _parse_pixels
from veil.recipes.reader import (
    _EDITION,
    _element,
    _line,
    _mask_text,
    _private_text,
    _Reader,
    _required_name,
    parse_tag,
)
from veil.recipes.rules import ACTIONS, RecipeRule, _action_problem, _pattern_problem, _replace_problem
from veil.recipes.values import _ALL_VRS, _MAX_LENGTH, _value_problem, _vr_choices

__all__: list[str] = []

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
    "vocabulary",
    "retention",
    "deface",
}
_OPTION_KEYS = {"name", "version", "edition", "kind", "description", "rules", "vocabulary", "deface"}
_RULE_KEYS = {"keyword", "tag", "vr", "action", "value", "name"}
_DEFAULT_KEYS = {"public", "private", "sequence"}
_PARAMETER_KEYS = {"date_shift_days", "pseudonym_pattern", "age_cap", "dummy"}
_DEFAULT_ACTIONS = {
    "public": ("keep", "remove"),
    "private": ("keep", "remove"),
    "sequence": ("recurse", "remove", "empty"),
}

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
    name = _required_name(rd, root, top)
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
    if "retention" in top:
        node = top["retention"][1]
        parameters["retention"] = (_parse_retention(rd, node), _line(node) or 0)
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
        _parse_vocabulary(rd, top["vocabulary"][1]) if "vocabulary" in top else (),
        parse_deface(rd, top["deface"][1]) if "deface" in top else None,
    )


def _parse_retention(rd: _Reader, node: yaml.Node) -> dict[str, str]:
    """``retention: {quarantine: 30d, before_images: 12h, change_records: keep}``: how long each class of what
    still holds PHI is kept (``veil audit --purge``); a class left out is kept."""
    out: dict[str, str] = {}
    for key, (_, value_node) in rd.mapping(node, "retention", set(RETENTION_CLASSES)).items():
        value = rd.string(value_node, f"retention.{key}").strip()
        problem = retention_problem(value)
        if problem:
            raise rd.fail(value_node, f"retention.{key}: {problem}")
        out[key] = value
    return {k: out[k] for k in RETENTION_CLASSES if k in out}


def _parse_vocabulary(rd: _Reader, node: yaml.Node) -> tuple[str, ...]:
    """``vocabulary: [word, ...]``: words the free-text cleaner may keep besides veil's own, lower case."""
    words: list[str] = []
    for item in rd.sequence(node, "vocabulary"):
        word = rd.string(item, "a vocabulary word").strip()
        if not word:
            raise rd.fail(item, "a vocabulary word may not be empty")
        if any(c.isspace() for c in word):
            raise rd.fail(item, f"vocabulary: {word!r} holds white space; list one word an item")
        if not word.isprintable() or "\\" in word:
            raise rd.fail(item, f"vocabulary: {word!r} holds a control character or a backslash")
        if word.lower() not in words:
            words.append(word.lower())
    return tuple(words)


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
    kind: str
    key: Any  # int tag, (mask, value), (group, creator, byte) or the VR, as RecipeRule.key
    if how == "keyword":
        tag = dictionary.dictionary_keyword_tag(text)
        if tag is None:
            hint = difflib.get_close_matches(text, dictionary.dictionary_keywords(), n=1)
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
        entry = dictionary.dictionary_entry(key)
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
