"""The free-text cleaner with the shipped vocabulary (moved here from test_recipe.py and updated for the
allow-list of issue 13); the rules one by one, with a stand-in vocabulary, are in test_freetext_allowlist.py."""

from __future__ import annotations

import pytest

from veil.core.identity import identity_from_values
from veil.recipes.freetext import clean_element, clean_text, file_identifiers, file_identity


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        (b"T1_MPRAGE SAG 3D", b"T1_MPRAGE SAG 3D"),
        (b"CT CHEST W/O CONTRAST", b"CT CHEST W/O CONTRAST"),
        (b"MR KNEE WO CONTRAST", b"MR KNEE WO CONTRAST"),  # MR is a modality, not a title (issue 13)
        (b"PT CT WHOLE BODY", b"PT CT WHOLE BODY"),
        (b"L4-L5 disc, 1.5T", b"L4-L5 disc, 1.5T"),
        (b"Dr. John Smith reviewed on 01/02/2024", b"Dr. reviewed on"),
        (b"Dr. Brown reviewed", b"Dr. reviewed"),  # a vocabulary word after a real title goes
        (b"reconstructed by FBP", b"reconstructed by FBP"),
        (b"MRN ABCDEF follow up", b"MRN follow up"),
        (b"call 555-1234 or a@b.org www.x.org", b"call or"),
        (b"Patient O'Brien born March 3rd", b"Patient born"),
        (b"DOE^JOHN", b""),
        (b"b1000 5mm 45y", b"b1000 5mm"),  # b-values and sizes are kept now; the age goes
        (b"No acute findings", b"No acute findings"),
        (b"Sch\xe4del MRT", b"MRT"),  # not UTF-8: the word cannot be judged
        (b"AXIAL\\T2\\ACC12345 ", b"AXIAL\\T2\\"),  # multi-valued: value count kept
        (b"mother Mary", b"mother"),
        (b"Lawyer", b"Lawyer"),  # an English word; the Occupation attribute itself is removed by the recipes
    ],
)
def test_clean_text_keeps_known_words_and_removes_the_rest(text: bytes, cleaned: bytes) -> None:
    assert clean_text(text) == cleaned


def test_clean_element_fails_closed() -> None:
    assert clean_element(0x00081030, "LO", b"\x1b$B...") is None  # ISO 2022 escape
    assert clean_element(0x00081030, "LO", b"a\x01b") is None  # control character
    assert clean_element(0x00100010, "PN", b"Doe^John") is None
    assert clean_element(0x00282000, "OB", b"\x01\x02") is None
    assert clean_element(0x00081030, "LO", b"BRAIN ") == b"BRAIN"
    assert clean_element(0x00204000, "LT", b"line one\r\nline 2") == b"line one\r\nline 2"


def test_the_files_own_names_are_removed_when_the_caller_sets_them() -> None:
    # WHITE is a vocabulary word (white matter) and a surname; BROWN is a surname the vocabulary leaves out.
    text = b"CTA CHEST PE PROTOCOL - WHITE, JOSEPH"
    assert clean_text(text) == b"CTA CHEST PE PROTOCOL - WHITE,"  # joseph is a name, not a known word
    assert clean_text(b"CTA CHEST - BROWN") == b"CTA CHEST -"
    with file_identifiers(["WHITE^JOSEPH^W", "68603977", None]):
        assert clean_text(text) == b"CTA CHEST PE PROTOCOL - ,"
    with file_identity(identity_from_values([(0x00100010, b"WHITE^JOSEPH^W")])):
        assert clean_text(text) == b"CTA CHEST PE PROTOCOL - ,"
    assert clean_text(text) == b"CTA CHEST PE PROTOCOL - WHITE,"


def test_a_type_1_text_cleaned_to_nothing_gets_a_dummy_not_an_empty_value() -> None:
    from veil.recipes.freetext import REMOVED_TEXT, clean_element

    # TextValue (0040,A160) is Type 1 in a TEXT content item: emptying it would make the SR invalid.
    assert clean_element(0x0040A160, "UT", b"Kowalczyk 555-0142") == REMOVED_TEXT
    # Any other text may be left empty; a value that keeps a word keeps it.
    assert clean_element(0x00204000, "LT", b"Kowalczyk 555-0142") == b""
    assert clean_element(0x0040A160, "UT", b"no acute findings Kowalczyk") == b"no acute findings"
