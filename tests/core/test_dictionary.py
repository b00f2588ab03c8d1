"""veil.core.dictionary reads pydicom's data dictionary without importing pydicom: the same answers as pydicom."""

from __future__ import annotations

import subprocess
import sys

from pydicom.datadict import (
    DicomDictionary,
    RepeatersDictionary,
    dictionary_VR,
    keyword_dict,
    keyword_for_tag,
)

from veil.core import dictionary


def test_every_entry_agrees_with_pydicom() -> None:
    for tag in DicomDictionary:
        assert dictionary.entry(tag) == (dictionary_VR(tag), keyword_for_tag(tag)), f"{tag:08X}"
    assert {k: dictionary.keyword_tag(k) for k in keyword_dict} == keyword_dict
    assert sorted(dictionary.keywords()) == sorted(keyword_dict)


def test_repeating_groups_and_unknown_tags() -> None:
    for mask, fields in RepeatersDictionary.items():
        tag = int(mask.replace("x", "2"), 16)
        if tag not in DicomDictionary:
            assert dictionary.entry(tag) == (dictionary_VR(tag), keyword_for_tag(tag)), mask
        assert dictionary.repeater(mask) == (fields[0], fields[4])
    assert dictionary.entry(0x60023000) == ("OB or OW", "OverlayData")
    assert dictionary.entry(0x00091001) is None  # private
    assert dictionary.entry(0x1234_5678) is None
    try:
        dictionary_VR(0x1234_5678)
    except KeyError:
        pass
    else:
        raise AssertionError("pydicom knows (1234,5678)")
    assert dictionary.keyword_tag("NoSuchKeyword") is None


def test_compiling_a_recipe_does_not_import_pydicom() -> None:
    code = ("import sys; from veil.recipes import compile_recipe, load_recipe; "
            "compile_recipe(load_recipe('ps3.15-basic')); compile_recipe(load_recipe('hipaa-safe-harbor')); "
            "print('pydicom' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
