"""The recipe's ``deface:`` section and the clean-recognizable-visual-features option layer."""

from __future__ import annotations

from pathlib import Path

import pytest

from veil.errors import RecipeError
from veil.recipes import METHOD_CODES, DefacePolicy, load_recipe


def _recipe(tmp_path: Path, deface: str) -> Path:
    path = tmp_path / "r.yml"
    path.write_text(f'name: r\nversion: "1"\nextends: research\noptions: [clean-recognizable-visual-features]\n'
                    f"{deface}rules: []\n")
    return path


def test_option_layer_turns_defacing_on_with_defaults() -> None:
    assert load_recipe("research").deface is None
    recipe = load_recipe("clean-recognizable-visual-features")
    assert recipe.deface == DefacePolicy()
    # The code is added by the series step to defaced instances only, never to every output by the Plan.
    assert "clean-recognizable-visual-features" not in METHOD_CODES


def test_recipe_keys_refine_the_option(tmp_path: Path) -> None:
    recipe = load_recipe(_recipe(tmp_path, "deface: {method: shell, margin: 12, ears: true, body_parts: [head]}\n"))
    assert recipe.deface is not None
    assert (recipe.deface.method, recipe.deface.margin, recipe.deface.ears) == ("shell", 12.0, True)
    assert recipe.deface.body_parts == ("HEAD",)
    assert "clean-recognizable-visual-features 1.0" in recipe.layers
    plain = load_recipe(_recipe(tmp_path, ""))
    assert plain.content_hash != recipe.content_hash


@pytest.mark.parametrize(("section", "problem"), [
    ("deface: {method: blur}\n", "deface.method: 'blur' is not one of plane, shell"),
    ("deface: {margin: 1}\n", "at least 3 mm"),
    ("deface: {margin: 100}\n", "millimetres from 0 to 40"),
    ("deface: {ears: 2}\n", "true or false"),
    ("deface: {min_slices: 3}\n", "from 8 to 1000"),
    ("deface: {unknown_body_part: pass}\n", "check, skip"),
    ("deface: {face: gone}\n", "unknown key 'face'"),
    ("deface: {body_parts: []}\n", "at least one value"),
])
def test_bad_sections_name_the_line(tmp_path: Path, section: str, problem: str) -> None:
    with pytest.raises(RecipeError, match=problem) as caught:
        load_recipe(_recipe(tmp_path, section))
    assert ":5" in str(caught.value) or "line 5" in str(caught.value)
