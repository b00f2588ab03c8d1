"""Fixtures of the network tests: two real Orthancs shared by the session (a source PACS and a destination),
and a small study to send."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from orthanc import Orthanc, available

pytest.importorskip("pynetdicom")
if not available():
    pytest.skip("no Orthanc (make test installs Debian's orthanc)", allow_module_level=True)


@pytest.fixture(scope="session")
def orthancs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Orthanc, Orthanc]]:
    root = tmp_path_factory.mktemp("orthanc")
    source = Orthanc(root / "source", "SOURCEPACS")
    try:
        target = Orthanc(root / "target", "RESEARCH")
    except BaseException:
        source.stop()
        raise
    try:
        yield source, target
    finally:
        source.stop()
        target.stop()


@pytest.fixture
def clean_orthancs(orthancs: tuple[Orthanc, Orthanc]) -> tuple[Orthanc, Orthanc]:
    for o in orthancs:
        o.clear()
    return orthancs
