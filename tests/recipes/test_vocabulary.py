"""veil's clinical/technical vocabulary: names are not in it, anatomy, technique and closed-class words are;
the recipe key ``vocabulary:`` adds words through the layers without changing recipes that do not use it."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest

from veil.errors import RecipeError
from veil.recipes import load_recipe
from veil.recipes import vocabulary as vocab
from veil.recipes.vocabulary import SOURCES, Vocabulary, known, vocab_dir, why

NAMES = ["smith", "john", "kowalczyk", "mary", "doe", "jones", "garcia", "müller", "muller", "brown",
         "miller", "young", "king", "baker", "hill", "roe", "nguyen"]
DATE_WORDS = ["january", "may", "march", "monday", "sunday"]
CLINICAL = ["head", "colon", "bone", "brain", "contrast", "knee", "chest", "axial", "mprage", "flair", "tse",
            "without", "mit", "thorax", "white", "back", "hand", "foot", "lawyer", "the", "with", "wo"]


@pytest.mark.parametrize("word", NAMES + DATE_WORDS)
def test_names_and_date_words_are_not_in_the_vocabulary(word: str) -> None:
    assert not known(word) and why(word) is None
    assert not known(word.upper()) and not known(word.encode("utf-8"))


@pytest.mark.parametrize("word", CLINICAL)
def test_clinical_technical_and_closed_class_words_are_known(word: str) -> None:
    assert known(word) and known(word.upper()) and known(word.encode("ascii"))
    assert why(word) in SOURCES


def test_why_names_the_list_that_holds_the_word() -> None:
    assert why("knee") == "dicom-anatomy"
    assert why("mprage") == "radiology-acronyms"
    assert why("ohne") == "non-english"
    assert why("lawyer") == "english-frequent"
    for word in ("knee", "mprage", "ohne", "lawyer"):
        path = vocab_dir() / f"{why(word)}.txt"
        assert word in path.read_text(encoding="utf-8").split("\n")


def test_accented_words_are_known_folded_and_in_latin_1() -> None:
    assert why("Schädel") == why("schadel") == "non-english"
    assert known("schädel".encode()) and known("SCHÄDEL".encode("latin-1"))
    assert not known("Müller".encode("latin-1"))


def test_extra_words_are_known_and_credited_to_the_recipe() -> None:
    v = Vocabulary(extra=["AcmeProtocol", "acmeprotocol", "knee"])
    assert not known("acmeprotocol")
    assert v.known("ACMEPROTOCOL") and v.why("acmeprotocol") == "recipe" and "acmeprotocol" in v
    assert v.why("knee") == "dicom-anatomy"  # a shipped word keeps its own source
    assert v.extra == ("acmeprotocol", "knee") and not v.known("smith")
    assert len(v) == len(vocab.default()) + 1


def test_vocabulary_pickles_with_its_extra_words_only() -> None:
    v = Vocabulary(extra=["acmeprotocol"])
    data = pickle.dumps(v)
    assert len(data) < 200  # the shipped lists are not carried: a worker loads its own
    back = pickle.loads(data)
    assert back == v and back.known("acmeprotocol") and back.known("knee") and not back.known("smith")


def test_shipped_lists_are_sorted_lower_case_and_small() -> None:
    total = 0
    for source in SOURCES:
        path = vocab_dir() / f"{source}.txt"
        total += path.stat().st_size
        lines = path.read_text(encoding="utf-8").splitlines()
        words = [w for w in lines if not w.startswith("#")]
        assert words, source
        assert all(w == w.strip().lower() and w.isalnum() and w[0].isalpha() for w in words), source
        if source.startswith(("dicom", "english")):  # the generated lists: sorted, two letters at least
            assert words == sorted(set(words)) and min(map(len, words)) >= 2, source
    assert total < 1_500_000
    readme = (vocab_dir() / "README.md").read_text(encoding="utf-8")
    assert "CC BY-SA 4.0" in readme and "make_vocabulary.py" in readme


def test_loading_the_shipped_lists(capsys: pytest.CaptureFixture[str]) -> None:
    vocab._SHIPPED = None
    start = time.perf_counter()
    size = len(Vocabulary())
    elapsed = time.perf_counter() - start
    with capsys.disabled():
        print(f"\nvocabulary: {size} words loaded in {elapsed * 1000:.1f} ms")
    assert size > 20000


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_recipe_vocabulary_extends_through_layers(tmp_path: Path) -> None:
    _write(tmp_path / "site-words.yml", "name: site-words\nversion: '1'\nkind: option\n"
           "vocabulary: [AcmeScan, Zeta9]\nrules: []\n")
    _write(tmp_path / "site-base.yml", "name: site-base\nversion: '1'\nextends: research\n"
           "vocabulary: [acmeprotocol]\nrules: []\n")
    recipe = load_recipe(_write(tmp_path / "site.yml", "name: site\nversion: '1'\nextends: site-base\n"
                                "options: [site-words]\nvocabulary: [ACMEPROTOCOL, hcmr]\nrules: []\n"))
    assert recipe.vocabulary == ("acmeprotocol", "acmescan", "hcmr", "zeta9")
    assert "vocabulary (4 words added)" in recipe.show()
    research = load_recipe("research")
    assert research.vocabulary == ()
    plain_text = "name: plain\nversion: '1'\nextends: research\nrules: []\n"
    plain = load_recipe(_write(tmp_path / "plain.yml", plain_text))
    assert "vocabulary" not in plain.canonical() and plain.content_hash == research.content_hash
    assert recipe.content_hash != load_recipe(tmp_path / "site-base.yml").content_hash


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("[two words]", "white space"),
        ("['']", "may not be empty"),
        ("acme", "must be a list"),
        ("[[a, b]]", "must be a single value"),
        ("[{a: b}]", "must be a single value"),
    ],
)
def test_a_bad_vocabulary_is_an_error_naming_the_line(tmp_path: Path, value: str, problem: str) -> None:
    text = f"name: bad\nversion: '1'\nextends: research\nvocabulary: {value}\nrules: []\n"
    path = _write(tmp_path / "bad.yml", text)
    with pytest.raises(RecipeError, match=problem) as info:
        load_recipe(path)
    assert "bad.yml" in str(info.value) and ":4" in str(info.value)
