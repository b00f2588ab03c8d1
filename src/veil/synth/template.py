"""A series encoded once into a Part 10 template whose instance-varying values are fixed-width slots.

Each instance only patches the slots (SOP Instance UID, references, Instance Number, positions, times, Pixel
Data). Fixed-width values keep every enclosing length right: UIDs are always ``2.25.`` plus 38 digits, and
the text slots are padded to the widest value of the series with trailing spaces (allowed for IS/DS/TM/DT,
PS3.5 6.2).
"""

from __future__ import annotations

import struct

from veil.synth.draws import _Draw, _uid
from veil.synth.encoding import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    _da,
    _decimal,
    _deflate_stored,
    _Encoder,
    _even,
    _fit,
    _patch,
    _Slot,
    _tm,
    series_transfer_syntax,
)
from veil.synth.header import _TIMEZONE_OFFSET, _series_elements
from veil.synth.identities import _patient, _study
from veil.synth.modalities import _SPECS
from veil.synth.pixels import _PixelSource

__all__: list[str] = []  # package-internal: archive renders instances through _SeriesTemplate

_IMPLEMENTATION_CLASS_UID = "2.25.148329153729840291748302617459302746581"
_IMPLEMENTATION_VERSION_NAME = "VEIL_SYNTH_1"


class _SeriesTemplate:
    """One series encoded once; :meth:`render` patches an instance's slots into a copy."""

    def __init__(
        self,
        *,
        seed: int,
        patient: int,
        study: int,
        series: int,
        instances_per_series: int,
        modality: str,
        rows: int,
        cols: int,
    ) -> None:
        self.seed, self.patient, self.study, self.series = seed, patient, study, series
        self.instances = instances_per_series
        self.transfer_syntax = series_transfer_syntax(patient, study, series)
        spec = _SPECS[modality]
        self._big_endian = self.transfer_syntax == EXPLICIT_VR_BIG_ENDIAN
        self._deflate = self.transfer_syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN

        patient_values = _patient(seed, patient)
        study_values = _study(seed, patient_values, patient, study, modality)
        draw = _Draw(seed, "series", patient, study, series)
        self._station = f"{study_values.institution[1]}{modality}{draw.integer('station', 1, 9)}"

        # Instance times spread over at most two hours after the series start, so they never pass midnight.
        series_seconds = min(
            study_values.seconds + series * 90 + draw.integer("time", 0, 60), 21 * 3600 + 1800
        )
        self._time_origin = series_seconds * 1_000_000
        self._time_step = min(500_000, 2 * 3600 * 1_000_000 // max(instances_per_series, 1))
        self._series_date = _da(study_values.date)

        # Slice positions in thousandths of a mm, moving away from zero so the widest value is the last one.
        self._slice_spacing = draw.integer("slice_spacing", 625, 5000)
        self._z_start = -draw.integer("z_start", 10_000, 400_000)
        fov = draw.integer("fov", 250_000, 450_000)
        self._position_prefix = (
            f"{_decimal(-fov // 2)}\\{_decimal(-fov // 2 + draw.integer('table', 0, 40_000))}\\"
        )
        last = instances_per_series - 1
        z_width = len(self._z(last))
        self._number_width = _even(len(str(instances_per_series)))

        slots: dict[str, _Slot] = {
            "sop_instance_uid": _Slot("sop_instance_uid", 44),
            "instance_number": _Slot("instance_number", self._number_width),
            "acquisition_time": _Slot("acquisition_time", 14),
            "content_time": _Slot("content_time", 14),
            "acquisition_datetime": _Slot("acquisition_datetime", 26),
        }
        if spec.cross_sectional:
            slots["image_position"] = _Slot("image_position", _even(len(self._position_prefix) + z_width))
            slots["slice_location"] = _Slot("slice_location", _even(z_width))

        pixel_bytes = rows * cols * spec.samples_per_pixel * (2 if spec.samples_per_pixel == 1 else 1)
        elements = _series_elements(
            seed=seed,
            patient_index=patient,
            study_index=study,
            series_index=series,
            instances=instances_per_series,
            modality=modality,
            spec=spec,
            draw=draw,
            patient=patient_values,
            study=study_values,
            station=self._station,
            rows=rows,
            cols=cols,
            fov=fov,
            slice_spacing=self._slice_spacing,
            pixel_bytes=pixel_bytes,
            series_seconds=series_seconds,
            slots=slots,
        )

        meta = _Encoder(implicit_vr=False, little_endian=True)
        meta.dataset(
            [
                (0x00020001, "OB", b"\x00\x01"),
                (0x00020002, "UI", spec.sop_class_uid),
                (0x00020003, "UI", slots["sop_instance_uid"]),
                (0x00020010, "UI", self.transfer_syntax),
                (0x00020012, "UI", _IMPLEMENTATION_CLASS_UID),
                (0x00020013, "SH", _IMPLEMENTATION_VERSION_NAME),
                (0x00020016, "AE", self._station),
            ]
        )
        # PS3.10 7.1: File Meta Information Group Length counts the bytes after its own element.
        group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(meta.buffer))
        self._prefix = bytes(128) + b"DICM" + group_length + bytes(meta.buffer)
        shift = 128 + 4 + len(group_length)
        self._prefix_slots = tuple((name, offset + shift, width) for name, offset, width in meta.slots)

        body = _Encoder(
            implicit_vr=self.transfer_syntax == IMPLICIT_VR_LITTLE_ENDIAN, little_endian=not self._big_endian
        )
        body.dataset(elements)
        self._body = bytes(body.buffer)
        self._body_slots = tuple(body.slots)

        self._pixels = _PixelSource(
            seed, patient, study, series, spec, rows, cols, instances_per_series, big_endian=self._big_endian
        )

    def _z(self, instance: int) -> str:
        return _decimal(self._z_start - instance * self._slice_spacing)

    def render(self, instance: int) -> bytes:
        """The Part 10 bytes of one instance (0-based) of this series."""
        seed, p, st, se = self.seed, self.patient, self.study, self.series
        values: dict[str, bytes] = {
            "sop_instance_uid": _fit(_uid(seed, "instance", p, st, se, instance), 44, "UI"),
            "referenced_sop_instance_uid": _fit(
                _uid(seed, "instance", p, st, se, (instance - 1) % self.instances), 44, "UI"
            ),
            "instance_number": _fit(str(instance + 1), self._number_width),
        }
        if se > 0:
            values["source_sop_instance_uid"] = _fit(_uid(seed, "instance", p, st, 0, instance), 44, "UI")
        acquired = self._time_origin + instance * self._time_step
        acquisition_time = _tm(acquired)
        values["acquisition_time"] = _fit(acquisition_time, 14)
        values["content_time"] = _fit(_tm(acquired + 2_000_000), 14)
        values["acquisition_datetime"] = _fit(f"{self._series_date}{acquisition_time}{_TIMEZONE_OFFSET}", 26)
        z = self._z(instance)
        values["image_position"] = self._position_prefix.encode() + z.encode()
        values["slice_location"] = z.encode()
        values["pixel_data"] = self._pixels.instance(instance)

        prefix = bytearray(self._prefix)
        _patch(prefix, self._prefix_slots, values)
        body = bytearray(self._body)
        _patch(body, self._body_slots, values)
        if self._deflate:
            return bytes(prefix) + _deflate_stored(body)
        prefix += body
        return bytes(prefix)
