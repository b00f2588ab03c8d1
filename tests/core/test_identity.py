"""The one identity model (veil.core.identity): word splitting, the identity of a data set at every depth, and
the native walk (``identity_values``) held equal to the pydicom walk on constructed files, pydicom's test files
and the shared corpus."""

from __future__ import annotations

import io
import sys
import warnings
from pathlib import Path

import pydicom
import pytest
from corpus import corpus_file_list, file_id, pydicom_file_list
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from rewrite_cases import encode, make_dataset

from veil.core._core import identity_values, peek
from veil.core.dataset import read_dataset
from veil.core.dictionary import dictionary_entry
from veil.core.identity import (
    DEVICE_TAGS,
    IDENTITY_KEYWORDS,
    IDENTITY_TAGS,
    JOINERS,
    FileIdentity,
    identity_from_dataset,
    identity_from_values,
    split_words,
)
from veil.errors import MalformedDicom

SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian]

# --- split_words ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, words",
    [
        (b"AX_Doe", [b"ax", b"doe"]),
        (b"Doe-Smith", [b"doe", b"smith"]),
        (b"J.Doe", [b"doe"]),
        (b"Doe^John^^Dr", [b"doe", b"john", b"dr"]),
        (b"Doe, John; Smith/Jones", [b"doe", b"john", b"smith", b"jones"]),
        (b"DOE^JOHN=YAMADA^TARO", [b"doe", b"john", b"yamada", b"taro"]),
        (b"MRN123\\OTHER-ID-77", [b"mrn123", b"other", b"id", b"77"]),
        (b"12 Main St\r\nSpringfield", [b"12", b"main", b"st", b"springfield"]),
        (b"  padded  \x00", [b"padded"]),
    ],
)
def test_split_words_splits_at_joiners_backslash_and_equals(value: bytes, words: list[bytes]) -> None:
    assert split_words(value) == words


def test_joiners_are_the_documented_characters() -> None:
    assert set(JOINERS) == set(b" _-/.^,;")
    for joiner in JOINERS:
        assert split_words(b"ab" + bytes([joiner]) + b"cd") == [b"ab", b"cd"]


def test_split_words_lowers_drops_short_words_and_keeps_first_order_without_duplicates() -> None:
    assert split_words(b"B A_doe DOE x Doe ab") == [b"doe", b"ab"]


def test_split_words_folds_accents_and_reads_latin1_and_utf8_alike() -> None:
    assert split_words("Müller^José") == [b"muller", b"jose"]
    assert split_words("Müller^José".encode("latin-1")) == split_words("Müller^José".encode())


def test_split_words_keeps_scripts_without_an_ascii_form() -> None:
    assert split_words("山田^太郎".encode()) == ["山田".encode(), "太郎".encode()]


def test_split_words_of_str_and_bytes_agree() -> None:
    assert split_words("AX_Doe\\J.Smith") == split_words(b"AX_Doe\\J.Smith")


# --- the keyword list -------------------------------------------------------------------------------------------


def test_every_identity_keyword_has_a_tag() -> None:
    assert len(IDENTITY_KEYWORDS) == 37
    assert {keyword for keyword, _ in IDENTITY_TAGS.values()} == set(IDENTITY_KEYWORDS)
    for tag, (keyword, kind) in IDENTITY_TAGS.items():
        entry = dictionary_entry(tag)
        assert entry is not None and entry[1] == keyword and IDENTITY_KEYWORDS[keyword] == kind


# --- the identity of a data set ---------------------------------------------------------------------------------


def _nested_names() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.10"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.11"
    ds.Manufacturer = "ACME Medical"
    ds.ManufacturerModelName = "Scanner_X9"
    ds.NameOfPhysiciansReadingStudy = "READER^RITA"
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "MRN0001"
    ds.OtherPatientNames = "ROE^JANE\\POE^EDGAR"
    ds.PatientBirthDate = "19700101"
    ds.PatientMotherBirthName = "MAIDEN^MARY"
    request = Dataset()
    request.RequestingPhysician = "ASKER^ALAN"
    request.RequestedProcedureID = "RP-4711"
    ds.RequestAttributesSequence = Sequence([request])
    ds.SoftwareVersions = "v1.2"
    block = ds.private_block(0x0029, "VEIL TEST", create=True)
    inner = Dataset()
    inner.add_new(0x00291010, "LO", "VEIL TEST")  # the item's own private block
    inner.add_new(0x00291011, "PN", "HIDDEN^HENRY")
    block.add_new(0x10, "SQ", Sequence([inner]))
    return ds


def _saved(ds: Dataset, syntax: str) -> bytes:
    from pydicom.dataset import FileMetaDataset

    ds = ds.copy()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = syntax
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_identity_of_a_dataset_holds_every_name_at_every_depth() -> None:
    identity = identity_from_dataset(_nested_names())
    names = {value for kind, value in identity.values if kind == "name"}
    assert names == {
        b"READER^RITA", b"DOE^JOHN", b"ROE^JANE\\POE^EDGAR", b"MAIDEN^MARY", b"ASKER^ALAN", b"HIDDEN^HENRY",
    }  # fmt: skip
    for word in (b"rita", b"roe", b"edgar", b"maiden", b"asker", b"hidden", b"mrn0001", b"19700101", b"rp"):
        assert word in identity.words
    assert ("requested procedure ID", b"RP-4711") in identity.values
    assert identity.device_words == {b"acme", b"medical", b"scanner", b"x9", b"v1"}


def test_uids_are_values_but_add_no_words() -> None:
    identity = identity_from_dataset(_nested_names())
    assert ("UID", b"1.2.826.0.1.3680043.8.498.10") in identity.values
    assert b"826" not in identity.words and b"498" not in identity.words
    assert identity.counts()["UID"] == 2


def test_identity_counts_and_word_kinds_name_kinds_only() -> None:
    identity = identity_from_dataset(_nested_names())
    assert identity.counts()["name"] == 6
    assert identity.word_kinds()[b"asker"] == {"name"}
    assert identity.word_kinds()[b"mrn0001"] == {"patient ID"}


def test_identity_from_tag_value_pairs_finds_person_names_by_the_dictionary() -> None:
    identity = identity_from_values([(0x00321032, b"ASKER^ALAN "), (0x00081030, b"CHEST"), (0x00100020, b" ")])
    assert identity.values == (("name", b"ASKER^ALAN"),)
    assert identity == identity_from_values([(0x00321032, "PN", b"ASKER^ALAN\x00")])


def test_empty_identity_is_false() -> None:
    assert not identity_from_values([])
    assert identity_from_values([]) == FileIdentity()


# --- native == pydicom --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("syntax", SYNTAXES)
@pytest.mark.parametrize("undefined", [False, True])
def test_native_identity_equals_pydicom_identity_on_nested_names(syntax: str, undefined: bool) -> None:
    ds = _nested_names()
    if undefined:
        for elem in ds.iterall():
            if elem.VR == "SQ":
                elem.is_undefined_length = True
                for item in elem.value:
                    item.is_undefined_length_sequence_item = True
    data = _saved(ds, syntax)
    native = identity_from_values(identity_values(data, "t.dcm"))
    assert native == identity_from_dataset(read_dataset(data))
    names = {value for kind, value in native.values if kind == "name"}
    assert b"ASKER^ALAN" in names and b"MAIDEN^MARY" in names
    # A private PN is known only where its VR is written: implicit VR private elements are unknown VR.
    assert (b"HIDDEN^HENRY" in names) == (syntax != ImplicitVRLittleEndian)


@pytest.mark.parametrize("syntax", SYNTAXES)
def test_native_identity_equals_pydicom_identity_on_the_shared_case(syntax: str) -> None:
    data = encode(make_dataset(), syntax, undefined=syntax == ExplicitVRLittleEndian)
    native = identity_from_values(identity_values(data))
    assert native == identity_from_dataset(read_dataset(data))
    assert ("name", b"NESTED^NAME") in native.values


def test_native_walk_returns_tag_vr_and_value_without_trailing_padding() -> None:
    found = identity_values(encode(make_dataset(), ImplicitVRLittleEndian))
    assert (0x00100010, "PN", b"DOE^JOHN") in found
    assert (0x00100020, "LO", b"MRN0001") in found
    assert found[0][0] == 0x00020003  # the File Meta's MediaStorageSOPInstanceUID first


@pytest.mark.parametrize(
    "name",
    ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm", "JPEG2000.dcm",
     "rtstruct.dcm", "SC_rgb_rle.dcm"],
)  # fmt: skip
def test_native_identity_equals_pydicom_identity_on_each_transfer_syntax(name: str) -> None:
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    assert path is not None
    data = Path(path).read_bytes()
    native = identity_from_values(identity_values(data, name))
    assert native == identity_from_dataset(read_dataset(data))
    assert native.values


def _agreement(files: list[Path]) -> tuple[int, list[str], list[str]]:
    """(equal, differing file ids, skipped file ids): files either reader rejects are skipped, not compared."""
    equal, differ, skipped = 0, [], []
    for path in files:
        data = path.read_bytes()
        try:
            native = identity_from_values(identity_values(data, str(path)))
        except MalformedDicom:
            skipped.append(file_id(path))
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reference = identity_from_dataset(read_dataset(data))
        except Exception:
            skipped.append(file_id(path))
            continue
        if native == reference:
            equal += 1
        elif path.name in _TRUNCATED and set(native.values) <= set(reference.values):
            equal += 1  # the native walk ends at the truncated element; pydicom reads what precedes the cut
        else:
            differ.append(file_id(path))
    return equal, differ, skipped


# Files cut short inside a top-level element: the native walk stops there (a header read without its pixels).
_TRUNCATED = {"rtplan_truncated.dcm"}


def test_native_identity_equals_pydicom_identity_on_pydicom_test_files() -> None:
    files = pydicom_file_list()
    equal, differ, skipped = _agreement(files)
    print(f"pydicom test files: {equal} equal, {len(differ)} differ, {len(skipped)} skipped", file=sys.stderr)
    assert not differ
    assert equal >= 0.9 * len(files)


@pytest.mark.corpus
def test_native_identity_equals_pydicom_identity_on_the_corpus(corpus_root: Path) -> None:
    files = corpus_file_list()
    equal, differ, skipped = _agreement(files)
    print(f"corpus: {equal} equal, {len(differ)} differ, {len(skipped)} skipped", file=sys.stderr)
    assert not differ
    assert equal >= 0.95 * len(files)


# --- heads and malformed files --------------------------------------------------------------------------------------


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_a_header_without_its_pixels_gives_the_whole_identity(syntax: str) -> None:
    data = encode(make_dataset(), syntax)
    whole = identity_values(data)
    little = syntax != ExplicitVRBigEndian
    pixel_tag = (b"\xe0\x7f\x10\x00" if little else b"\x7f\xe0\x00\x10")
    at = data.rindex(pixel_tag)
    for cut in (at, at + 4, at + 10):
        assert identity_values(data[:cut]) == whole


def test_a_buffer_cut_inside_a_top_level_value_ends_the_walk_quietly() -> None:
    data = encode(make_dataset(), ExplicitVRLittleEndian)
    at = data.index(b"MRN0001")  # inside PatientID: what comes before it is read
    found = identity_values(data[: at + 3])
    assert (0x00100010, "PN", b"DOE^JOHN") in found
    assert all(tag != 0x00100020 for tag, _, _ in found)


def test_bad_vr_raises_malformed_dicom_as_peek_does() -> None:
    data = bytearray(encode(make_dataset(), ExplicitVRLittleEndian))
    at = data.rindex(b"\x10\x00\x10\x00PN")  # the top-level PatientName's header (the nested one comes first)
    data[at + 4 : at + 6] = b"ZZ"
    with pytest.raises(MalformedDicom):
        peek(bytes(data))
    with pytest.raises(MalformedDicom):
        identity_values(bytes(data))


def test_item_tag_at_the_top_level_raises_malformed_dicom() -> None:
    data = bytearray(encode(make_dataset(), ExplicitVRLittleEndian))
    at = data.rindex(b"\x10\x00\x10\x00PN")
    data[at : at + 4] = b"\xfe\xff\x00\xe0"
    with pytest.raises(MalformedDicom):
        identity_values(bytes(data))


def test_bad_vr_inside_an_item_raises_malformed_dicom() -> None:
    data = bytearray(encode(make_dataset(), ExplicitVRLittleEndian))
    at = data.index(b"\x10\x00\x10\x00PN")  # the nested PatientName (peek, top level only, does not see it)
    data[at + 4 : at + 6] = b"ZZ"
    with pytest.raises(MalformedDicom):
        identity_values(bytes(data))


def test_broken_item_inside_a_sequence_raises_malformed_dicom() -> None:
    data = bytearray(encode(make_dataset(), ExplicitVRLittleEndian))
    at = data.index(b"\xfe\xff\x00\xe0")  # the first item of ReferencedImageSequence
    data[at : at + 4] = b"\x08\x00\x50\x11"
    with pytest.raises(MalformedDicom):
        identity_values(bytes(data))


def test_not_dicom_raises_malformed_dicom_as_peek_does() -> None:
    for data in (b"", b"hello world, no dicom here" * 10):
        with pytest.raises(MalformedDicom):
            peek(data)
        with pytest.raises(MalformedDicom):
            identity_values(data)


def test_device_tags_are_the_three_device_names() -> None:
    assert {dictionary_entry(tag)[1] for tag in DEVICE_TAGS} == {  # type: ignore[index]
        "Manufacturer", "ManufacturerModelName", "SoftwareVersions",
    }  # fmt: skip


def test_pydicom_reads_the_nested_private_name_in_explicit_vr() -> None:
    # Guards the fixture: the private PN is where the tests above expect it.
    ds = pydicom.dcmread(io.BytesIO(_saved(_nested_names(), ExplicitVRLittleEndian)))
    assert ds[0x00291010].value[0][0x00291011].VR == "PN"


# --- the pipeline reads the same identity -----------------------------------------------------------------------


def test_rewrite_cleans_free_text_within_the_files_whole_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    import contextlib

    from veil.core.plan import Action, Plan, Rule
    from veil.pipeline import Deidentifier

    seen: list[FileIdentity] = []

    @contextlib.contextmanager
    def record(identity: FileIdentity):  # type: ignore[no-untyped-def]
        seen.append(identity)
        yield

    monkeypatch.setattr("veil.recipes.freetext.file_identity", record)
    plan = Plan(
        tags={0x00081030: Rule(Action.CALL)},
        vr_defaults={"SQ": Action.RECURSE},
        default_public=Action.KEEP,
        callback=lambda tag, vr, value: value,
    )
    ds = _nested_names()
    ds.StudyDescription = "CHEST"
    data = _saved(ds, ImplicitVRLittleEndian)
    Deidentifier(plan).rewrite(data, "t.dcm")
    assert seen == [identity_from_dataset(read_dataset(data))]
    assert ("name", b"ASKER^ALAN") in seen[0].values
