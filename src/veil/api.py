"""veil's Python API: de-identify an archive, one file or bytes in memory, verify a run, load recipes and keys.

Everything here is what the ``veil`` command does, as functions: :func:`deidentify` is ``veil run`` (the same
engine, audit, quarantine and resume), :func:`verify` is ``veil verify``. The heavy modules are imported by the
function that needs them, so ``import veil`` stays cheap.

Example::

    import veil

    key = veil.load_key("project.key")
    summary = veil.deidentify("archive/", "out/", recipe="research", key=key, workers=2)
    print(summary.written, "written,", summary.quarantined, "quarantined")
    report = veil.verify("archive/", "out/", recipe="research", key=key)
    print("clean" if report.passed else report.errors)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Union

from veil.errors import KeyError_, VeilError

if TYPE_CHECKING:
    from veil.engine import RunSummary
    from veil.keys import Key
    from veil.pipeline import Deidentifier, FileOutcome
    from veil.recipes import CompiledRecipe, Recipe
    from veil.verification import VerifyReport

__all__ = ["deidentify", "deidentify_file", "deidentify_bytes", "verify", "load_recipe", "load_key"]

PathLike = Union[str, "os.PathLike[str]"]
RecipeLike = Union["Recipe", "CompiledRecipe", str, "os.PathLike[str]"]
KeyLike = Union["Key", bytes, str, "os.PathLike[str]", None]


def load_recipe(name_or_path: PathLike) -> Recipe:
    """A recipe by shipped name (``research``, ``ps3.15-basic``, ``hipaa-safe-harbor``, ...) or YAML path,
    resolved through its layers and validated; raises :class:`~veil.errors.RecipeError` naming file and line."""
    from veil.recipes import load_recipe as _load

    return _load(name_or_path)


def load_key(path: PathLike | None = None) -> Key:
    """The project key from a key file made by ``veil keygen`` (mode 0600), or from ``VEIL_KEY`` when ``path``
    is None; raises :class:`~veil.errors.KeyError_` for a missing, unreadable or unsafe key."""
    from veil.keys import load_key as _load

    return _load(path)


def _compiled(recipe: RecipeLike) -> CompiledRecipe:
    from veil.recipes import CompiledRecipe, compile_recipe

    return recipe if isinstance(recipe, CompiledRecipe) else compile_recipe(recipe)


def _key(key: KeyLike, compiled: CompiledRecipe) -> Key | None:
    """The key given (a Key, 32 raw bytes or a key file path), else ``VEIL_KEY``, else None where the recipe
    needs none; a recipe with keyed actions and no key anywhere is an error, as in ``veil run``."""
    from veil.keys import KEY_SIZE, Key, run_key

    if isinstance(key, Key):
        return key
    if isinstance(key, bytes):
        if len(key) != KEY_SIZE:
            raise KeyError_(f"a veil key is {KEY_SIZE} bytes, this one {len(key)}")
        return Key(key)
    return run_key(key, required=compiled.recipe.requires_key)


def deidentify(
    src: PathLike,
    dst: PathLike,
    *,
    recipe: RecipeLike = "research",
    key: KeyLike = None,
    workers: int | None = None,
    layout: str = "mirror",
    resume: bool = False,
    reid_table: PathLike | None = None,
    files_from: PathLike | None = None,
    quarantine_copy: bool = True,
    address: str | None = None,
    ray: bool = False,
    operator: str | None = None,
    custodian_public: PathLike | None = None,
    change_records: bool = False,
    retention: Mapping[str, str] | str | None = None,
    atomic: str | None = None,
) -> RunSummary:
    """De-identifies every file under ``src`` into ``dst`` with ``recipe`` and ``key``: ``veil run`` as a call.

    ``workers`` is the number of worker processes on this machine (default: one per CPU; 1 runs in this
    process); ``ray=True`` runs them on a local Ray and ``address`` on a Ray cluster. Files veil cannot read
    fully are quarantined (recorded in ``dst/.veil`` with their reason, and copied there unless
    ``quarantine_copy`` is False), never half written. ``resume=True`` goes on after a crash or kill.
    ``reid_table`` keeps the encrypted new-to-original table (needs a key). ``operator`` is recorded in the
    manifest (default: the login name). ``custodian_public`` (a ``veil keygen --custodian`` ``.pub`` file) seals
    everything that can re-identify to the custodian, so the run key opens none of it; ``change_records``
    records every changed attribute for ``veil report`` (originals sealed: needs a key or a custodian);
    ``retention`` overrides the recipe's (``{"quarantine": "30d"}`` or the ``--retention`` text). ``atomic`` is
    ``"shard"`` (outputs under their final names, a shard done once they are synced; the default for a new
    ``dst``) or ``"file"`` (each output renamed into place, for a ``dst`` others read during the run). Returns the run's
    :class:`~veil.engine.RunSummary` (files, written, quarantined, bytes, seconds, run id); raises
    :class:`~veil.engine.FatalRunError` (a :class:`~veil.errors.VeilError`) when the run cannot go on.
    """
    from veil.engine import RunOptions, run

    compiled = _compiled(recipe)
    the_key = _key(key, compiled)
    if reid_table is not None and the_key is None:
        raise KeyError_("reid_table needs a key")
    if isinstance(retention, str):
        from veil.audit.retention import parse_retention_spec

        try:
            policy: dict[str, str] | None = parse_retention_spec(retention)
        except ValueError as exc:
            raise VeilError(str(exc)) from None
    else:
        policy = dict(retention) if retention is not None else None
    options = RunOptions(
        src=os.fspath(src),
        dst=os.fspath(dst),
        layout=layout,
        workers=max(1, workers if workers is not None else (os.cpu_count() or 1)),
        address=address,
        resume=resume,
        files_from=os.fspath(files_from) if files_from is not None else None,
        reid_table=os.fspath(reid_table) if reid_table is not None else None,
        quarantine_copy=quarantine_copy,
        force_ray=ray,
        operator=operator,
        custodian_public=os.fspath(custodian_public) if custodian_public is not None else None,
        change_records=change_records,
        retention=policy,
        atomic=atomic,
    )
    return run(options, compiled, the_key)


def _deidentifier(recipe: RecipeLike, key: KeyLike, what: str) -> Deidentifier:
    from veil.keys import KeyedFunctions
    from veil.pipeline import Deidentifier

    compiled = _compiled(recipe)
    if compiled.counter is not None:
        raise VeilError(
            f"{what}: pseudonym pattern {compiled.counter.pattern!r} numbers values through the key service of a "
            "run: use veil.deidentify(..., reid_table=...), which keeps the numbers"
        )
    the_key = _key(key, compiled)
    functions = KeyedFunctions(the_key, **compiled.key_parameters) if the_key is not None else None
    return Deidentifier(compiled.plan, functions, compiled.recipe.pixels)


def deidentify_file(
    src: PathLike, dst: PathLike, *, recipe: RecipeLike = "research", key: KeyLike = None
) -> FileOutcome:
    """De-identifies one file into ``dst`` (written atomically, folders made as needed) and returns its
    :class:`~veil.pipeline.FileOutcome`: ``status`` is ``"written"``, or ``"quarantined"`` with a ``reason``
    when the file cannot be read fully (then nothing is written). No audit: use :func:`deidentify` for that."""
    worker = _deidentifier(recipe, key, "deidentify_file")
    return worker.deidentify_file(os.fspath(src), os.fspath(dst))


def deidentify_bytes(data: bytes, *, recipe: RecipeLike = "research", key: KeyLike = None) -> bytes:
    """De-identifies one DICOM file held in memory (Part 10 bytes, or a data set without File Meta) and returns
    the new file's bytes; raises :class:`~veil.errors.MalformedDicom` (with the byte offset and the reason) for
    input that cannot be read fully."""
    worker = _deidentifier(recipe, key, "deidentify_bytes")
    return worker.deidentify_bytes(bytes(data))


def verify(
    src: PathLike,
    dst: PathLike,
    *,
    recipe: RecipeLike = "research",
    key: KeyLike = None,
    reid_table: PathLike | None = None,
    dciodvfy_sample: int = 10,
) -> VerifyReport:
    """Checks ``dst``, veil's output of ``src`` under ``recipe`` and ``key``, with a reading independent of the
    rewriter: no identifier of the inputs left in any output byte, UIDs and references consistent, kept
    attributes unchanged, every input accounted for, conformance (dciodvfy, where installed). Returns a
    :class:`~veil.verification.VerifyReport`; ``report.passed`` is False when it found an error (``report.errors``)."""
    from veil.verification import verify as _verify

    compiled = _compiled(recipe)
    return _verify(src, dst, recipe=compiled, key=_key(key, compiled), dciodvfy_sample=dciodvfy_sample,
                   reid_table=reid_table)
