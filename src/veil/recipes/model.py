"""The recipe as data: one file as written (a layer), the resolved :class:`Recipe` with its content hash and
``show()``, what ``veil recipe list`` shows (:class:`RecipeInfo`), and the :class:`CompiledRecipe` the engine runs."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veil.core.plan import Plan
from veil.keys import CounterFormat, counter_format
from veil.recipes.deface import DefacePolicy
from veil.recipes.pixelrules import PixelPolicy, _PixelSection
from veil.recipes.rules import _KEYED_ACTIONS, RecipeRule, _compile_rule

__all__ = ["CompiledRecipe", "Recipe", "RecipeInfo", "RETENTION_CLASSES", "pixel_policy", "retention_problem"]

# What still holds PHI after a run, each kept for its ``retention:`` age ("30d", "12h") or "keep" (forever: never
# purged unless asked). Parsed as a top-level recipe key into ``parameters["retention"]``; a layer's retention
# replaces the one it extends, whole.
RETENTION_CLASSES: tuple[str, ...] = ("quarantine", "before_images", "change_records")
_RETENTION_AGE = re.compile(r"(\d{1,6})([dh])")


def retention_problem(value: str) -> str | None:
    """What is wrong with a retention age (``NNd``, ``NNh`` or ``keep``), or None."""
    if value == "keep" or _RETENTION_AGE.fullmatch(value):
        return None
    return f"{value!r} is not an age in days or hours (30d, 12h) nor keep"


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
    vocabulary: tuple[str, ...] = ()  # words this file adds to the free-text vocabulary, lower case
    deface: dict[str, Any] | None = None  # the keys of its ``deface:`` section (None: it has none)


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
    vocabulary: tuple[str, ...] = ()  # words every layer's ``vocabulary:`` adds, lower case, sorted, unique
    deface: DefacePolicy | None = None  # the resolved ``deface:`` section; None when no layer has one

    @property
    def requires_key(self) -> bool:
        """Whether compiling this recipe yields keyed actions (UID, pseudonym, date shift)."""
        return any(r.action in _KEYED_ACTIONS for r in self.rules)

    @property
    def retention(self) -> dict[str, str]:
        """The ``retention:`` section (class -> ``NNd``/``NNh``/``keep``); empty when no layer sets one."""
        return dict(self.parameters.get("retention", {}))

    def canonical(self) -> dict[str, Any]:
        """The resolved content that the hash covers (name and version are not content)."""
        params = dict(self.parameters)
        retention = params.pop("retention", None)
        if "date_shift_days" in params:
            params["date_shift_days"] = list(params["date_shift_days"])
        out: dict[str, Any] = {
            "defaults": dict(sorted(self.defaults.items())),
            "parameters": {k: params[k] for k in sorted(params)},
            "rules": [r.canonical() for r in self.rules],
        }
        if self.pixels is not None:  # only then: recipes without pixel rules keep their content hash
            out["pixels"] = self.pixels.canonical()
        if self.vocabulary:  # likewise: a recipe without ``vocabulary:`` keeps its content hash
            out["vocabulary"] = list(self.vocabulary)
        if self.deface is not None:  # likewise
            out["deface"] = self.deface.canonical()
        if retention:  # likewise
            out["retention"] = {k: retention[k] for k in RETENTION_CLASSES if k in retention}
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
        shown = {k: v for k, v in self.parameters.items() if k != "retention"}
        if shown:
            lines.append("parameters: " + ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(shown.items())))
        if self.retention:
            lines.append("retention: " + ", ".join(f"{k} {v}" for k, v in self.retention.items()))
        if self.vocabulary:
            lines.append(f"vocabulary ({len(self.vocabulary)} words added): " + " ".join(self.vocabulary))
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


def pixel_policy(recipe: Recipe) -> PixelPolicy:
    """The recipe's pixel policy; a recipe without a ``pixels:`` section gets the defaults (no rules)."""
    return recipe.pixels if recipe.pixels is not None else PixelPolicy()
