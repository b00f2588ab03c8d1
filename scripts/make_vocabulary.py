#!/usr/bin/env python3
"""Generates veil's clinical/technical vocabulary: the word lists in ``src/veil/recipes/vocab_data/``.

A development-time script (wordfreq and Faker are not veil dependencies; the lists it writes are committed):

    pip install wordfreq faker pydicom     # in a separate environment
    python scripts/make_vocabulary.py       # rewrite the generated lists and the figures in the README

Sources (all offline; licences in ``vocab_data/README.md``):

- DICOM: pydicom's code meanings (``pydicom.sr``), data dictionary names and keywords, UID names.
- English: wordfreq's ``top_n_list("en", N)`` minus common given and family names from Faker's person
  providers (every locale whose names are Latin script), city names from Faker's address providers, and month and
  weekday names.
- Hand-written (normalised in place by this script: sections kept, words sorted, one a line):
  ``radiology-acronyms.txt``, ``non-english.txt``; and two inputs of the subtraction, ``names-kept.txt``
  (words of the name lists kept after review) and ``names-extra.txt`` (names to subtract that Faker lacks).

The name rule, per word of a generated list: a word (or its ASCII-folded form) that is a Faker given or family
name, a name in ``names-extra.txt``, a city, a month or a weekday is left out, unless (1) it is a word of an
anatomy, modality, laterality or view context group that the standard writes in lower case in some code
meaning (a common noun there, not an eponym: colon, back, white, brain), or (2) it is in ``names-kept.txt``.
Hand lists are not subtracted: they were reviewed word by word, and the names they share are listed in the
README.
Output is sorted and carries no date: the same package versions give the same bytes.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import re
import sys
import unicodedata
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VOCAB_DIR = ROOT / "src" / "veil" / "recipes" / "vocab_data"
ENGLISH_TOP_N = 30000

HAND_SOURCES = ("radiology-acronyms", "non-english")
GENERATED_SOURCES = ("dicom-anatomy", "dicom-code-meanings", "dicom-dictionary", "english-frequent")
# The loader's order: a word in several lists is credited to the first (src/veil/recipes/vocabulary.py).
SOURCES = GENERATED_SOURCES[:3] + HAND_SOURCES + GENERATED_SOURCES[3:]

_WORD = re.compile(r"[^\W\d_]+")
_CAMEL = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+")
# A context group of anatomy, modality, laterality or views, by its name; equations, tables and roles hold
# eponyms and are not anatomy even when their names say "Body" or "Organ".
_ANATOMY_GROUP = re.compile(r"Anatom|Modality|Laterality|View|Region|Structure|Site|Location|Organ")
_NOT_ANATOMY_GROUP = re.compile(r"Equation|Table|Reason|Organizational|Authority")

_DATE_WORDS = """
january february march april may june july august september october november december
jan feb mar apr jun jul aug sep sept oct nov dec
monday tuesday wednesday thursday friday saturday sunday mon tue tues wed thu thur thurs fri sat sun
januar februar märz maerz juni juli oktober dezember
montag dienstag mittwoch donnerstag freitag samstag sonntag
janvier février fevrier mars avril mai juin juillet août aout septembre octobre novembre décembre decembre
lundi mardi mercredi jeudi vendredi samedi dimanche
enero febrero marzo abril mayo junio julio agosto septiembre setiembre octubre noviembre diciembre
lunes martes miércoles miercoles jueves viernes sábado sabado domingo
gennaio febbraio aprile maggio giugno luglio settembre ottobre dicembre
lunedì lunedi martedì martedi mercoledì mercoledi giovedì giovedi venerdì venerdi sabato domenica
januari februari maart mei augustus oktober maandag dinsdag woensdag donderdag vrijdag zaterdag zondag
janeiro fevereiro março marco maio junho julho setembro outubro novembro dezembro
segunda terça terca quarta quinta sexta
""".split()


def fold(word: str) -> str:
    """The ASCII-folded form: accents dropped (schädel -> schadel); what split_words gives the cleaner."""
    if word.isascii():
        return word
    return unicodedata.normalize("NFKD", word).encode("ascii", "ignore").decode("ascii")


def is_latin(word: str) -> bool:
    return all(not c.isalpha() or "LATIN" in unicodedata.name(c, "") for c in word)


def valid(word: str) -> bool:
    """A vocabulary word: two or more Latin letters, nothing else."""
    return len(word) >= 2 and _WORD.fullmatch(word) is not None and is_latin(word)


def valid_hand(word: str) -> bool:
    """A hand-listed word may hold digits after its first letter (mp2rage, t1w: names of sequences), and may
    be a single letter (l, r, w: left, right, with)."""
    letters = re.sub(r"\d", "", word)
    return word[:1].isalpha() and word.isalnum() and (valid(letters) or (len(word) == 1 and is_latin(word)))


def words_of(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text) if valid(w.lower())]


# --- hand-written lists -------------------------------------------------------------------------------------


def read_hand(name: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """A hand-written list: its header (``#`` lines), then (``##`` section heading, words) in file order."""
    header: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    for raw in (VOCAB_DIR / f"{name}.txt").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("##"):
            sections.append((line, []))
        elif line.startswith("#"):
            if sections:
                raise SystemExit(f"{name}.txt: a '#' comment after the header; start a section with '##'")
            header.append(line)
        elif line:
            if not sections:
                raise SystemExit(f"{name}.txt: words before the first '##' section heading")
            for word in line.split():
                word = word.lower()
                if not valid_hand(word):
                    raise SystemExit(f"{name}.txt: {word!r} is not a word of two or more Latin letters")
                sections[-1][1].append(word)
    return header, sections


def normalise_hand(name: str) -> list[str]:
    """Rewrites a hand list: header kept, each section's words sorted one a line, a word kept in its first
    section only. Returns the words in file order."""
    header, sections = read_hand(name)
    seen: set[str] = set()
    lines = list(header)
    words: list[str] = []
    for heading, section_words in sections:
        unique = sorted({w for w in section_words if w not in seen})
        seen.update(unique)
        words.extend(unique)
        lines.append(heading)
        lines.extend(unique)
    (VOCAB_DIR / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return words


def read_plain(name: str) -> set[str]:
    """An input list of the subtraction (names-kept, names-extra): words, comments after '#'."""
    out: set[str] = set()
    for raw in (VOCAB_DIR / f"{name}.txt").read_text(encoding="utf-8").splitlines():
        for word in raw.split("#", 1)[0].split():
            word = word.lower()
            if not valid(word):
                raise SystemExit(f"{name}.txt: {word!r} is not a word of two or more Latin letters")
            out.add(word)
    return out


# --- Faker: names and cities --------------------------------------------------------------------------------


def _faker_locales() -> list[str]:
    import faker.config

    return list(faker.config.AVAILABLE_LOCALES)


def _latin_share(values: Iterable[str]) -> float:
    values = list(values)
    return sum(is_latin(v) for v in values) / len(values) if values else 0.0


def faker_names() -> tuple[set[str], list[str]]:
    """Every part of every given and family name of Faker's Latin-script locales, lower case."""
    names: set[str] = set()
    used: list[str] = []
    for locale in _faker_locales():
        try:
            provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        except ImportError:
            continue
        values: set[str] = set()
        for attr in dir(provider):
            if attr.startswith(("first_names", "last_names")):
                value = getattr(provider, attr)
                if isinstance(value, (list, tuple, dict, set, frozenset)):
                    values.update(str(v) for v in value)
        if not values or _latin_share(values) < 0.9:
            continue
        used.append(locale)
        for value in values:
            names.update(w.lower() for w in _WORD.findall(value) if is_latin(w))
    return names, used


def frequent_us_surnames(count: int = 200) -> set[str]:
    """The ``count`` most frequent US family names by Faker's en_US weights: names-kept.txt may not hold
    one."""
    from faker.providers.person.en_US import Provider

    ranked = sorted(Provider.last_names.items(), key=lambda item: (-item[1], item[0]))
    return {name.lower() for name, _ in ranked[:count]}


# Address providers whose city lists are towns and cities of a country; the long lists of it_IT, nl_NL, nl_BE
# and sk_SK hold every village, and their names include English words (one, well, born, mill).
_CITY_LOCALES = ("cs_CZ", "da_DK", "de_AT", "de_CH", "de_DE", "fi_FI", "fr_DZ", "hr_HR", "pl_PL", "pt_PT",
                 "ro_RO", "sl_SI", "sv_SE", "en_IN", "id_ID")


def faker_cities() -> set[str]:
    """One-word city names of some of Faker's Latin-script address providers (a many-word name is left
    alone: its parts are words such as 'san' or 'upon')."""
    cities: set[str] = set()
    for locale in _CITY_LOCALES:
        try:
            provider = importlib.import_module(f"faker.providers.address.{locale}").Provider
        except ImportError:
            continue
        for attr in ("cities", "city_names", "real_city_names"):
            value = getattr(provider, attr, None)
            if not isinstance(value, (list, tuple, dict, set, frozenset)):
                continue
            for city in value:
                parts = _WORD.findall(str(city))
                if len(parts) == 1 and is_latin(parts[0]):
                    cities.add(parts[0].lower())
    return cities


# --- DICOM --------------------------------------------------------------------------------------------------


def dicom_code_meanings() -> tuple[set[str], set[str], set[str]]:
    """(words of anatomy/modality/laterality/view context groups, words of every code meaning, words the
    standard writes in lower case inside some code meaning)."""
    from pydicom.sr._cid_dict import cid_concepts, name_for_cid
    from pydicom.sr._concepts_dict import concepts

    meanings: dict[tuple[str, str], list[str]] = {}
    every: set[str] = set()
    lower_use: set[str] = set()
    for scheme, by_keyword in concepts.items():
        for keyword, codes in by_keyword.items():
            for meaning, _cids in codes.values():
                meanings.setdefault((scheme, keyword), []).append(meaning)
                for token in _WORD.findall(meaning):
                    if valid(token.lower()):
                        every.add(token.lower())
                        if token.islower():
                            lower_use.add(token)
    anatomy: set[str] = set()
    for cid, group in name_for_cid.items():
        if not _ANATOMY_GROUP.search(group) or _NOT_ANATOMY_GROUP.search(group):
            continue
        for scheme, keywords in cid_concepts.get(cid, {}).items():
            for keyword in keywords:
                for meaning in meanings.get((scheme, keyword), []):
                    anatomy.update(words_of(meaning))
    return anatomy, every, lower_use


def dicom_dictionary() -> set[str]:
    """Words of the data dictionary's names and keywords (CamelCase split) and of the UID names."""
    from pydicom.datadict import DicomDictionary
    from pydicom.uid import UID_dictionary

    out: set[str] = set()
    for _vr, _vm, name, _retired, keyword in DicomDictionary.values():
        out.update(words_of(name))
        out.update(w.lower() for w in _CAMEL.findall(keyword) if valid(w.lower()))
    for entry in UID_dictionary.values():
        out.update(words_of(entry[0]))
    return out


def english_frequent() -> list[str]:
    from wordfreq import top_n_list

    return [w for w in top_n_list("en", ENGLISH_TOP_N) if valid(w)]


# --- assembly -----------------------------------------------------------------------------------------------


def _versions() -> str:
    return ", ".join(f"{p} {importlib.metadata.version(p)}" for p in ("pydicom", "wordfreq", "faker"))


_HEADERS = {
    "dicom-anatomy": (
        "words of the code meanings of the anatomy, modality, laterality and view context groups of",
        "pydicom's copy of the DICOM PS3.16 tables (pydicom: MIT; DICOM standard text: free to use).",
        "Kept even when also a name, if the standard writes the word in lower case in some code meaning.",
    ),
    "dicom-code-meanings": (
        "words of every other DICOM code meaning in pydicom.sr (pydicom: MIT; DICOM PS3.16: free to use),",
        "minus names, cities and dates (see README).",
    ),
    "dicom-dictionary": (
        "words of the DICOM data dictionary names and keywords (CamelCase split) and UID names, from",
        "pydicom.datadict and pydicom.uid (pydicom: MIT; DICOM PS3.6: free to use),",
        "minus names, cities and dates (see README).",
    ),
    "english-frequent": (
        f"the {ENGLISH_TOP_N} most frequent English words of wordfreq (code Apache-2.0; word list data",
        "CC BY-SA 4.0, (c) Robyn Speer and wordfreq contributors: https://github.com/rspeer/wordfreq), minus",
        "common given and family names and city names (Faker, MIT), month and weekday names (see README).",
    ),
}


def write_generated(name: str, words: Iterable[str]) -> int:
    ordered = sorted(set(words))
    lines = [f"# {name}: generated by scripts/make_vocabulary.py; do not edit (README.md: how to regenerate)."]
    lines += [f"# {text}" for text in _HEADERS[name]]
    lines.append(f"# {len(ordered)} words; made with {_versions()}.")
    (VOCAB_DIR / f"{name}.txt").write_text("\n".join(lines + ordered) + "\n", encoding="utf-8")
    return len(ordered)


def _wrap(words: Iterable[str], width: int = 110) -> list[str]:
    lines: list[str] = []
    line = ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    if line:
        lines.append(line)
    return lines


def update_readme(figures: list[str]) -> None:
    readme = VOCAB_DIR / "README.md"
    text = readme.read_text(encoding="utf-8")
    start, end = "<!-- generated:start -->", "<!-- generated:end -->"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    readme.write_text(head + start + "\n" + "\n".join(figures) + "\n" + end + tail, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)

    hand = {name: normalise_hand(name) for name in HAND_SOURCES}
    kept = read_plain("names-kept")
    too_common = sorted(kept & frequent_us_surnames())
    if too_common:
        raise SystemExit(f"names-kept.txt holds frequent US family names: {' '.join(too_common)}")
    extra = read_plain("names-extra")
    names, locales = faker_names()
    cities = faker_cities()
    dates = {w.lower() for w in _DATE_WORDS}
    anatomy, meanings, lower_use = dicom_code_meanings()
    dictionary = dicom_dictionary()
    english = english_frequent()

    deny_names = names | extra
    deny = deny_names | cities | dates
    deny_folded = {fold(w) for w in deny}

    def denied(word: str) -> bool:
        return word in deny or fold(word) in deny_folded

    restored_anatomy = sorted(w for w in anatomy if denied(w) and w in lower_use and w not in kept)
    eponyms = sorted(w for w in anatomy if denied(w) and w not in lower_use and w not in kept)
    restored_kept: set[str] = set()

    def allowed(word: str, source: str) -> bool:
        if not denied(word):
            return True
        if source == "dicom-anatomy" and word in lower_use:
            return True
        if word in kept:
            restored_kept.add(word)
            return True
        return False

    raw = {
        "dicom-anatomy": anatomy,
        "dicom-code-meanings": meanings,
        "dicom-dictionary": dictionary,
        "english-frequent": set(english) | kept,
    }
    # Each word is written once: in the first DICOM list that has it, else (when no hand list has it either)
    # in english-frequent. The loader credits a word to the first list in SOURCES order.
    taken: set[str] = set()
    counts: dict[str, tuple[int, int, int, int]] = {}
    for source in GENERATED_SOURCES:
        if source == "english-frequent":
            hand_words = {w for words in hand.values() for w in words}
            taken |= hand_words | {fold(w) for w in hand_words}
        candidates = set(raw[source])
        fresh = {w for w in candidates if w not in taken and fold(w) not in taken}
        keep = {w for w in fresh if allowed(w, source)}
        written = write_generated(source, keep)
        counts[source] = (len(candidates), len(candidates) - len(fresh), len(fresh) - len(keep), written)
        taken |= keep | {fold(w) for w in keep}

    hand_names = {name: sorted(w for w in words if denied(w)) for name, words in hand.items()}
    deny_names_folded = {fold(n) for n in deny_names}
    english_names = sorted(w for w in set(english) if w in deny_names or fold(w) in deny_names_folded)
    size = sum((VOCAB_DIR / f"{name}.txt").stat().st_size for name in SOURCES)
    figures = [
        f"Made with {_versions()}; English top {ENGLISH_TOP_N}.",
        "",
        "| list | candidate words | in an earlier list | left out: name, city or date | words |",
        "|---|---|---|---|---|",
    ]
    for name in HAND_SOURCES:
        figures.append(f"| {name}.txt (hand) | {len(hand[name])} | - | 0 | {len(hand[name])} |")
    for source in GENERATED_SOURCES:
        total, earlier, subtracted, written = counts[source]
        figures.append(f"| {source}.txt | {total} | {earlier} | {subtracted} | {written} |")
    figures += [
        "",
        f"Names: {len(names)} name words from {len(locales)} Faker locales ({', '.join(locales)}), "
        f"plus {len(extra)} in names-extra.txt; {len(cities)} one-word city names; {len(dates)} month and "
        f"weekday words. {len(english_names)} of the {len(english)} English words are names.",
        f"Total size of the shipped lists: {size} bytes.",
        "",
        f"Kept despite the name lists, rule 1 (anatomy/modality/laterality/view words the standard writes in "
        f"lower case), {len(restored_anatomy)} words:",
        "",
        *_wrap(restored_anatomy),
        "",
        f"Left out of dicom-anatomy as names (written capitalised by the standard: eponyms), {len(eponyms)}:",
        "",
        *_wrap(eponyms),
        "",
        f"Kept despite the name lists, rule 2 (names-kept.txt, reviewed), {len(restored_kept)} words in use.",
        "",
    ]
    for name in HAND_SOURCES:
        figures += [f"Words of {name}.txt that are also names, kept (hand list): {len(hand_names[name])}:"]
        figures.append("")
        figures += [*_wrap(hand_names[name]), ""]
    update_readme(figures)
    print("\n".join(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
