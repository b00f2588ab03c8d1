"""``veil synth``: deterministic synthetic DICOM archives with realistic identifying headers.

Every file is a pure function of ``(seed, patient, study, series, instance)`` and of ``instances_per_series``,
``modality``, ``rows`` and ``cols`` (never of how many patients, studies or series the archive has): no clock,
no ``os.urandom``, no ``random`` module, no hash randomisation and integer-only pixel arithmetic, so the same
arguments give byte-identical archives on every run and machine. Values are drawn from BLAKE2b digests of named
keys, so the draws do not depend on the order they are made in.

Where things live: ``archive`` (write_archive, iter_archive, instance_bytes, the folder layout), ``template``
(one series encoded once, instances patched into fixed-width slots), ``header`` (the image IOD's modules and
the references between instances), ``modalities``, ``private_blocks``, ``identities`` (patients and studies),
``vocabulary``, ``pixels``, ``encoding`` (the element encoder and the transfer-syntax mix, see
:func:`series_transfer_syntax`) and ``draws``.
"""

from __future__ import annotations

from veil.synth.archive import SynthSummary, instance_bytes, iter_archive, write_archive
from veil.synth.encoding import (
    DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    EXPLICIT_VR_BIG_ENDIAN,
    EXPLICIT_VR_LITTLE_ENDIAN,
    IMPLICIT_VR_LITTLE_ENDIAN,
    series_transfer_syntax,
)
from veil.synth.modalities import MODALITIES
from veil.synth.private_blocks import PRIVATE_CREATORS

__all__ = [
    "DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN",
    "EXPLICIT_VR_BIG_ENDIAN",
    "EXPLICIT_VR_LITTLE_ENDIAN",
    "IMPLICIT_VR_LITTLE_ENDIAN",
    "MODALITIES",
    "PRIVATE_CREATORS",
    "SynthSummary",
    "instance_bytes",
    "iter_archive",
    "series_transfer_syntax",
    "write_archive",
]
