"""The allow-list rules of ``veil.recipes.freetext`` (issue 13), with a small stand-in vocabulary so that each
rule is seen apart from what the shipped vocabulary holds; ``test_freetext.py`` runs the shipped one."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from veil.core.identity import identity_from_values
from veil.core.plan import Action
from veil.recipes import compile_recipe, load_recipe
from veil.recipes.freetext import Cleaner, clean_element, clean_text, file_identifiers, file_identity

WORDS = """mr knee wo contrast pt ct whole body dr ms chest brown white head colon ax mother reviewed on seen by
reconstructed fbp mrn follow up call or patient born no acute findings mrt sag mprage axial routine t2 flair
lesion left right with protocol cta pe study in jpeg aged""".split()


class Words:
    """A stand-in for ``veil.recipes.vocabulary.Vocabulary``: ``known`` is case-insensitive."""

    def __init__(self, words: list[str]) -> None:
        self.words = {w.lower() for w in words}

    def known(self, word: bytes | str) -> bool:
        text = word.decode("utf-8") if isinstance(word, bytes) else word
        return text.lower() in self.words


VOCAB = Words(WORDS + ["sch\u00e4del"])


def clean(value: bytes) -> bytes | None:
    return clean_text(value, VOCAB)


@pytest.mark.parametrize(
    "text",
    [b"MR KNEE WO CONTRAST", b"PT CT WHOLE BODY", b"DR CHEST", b"MS HEAD", b"CT HEAD WO CONTRAST"],
)
def test_modalities_in_capitals_are_not_titles(text: bytes) -> None:
    assert clean(text) == text


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        (b"Dr. Brown reviewed", b"Dr. reviewed"),  # a vocabulary word after a real title goes
        (b"Mr White", b"Mr"),
        (b"DR. BROWN", b"DR."),  # a dot makes a title of capitals
        (b"Dr. J. Brown seen", b"Dr. seen"),
        (b"seen by Brown", b"seen by"),
        (b"reconstructed by FBP", b"reconstructed by FBP"),
        (b"MRN Brown follow up", b"MRN follow up"),
    ],
)
def test_names_after_titles_roles_and_labels_go(text: bytes, cleaned: bytes) -> None:
    assert clean(text) == cleaned


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        (b"AX_Doe", b"AX"),
        (b"Doe-Smith", b""),
        (b"J.Doe", b""),  # the initial goes with the name
        (b"mother Mary", b"mother"),
        (b"T1_MPRAGE_Doe_2", b"T1_MPRAGE_2"),  # kept parts re-joined with their joiners
        (b"Doe_T2_FLAIR", b"T2_FLAIR"),  # leading joiner trimmed
        (b"DOE^JOHN", b""),
        (b"Head^Routine", b"Head^Routine"),
        (b"BROWN^MARY", b""),  # a person name with one unknown part goes whole
        (b"Lawyer", b""),  # an occupation, a placeholder: not known to be safe
    ],
)
def test_unknown_parts_go_and_kept_parts_are_rejoined(text: bytes, cleaned: bytes) -> None:
    assert clean(text) == cleaned


@pytest.mark.parametrize(
    "text",
    [
        b"L4-L5", b"C1-C8", b"T1-T12", b"S1", b"T1 T2 T1W T2W", b"2D 3D 4D", b"b1000 b0", b"5mm 0.5mm 10cm",
        b"120kV 2mAs 3.0T 1.5T", b"1500ms 35sl", b"512x512", b"0.625", b"12 in 16", b"2nd", b"0-15cm",
        b"JPEG 2000", b"L R A P",
    ],
)  # fmt: skip
def test_numbers_units_and_shorthand_are_kept(text: bytes) -> None:
    assert clean(text) == text


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        (b"CHEST 2024-01-31", b"CHEST"),
        (b"CHEST 31/01/2024", b"CHEST"),
        (b"CHEST 31.1.24", b"CHEST"),
        (b"CHEST 20240131", b"CHEST"),
        (b"CHEST 3Mar2024", b"CHEST"),
        (b"CHEST 3 March 2024", b"CHEST"),
        (b"CHEST Mar 3, 2024", b"CHEST ,"),
        (b"KNEE 045Y", b"KNEE"),
        (b"KNEE 45y", b"KNEE"),
        (b"KNEE 45yo", b"KNEE"),
        (b"KNEE 45 yo", b"KNEE"),
        (b"KNEE 45 years old", b"KNEE"),
        (b"KNEE 78-year-old", b"KNEE"),
        (b"KNEE aged 45", b"KNEE aged"),
        (b"call 555-1234", b"call"),
        (b"call (555) 014-2399", b"call ()"),
        (b"call 555 014 2399", b"call"),
        (b"HEAD 1234", b"HEAD"),  # four digits: a year, an ID
        (b"HEAD ACC12345", b"HEAD"),
        (b"HEAD 256/0/8", b"HEAD"),
        (b"a@b.org HEAD www.x.org http://x/y", b"HEAD"),
        (b"AXIAL\\T2\\ACC12345 ", b"AXIAL\\T2\\"),  # the value count is kept
    ],
)
def test_dates_ages_numbers_and_addresses_go_whole(text: bytes, cleaned: bytes) -> None:
    assert clean(text) == cleaned


def test_non_ascii_words_are_kept_only_when_known_and_utf8() -> None:
    assert clean("Sch\u00e4del MRT".encode()) == "Sch\u00e4del MRT".encode()
    assert clean("Sch\u00e4del MRT".encode("latin-1")) == b"MRT"  # not UTF-8: cannot be judged
    assert clean("M\u00fcller MRT".encode()) == b"MRT"  # a Latin word the vocabulary does not hold


def test_the_files_identity_words_go_even_when_known_and_device_words_stay() -> None:
    identity = identity_from_values([
        (0x00100010, b"BROWN^MARY"), (0x00100020, b"XK-77"), (0x00080080, b"Colon Clinic"),
        (0x00080070, b"ACME Imaging"), (0x00081090, b"Zephyr 9000"),
    ])  # fmt: skip
    with file_identity(identity):
        assert clean(b"Brown knee") == b"knee"  # a vocabulary word that names this patient
        assert clean(b"COLON CT") == b"CT"  # institution words too
        assert clean(b"Zephyr 9000 knee ACME") == b"Zephyr knee ACME"  # device words kept, a number is not
        assert clean(b"knee XK") == b"knee"
    assert clean(b"Brown knee") == b"Brown knee"  # outside the block: the vocabulary alone decides
    assert clean(b"Zephyr knee") == b"knee"


def test_file_identifiers_still_sets_the_words_of_plain_values() -> None:
    text = b"CTA CHEST PE PROTOCOL - LEE, JOSEPH"
    assert clean(text) == b"CTA CHEST PE PROTOCOL - ,"  # separators stay
    with file_identifiers(["LEE^JOSEPH^W", "68603977", None]), file_identity(identity_from_values([])):
        assert clean(b"study") == b"study"  # the inner block replaces the words
    with file_identifiers(["Brown^Ann", None]):
        assert clean(b"Brown CHEST") == b"CHEST"


def test_unsafe_values_and_vrs_are_removed_whole() -> None:
    assert clean_text(b"\x1b$B...", VOCAB) is None  # ISO 2022 escape
    assert clean_text(b"a\x01b", VOCAB) is None  # control character
    cleaner = Cleaner()
    assert cleaner(0x00100010, "PN", b"Doe^John") is None
    assert cleaner(0x00282000, "OB", b"\x01\x02") is None
    assert cleaner(0x00081030, "UI", b"1.2.3") is None


def test_a_cleaner_pickles_and_compares_by_its_words() -> None:
    assert pickle.loads(pickle.dumps(clean_element)) is clean_element
    site = Cleaner(["zephyr", "lawyer"])
    again = pickle.loads(pickle.dumps(site))
    assert again == site and hash(again) == hash(site) and again is not site
    assert site != clean_element and Cleaner() == clean_element


def test_a_recipe_vocabulary_reaches_the_cleaner_and_its_workers() -> None:
    recipe = load_recipe("research")
    plan = compile_recipe(recipe).plan
    assert plan.callback is clean_element and plan == compile_recipe(load_recipe("research")).plan
    extended = dataclasses.replace(recipe, vocabulary=("zephyrscan",))
    callback = compile_recipe(extended).plan.callback
    assert isinstance(callback, Cleaner) and callback.extra == ("zephyrscan",)
    revived = pickle.loads(pickle.dumps(callback))
    assert revived(0x00081030, "LO", b"ZephyrScan") == b"ZephyrScan"  # the site's word, in a worker
    assert clean_element(0x00081030, "LO", b"ZephyrScan") == b""  # not in the shipped vocabulary


@pytest.mark.parametrize("name", ["research", "hipaa-safe-harbor"])
def test_occupation_is_removed_by_the_hand_written_profiles(name: str) -> None:
    plan = compile_recipe(load_recipe(name)).plan
    assert plan.tags[0x00102180].action == Action.REMOVE
