"""Resolving a recipe through its layers, and the public functions over recipes: load, list, diff.

Resolution: the ``extends`` profile's resolved rules, then each option's rules in order, then the recipe's own
rules; a later layer replaces an earlier one's rule for the same element. Within one file two rules for the same
element are an error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from veil.errors import RecipeError
from veil.recipes.deface import DefacePolicy, merge_deface
from veil.recipes.model import Recipe, RecipeInfo, _fmt, _Layer
from veil.recipes.parse import _parse_file
from veil.recipes.paths import recipes_dir
from veil.recipes.pixelrules import PixelPolicy, _merge_pixels
from veil.recipes.reader import _element
from veil.recipes.rules import RecipeRule, _action_problem

__all__ = ["diff_recipes", "list_recipes", "load_recipe"]


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
        option_rules = tuple(sorted(layer.rules, key=RecipeRule.sort_key))
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
            option_rules,
            (f"{layer.name} {layer.version}",),
            vocabulary=tuple(sorted(set(layer.vocabulary))),
            deface=merge_deface(None, layer.deface),
        )
    rules: dict[str, RecipeRule] = {}
    defaults: dict[str, str] = {}
    parameters: dict[str, Any] = {}
    edition = layer.edition
    layers: tuple[str, ...] = ()
    base_name = None
    base_pixels: PixelPolicy | None = None
    deface: DefacePolicy | None = None
    vocabulary: set[str] = set()
    if layer.extends is not None:
        base_name, line = layer.extends
        if base_name in stack or base_name == layer.name:
            raise fail(
                line, f"extends {base_name!r} makes a cycle: {' -> '.join(stack + (layer.name, base_name))}"
            )
        base_layer = _named_layer(base_name, "profile", layer.base_dir, line, fail)
        base = _resolve(base_layer, stack + (layer.name,))
        base_pixels = base.pixels
        deface = base.deface
        vocabulary.update(base.vocabulary)
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
        vocabulary.update(option.vocabulary)
        deface = merge_deface(deface, option.deface)
    vocabulary.update(layer.vocabulary)
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
        tuple(sorted(vocabulary)),
        merge_deface(deface, layer.deface),
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
    added = sorted(set(rb.vocabulary) - set(ra.vocabulary))
    dropped = sorted(set(ra.vocabulary) - set(rb.vocabulary))
    if added or dropped:
        lines.append("vocabulary: " + " ".join([f"+{w}" for w in added] + [f"-{w}" for w in dropped]))
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
