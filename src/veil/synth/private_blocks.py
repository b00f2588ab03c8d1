"""Vendor-like private blocks (GEMS-, CSA- and MEDCOM-shaped) that repeat identifying values (PS3.5 7.8.1)."""

from __future__ import annotations

import struct
from datetime import date

from veil.synth.encoding import _TEXT_ENCODING, _da, _decimal, _Element, _Seq
from veil.synth.identities import _Patient, _Study

__all__ = ["PRIVATE_CREATORS"]

#: The private creators written, as (group, creator); each block carries identifying or vendor-like data.
PRIVATE_CREATORS: tuple[tuple[int, str], ...] = (
    (0x0009, "VEILSYNTH_GEMS_LIKE"),
    (0x0019, "VEILSYNTH_ACQ_PARAMS"),
    (0x0029, "VEILSYNTH_CSA_LIKE"),
    (0x0029, "VEILSYNTH_MEDCOM_LIKE"),
)


def _csa_header(entries: list[tuple[str, str, list[str]]]) -> bytes:
    """A Siemens CSA2-shaped binary blob ("SV10"): named entries with VR and string items, little endian."""
    out = bytearray(b"SV10\x04\x03\x02\x01")
    out += struct.pack("<II", len(entries), 77)
    for name, vr, items in entries:
        out += struct.pack("<64si4siii", name.encode(), len(items), vr.encode(), 0, len(items), 77)
        for item in items:
            data = item.encode(_TEXT_ENCODING) + b"\x00"
            out += struct.pack("<iiii", len(data), len(data), 77, len(data))
            out += data + b"\x00" * (-len(data) % 4)
    return bytes(out)


def _private_elements(patient: _Patient, study: _Study, station: str, series_seconds: int) -> list[_Element]:
    """Three vendor-like private blocks that repeat identifying values (PS3.5 7.8.1 private creators)."""
    draw = study.draw
    name = patient.name
    gems = 0x00090000
    gems_item: list[_Element] = [
        (gems | 0x0010, "LO", "VEILSYNTH_GEMS_LIKE"),
        (gems | 0x1001, "LO", f"{patient.family}^{patient.given}"),
        (gems | 0x1002, "SH", study.accession),
    ]
    acquisition = 0x00190000
    csa = 0x00290000
    epoch_days = (study.date - date(1970, 1, 1)).days
    csa_image = _csa_header(
        [
            ("ImageNumber", "IS", ["1"]),
            ("SliceMeasurementDuration", "DS", ["1000.0"]),
            ("UsedPatientWeight", "DS", [str(patient.weight_kg)]),
        ]
    )
    csa_series = _csa_header(
        [
            ("PatientName", "PN", [name]),
            ("PatientID", "LO", [patient.patient_id]),
            ("PatientBirthDate", "DA", [_da(patient.birth_date)]),
            ("ProtocolName", "LO", [f"{study.exam[1]} {patient.family}"]),
            ("OperatorComment", "LT", [f"scanned {patient.given} {patient.family} at {station}"]),
        ]
    )
    return [
        (gems | 0x0010, "LO", "VEILSYNTH_GEMS_LIKE"),
        (gems | 0x1001, "LO", name),
        (gems | 0x1002, "SH", patient.patient_id),
        (gems | 0x1004, "SH", station),
        (gems | 0x1027, "SL", epoch_days * 86400 + series_seconds),
        (gems | 0x1030, "DA", _da(patient.birth_date)),
        (gems | 0x1040, "SQ", _Seq((gems_item,), undefined_length=True)),
        (gems | 0x10E3, "UI", study.uid),
        (acquisition | 0x0010, "LO", "VEILSYNTH_ACQ_PARAMS"),
        (acquisition | 0x1002, "SL", draw.integer("cells", 700, 900)),
        (acquisition | 0x1003, "DS", _decimal(draw.integer("cell_spacing", 1000, 1400))),
        (acquisition | 0x1018, "LO", f"SCAN FROM {station}"),
        (acquisition | 0x1023, "DS", _decimal(draw.integer("table_speed", 10_000, 80_000))),
        (acquisition | 0x1026, "SS", draw.integer("gantry_pos", -300, 300)),
        (acquisition | 0x102A, "FD", draw.integer("xray_on", 0, 4000) / 8.0),
        (acquisition | 0x1047, "US", (draw.integer("views", 400, 1200), 1)),
        (csa | 0x0010, "LO", "VEILSYNTH_CSA_LIKE"),
        (csa | 0x0011, "LO", "VEILSYNTH_MEDCOM_LIKE"),
        (csa | 0x1008, "CS", "IMAGE NUM 4"),
        (csa | 0x1009, "LO", _da(study.date)),
        (csa | 0x1010, "OB", csa_image),
        (csa | 0x1018, "CS", "SERIES NUM 4"),
        (csa | 0x1020, "OB", csa_series),
        (csa | 0x1131, "LO", "4.0.163040021"),
        (csa | 0x1134, "CS", "DB TO DICOM"),
        (csa | 0x1160, "LO", f"com {patient.family}"),
    ]
