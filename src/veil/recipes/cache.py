"""The compiled-recipe cache: a run starts without the YAML reader, the recipe's parse and its YAML text.

Loading a recipe (the YAML reader, 658 rules read and checked, resolved through their layers, compiled to a
Plan) and writing its resolved text for the run's manifest take a ``veil run`` about 50 ms before its first
file, the same for every run of the same recipe. :func:`compiled_recipe` keeps both in a per-user cache, as
Python keeps byte code: ``$VEIL_CACHE_DIR``, else ``$XDG_CACHE_HOME/veil``, else ``~/.cache/veil``, in
``recipes/``. ``VEIL_NO_CACHE=1`` turns it off.

An entry is found by a SHA-256 over everything that can change what a recipe compiles to:

* the content of every ``.yml`` file in each folder a layer or pixel library can be found in: the shipped
  recipes and pixel libraries, and for a recipe given by path its folder and that folder's ``pixels/``. A
  file added beside a recipe (a new layer of the same name that ``extends`` would now find) changes the key,
  as an edit does;
* the recipe as named (a shipped name, or the path);
* veil's version, Python's, and the size and modification time of each module of :mod:`veil.recipes` and
  :mod:`veil.core` (an edited checkout, like a new release, compiles afresh).

Entries are pickles, so the cache is trusted as the user's own files are: the folder and each entry must
belong to the user and be writable by no one else, or the cache is not read (nor written). A damaged or
unreadable entry is compiled afresh and replaced; a recipe with an error is never cached. Nothing here is
logged, and an entry holds only what the recipe files hold.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from veil._version import __version__
from veil.recipes.paths import pixel_rules_dir, recipes_dir
from veil.system import cache_home, read_private, write_private

if TYPE_CHECKING:
    from veil.recipes.model import CompiledRecipe

__all__ = ["cache_dir", "compiled_recipe", "recipe_text"]

_FORMAT = b"veil-compiled-recipe 1\n"
_MAX_ENTRIES = 64  # the oldest go beyond this
_MAX_ENTRY_BYTES = 256 << 20  # an entry is read whole; a larger one is cut, so not used
_MAX_SOURCE_BYTES = 16 << 20  # folders beside a recipe holding more YAML than this are not hashed: no cache
_TEXTS: dict[str, str] = {}  # content hash -> resolved YAML text, for recipes this process loaded or wrote


def cache_dir() -> Path | None:
    """The folder of compiled recipes, or None when the cache is turned off."""
    home = cache_home()
    return home / "recipes" if home is not None else None


def compiled_recipe(name_or_path: str | os.PathLike[str]) -> CompiledRecipe:
    """:func:`~veil.recipes.compile_recipe` of a shipped recipe name or a recipe file, from the cache where an
    entry for exactly these sources is there; otherwise compiled (raising RecipeError as it does) and kept."""
    folder = cache_dir()
    key = _key(name_or_path) if folder is not None else None
    if folder is not None and key is not None:
        found = _read(folder / f"{key}.pickle", key)
        if found is not None:
            return found
    from veil.recipes.compile import compile_recipe

    compiled = compile_recipe(name_or_path)
    if folder is not None and key is not None:
        _write(folder, key, compiled)
    return compiled


def recipe_text(compiled: CompiledRecipe) -> str:
    """The full resolved recipe (what its content hash covers) as YAML, as the run's manifest keeps it."""
    content_hash = compiled.recipe.content_hash
    text = _TEXTS.get(content_hash)
    if text is None:
        import yaml

        # libyaml's emitter where PyYAML has it: the same text (a test holds them equal), a quarter of the time.
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
        text = yaml.dump(compiled.recipe.canonical(), Dumper=dumper, sort_keys=False, allow_unicode=True,
                         width=120, default_flow_style=None)
        _TEXTS[content_hash] = text
    return text


def _key(name_or_path: str | os.PathLike[str]) -> str | None:
    text = os.fspath(name_or_path)
    is_path = isinstance(name_or_path, os.PathLike) or text.endswith((".yml", ".yaml")) or os.sep in text
    digest = hashlib.sha256(_FORMAT)
    digest.update(f"{__version__}\0{sys.version}\0{'path' if is_path else 'name'}\0".encode())
    digest.update(os.fsencode(text) + b"\0")
    for package in (Path(__file__).parent, Path(__file__).parent.parent / "core"):
        for module in sorted(package.glob("*.py")):
            st = module.stat()
            digest.update(f"{module.name}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    folders = [recipes_dir(), pixel_rules_dir()]
    given = Path(text)
    if is_path:
        folders += [given.parent, given.parent / "pixels"]
    # The .yml files of each folder a lookup may look in (a recipe given as *.yaml besides: no lookup finds
    # it), up to _MAX_SOURCE_BYTES in all.
    files = [given] if is_path and not text.endswith(".yml") else []
    try:
        for folder in dict.fromkeys(os.path.abspath(f) for f in folders):
            try:
                names = sorted(n for n in os.listdir(folder) if n.endswith(".yml"))
            except (FileNotFoundError, NotADirectoryError):
                names = []
            digest.update(b"folder\0" + os.fsencode(folder) + f"\0{len(names)}\0".encode())
            files.extend(Path(folder, name) for name in names)
        budget = _MAX_SOURCE_BYTES
        for path in files:
            with open(path, "rb") as fh:
                data = fh.read(budget + 1)
            budget -= len(data)
            if budget < 0:
                return None
            digest.update(os.fsencode(path) + f"\0{len(data)}\0".encode() + data)
    except (OSError, ValueError):
        return None  # compile_recipe says what is wrong with an unreadable recipe
    return digest.hexdigest()


def _read(path: Path, key: str) -> CompiledRecipe | None:
    data = read_private(path, _MAX_ENTRY_BYTES)
    if data is None or not data.startswith(_FORMAT):
        return None
    try:
        entry_key, compiled, text = pickle.loads(memoryview(data)[len(_FORMAT):])
    except Exception:  # noqa: BLE001 - a damaged entry, or one of classes that changed: compiled afresh
        return None
    from veil.recipes.model import CompiledRecipe

    # An entry answers only the key it was written for (a file renamed or copied in the folder is not used).
    if entry_key != key or not isinstance(compiled, CompiledRecipe) or not isinstance(text, str):
        return None
    _TEXTS[compiled.recipe.content_hash] = text
    return compiled


def _write(folder: Path, key: str, compiled: CompiledRecipe) -> None:
    """Keeps an entry (:func:`~veil.system.write_private`), then drops the oldest beyond :data:`_MAX_ENTRIES`;
    a cache that cannot be written, or is not the user's own, is left alone: the run goes on without it."""
    try:
        payload = _FORMAT + pickle.dumps((key, compiled, recipe_text(compiled)), protocol=pickle.HIGHEST_PROTOCOL)
    except pickle.PicklingError:
        return
    if not write_private(folder / f"{key}.pickle", payload):
        return
    try:
        entries = sorted(folder.glob("*.pickle"), key=lambda p: p.stat().st_mtime_ns)
        for old in entries[:-_MAX_ENTRIES]:
            old.unlink(missing_ok=True)
    except OSError:
        return
