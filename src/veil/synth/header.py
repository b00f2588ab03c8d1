"""The header of a synthetic series: every module of the image IOD, with slots where instances differ.

References: each instance's Referenced Image Sequence names the previous instance of its series (the first names
the last; a one-instance series names itself); series after the first of a study are derived images whose
Source Image Sequence names the same-numbered instance of the study's first series; the Referenced Study
Sequence names the study itself.
"""

from __future__ import annotations

from datetime import timedelta

from veil.synth.draws import _Draw, _uid
from veil.synth.encoding import _age, _code, _da, _decimal, _Element, _even, _Seq, _Slot, _tm
from veil.synth.identities import _Patient, _person, _Study
from veil.synth.modalities import _acquisition_elements, _ModalitySpec
from veil.synth.private_blocks import _private_elements
from veil.synth.vocabulary import (
    _ALERTS,
    _DEPARTMENTS,
    _EQUIPMENT,
    _ETHNIC_GROUPS,
    _FEMALE_NAMES,
    _HISTORIES,
    _OCCUPATIONS,
    _RELIGIONS,
    _SERIES_DESCRIPTIONS,
)

__all__: list[str] = []  # package-internal: the series template encodes what _series_elements builds

_TIMEZONE_OFFSET = "-0500"
_STUDY_ROOT_REFERENCE_CLASS = "1.2.840.10008.3.1.2.3.1"  # Detached Study Management (retired), as in practice
_MPPS_CLASS = "1.2.840.10008.3.1.2.3.3"


def _series_elements(
    *,
    seed: int,
    patient_index: int,
    study_index: int,
    series_index: int,
    instances: int,
    modality: str,
    spec: _ModalitySpec,
    draw: _Draw,
    patient: _Patient,
    study: _Study,
    station: str,
    rows: int,
    cols: int,
    fov: int,
    slice_spacing: int,
    pixel_bytes: int,
    series_seconds: int,
    slots: dict[str, _Slot],
) -> list[_Element]:
    """The full header of the series, with slots where instances differ (PS3.3 A.3 CT Image IOD and kin)."""
    p, st, se = patient_index, study_index, series_index
    exam_code, exam_description, body_part = study.exam
    institution, institution_short, institution_address = study.institution
    manufacturer, model_family, software = draw.choice("equipment", _EQUIPMENT)
    operator = _person(draw, "operator")
    performing = _person(draw, "performing", "DR")
    dob = patient.birth_date
    dob_us = f"{dob.month:02d}/{dob.day:02d}/{dob.year:04d}"
    dob_iso = f"{dob.year:04d}-{dob.month:02d}-{dob.day:02d}"
    series_description = draw.choice("description", _SERIES_DESCRIPTIONS[modality])
    study_date = _da(study.date)
    study_time = _tm(study.seconds * 1_000_000)
    series_time = _tm(series_seconds * 1_000_000)
    derived = se > 0 and spec.cross_sectional
    image_type = "DERIVED\\SECONDARY\\REFORMATTED" if derived else "ORIGINAL\\PRIMARY\\AXIAL"
    history = draw.choice("history", _HISTORIES)
    mpps_uid = _uid(seed, "mpps", p, st)

    referenced_image = _Seq(
        (
            [
                (0x00081150, "UI", spec.sop_class_uid),
                (0x00081155, "UI", _Slot("referenced_sop_instance_uid", 44)),
            ],
        )
    )
    protocol_context: list[_Element] = [
        (0x0040A040, "CS", "TEXT"),
        (0x0040A043, "SQ", _Seq((_code("121106", "DCM", "Comment"),))),
        (
            0x0040A160,
            "UT",
            f"Patient {patient.family}^{patient.given} weighs {patient.weight_kg} kg",
        ),
    ]
    scheduled_protocol = _code(exam_code, "99VEILSYNTH", exam_description) + [
        (0x00400440, "SQ", _Seq((protocol_context,))),
    ]
    request_attributes: list[_Element] = [
        (0x00080050, "SH", study.accession),
        (0x00321060, "LO", exam_description),
        (0x00400007, "LO", f"{exam_description} {patient.family}"),
        (0x00400008, "SQ", _Seq((scheduled_protocol,))),
        (0x00400009, "SH", f"SPS{draw.integer('sps', 100_000, 999_999)}"),
        (0x00401001, "SH", f"RP{draw.integer('rp', 100_000, 999_999)}"),
        (0x00401002, "LO", f"r/o pathology {patient.given} {patient.family} DOB {_da(dob)}"[:64]),
    ]
    other_patient_ids = _Seq(
        (
            [(0x00100020, "LO", patient.other_id), (0x00100021, "LO", "RMC"), (0x00100022, "CS", "TEXT")],
            [
                (0x00100020, "LO", patient.national_id),
                (0x00100021, "LO", "SSA"),
                (0x00100022, "CS", "TEXT"),
            ],
        ),
        undefined_length=True,
    )
    sop_class = spec.sop_class_uid

    elements: list[_Element] = [
        # SOP Common (PS3.3 C.12.1)
        (0x00080005, "CS", "ISO_IR 100"),
        (0x00080008, "CS", image_type),
        (0x00080012, "DA", study_date),
        (0x00080013, "TM", series_time),
        (0x00080014, "UI", _uid(seed, "instance_creator", p, st)),
        (0x00080016, "UI", sop_class),
        (0x00080018, "UI", slots["sop_instance_uid"]),
        (0x00080201, "SH", _TIMEZONE_OFFSET),
        # General Study (C.7.2.1), Patient Study (C.7.2.2)
        (0x00080020, "DA", study_date),
        (0x00080030, "TM", study_time),
        (0x00080050, "SH", study.accession),
        (0x00080090, "PN", study.referring),
        (
            0x00080092,
            "ST",
            f"{draw.integer('ref_house', 1, 999)} CLINIC WAY, {patient.city}, {patient.state}",
        ),
        (0x00080094, "SH", f"+1 800 555 {draw.integer('ref_phone', 100, 199):04d}"),
        (0x00081030, "LO", f"{exam_description} - {patient.family}, {patient.given}"[:64]),
        (0x00081032, "SQ", _Seq((_code(exam_code, "99VEILSYNTH", exam_description),))),
        (0x00081048, "PN", study.referring),
        (0x00081060, "PN", study.reading),
        (0x00081080, "LO", history[:64]),
        (
            0x00081110,
            "SQ",
            _Seq(([(0x00081150, "UI", _STUDY_ROOT_REFERENCE_CLASS), (0x00081155, "UI", study.uid)],)),
        ),
        (0x00081111, "SQ", _Seq(([(0x00081150, "UI", _MPPS_CLASS), (0x00081155, "UI", mpps_uid)],))),
        (0x0020000D, "UI", study.uid),
        (0x00200010, "SH", study.study_id),
        (0x00321032, "PN", study.requesting),
        (0x00321033, "LO", study.institution[0][:64]),
        (0x00321060, "LO", exam_description),
        (0x00321064, "SQ", _Seq((_code(exam_code, "99VEILSYNTH", exam_description),))),
        (0x00380010, "LO", study.admission_id),
        (
            0x00380300,
            "LO",
            f"WARD {draw.integer('ward', 1, 9)}{draw.choice('wing', 'ABC')} BED {draw.integer('bed', 1, 30)}",
        ),
        (0x00102180, "SH", patient.draw.choice("occupation", _OCCUPATIONS)),
        (
            0x001021B0,
            "LT",
            (
                f"{patient.family}, {patient.given} {patient.middle}. DOB {dob_iso}. MRN {patient.patient_id}. "
                f"History of {history}. Prior imaging at {institution}."
            ),
        ),
        (0x00101010, "AS", _age(dob, study.date)),
        (0x00101020, "DS", _decimal(patient.height_mm)),
        (0x00101030, "DS", str(patient.weight_kg)),
        # Patient (C.7.1.1)
        (0x00100010, "PN", patient.name),
        (0x00100020, "LO", patient.patient_id),
        (0x00100021, "LO", institution_short),
        (0x00100030, "DA", _da(dob)),
        (0x00100040, "CS", patient.sex),
        (0x00101000, "LO", f"{patient.other_id}\\{patient.national_id}"),
        (0x00101001, "PN", f"{patient.family}^{patient.given[:3]}"),
        (0x00101002, "SQ", other_patient_ids),
        (0x00101005, "PN", f"{patient.mother_family}^{patient.given}" if patient.sex == "F" else ""),
        (0x00101040, "LO", patient.address),
        (0x00101060, "PN", f"{patient.mother_family}^{patient.draw.choice('mother', _FEMALE_NAMES)}"),
        (0x00101090, "LO", f"CHART {patient.patient_id}"),
        (0x00102000, "LO", patient.draw.choice("alert", _ALERTS)),
        (0x00102150, "LO", "USA"),
        (0x00102152, "LO", f"{patient.city}, {patient.state}"),
        (0x00102154, "SH", patient.telephone),
        (0x00102160, "SH", patient.draw.choice("ethnic", _ETHNIC_GROUPS)),
        (0x001021A0, "CS", patient.draw.choice("smoking", ("YES", "NO", "UNKNOWN"))),
        (0x001021F0, "LO", patient.draw.choice("religion", _RELIGIONS)),
        (0x00104000, "LT", f"Call {patient.telephone} before scheduling; lives at {patient.street}."),
        # General Series (C.7.3.1)
        (0x00080021, "DA", study_date),
        (0x00080031, "TM", series_time),
        (0x00080060, "CS", modality),
        (0x00081050, "PN", performing),
        (0x00081070, "PN", operator),
        (0x0008103E, "LO", f"{series_description} MRN {patient.patient_id}"),
        (0x00180015, "CS", body_part),
        (0x00181030, "LO", f"{exam_code} {patient.family}"),
        (0x0020000E, "UI", _uid(seed, "series", p, st, se)),
        (0x00200011, "IS", str(se + 1)),
        (0x00200060, "CS", ""),
        (0x00400244, "DA", study_date),
        (0x00400245, "TM", study_time),
        (0x00400253, "SH", f"PPS{draw.integer('pps', 100_000, 999_999)}"),
        (0x00400254, "LO", f"{exam_description} for {patient.family}"[:64]),
        (0x00400260, "SQ", _Seq((_code(exam_code, "99VEILSYNTH", exam_description),))),
        (
            0x00400275,
            "SQ",
            _Seq((request_attributes,), undefined_length=True, undefined_length_items=True),
        ),
        (0x00402016, "LO", f"PLC{draw.integer('placer', 100_000, 999_999)}"),
        (0x00402017, "LO", f"FIL{draw.integer('filler', 100_000, 999_999)}"),
        # General Equipment (C.7.5.1)
        (0x00080070, "LO", manufacturer),
        (0x00080080, "LO", institution),
        (0x00080081, "ST", institution_address),
        (0x00081010, "SH", station),
        (0x00081040, "LO", draw.choice("department", _DEPARTMENTS)),
        (0x00081090, "LO", f"{model_family} {modality} {draw.integer('model', 16, 640)}"),
        (0x00181000, "LO", f"{institution_short}{draw.integer('serial', 10_000, 99_999)}"),
        (
            0x00181020,
            "LO",
            f"{software}{draw.integer('sw_major', 1, 30)}.{draw.integer('sw_minor', 0, 9)}",
        ),
        (0x00181200, "DA", _da(study.date - timedelta(days=draw.integer("calibrated", 1, 60)))),
        (0x00181201, "TM", "063000.000000"),
        # Frame of Reference (C.7.4.1)
        (0x00200052, "UI", _uid(seed, "frame_of_reference", p, st)),
        (0x00201040, "LO", ""),
        # General Image (C.7.6.1), General Acquisition (C.7.10.1)
        (0x00080022, "DA", study_date),
        (0x00080023, "DA", study_date),
        (0x00080032, "TM", slots["acquisition_time"]),
        (0x00080033, "TM", slots["content_time"]),
        (0x0008002A, "DT", slots["acquisition_datetime"]),
        (0x00081140, "SQ", referenced_image),
        (0x00200012, "IS", "1"),
        (0x00200013, "IS", slots["instance_number"]),
        (0x00201002, "IS", str(instances)),
        (
            0x00204000,
            "LT",
            (
                f"Patient {patient.given} {patient.family} (MRN {patient.patient_id}, DOB {dob_us}) "
                f"tolerated the procedure well. Technologist {operator.split('^')[0]}."
            ),
        ),
        (0x00282110, "CS", "00"),
        (0x00280301, "CS", "NO"),
        # Image Pixel (C.7.6.3)
        (0x00280002, "US", spec.samples_per_pixel),
        (0x00280004, "CS", spec.photometric_interpretation),
        (0x00280010, "US", rows),
        (0x00280011, "US", cols),
        (0x00280100, "US", 16 if spec.samples_per_pixel == 1 else 8),
        (0x00280101, "US", spec.bits_stored),
        (0x00280102, "US", spec.bits_stored - 1),
        (0x00280103, "US", spec.pixel_representation),
        (
            0x7FE00010,
            "OW" if spec.samples_per_pixel == 1 else "OB",
            _Slot("pixel_data", _even(pixel_bytes)),
        ),
    ]
    if spec.samples_per_pixel == 3:
        elements.append((0x00280006, "US", 0))
    else:
        window = {"CT": ("40", "400"), "PT": ("5000", "10000"), "NM": ("30000", "60000")}
        center, width = window.get(modality, ("2048", "4096"))
        elements += [(0x00281050, "DS", center), (0x00281051, "DS", width), (0x00281055, "LO", "WINDOW1")]
    if spec.samples_per_pixel == 1 and modality not in ("MR", "MG", "XA", "DX", "CR"):
        elements += [
            (0x00281052, "DS", "0"),
            (0x00281053, "DS", "1" if modality != "PT" else "0.25"),
            (0x00281054, "LO", "HU" if modality == "CT" else "US"),
        ]
    if spec.cross_sectional:
        spacing = _decimal(fov // cols)
        thickness = _decimal(slice_spacing)
        elements += [
            (0x00180050, "DS", thickness),
            (0x00180088, "DS", thickness),
            (0x00200032, "DS", slots["image_position"]),
            (0x00200037, "DS", "1\\0\\0\\0\\1\\0"),
            (0x00201041, "DS", slots["slice_location"]),
            (0x00280030, "DS", f"{spacing}\\{spacing}"),
        ]
    if derived:
        source_item: list[_Element] = [
            (0x00081150, "UI", sop_class),
            (0x00081155, "UI", _Slot("source_sop_instance_uid", 44)),
            (
                0x0040A170,
                "SQ",
                _Seq((_code("121322", "DCM", "Source image for image processing operation"),)),
            ),
        ]
        elements += [
            (0x00082111, "ST", f"MPR from series 1 of {patient.family}^{patient.given}"),
            (0x00082112, "SQ", _Seq((source_item,), undefined_length=True, undefined_length_items=True)),
        ]
    elements += _acquisition_elements(modality, draw, body_part, se)
    elements += _private_elements(patient, study, station, series_seconds)
    return elements
