"""The compiled-recipe cache (``veil.recipes.cache``): a run of a recipe it has seen starts without the YAML
reader; what it returns is what compiling afresh returns, for exactly the sources it was compiled from."""

from __future__ import annotations

import hashlib
import os
import stat
import textwrap
from pathlib import Path

import pytest

import veil.recipes.compile as compile_module
from veil.errors import RecipeError
from veil.recipes import compile_recipe
from veil.recipes.cache import cache_dir, compiled_recipe, recipe_text


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VEIL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("VEIL_NO_CACHE", raising=False)
    folder = cache_dir()
    assert folder == tmp_path / "cache" / "recipes"
    return folder


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Each compile the cache could not spare, by the recipe it was asked for."""
    calls: list[object] = []
    real = compile_module.compile_recipe

    def counted(recipe: object) -> object:
        calls.append(recipe)
        return real(recipe)

    monkeypatch.setattr(compile_module, "compile_recipe", counted)
    return calls


def _same(a, b) -> None:
    assert a.plan == b.plan
    assert a.recipe == b.recipe
    assert a.recipe.content_hash == b.recipe.content_hash
    assert (a.shift_range, a.pseudonym_pattern) == (b.shift_range, b.pseudonym_pattern)
    assert a.recipe.pixels == b.recipe.pixels and a.recipe.deface == b.recipe.deface


@pytest.mark.parametrize("name", ["ps3.15-basic", "research", "hipaa-safe-harbor"])
def test_a_second_load_comes_from_the_cache_and_equals_a_fresh_compile(name: str, cache: Path,
                                                                       compiles: list[object]) -> None:
    fresh = compile_recipe(name)
    first = compiled_recipe(name)
    assert compiles == [name]
    entries = list(cache.glob("*.pickle"))
    assert len(entries) == 1
    assert stat.S_IMODE(entries[0].stat().st_mode) == 0o600 and stat.S_IMODE(cache.stat().st_mode) == 0o700
    second = compiled_recipe(name)
    assert compiles == [name], "the second load must come from the cache"
    _same(second, fresh)
    _same(first, fresh)
    assert recipe_text(second) == recipe_text(fresh)


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def _extending_basic(path: Path, rule: str) -> Path:
    """A recipe named after its file that extends ps3.15-basic with one rule."""
    return _write(path, f"name: {path.stem}\nversion: \"1\"\nextends: ps3.15-basic\nrules:\n  - {rule}\n")


def test_an_edited_recipe_or_a_new_layer_beside_it_is_compiled_afresh(tmp_path: Path, cache: Path,
                                                                      compiles: list[object]) -> None:
    folder = tmp_path / "recipes"
    folder.mkdir()
    recipe = _extending_basic(folder / "mine.yml", '{tag: "(0008,0070)", action: keep}')
    before = compiled_recipe(recipe)
    assert compiled_recipe(recipe).plan == before.plan and len(compiles) == 1
    # An edit: the rule changes.
    _write(recipe, recipe.read_text().replace("action: keep", "action: remove"))
    edited = compiled_recipe(recipe)
    assert len(compiles) == 2
    _same(edited, compile_recipe(recipe))
    assert edited.plan != before.plan
    # A file added beside it that `extends` now finds first: a sibling profile of the same name.
    _write(folder / "ps3.15-basic.yml", """\
        name: ps3.15-basic
        version: "9"
        edition: 2026d
        defaults: {public: keep, private: keep}
        rules:
          - {tag: "(0010,0010)", action: remove}
        """)
    shadowed = compiled_recipe(recipe)
    assert len(compiles) == 3
    _same(shadowed, compile_recipe(recipe))
    assert shadowed.recipe.layers != edited.recipe.layers
    # The same sources again: from the cache.
    _same(compiled_recipe(recipe), shadowed)
    assert len(compiles) == 3


def test_a_damaged_or_foreign_entry_is_not_trusted(cache: Path, compiles: list[object]) -> None:
    good = compiled_recipe("ps3.15-basic")
    (entry,) = cache.glob("*.pickle")
    entry.write_bytes(entry.read_bytes()[:500])  # cut short
    _same(compiled_recipe("ps3.15-basic"), good)
    assert len(compiles) == 2
    assert len(entry.read_bytes()) > 500, "a damaged entry is replaced"
    compiled_recipe("ps3.15-basic")
    assert len(compiles) == 2
    entry.chmod(0o666)  # writable by others: not read
    compiled_recipe("ps3.15-basic")
    assert len(compiles) == 3
    cache.chmod(0o777)  # a folder others may write into: neither read nor written
    entry.unlink()
    compiled_recipe("ps3.15-basic")
    compiled_recipe("ps3.15-basic")
    assert len(compiles) == 5 and not list(cache.glob("*.pickle"))


def test_an_entry_answers_only_its_own_key(cache: Path, compiles: list[object]) -> None:
    compiled_recipe("research")
    (research,) = cache.glob("*.pickle")
    compiled_recipe("ps3.15-basic")
    (basic,) = set(cache.glob("*.pickle")) - {research}
    basic.write_bytes(research.read_bytes())  # another recipe's entry under this key
    assert len(compiles) == 2
    assert compiled_recipe("ps3.15-basic").recipe.name == "ps3.15-basic"
    assert len(compiles) == 3


def test_a_recipe_with_an_error_is_raised_and_never_cached(tmp_path: Path, cache: Path) -> None:
    bad = _extending_basic(tmp_path / "bad.yml", '{tag: "(0010,0010)", action: explode}')
    for _ in range(2):
        with pytest.raises(RecipeError, match="explode"):
            compiled_recipe(bad)
    assert not list(cache.glob("*.pickle"))
    with pytest.raises(RecipeError, match="no such recipe file"):
        compiled_recipe(tmp_path / "missing.yml")
    with pytest.raises(RecipeError, match="no shipped recipe"):
        compiled_recipe("no-such-recipe")


def test_the_cache_can_be_turned_off_or_be_unwritable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      compiles: list[object]) -> None:
    monkeypatch.setenv("VEIL_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv("VEIL_NO_CACHE", "1")
    assert cache_dir() is None
    compiled_recipe("ps3.15-basic")
    compiled_recipe("ps3.15-basic")
    assert len(compiles) == 2 and not (tmp_path / "c").exists()
    monkeypatch.delenv("VEIL_NO_CACHE")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("VEIL_CACHE_DIR", str(blocker))
    _same(compiled_recipe("ps3.15-basic"), compile_recipe("ps3.15-basic"))  # no error, no cache
    assert blocker.read_text() == "not a folder"


def test_the_core_digest_is_kept_by_the_librarys_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from veil.engine.driver import _library_digest

    monkeypatch.setenv("VEIL_CACHE_DIR", str(tmp_path / "cache"))
    library = tmp_path / "lib.so"
    library.write_bytes(b"core " * 1000)
    assert _library_digest(str(library)) == hashlib.sha256(library.read_bytes()).hexdigest()
    memo = tmp_path / "cache" / "core-digest"
    assert memo.is_file() and stat.S_IMODE(memo.stat().st_mode) == 0o600
    # A memo for the file as it is is used: one written by hand shows it.
    stamp = memo.read_text().rpartition("\n")[0]
    memo.write_text(f"{stamp}\n{'ab' * 32}")
    assert _library_digest(str(library)) == "ab" * 32
    # A rebuild (new content, new times) is hashed again.
    library.write_bytes(b"rebuilt " * 1000)
    os.utime(library, ns=(1, 1))
    assert _library_digest(str(library)) == hashlib.sha256(library.read_bytes()).hexdigest()
