"""Plans and keyed functions shared by the differential tests, the property tests and the benchmarks.

The keyed functions here are deterministic stand-ins for veil's keyed BLAKE3 ones: what matters to the tests
is that the rewriter and the reference call them on the same stripped values.
"""

from __future__ import annotations

import hashlib

from veil.core.plan import Action, Plan, Rule

__all__ = [
    "SHIFT_DAYS",
    "keyed_uid",
    "keyed_id",
    "echo_callback",
    "KEEP_ALL",
    "BASIC",
    "STRICT",
    "PRIVATE_MASKS",
    "PLANS",
]

# An odd number of days over many years, so that month lengths, leap days and century rules all matter.
SHIFT_DAYS = -4711

A = Action


def keyed_uid(uid: bytes) -> bytes:
    """``2.25.<decimal of 128 bits>`` of a digest of the stripped UID (odd and even lengths both occur)."""
    digest = hashlib.sha256(b"veil-test-uid\x00" + uid).digest()
    return b"2.25." + str(int.from_bytes(digest[:16], "big")).encode()


def keyed_id(value: bytes) -> bytes:
    """A short upper-case hex pseudonym whose length depends on the input (to exercise padding)."""
    digest = hashlib.sha256(b"veil-test-id\x00" + value).hexdigest().upper()
    return b"ID" + digest[: 5 + len(value) % 6].encode()


def echo_callback(tag: int, vr: str, value: bytes) -> bytes | None:
    """A CALL callback whose answer does not depend on whether it is handed the value padded or stripped."""
    core = bytes(value).strip(b" \x00")
    if not core:
        return None
    return b"CB" + format(tag & 0xFFFF, "04X").encode() + b"-" + core[:9]


def _rules(table: dict[int, Action]) -> dict[int, Rule]:
    return {tag: Rule(action) for tag, action in table.items()}


# (a) Everything kept; sequences walked so that group lengths inside items are dropped too.
KEEP_ALL = Plan(
    default_public=A.KEEP,
    default_private=A.KEEP,
    vr_defaults={"SQ": A.RECURSE},
    name="keep_all",
)

# (b) A PS3.15 Basic-profile-like plan: names removed, UIDs remapped, dates shifted, IDs pseudonymised, private
# data removed, a few elements emptied or replaced by dummies, sequences walked, everything else kept.
BASIC = Plan(
    tags={
        **_rules(
            {
                0x00100020: A.PSEUDO,  # PatientID
                0x00101000: A.PSEUDO,  # OtherPatientIDs
                0x00080050: A.PSEUDO,  # AccessionNumber
                0x00200010: A.PSEUDO,  # StudyID
                0x00101010: A.AGE,  # PatientAge
                0x00080090: A.EMPTY,  # ReferringPhysicianName (PN, the exact rule wins over the VR default)
                0x00081030: A.EMPTY,  # StudyDescription
                0x00081040: A.EMPTY,  # InstitutionalDepartmentName
                0x00081032: A.EMPTY,  # ProcedureCodeSequence (an SQ emptied)
                0x00100040: A.DUMMY,  # PatientSex CS
                0x00080080: A.DUMMY,  # InstitutionName LO
                0x00081010: A.DUMMY,  # StationName SH
                0x00181000: A.DUMMY,  # DeviceSerialNumber LO
                0x00101030: A.DUMMY,  # PatientWeight DS
                0x00200013: A.DUMMY,  # InstanceNumber IS
                0x00080030: A.DUMMY,  # StudyTime TM
                0x00280106: A.DUMMY,  # SmallestImagePixelValue US or SS
                0x00081111: A.DUMMY,  # ReferencedPerformedProcedureStepSequence (an SQ emptied)
                0x00081155: A.UID,  # ReferencedSOPInstanceUID
                0x0008103E: A.CALL,  # SeriesDescription
                0x00181030: A.CALL,  # ProtocolName
                0x00204000: A.CALL,  # ImageComments
                0x00321060: A.REMOVE,  # RequestedProcedureDescription
                0x00400254: A.REMOVE,  # PerformedProcedureStepDescription
                0x00080008: A.KEEP,  # ImageType
                0x7FE00010: A.KEEP,  # PixelData
            }
        ),
        0x00120062: Rule(A.REPLACE, "YES"),  # PatientIdentityRemoved
        0x00120063: Rule(A.REPLACE, "veil reference test"),  # DeidentificationMethod (odd length)
        0x00280107: Rule(A.REPLACE, b"\xff\x00"),  # LargestImagePixelValue = 255, given little endian
        0x00180015: Rule(A.REPLACE, "CHEST"),  # BodyPartExamined
    },
    masks=(
        (0xFF00FFFF, 0x60004000, Rule(A.REMOVE)),  # Overlay Comments
        (0xFF000000, 0x50000000, Rule(A.REMOVE)),  # curve data (retired)
    ),
    vr_defaults={"PN": A.REMOVE, "UI": A.UID, "DA": A.SHIFT, "DT": A.SHIFT, "SQ": A.RECURSE},
    default_public=A.KEEP,
    default_private=A.REMOVE,
    callback=echo_callback,
    # Marking, as recipes do it: added at the top level in tag order, replacing an element of the same tag
    # (0012,0062 also has a REPLACE rule above: the insert wins); a sequence inserted too.
    insert=(
        (0x00120062, "CS", "YES"),
        (0x00120064, "SQ", (((0x00080100, "SH", "113100"), (0x00080102, "SH", "DCM"),
                             (0x00080104, "LO", "Basic Application Confidentiality Profile")),
                            ((0x00080100, "SH", "113107"), (0x00080102, "SH", "DCM"),
                             (0x00080104, "LO", "Retain Longitudinal With Modified Dates Option")))),
        (0x00280303, "CS", "MODIFIED"),
    ),
    name="basic",
)

# (c) Strict: everything removed but a small keep-list (sequences removed unless listed).
STRICT = Plan(
    tags={
        **_rules(
            {
                0x00080005: A.KEEP,  # SpecificCharacterSet
                0x00080008: A.KEEP,  # ImageType
                0x00080016: A.KEEP,  # SOPClassUID
                0x00080018: A.UID,  # SOPInstanceUID
                0x00080020: A.SHIFT,  # StudyDate
                0x00080021: A.SHIFT,  # SeriesDate
                0x0008002A: A.SHIFT,  # AcquisitionDateTime
                0x00080060: A.KEEP,  # Modality
                0x00100020: A.PSEUDO,  # PatientID
                0x00100030: A.EMPTY,  # PatientBirthDate
                0x00100040: A.KEEP,  # PatientSex
                0x00101010: A.AGE,  # PatientAge
                0x0020000D: A.UID,  # StudyInstanceUID
                0x0020000E: A.UID,  # SeriesInstanceUID
                0x00200052: A.UID,  # FrameOfReferenceUID
                0x00200013: A.KEEP,  # InstanceNumber
                0x00200032: A.KEEP,  # ImagePositionPatient
                0x00200037: A.KEEP,  # ImageOrientationPatient
                0x00280002: A.KEEP,  # SamplesPerPixel
                0x00280004: A.KEEP,  # PhotometricInterpretation
                0x00280006: A.KEEP,  # PlanarConfiguration
                0x00280008: A.KEEP,  # NumberOfFrames
                0x00280010: A.KEEP,  # Rows
                0x00280011: A.KEEP,  # Columns
                0x00280030: A.KEEP,  # PixelSpacing
                0x00280100: A.KEEP,  # BitsAllocated
                0x00280101: A.KEEP,  # BitsStored
                0x00280102: A.KEEP,  # HighBit
                0x00280103: A.KEEP,  # PixelRepresentation
                0x00281050: A.KEEP,  # WindowCenter
                0x00281051: A.KEEP,  # WindowWidth
                0x00281052: A.KEEP,  # RescaleIntercept
                0x00281053: A.KEEP,  # RescaleSlope
                0x00281101: A.KEEP,  # palette descriptors and data
                0x00281102: A.KEEP,
                0x00281103: A.KEEP,
                0x00281201: A.KEEP,
                0x00281202: A.KEEP,
                0x00281203: A.KEEP,
                0x00282110: A.KEEP,  # LossyImageCompression
                0x00081140: A.RECURSE,  # ReferencedImageSequence
                0x00082112: A.RECURSE,  # SourceImageSequence
                0x00081150: A.KEEP,  # ReferencedSOPClassUID
                0x00081155: A.UID,  # ReferencedSOPInstanceUID
                0x00081160: A.KEEP,  # ReferencedFrameNumber
                0x7FE00008: A.KEEP,  # FloatPixelData
                0x7FE00009: A.KEEP,  # DoubleFloatPixelData
                0x7FE00010: A.KEEP,  # PixelData
            }
        ),
        0x00120062: Rule(A.REPLACE, "YES"),
    },
    default_public=A.REMOVE,
    default_private=A.REMOVE,
    name="strict",
)

# (d) Private elements kept by (group, creator, element byte), masks over repeating groups, precedence checks.
PRIVATE_MASKS = Plan(
    tags={
        0x00100020: Rule(A.PSEUDO),  # exact rule beats the (0010,xxxx) mask below
        0x00091001: Rule(A.REMOVE),  # a private tag in `tags` is never consulted (private lookup only)
        0x00100010: Rule(A.DUMMY),
    },
    masks=(
        (0xFF00FFFF, 0x60003000, Rule(A.REMOVE)),  # Overlay Data
        (0xFF00FFFF, 0x60000022, Rule(A.DUMMY)),  # Overlay Description
        (0xFF00FFFF, 0x60004000, Rule(A.EMPTY)),  # Overlay Comments
        (0xFF00FFFF, 0x60000000, Rule(A.KEEP)),  # overlay group length: dropped whatever the rule
        (0xFF000000, 0x60000000, Rule(A.KEEP)),  # the rest of the overlay planes
        (0xFF000000, 0x50000000, Rule(A.REMOVE)),  # curves
        (0xFFFF0000, 0x00100000, Rule(A.EMPTY)),  # the rest of the patient group, before the VR defaults
        (0xFFFFFF00, 0x00181000, Rule(A.REMOVE)),  # (0018,10xx) device and software
    ),
    private={
        (0x0029, "SIEMENS CSA HEADER", 0x08): Rule(A.KEEP),
        (0x0029, "SIEMENS CSA HEADER", 0x09): Rule(A.EMPTY),
        (0x0029, "SIEMENS CSA HEADER", 0x10): Rule(A.KEEP),
        (0x0029, "SIEMENS CSA HEADER", 0x18): Rule(A.DUMMY),
        (0x0029, "SIEMENS CSA HEADER", 0x20): Rule(A.KEEP),
        (0x0019, "SIEMENS MR HEADER", 0x08): Rule(A.KEEP),
        (0x0019, "SIEMENS MR HEADER", 0x0A): Rule(A.KEEP),
        (0x0019, "SIEMENS MR HEADER", 0x0B): Rule(A.REMOVE),
        (0x0019, "SIEMENS MR HEADER", 0x0C): Rule(A.KEEP),
        (0x0019, "SIEMENS MR HEADER", 0x0D): Rule(A.KEEP),
        (0x0019, "SIEMENS MR HEADER", 0x0E): Rule(A.KEEP),
        (0x0019, "SIEMENS MR HEADER", 0x13): Rule(A.DUMMY),
        (0x0019, "SIEMENS MR HEADER", 0x15): Rule(A.DUMMY),
        (0x0051, "SIEMENS MR HEADER", 0x09): Rule(A.PSEUDO),
        (0x0009, "GEMS_IDEN_01", 0x01): Rule(A.KEEP),
        (0x0009, "GEMS_IDEN_01", 0x02): Rule(A.REPLACE, "GE-SITE"),
        (0x0009, "GEMS_IDEN_01", 0xE3): Rule(A.UID),
        (0x0019, "GEMS_ACQU_01", 0x11): Rule(A.REMOVE),  # REMOVE only: the creator is not kept
        (0x0043, "GEMS_PARM_01", 0x39): Rule(A.KEEP),
        (0x0043, "GEMS_PARM_01", 0x10): Rule(A.EMPTY),
        (0x0049, "GEMS_CT_CARDIAC_001", 0x01): Rule(A.RECURSE),
        (0x0049, "GEMS_CT_CARDIAC_001", 0x02): Rule(A.KEEP),
        (0x2001, "Philips Imaging DD 001", 0x5F): Rule(A.RECURSE),
        (0x2001, "Philips Imaging DD 001", 0x68): Rule(A.KEEP),
        (0x2001, "Philips Imaging DD 001", 0x10): Rule(A.KEEP),
        (0x2001, "Philips Imaging DD 001", 0x11): Rule(A.RECURSE),  # not a sequence: removed
        (0x2005, "Philips MR Imaging DD 001", 0x80): Rule(A.RECURSE),
        (0x2005, "Philips MR Imaging DD 001", 0x0D): Rule(A.KEEP),
        (0x2005, "Philips MR Imaging DD 001", 0x0E): Rule(A.KEEP),
        (0x200D, "Philips US Imaging DD 109", 0x01): Rule(A.RECURSE),
        (0x200D, "Philips US Imaging DD 109", 0x0D): Rule(A.RECURSE),
        (0x200D, "Philips US Imaging DD 109", 0x02): Rule(A.EMPTY),
        (0x200D, "Philips US Imaging DD 109", 0x03): Rule(A.KEEP),
        (0x0013, "CTP", 0x10): Rule(A.KEEP),
        (0x0013, "CTP", 0x13): Rule(A.PSEUDO),
        (0x01F3, "ELSCINT1", 0x11): Rule(A.RECURSE),
        (0x01F3, "ELSCINT1", 0x12): Rule(A.KEEP),
        (0x01F3, "ELSCINT1", 0x15): Rule(A.DUMMY),
    },
    vr_defaults={"SQ": A.RECURSE, "UI": A.UID, "PN": A.DUMMY},
    default_public=A.KEEP,
    default_private=A.REMOVE,
    name="private_masks",
)

PLANS: dict[str, Plan] = {plan.name: plan for plan in (KEEP_ALL, BASIC, STRICT, PRIVATE_MASKS)}
