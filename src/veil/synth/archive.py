"""The archive walker: ``write_archive``, ``iter_archive`` and ``instance_bytes`` over the series templates.

Layout: ``OUT/p0001/s01/se01/i0001.dcm`` (1-based, zero-padded, widened for large counts; names carry no
identifying value).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath

from veil.synth.modalities import _SPECS, MODALITIES
from veil.synth.template import _SeriesTemplate

__all__ = ["SynthSummary", "instance_bytes", "iter_archive", "write_archive"]

_MAX_DIMENSION = 8192


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`write_archive` wrote: counts, total size and the files per transfer syntax."""

    out: Path
    files: int
    bytes: int
    patients: int
    studies: int
    series: int
    #: (transfer syntax UID, number of files written with it), sorted by UID.
    transfer_syntaxes: tuple[tuple[str, int], ...] = ()


def _check_arguments(modality: str, rows: int, cols: int, counts: dict[str, int]) -> None:
    if modality not in _SPECS:
        raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, not {modality!r}")
    for name, value in {"rows": rows, "cols": cols}.items():
        if not 1 <= value <= _MAX_DIMENSION:
            raise ValueError(f"{name} must be between 1 and {_MAX_DIMENSION}, not {value}")
    for name, value in counts.items():
        if value < 0:
            raise ValueError(f"{name} must not be negative, not {value}")


@lru_cache(maxsize=8)
def _cached_template(
    seed: int, patient: int, study: int, series: int, instances: int, modality: str, rows: int, cols: int
) -> _SeriesTemplate:
    return _SeriesTemplate(
        seed=seed,
        patient=patient,
        study=study,
        series=series,
        instances_per_series=instances,
        modality=modality,
        rows=rows,
        cols=cols,
    )


def instance_bytes(
    *,
    patient: int = 0,
    study: int = 0,
    series: int = 0,
    instance: int = 0,
    instances_per_series: int = 1,
    modality: str = "CT",
    rows: int = 64,
    cols: int = 64,
    seed: int = 0,
) -> bytes:
    """One file of the archive, in memory: the same bytes :func:`write_archive` writes for these 0-based indices.

    A few recent series templates are cached, so looping over the instances of a series is cheap.
    """
    _check_arguments(modality, rows, cols, {"patient": patient, "study": study, "series": series})
    if not 0 <= instance < instances_per_series:
        raise ValueError(f"instance must be in [0, {instances_per_series}), not {instance}")
    template = _cached_template(seed, patient, study, series, instances_per_series, modality, rows, cols)
    return template.render(instance)


def _series_templates(
    *,
    patients: int,
    studies_per_patient: int,
    series_per_study: int,
    instances_per_series: int,
    modality: str,
    rows: int,
    cols: int,
    seed: int,
) -> Iterator[tuple[PurePosixPath, _SeriesTemplate]]:
    """Each series' folder (relative to the archive root) and template, in archive order, one at a time."""
    _check_arguments(
        modality,
        rows,
        cols,
        {
            "patients": patients,
            "studies_per_patient": studies_per_patient,
            "series_per_study": series_per_study,
            "instances_per_series": instances_per_series,
        },
    )
    if instances_per_series == 0:
        return
    width_patient = max(4, len(str(patients)))
    width_study = max(2, len(str(studies_per_patient)))
    width_series = max(2, len(str(series_per_study)))
    for p in range(patients):
        for st in range(studies_per_patient):
            for se in range(series_per_study):
                folder = PurePosixPath(
                    f"p{p + 1:0{width_patient}d}",
                    f"s{st + 1:0{width_study}d}",
                    f"se{se + 1:0{width_series}d}",
                )
                template = _SeriesTemplate(
                    seed=seed,
                    patient=p,
                    study=st,
                    series=se,
                    instances_per_series=instances_per_series,
                    modality=modality,
                    rows=rows,
                    cols=cols,
                )
                yield folder, template


def _instance_name(instance: int, instances_per_series: int) -> str:
    return f"i{instance + 1:0{max(4, len(str(instances_per_series)))}d}.dcm"


def iter_archive(
    *,
    patients: int,
    studies_per_patient: int = 1,
    series_per_study: int = 1,
    instances_per_series: int = 1,
    modality: str = "CT",
    rows: int = 64,
    cols: int = 64,
    seed: int = 0,
) -> Iterator[tuple[PurePosixPath, bytes]]:
    """Yield ``(relative path, file bytes)`` for every file of the archive, streaming, without touching disk."""
    for folder, template in _series_templates(
        patients=patients,
        studies_per_patient=studies_per_patient,
        series_per_study=series_per_study,
        instances_per_series=instances_per_series,
        modality=modality,
        rows=rows,
        cols=cols,
        seed=seed,
    ):
        for i in range(instances_per_series):
            yield folder / _instance_name(i, instances_per_series), template.render(i)


def write_archive(
    out: Path,
    *,
    patients: int,
    studies_per_patient: int = 1,
    series_per_study: int = 1,
    instances_per_series: int = 1,
    modality: str = "CT",
    rows: int = 64,
    cols: int = 64,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> SynthSummary:
    """Write a synthetic archive under ``out`` (created as needed; existing files are overwritten).

    Streams: one series template and one file are held at a time, so memory does not grow with the archive.
    ``progress``, when given, is called after each file with the number of files written so far.
    """
    out = Path(out)
    files = total_bytes = 0
    per_transfer_syntax: dict[str, int] = {}
    for folder, template in _series_templates(
        patients=patients,
        studies_per_patient=studies_per_patient,
        series_per_study=series_per_study,
        instances_per_series=instances_per_series,
        modality=modality,
        rows=rows,
        cols=cols,
        seed=seed,
    ):
        directory = out.joinpath(folder)
        os.makedirs(directory, exist_ok=True)
        for i in range(instances_per_series):
            data = template.render(i)
            with open(directory / _instance_name(i, instances_per_series), "wb") as handle:
                handle.write(data)
            files += 1
            total_bytes += len(data)
            if progress is not None:
                progress(files)
        syntax = template.transfer_syntax
        per_transfer_syntax[syntax] = per_transfer_syntax.get(syntax, 0) + instances_per_series
    return SynthSummary(
        out=out,
        files=files,
        bytes=total_bytes,
        patients=patients,
        studies=patients * studies_per_patient,
        series=patients * studies_per_patient * series_per_study if instances_per_series else 0,
        transfer_syntaxes=tuple(sorted(per_transfer_syntax.items())),
    )
