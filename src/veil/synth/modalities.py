"""Per-modality SOP class, pixel format and acquisition attributes of the synthetic images (PS3.3 C.8)."""

from __future__ import annotations

from dataclasses import dataclass

from veil.synth.draws import _Draw
from veil.synth.encoding import _code, _decimal, _Element, _Seq

__all__ = ["MODALITIES"]

MODALITIES: tuple[str, ...] = ("CT", "MR", "US", "CR", "DX", "MG", "PT", "NM", "XA", "SC")


@dataclass(frozen=True)
class _ModalitySpec:
    """Per-modality SOP class and pixel format (PS3.3 C.7.6.3 Image Pixel Module)."""

    sop_class_uid: str
    samples_per_pixel: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str
    cross_sectional: bool  # slices with Image Position/Orientation (Patient) and Slice Location


_SPECS: dict[str, _ModalitySpec] = {
    "CT": _ModalitySpec("1.2.840.10008.5.1.4.1.1.2", 1, 12, 1, "MONOCHROME2", True),
    "MR": _ModalitySpec("1.2.840.10008.5.1.4.1.1.4", 1, 12, 0, "MONOCHROME2", True),
    "US": _ModalitySpec("1.2.840.10008.5.1.4.1.1.6.1", 3, 8, 0, "RGB", False),
    "CR": _ModalitySpec("1.2.840.10008.5.1.4.1.1.1", 1, 12, 0, "MONOCHROME1", False),
    "DX": _ModalitySpec("1.2.840.10008.5.1.4.1.1.1.1", 1, 12, 0, "MONOCHROME2", False),
    "MG": _ModalitySpec("1.2.840.10008.5.1.4.1.1.1.2", 1, 12, 0, "MONOCHROME2", False),
    "PT": _ModalitySpec("1.2.840.10008.5.1.4.1.1.128", 1, 16, 1, "MONOCHROME2", True),
    "NM": _ModalitySpec("1.2.840.10008.5.1.4.1.1.20", 1, 16, 0, "MONOCHROME2", False),
    "XA": _ModalitySpec("1.2.840.10008.5.1.4.1.1.12.1", 1, 12, 0, "MONOCHROME2", False),
    "SC": _ModalitySpec("1.2.840.10008.5.1.4.1.1.7", 3, 8, 0, "RGB", False),
}


def _acquisition_elements(modality: str, draw: _Draw, body_part: str, series: int) -> list[_Element]:
    """Acquisition parameters of the modality's image module (PS3.3 C.8)."""
    xray = [
        (0x00180060, "DS", str(draw.integer("kvp", 60, 140))),
        (0x00181150, "IS", str(draw.integer("exposure_time", 5, 1500))),
        (0x00181151, "IS", str(draw.integer("tube_current", 50, 600))),
        (0x00181152, "IS", str(draw.integer("exposure", 1, 400))),
    ]
    if modality == "CT":
        return xray + [
            (0x00180010, "LO", draw.choice("contrast", ("OMNIPAQUE 350", "ISOVUE 370", "NONE"))),
            (0x00180022, "CS", "HELICAL MODE"),
            (0x00180090, "DS", "500"),
            (0x00181100, "DS", str(draw.integer("recon_diameter", 250, 500))),
            (0x00181110, "DS", "946.746"),
            (0x00181111, "DS", "538.52"),
            (0x00181120, "DS", "0"),
            (0x00181130, "DS", _decimal(draw.integer("table_height", 120_000, 200_000))),
            (0x00181140, "CS", "CW"),
            (0x00181160, "SH", draw.choice("filter", ("BODY FILTER", "HEAD FILTER", "FLAT"))),
            (0x00181170, "IS", str(draw.integer("generator_power", 10, 120))),
            (0x00181190, "DS", "0.7\\1.2"),
            (0x00181210, "SH", draw.choice("kernel", ("STANDARD", "LUNG", "BONE", "B30f", "FC08"))),
            (0x00185100, "CS", "FFS" if body_part != "HEAD" else "HFS"),
            (0x00189305, "FD", 0.5),
            (0x00189306, "FD", 0.625),
            (0x00189307, "FD", 40.0),
            (0x00189309, "FD", draw.integer("table_speed_fd", 200, 1600) / 8.0),
            (0x00189310, "FD", 39.375),
            (0x00189311, "FD", 0.984375),
            (0x00189345, "FD", draw.integer("ctdivol", 8, 200) / 8.0),
            (0x00189346, "SQ", _Seq((_code("113691", "DCM", "IEC Body Dosimetry Phantom"),))),
        ]
    if modality == "MR":
        return [
            (0x00180020, "CS", "SE"),
            (0x00180021, "CS", "SK\\SP"),
            (0x00180022, "CS", "PFP\\SAT1"),
            (0x00180023, "CS", "2D"),
            (0x00180080, "DS", str(draw.integer("tr", 400, 9000))),
            (0x00180081, "DS", str(draw.integer("te", 8, 120))),
            (0x00180083, "DS", "1"),
            (0x00180084, "DS", "127.7413"),
            (0x00180085, "SH", "1H"),
            (0x00180086, "IS", "1"),
            (0x00180087, "DS", draw.choice("field", ("1.5", "3"))),
            (0x00180091, "IS", str(draw.integer("etl", 1, 24))),
            (0x00180095, "DS", "195"),
            (0x00181250, "SH", "Body"),
            (0x00181310, "US", (0, 320, 224, 0)),
            (0x00181312, "CS", "ROW"),
            (0x00181314, "DS", str(draw.integer("flip", 10, 160))),
            (0x00181316, "DS", "0.8"),
            (0x00185100, "CS", "HFS"),
        ]
    if modality == "US":
        return [
            (0x00185010, "LO", draw.choice("transducer", ("C5-1", "L12-5", "C1-6-D"))),
            (0x00186031, "CS", "CURVED LINEAR"),
            (0x00181088, "IS", "60"),
        ]
    if modality in ("CR", "DX", "MG", "XA"):
        view = draw.choice("view", ("PA", "AP", "LL", "CC", "MLO"))
        extra: list[_Element] = [
            (0x00181110, "DS", str(draw.integer("sid", 650, 1800))),
            (0x00181164, "DS", "0.139\\0.139"),
            (0x00185101, "CS", view),
            (0x00200020, "CS", "A\\F"),
        ]
        if modality in ("DX", "MG"):
            extra.append((0x00080068, "CS", "FOR PRESENTATION"))
        if modality == "MG":
            extra.append((0x00200062, "CS", "L" if series % 2 else "R"))
        if modality == "XA":
            extra += [(0x00181510, "DS", "-30"), (0x00181511, "DS", "20")]
        return xray + extra
    if modality == "PT":
        radionuclide = _Seq((_code("C-111A1", "SRT", "^18^Fluorine"),))
        pharmaceutical: list[_Element] = [
            (0x00180031, "LO", "FDG -- fluorodeoxyglucose"),
            (0x00181072, "TM", "091500.000000"),
            (0x00181074, "DS", str(draw.integer("dose", 200_000_000, 450_000_000))),
            (0x00181075, "DS", "6586.2"),
            (0x00540300, "SQ", radionuclide),
        ]
        return [
            (0x00541001, "CS", "BQML"),
            (0x00541102, "CS", "START"),
            (0x00540081, "US", 1),
            (0x00280051, "CS", "DECY\\ATTN"),
            (0x00541000, "CS", "WHOLE BODY\\IMAGE"),
            (0x00540016, "SQ", _Seq((pharmaceutical,))),
            (0x00185100, "CS", "FFS"),
        ]
    if modality == "NM":
        return [
            (0x00280008, "IS", "1"),
            (0x00280009, "AT", (0x00540010,)),
            (0x00540010, "US", 1),
            (0x00540011, "US", 1),
            (0x00540020, "US", 1),
            (0x00540021, "US", 1),
            (0x00180031, "LO", "Tc-99m MDP"),
        ]
    return [(0x00080064, "CS", "WSD"), (0x00181016, "LO", "VEIL SCANNER")]  # SC: SC Equipment Module
