"""The native rewriter's own behaviour: File Meta, lengths, pixels, private blocks, errors (differential
agreement with the pydicom reference lives in test_differential.py)."""

from __future__ import annotations

import io
import random
import zlib

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from rewrite_cases import DEID, KEEP_ALL, KEY, SOP_INSTANCE, encode, make_dataset, read, rewrite

from veil.core._core import IMPLEMENTATION_CLASS_UID, Rewriter, peek
from veil.core.plan import Action, Plan
from veil.errors import MalformedDicom


@pytest.mark.parametrize(
    "syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian]
)
@pytest.mark.parametrize("undefined", [False, True])
def test_keep_all_plan_reproduces_every_element(syntax: str, undefined: bool) -> None:
    data = encode(make_dataset(), syntax, undefined=undefined)
    out = read(rewrite(data, KEEP_ALL).tobytes())
    original = read(data)
    assert out.file_meta.TransferSyntaxUID == syntax
    for elem in original:
        assert out[elem.tag].value == elem.value, elem.tag


@pytest.mark.parametrize(
    "syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian]
)
def test_deid_plan_applies_each_action(syntax: str) -> None:
    out = read(rewrite(encode(make_dataset(), syntax, undefined=True)).tobytes())
    assert out.PatientName == "ANONYMOUS"
    assert out.PatientID == KEY.pseudonym(b"MRN0001").decode()
    assert out.PatientAge == "090Y"
    assert "InstitutionName" not in out
    assert "ReferringPhysicianName" not in out
    assert out.StudyDescription == "CT STUDY"
    assert out.StudyDate == "20240112"
    assert out.AcquisitionDateTime == "20240112101112.5+0100"
    assert out.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # standard UIDs are never remapped
    assert out.SOPInstanceUID == KEY.uid(SOP_INSTANCE.encode()).decode()
    ref = out.ReferencedImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == KEY.uid(b"1.2.826.0.1.3680043.8.498.2").decode()
    nested = ref.ReferencedSeriesSequence[0]
    assert nested.PatientName == "ANONYMOUS"  # tag rules apply at every depth
    assert nested.ContentDate == "20240111"


def test_file_meta_is_rebuilt_with_the_new_instance_uid() -> None:
    out = read(rewrite(encode(make_dataset())).tobytes())
    meta = out.file_meta
    assert meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID != SOP_INSTANCE
    assert meta.MediaStorageSOPClassUID == out.SOPClassUID
    assert meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert meta.ImplementationVersionName.startswith("VEIL")
    assert "SourceApplicationEntityTitle" not in meta
    raw = rewrite(encode(make_dataset())).header
    group_length = int.from_bytes(raw[140:144], "little")
    assert raw[144 + group_length : 146 + group_length] == b"\x08\x00"  # the data set starts right after


def test_private_elements_follow_their_creator_rules() -> None:
    out = read(rewrite(encode(make_dataset())).tobytes())
    block = out.private_block(0x0009, "KEEPME")
    assert block[0x01].value == "kept value"
    assert (0x0009, 0x1002) not in out
    assert (0x0011, 0x0010) not in out and (0x0011, 0x1001) not in out


def test_pixel_data_is_a_zero_copy_slice_of_the_input() -> None:
    data = encode(make_dataset())
    result = rewrite(data)
    start, stop = result.pixel_range
    assert data[start:stop] == b"\x01\x02\x03\x04\x05\x06\x07\x08"
    assert result.pixels.obj is not None and bytes(result.pixels) == data[start:stop]
    assert result.header.endswith(data[start - 12 : start])  # the Pixel Data element header
    assert result.tobytes() == result.header + data[start:stop] + result.trailer


def test_sequence_lengths_are_recomputed_after_changes() -> None:
    data = encode(make_dataset(), ExplicitVRLittleEndian, undefined=False)
    out = rewrite(data).tobytes()
    ds = read(out)
    assert len(ds.ReferencedImageSequence) == 1
    # A strict re-encode by pydicom gives the same data set bytes: every length is right.
    buf = io.BytesIO()
    ds.save_as(buf)
    assert read(buf.getvalue()).ReferencedImageSequence[0].ReferencedSeriesSequence[0].ContentDate == "20240111"


def test_group_length_elements_are_dropped() -> None:
    ds = make_dataset()
    ds.add_new(0x00080000, "UL", 1234)
    ds.add_new(0x00100000, "UL", 99)
    out = read(rewrite(encode(ds), KEEP_ALL).tobytes())
    assert 0x00080000 not in out and 0x00100000 not in out


def test_odd_length_value_is_padded_to_even_length() -> None:
    data = bytearray(encode(make_dataset()))
    # Make AccessionNumber odd: 7 bytes, as some old writers leave them (PS3.5 7.1.1 wants even lengths).
    i = data.index(b"\x08\x00\x50\x00SH")
    data[i + 6 : i + 8] = (7).to_bytes(2, "little")
    data[i + 8 : i + 16] = b"ACC1234"  # 7 bytes: the file shrinks by one
    out = rewrite(bytes(data), KEEP_ALL).tobytes()
    ds = read(out)
    assert ds.AccessionNumber == "ACC1234"
    j = out.index(b"\x08\x00\x50\x00SH")
    assert int.from_bytes(out[j + 6 : j + 8], "little") == 8


def test_touched_reports_element_paths_and_actions() -> None:
    touched = dict(rewrite(encode(make_dataset())).touched())
    assert touched["(0010,0010)"] == "DUMMY"
    assert touched["(0008,1140)[0](0008,1155)"] == "UID"
    assert touched["(0008,1140)[0](0008,1115)[0](0010,0010)"] == "DUMMY"
    assert touched["(0008,0090)"] == "REMOVE"
    assert touched["(0008,1140)[0](0008,1115)[0](0008,0023)"] == "SHIFT"


def test_counts_per_action() -> None:
    counts = rewrite(encode(make_dataset())).counts
    assert counts["UID"] >= 4 and counts["SHIFT"] == 3 and counts["AGE"] == 1 and counts["PSEUDO"] == 1


def test_peek_finds_identity_and_signature() -> None:
    info = peek(encode(make_dataset(), ImplicitVRLittleEndian))
    assert info["patient_id"] == "MRN0001"
    assert info["sop_instance_uid"] == SOP_INSTANCE
    assert info["modality"] == "CT"
    assert info["rows"] == 2 and info["columns"] == 2
    assert info["transfer_syntax"] == ImplicitVRLittleEndian


def test_shift_fn_uses_the_patient_id() -> None:
    seen = []

    def shift_fn(patient_id: bytes) -> int:
        seen.append(patient_id)
        return -1

    out = Rewriter(DEID, KEY.uid, KEY.pseudonym, shift_fn).rewrite(encode(make_dataset()))
    assert seen == [b"MRN0001"]
    assert read(out.tobytes()).StudyDate == "20240101"


def test_file_without_meta_is_written_as_part10() -> None:
    ds = make_dataset()
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=True, little_endian=True)
    out = rewrite(buf.getvalue(), KEEP_ALL).tobytes()
    assert out[128:132] == b"DICM"
    assert read(out).file_meta.TransferSyntaxUID == ImplicitVRLittleEndian


def test_deflated_output_is_deflated() -> None:
    out = rewrite(encode(make_dataset(), DeflatedExplicitVRLittleEndian)).tobytes()
    group_length = int.from_bytes(out[140:144], "little")
    body = zlib.decompress(out[144 + group_length :], -15)
    assert b"DOE^JOHN" not in body and b"MRN0001" not in body


def test_odd_length_deflated_stream_is_padded_with_one_null() -> None:
    """PS3.5 A.5: an odd-length deflated bit stream gets a single trailing NULL byte, after the stream's end."""
    padded = 0
    for n in range(16):
        ds = make_dataset()
        ds.PixelData = random.Random(n).randbytes(8 + 2 * n)  # incompressible: the stream length varies
        ds.Rows = 2 + n
        ds.Columns = 2
        out = rewrite(encode(ds, DeflatedExplicitVRLittleEndian)).tobytes()
        group_length = int.from_bytes(out[140:144], "little")
        stream = out[144 + group_length :]
        inflater = zlib.decompressobj(-15)
        body = inflater.decompress(stream)
        assert inflater.eof and read(out).PixelData == ds.PixelData and body.endswith(ds.PixelData)
        assert len(stream) % 2 == 0, n
        assert inflater.unused_data in (b"", b"\x00"), n
        padded += inflater.unused_data == b"\x00"
    assert 0 < padded < 16  # both parities of the raw stream were met


def test_identifying_values_do_not_survive_anywhere() -> None:
    for syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian):
        out = rewrite(encode(make_dataset(), syntax)).tobytes()
        for value in (b"DOE", b"MRN0001", b"NESTED", b"General Hospital", b"HOSPITAL_PACS", SOP_INSTANCE.encode()):
            assert value not in out, (syntax, value)


# --- bad input ------------------------------------------------------------------------------------------


def test_truncated_file_is_refused_with_offset() -> None:
    data = encode(make_dataset())
    with pytest.raises(MalformedDicom) as info:
        rewrite(data[: len(data) - 5])
    assert info.value.offset > 132 and "past the end" in info.value.reason


def test_not_dicom_is_refused() -> None:
    with pytest.raises(MalformedDicom, match="not a DICOM file"):
        rewrite(b"hello, this is a text file and not DICOM at all\n" * 4)


def test_empty_input_is_refused() -> None:
    with pytest.raises(MalformedDicom):
        rewrite(b"")


def test_bad_vr_is_refused() -> None:
    data = bytearray(encode(make_dataset()))
    i = data.index(b"\x08\x00\x50\x00SH")
    data[i + 4 : i + 6] = b"Q!"
    with pytest.raises(MalformedDicom, match="bad VR"):
        rewrite(bytes(data))


def test_impossible_length_for_vr_is_refused() -> None:
    data = bytearray(encode(make_dataset()))
    i = data.index(b"\x28\x00\x10\x00US")
    data[i + 6 : i + 8] = (3).to_bytes(2, "little")
    with pytest.raises(MalformedDicom):
        rewrite(bytes(data))


def test_nesting_deeper_than_the_limit_is_refused() -> None:
    inner = Dataset()
    inner.PatientID = "X"
    for _ in range(70):
        outer = Dataset()
        outer.ReferencedImageSequence = Sequence([inner])
        inner = outer
    ds = make_dataset()
    ds.ReferencedImageSequence = inner.ReferencedImageSequence
    with pytest.raises(MalformedDicom, match="deeper"):
        rewrite(encode(ds))


MARKED = Plan(
    tags=DEID.tags,
    private=DEID.private,
    vr_defaults=DEID.vr_defaults,
    default_public=Action.KEEP,
    default_private=Action.REMOVE,
    insert=(
        (0x00120062, "CS", "YES"),
        (0x00120064, "SQ", (((0x00080100, "SH", "113100"), (0x00080102, "SH", "DCM")),)),
        (0x00081030, "LO", "INSERTED"),  # replaces StudyDescription, whose rule says REPLACE "CT STUDY"
        (0x7FE10010, "LO", "AFTER PIXELS"),  # a tag after Pixel Data goes to the trailer
    ),
)


@pytest.mark.parametrize(
    "syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian]
)
def test_inserted_elements_are_added_in_order_and_replace_existing_ones(syntax: str) -> None:
    result = rewrite(encode(make_dataset(), syntax), MARKED)
    out = read(result.tobytes())
    assert out.PatientIdentityRemoved == "YES"
    assert out.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert out.StudyDescription == "INSERTED"
    assert out[0x7FE10010].value == "AFTER PIXELS"
    tags = [int(e.tag) for e in out]
    assert tags == sorted(tags)
    assert out.PixelData == b"\x01\x02\x03\x04\x05\x06\x07\x08"
    if syntax != DeflatedExplicitVRLittleEndian:
        assert b"AFTER PIXELS" in result.trailer and b"INSERTED" in result.header


def test_plan_cannot_insert_the_instance_identity() -> None:
    from veil.errors import PlanError

    with pytest.raises(PlanError):
        Rewriter(Plan(insert=((0x00080018, "UI", "1.2.3"),)))


def test_the_keyed_value_caches_are_bounded_by_bytes() -> None:
    """Each cache (UIDs, pseudonyms, date shifts) holds at most ``cache_limit`` bytes as counted: a long run of
    distinct values empties it and goes on, with the same outputs as an unbounded one."""
    calls = {"uid": 0}

    def uid(value: bytes) -> bytes:
        calls["uid"] += 1
        return KEY.uid(value)

    bounded = Rewriter(DEID, uid, KEY.pseudonym, lambda patient_id: 3)
    unbounded = Rewriter(DEID, KEY.uid, KEY.pseudonym, lambda patient_id: 3)
    assert bounded.cache_limit == 32 << 20
    bounded.cache_limit = 2000
    seen = 0
    for i in range(60):
        ds = make_dataset()
        ds.SOPInstanceUID = f"1.2.826.0.1.3680043.8.498.{i:040d}"
        ds.StudyInstanceUID = f"1.2.826.0.1.3680043.8.498.1{i:040d}"
        ds.PatientID = f"PID-{i:030d}"
        data = encode(ds)
        assert bounded.rewrite(data).tobytes() == unbounded.rewrite(data).tobytes()
        held = bounded.cache_bytes
        assert max(held["uid"], held["pseudonym"], held["shift"]) <= 2000
        seen = max(seen, held["uid"])
    assert seen > 1000, "the cache fills up to its bound"
    assert unbounded.cache_bytes["uid"] > 10_000, "unbounded by this test, it holds them all"
    assert calls["uid"] > 120, "values forgotten are asked for again"
