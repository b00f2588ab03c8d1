"""``veil recipe vocab``: whether the free-text vocabulary keeps a word, and which list holds it."""

from __future__ import annotations

from pathlib import Path

from veil.cli.main import EXIT_FATAL, EXIT_OK, main


def test_recipe_vocab_says_kept_and_why_or_not_in_the_vocabulary(capsys) -> None:
    assert main(["recipe", "vocab", "KNEE", "mprage", "Smith", "acmeprotocol"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "KNEE: kept (dicom-anatomy)",
        "mprage: kept (radiology-acronyms)",
        "Smith: not in the vocabulary",
        "acmeprotocol: not in the vocabulary",
    ]


def test_recipe_vocab_includes_the_recipes_own_words(tmp_path: Path, capsys) -> None:
    site = tmp_path / "site.yml"
    site.write_text("name: site\nversion: '1'\nextends: research\nvocabulary: [AcmeProtocol]\nrules: []\n")
    assert main(["recipe", "vocab", "acmeprotocol", "knee", "--recipe", str(site)]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["acmeprotocol: kept (recipe)", "knee: kept (dicom-anatomy)"]
    assert main(["recipe", "vocab", "acmeprotocol", "--recipe", "research"]) == EXIT_OK
    assert capsys.readouterr().out.splitlines() == ["acmeprotocol: not in the vocabulary"]


def test_recipe_vocab_with_an_unknown_recipe_is_a_fatal_error(capsys) -> None:
    assert main(["recipe", "vocab", "knee", "--recipe", "no-such-recipe"]) == EXIT_FATAL
    assert "no-such-recipe" in capsys.readouterr().err
