"""Shared fixtures: the public corpus (``../shared/corpus/public``), pydicom's own test files, keyed test
functions and Plans (from ``support/plans.py``), the native core; and the markers given by fixtures.

Tests taking a ``dicom_file`` argument are parametrized over every corpus file and every pydicom test file.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

# The test helpers (tests/support/: plans, the pydicom reference, corpus lists, ...) import as top-level modules.
SUPPORT = Path(__file__).parent / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

from corpus import CORPUS_ROOT, corpus_file_list, file_id, pydicom_file_list  # noqa: E402
from plans import PLANS, SHIFT_DAYS, keyed_id, keyed_uid  # noqa: E402

from veil.core.plan import Plan  # noqa: E402

NIGHTLY = os.environ.get("VEIL_NIGHTLY") == "1"

# veil's per-user cache (compiled recipes, the core's digest): a fresh folder for the session, inherited by every
# veil process a test starts, never the user's own ~/.cache/veil.
_CACHE = tempfile.mkdtemp(prefix="veil-test-cache-")
os.environ["VEIL_CACHE_DIR"] = _CACHE
os.environ.pop("VEIL_NO_CACHE", None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_CACHE, ignore_errors=True)

# Markers given by the fixtures a test uses (others are set in the test modules): `make test-fast` leaves out
# slow, cluster, ocr, corpus and kill tests.
_FIXTURE_MARKERS = {
    "corpus_root": "corpus",
    "corpus_files": "corpus",
    "research_pixels": "corpus",
    "ray_session": "cluster",
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "dicom_file" in metafunc.fixturenames:
        corpus = corpus_file_list()
        params = [pytest.param(p, marks=pytest.mark.corpus, id=file_id(p)) for p in corpus]
        params += [pytest.param(p, id=file_id(p)) for p in pydicom_file_list()]
        metafunc.parametrize("dicom_file", params)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="nightly-size test: set VEIL_NIGHTLY=1")
    for item in items:
        for fixture in _FIXTURE_MARKERS.keys() & set(getattr(item, "fixturenames", ())):
            item.add_marker(_FIXTURE_MARKERS[fixture])
        if "slow" in item.keywords and not NIGHTLY:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def corpus_root() -> Path:
    if not CORPUS_ROOT.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS_ROOT}")
    return CORPUS_ROOT


@pytest.fixture(scope="session")
def corpus_files(corpus_root: Path) -> list[Path]:
    return corpus_file_list()


@pytest.fixture(scope="session")
def pydicom_files() -> list[Path]:
    return pydicom_file_list()


@pytest.fixture(scope="session")
def core():
    """The native rewriter module (built by ``make setup``: a missing core is an error, never a skip)."""
    from veil.core import _core

    return _core


@pytest.fixture(scope="session")
def uid_fn() -> Callable[[bytes], bytes]:
    return keyed_uid


@pytest.fixture(scope="session")
def id_fn() -> Callable[[bytes], bytes]:
    return keyed_id


@pytest.fixture(scope="session")
def shift_days() -> int:
    return SHIFT_DAYS


@pytest.fixture(scope="session")
def plans() -> dict[str, Plan]:
    return PLANS


@pytest.fixture(scope="session")
def research_pixels(corpus_root: Path):  # type: ignore[no-untyped-def]
    """What ``research`` does to the pixels of each corpus image it does not simply keep (OCR runs once)."""
    from corpus_pixels import research_pixel_cases

    return research_pixel_cases()
