"""A redacted colour image written again in another transfer syntax may change how its colour is encoded
(YBR_FULL_422 read from JPEG, written RLE as RGB): a kept PhotometricInterpretation or PlanarConfiguration that
changed with the transfer syntax is no finding; any other change of a kept attribute still is."""

from __future__ import annotations

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import JPEGBaseline8Bit, RLELossless

from veil.core.dataset import walk_dataset
from veil.core.plan import Action, Plan
from veil.verification.integrity import kept_findings

KEEP_ALL = Plan(default_public=Action.KEEP)


def image(syntax: str, photometric: str, planar: int, manufacturer: str = "ACME") -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.Manufacturer = manufacturer
    ds.PhotometricInterpretation = photometric
    ds.PlanarConfiguration = planar
    return ds


def findings(before: Dataset, after: Dataset) -> list[tuple[str, str]]:
    _, found = kept_findings(list(walk_dataset(before)), after, KEEP_ALL, "f.dcm")
    return [(f.keyword, f.detail) for f in found]


def test_the_colour_encoding_may_change_with_the_transfer_syntax() -> None:
    before = image(JPEGBaseline8Bit, "YBR_FULL_422", 0)
    assert findings(before, image(RLELossless, "RGB", 1)) == []


def test_the_same_transfer_syntax_or_another_attribute_is_still_a_finding() -> None:
    before = image(JPEGBaseline8Bit, "YBR_FULL_422", 0)
    assert findings(before, image(JPEGBaseline8Bit, "RGB", 0)) == [("PhotometricInterpretation", "value changed")]
    assert findings(before, image(RLELossless, "MONOCHROME2", 0)) == [
        ("PhotometricInterpretation", "value changed")
    ]
    assert findings(before, image(RLELossless, "RGB", 0, "OTHER")) == [("Manufacturer", "value changed")]
