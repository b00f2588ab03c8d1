"""A small data set with every kind of element the rewriter handles (a sequence, private blocks of a kept and a
dropped creator, pixels), a de-identifying Plan and test keyed functions: shared by the core, pipeline and
pixel tests."""

from __future__ import annotations

import io

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from veil.core._core import Rewriter
from veil.core.plan import Action, Plan, Rule
from veil.keys import Key, KeyedFunctions

KEY = KeyedFunctions(Key(bytes(range(32))))

KEEP_ALL = Plan(vr_defaults={"SQ": Action.RECURSE}, default_public=Action.KEEP, default_private=Action.KEEP)
DEID = Plan(
    tags={
        0x00100010: Rule(Action.DUMMY),
        0x00100020: Rule(Action.PSEUDO),
        0x00101010: Rule(Action.AGE),
        0x00080080: Rule(Action.REMOVE),
        0x00081030: Rule(Action.REPLACE, "CT STUDY"),
    },
    private={(0x0009, "KEEPME", 0x01): Rule(Action.KEEP)},
    vr_defaults={"SQ": Action.RECURSE, "UI": Action.UID, "DA": Action.SHIFT, "DT": Action.SHIFT,
                 "PN": Action.REMOVE},
    default_public=Action.KEEP,
    default_private=Action.REMOVE,
)

SOP_INSTANCE = "1.2.826.0.1.3680043.8.498.1"


def make_dataset() -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = SOP_INSTANCE
    ds.StudyDate = "20240102"
    ds.AcquisitionDateTime = "20240102101112.5+0100"
    ds.AccessionNumber = "ACC12345"
    ds.Modality = "CT"
    ds.InstitutionName = "General Hospital"
    ds.ReferringPhysicianName = "WHO^DOCTOR"
    ds.StudyDescription = "CHEST FOR DOE JOHN"
    ds.PatientName = "DOE^JOHN"
    ds.PatientID = "MRN0001"
    ds.PatientAge = "093Y"
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ref.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    nested = Dataset()
    nested.PatientName = "NESTED^NAME"
    nested.ContentDate = "20240101"
    ref.ReferencedSeriesSequence = Sequence([nested])
    ds.ReferencedImageSequence = Sequence([ref])
    ds.private_block(0x0009, "KEEPME", create=True).add_new(0x01, "LO", "kept value")
    ds.private_block(0x0009, "KEEPME", create=True).add_new(0x02, "LO", "DOE JOHN private")
    ds.private_block(0x0011, "DROPME", create=True).add_new(0x01, "LO", "DOE JOHN")
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.3"
    ds.Rows = 2
    ds.Columns = 2
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = b"\x01\x02\x03\x04\x05\x06\x07\x08"
    return ds


def encode(ds: Dataset, syntax: str = ExplicitVRLittleEndian, *, undefined: bool = False) -> bytes:
    ds = ds.copy()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.SourceApplicationEntityTitle = "HOSPITAL_PACS"
    if undefined:
        for elem in ds.iterall():
            if elem.VR == "SQ":
                elem.is_undefined_length = True
                for item in elem.value:
                    item.is_undefined_length_sequence_item = True
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def rewrite(data: bytes, plan: Plan = DEID, days: int = 10):
    return Rewriter(plan, KEY.uid, KEY.pseudonym).rewrite(data, days, "test.dcm")


def read(data: bytes) -> Dataset:
    return pydicom.dcmread(io.BytesIO(data))
