"""veil's clinical/technical vocabulary: the words the free-text cleaner may keep and ``veil verify`` does not
count as another patient's name (PS3.15 E.3.5: "values of similar meaning known not to contain identifying
information").

The words are package data in ``veil/recipes/vocab_data/``, one list per source (DICOM code meanings and data
dictionary, frequent English words minus given and family names, hand-listed radiology acronyms and
non-English words), made by ``scripts/make_vocabulary.py``; its README says where each comes from and how the
lists were reviewed. A recipe may add words (``vocabulary: [...]``); :class:`Vocabulary` holds both.
Matching is case-insensitive, and a word with accents is also known by its ASCII-folded form (schädel,
schadel).
"""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Iterable
from pathlib import Path

__all__ = ["RECIPE_SOURCE", "SOURCES", "Vocabulary", "default", "known", "vocab_dir", "why"]

# The shipped lists, in the order a word is credited to (scripts/make_vocabulary.py has the same order): the
# DICOM lists, the hand lists (reviewed word by word), then the frequent English words.
SOURCES = (
    "dicom-anatomy",
    "dicom-code-meanings",
    "dicom-dictionary",
    "radiology-acronyms",
    "non-english",
    "english-frequent",
)
RECIPE_SOURCE = "recipe"  # what why() names for a word the recipe's ``vocabulary:`` added

_SHIPPED: dict[str, str] | None = None
_LOCK = threading.Lock()


def vocab_dir() -> Path:
    """The shipped word lists (package data ``veil/recipes/vocab_data``)."""
    return Path(__file__).resolve().parent / "vocab_data"


def _fold(word: str) -> str:
    """The ASCII-folded form of a word (accents dropped), as the identity model splits values into words."""
    if word.isascii():
        return word
    return unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode("ascii")


def _text(word: bytes | str) -> str:
    """The word as lower-case text; bytes are UTF-8 or, failing that, Latin-1 (ISO_IR 100)."""
    if isinstance(word, str):
        return word.strip().lower()
    try:
        return word.decode("utf-8").strip().lower()
    except UnicodeDecodeError:
        return word.decode("latin-1").strip().lower()


def _add(table: dict[str, str], word: str, source: str) -> None:
    table.setdefault(word, source)
    folded = _fold(word)
    if folded and folded != word:
        table.setdefault(folded, source)


def _load_shipped() -> dict[str, str]:
    """word -> source of every shipped list, read once per process (about 30,000 words, a few ms)."""
    global _SHIPPED
    if _SHIPPED is None:
        with _LOCK:
            if _SHIPPED is None:
                table: dict[str, str] = {}
                accented: list[tuple[str, str]] = []
                directory = vocab_dir()
                for source in reversed(SOURCES):  # a later update wins: the first list in SOURCES is credited
                    text = (directory / f"{source}.txt").read_text(encoding="utf-8")
                    words = [w for w in text.lower().split("\n") if w and w[0] != "#"]
                    table.update(dict.fromkeys(words, source))
                    accented.extend((w, source) for w in words if not w.isascii())
                for word, source in accented:
                    table.setdefault(_fold(word), source)
                _SHIPPED = table
    return _SHIPPED


class Vocabulary:
    """The shipped vocabulary plus a recipe's own words (``extra``, credited to ``recipe``).

    Cheap to build (the shipped lists are read once per process and shared) and picklable (a pickle carries
    only the extra words, so a worker process loads the shipped lists from its own package data).
    """

    __slots__ = ("_extra", "_table")

    def __init__(self, extra: Iterable[str] = ()) -> None:
        words: dict[str, str] = {}
        for word in extra:
            text = _text(word)
            if text:
                _add(words, text, RECIPE_SOURCE)
        self._extra: tuple[str, ...] = tuple(sorted({_text(w) for w in extra if _text(w)}))
        self._table = (words, _load_shipped())

    @property
    def extra(self) -> tuple[str, ...]:
        """The words the recipe added, lower case, sorted."""
        return self._extra

    def why(self, word: bytes | str) -> str | None:
        """The list that holds the word (``radiology-acronyms``, ``english-frequent``...; ``recipe`` for a
        word only the recipe adds), or None."""
        text = _text(word)
        if not text:
            return None
        own, shipped = self._table
        for candidate in (text, _fold(text)):
            found = shipped.get(candidate) or own.get(candidate)
            if found is not None:
                return found
        return None

    def known(self, word: bytes | str) -> bool:
        """Whether the word (any case; accents or not) is in the vocabulary."""
        own, shipped = self._table
        if isinstance(word, str) and word in shipped:  # the common case: already a lower-case word
            return True
        return self.why(word) is not None

    def __contains__(self, word: object) -> bool:
        return isinstance(word, (bytes, str)) and self.known(word)

    def __len__(self) -> int:
        own, shipped = self._table
        return len(shipped) + sum(1 for w in own if w not in shipped)

    def __reduce__(self) -> tuple[type[Vocabulary], tuple[tuple[str, ...]]]:
        return (Vocabulary, (self._extra,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other._extra == self._extra

    def __hash__(self) -> int:
        return hash(self._extra)

    def __repr__(self) -> str:
        return f"Vocabulary(extra={list(self._extra)!r})"


_DEFAULT: Vocabulary | None = None


def default() -> Vocabulary:
    """The shipped vocabulary without recipe words (built on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Vocabulary()
    return _DEFAULT


def known(word: bytes | str) -> bool:
    """Whether ``word`` is in veil's shipped clinical/technical vocabulary (case-insensitive)."""
    return default().known(word)


def why(word: bytes | str) -> str | None:
    """Which shipped list holds ``word``, or None when it is not in the vocabulary."""
    return default().why(word)
