"""The per-element preview: what a recipe does to every element of one file, and why (``veil inspect``).

"Before" comes from walking the input with pydicom, "after" from the real rewriter (:class:`Deidentifier`)
read back with pydicom, the action from the rewriter's own record (``RewriteResult.touched()``), and the rule
that chose it from the Plan's lookup order (:func:`veil.core.plan.explain_rule`): exact tag, mask, VR
default, default; private creators and private blocks by creator. The same walk gives :func:`dry_run`, the
summary behind ``veil run --dry-run``: which rules fired how often, and which tags and private creators no
rule names.

Values are shown as they are (the operator's own preview on their own machine), cut to 64 characters. The
file's identity (:mod:`veil.core.identity`, the model the cleaner and verify use) is summarised by kind: how
many values of each kind, never the values.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veil.audit.changes import DISPLAY_LIMIT, ElementRow, display_value, element_rows
from veil.audit.changes import effective_action as _effective
from veil.audit.changes import read_dicom as _read
from veil.core.dataset import walk_dataset
from veil.core.dictionary import dictionary_entry
from veil.core.identity import identity_from_dataset
from veil.errors import MalformedDicom, VeilError
from veil.keys import KEY_SIZE, Key, KeyedFunctions
from veil.recipes import CompiledRecipe, Recipe, compile_recipe

__all__ = [
    "DryRunSummary",
    "ElementRow",
    "Inspection",
    "display_value",
    "dry_run",
    "inspect_bytes",
    "inspect_file",
]

# --- one file ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inspection:
    """Every element of one file before and after a recipe, with the action and the rule that chose it."""

    file: str
    recipe: str
    key_id: str | None
    throwaway_key: bool
    transfer_syntax: str
    rows: tuple[ElementRow, ...]
    counts: dict[str, int]
    identity: dict[str, int]  # kind -> how many identity values of that kind the input holds (no values)

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "recipe": self.recipe,
            "key_id": self.key_id,
            "throwaway_key": self.throwaway_key,
            "transfer_syntax": self.transfer_syntax,
            "counts": self.counts,
            "identity": self.identity,
            "elements": [
                {
                    "path": r.path,
                    "tag": r.tag,
                    "keyword": r.keyword,
                    "vr": r.vr,
                    "before": r.before,
                    "after": r.after,
                    "action": r.action,
                    "rule": r.rule,
                    "present_after": r.present_after,
                }
                for r in self.rows
            ],
        }


def throwaway_functions(compiled: CompiledRecipe) -> KeyedFunctions:
    """Keyed functions under a random key made for this preview only (keyed values differ from a real run)."""
    return KeyedFunctions(Key(os.urandom(KEY_SIZE)), **compiled.key_parameters)


def _preview_counter(compiled: CompiledRecipe) -> Callable[[bytes], bytes] | None:
    """Counter pseudonyms numbered in this preview only (a run's numbers come from its key service)."""
    from veil.pipeline import PreviewCounter

    return PreviewCounter(compiled.counter) if compiled.counter is not None else None


def _compiled(recipe: CompiledRecipe | Recipe | str | os.PathLike[str]) -> CompiledRecipe:
    return recipe if isinstance(recipe, CompiledRecipe) else compile_recipe(recipe)


def inspect_bytes(
    data: bytes,
    recipe: CompiledRecipe | Recipe | str | os.PathLike[str],
    functions: KeyedFunctions | None = None,
    *,
    path: str = "",
    limit: int = DISPLAY_LIMIT,
) -> Inspection:
    """The preview of one file's bytes under ``recipe``; ``functions`` None means a throwaway key when the
    recipe needs one (the actions are the same, the keyed values are not those of a real run)."""
    from veil.pipeline import Deidentifier

    compiled = _compiled(recipe)
    throwaway = False
    if functions is None and compiled.recipe.requires_key:
        functions = throwaway_functions(compiled)
        throwaway = True
    result = Deidentifier(compiled.plan, functions, pseudonyms=_preview_counter(compiled)).rewrite(data, path)
    touched = dict(result.touched())
    before = _read(data, path)
    after = _read(result.tobytes(), path)
    rows, counts = element_rows(before, after, touched, compiled.plan, limit)
    return Inspection(
        file=path,
        recipe=compiled.plan.name,
        key_id=None if functions is None or throwaway else functions.key_id,
        throwaway_key=throwaway,
        transfer_syntax=result.transfer_syntax,
        rows=tuple(rows),
        counts=counts,
        identity=dict(sorted(identity_from_dataset(before).counts().items())),
    )


def inspect_file(
    path: str | os.PathLike[str],
    recipe: CompiledRecipe | Recipe | str | os.PathLike[str],
    functions: KeyedFunctions | None = None,
    *,
    limit: int = DISPLAY_LIMIT,
) -> Inspection:
    """The preview of one file (see :func:`inspect_bytes`)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise MalformedDicom(os.fspath(path), 0, f"cannot read: {exc.strerror}") from None
    return inspect_bytes(data, recipe, functions, path=os.fspath(path), limit=limit)


# --- dry run ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DryRunSummary:
    """What a recipe would do to a sample of files, without writing anything."""

    recipe: str
    files: int
    quarantined: dict[str, int]  # reason -> files
    actions: dict[str, int]  # elements per action (the rewriter's counts)
    rules: tuple[tuple[str, str, int], ...]  # (rule label, action, elements it decided), most fired first
    unnamed_tags: tuple[tuple[str, str, str, str, int], ...]  # (tag, keyword, VR, action, elements)
    unnamed_private_creators: tuple[tuple[str, str, str, int], ...]  # (group, creator, action, elements)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "recipe": self.recipe,
            "files": self.files,
            "quarantined": self.quarantined,
            "actions": self.actions,
            "rules": [{"rule": r, "action": a, "elements": n} for r, a, n in self.rules],
            "unnamed_tags": [
                {"tag": t, "keyword": k, "vr": v, "action": a, "elements": n}
                for t, k, v, a, n in self.unnamed_tags
            ],
            "unnamed_private_creators": [
                {"group": g, "creator": c, "action": a, "elements": n}
                for g, c, a, n in self.unnamed_private_creators
            ],
            "seconds": round(self.seconds, 3),
        }

    def format(self) -> str:
        """A plain-text summary for a terminal."""
        lines = [
            f"dry run: {self.files} files with recipe {self.recipe}"
            + (f", {sum(self.quarantined.values())} would be quarantined" if self.quarantined else ""),
            "  elements by action: " + ", ".join(f"{k.lower()} {v}" for k, v in self.actions.items() if v),
            "  rules fired (elements):",
        ]
        lines += [f"    {n:8d}  {a.lower():8s} {r}" for r, a, n in self.rules]
        if self.unnamed_tags:
            lines.append("  tags no rule names (decided by a VR default or the default):")
            lines += [
                f"    {n:8d}  {a.lower():8s} {t} {k} {v}".rstrip() for t, k, v, a, n in self.unnamed_tags
            ]
        if self.unnamed_private_creators:
            lines.append("  private creators no rule names:")
            lines += [
                f'    {n:8d}  {a.lower():8s} ({g},"{c}")' for g, c, a, n in self.unnamed_private_creators
            ]
        for reason, count in self.quarantined.items():
            lines.append(f"  would quarantine {count}: {reason}")
        return "\n".join(lines)


def dry_run(
    paths: Iterable[Any],
    recipe: CompiledRecipe | Recipe | str | os.PathLike[str],
    sample: int = 100,
    functions: KeyedFunctions | None = None,
) -> DryRunSummary:
    """Runs the rewriter on the first ``sample`` files of ``paths`` (paths, or tuples whose first item is a
    path, as ``veil``'s lazy listing yields) and counts the rules that fired and what no rule names.

    Nothing is written; keyed values are made under a throwaway key unless ``functions`` is given.
    """
    import time

    from veil.pipeline import Deidentifier

    compiled = _compiled(recipe)
    plan = compiled.plan
    if functions is None and compiled.recipe.requires_key:
        functions = throwaway_functions(compiled)
    worker = Deidentifier(plan, functions, pseudonyms=_preview_counter(compiled))
    started = time.perf_counter()
    files = 0
    quarantined: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    rules: Counter[tuple[str, str]] = Counter()
    unnamed_tags: Counter[tuple[int, str, str]] = Counter()
    unnamed_creators: Counter[tuple[int, str, str]] = Counter()
    for item in paths:
        if files >= sample:
            break
        path = item[0] if isinstance(item, tuple) else item
        files += 1
        try:
            data = Path(path).read_bytes()
            result = worker.rewrite(data, os.fspath(path))
            touched = dict(result.touched())
            actions.update({k: v for k, v in result.counts.items() if v})
            before = _read(data, os.fspath(path))
        except VeilError as exc:
            quarantined[exc.reason if isinstance(exc, MalformedDicom) else str(exc)] += 1
            continue
        except OSError as exc:
            quarantined[f"{type(exc).__name__}: {exc.strerror}"] += 1
            continue
        inherited: dict[str, tuple[str, str]] = {}
        for node in walk_dataset(before):
            action, label, choice, own = _effective(node, plan, touched, inherited)
            if not own:
                continue  # decided by its sequence, not by a rule of its own
            rules[(label, action)] += 1
            group, element = node.tag >> 16, node.tag & 0xFFFF
            if group & 1:
                if 0x0010 <= element <= 0x00FF and node.creator is not None:
                    named = any(g == group and c == node.creator for g, c, _ in plan.private)
                    if not named:
                        unnamed_creators[(group, node.creator, action)] += 1
            elif choice.kind in ("vr", "default") and element != 0:
                unnamed_tags[(node.tag, node.vr, action)] += 1
    return DryRunSummary(
        recipe=plan.name,
        files=files,
        quarantined=dict(quarantined.most_common()),
        actions=dict(sorted(actions.items())),
        rules=tuple((label, action, n) for (label, action), n in rules.most_common()),
        unnamed_tags=tuple(
            (f"({t >> 16:04X},{t & 0xFFFF:04X})", (dictionary_entry(t) or ("", ""))[1], vr, a, n)
            for (t, vr, a), n in sorted(unnamed_tags.items(), key=lambda kv: (-kv[1], kv[0]))
        ),
        unnamed_private_creators=tuple(
            (f"{g:04X}", c, a, n)
            for (g, c, a), n in sorted(unnamed_creators.items(), key=lambda kv: (-kv[1], kv[0]))
        ),
        seconds=time.perf_counter() - started,
    )
