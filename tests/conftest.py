"""Shared fixtures: the public corpus (``../shared/corpus/public``), pydicom's own test files, keyed test
functions and Plans (from ``plans.py``), and the native core when it is built.

Tests taking a ``dicom_file`` argument are parametrized over every corpus file and every pydicom test file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# The test helpers (plans.py, reference.py) import as top-level modules whether or not tests/ is a package.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))

from plans import PLANS, SHIFT_DAYS, keyed_id, keyed_uid  # noqa: E402
from veil.core.plan import Plan  # noqa: E402

CORPUS_ROOT = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "public"
NIGHTLY = os.environ.get("VEIL_NIGHTLY") == "1"


def corpus_file_list() -> list[Path]:
    """Every file of the public corpus, sorted; empty when the corpus is not beside the repository."""
    if not CORPUS_ROOT.is_dir():
        return []
    return sorted(p for p in CORPUS_ROOT.rglob("*") if p.is_file())


def pydicom_file_list() -> list[Path]:
    """pydicom's bundled test files that are DICOM: a ``DICM`` prefix, or a ``.dcm`` name (bare data sets)."""
    from pydicom.data import get_testdata_files

    found = []
    for name in get_testdata_files():
        path = Path(name)
        if not path.is_file():
            continue
        with open(path, "rb") as fh:
            head = fh.read(132)
        if head[128:132] == b"DICM" or path.suffix.lower() == ".dcm":
            found.append(path)
    return sorted(found)


def file_id(path: Path) -> str:
    """A stable, readable test id: ``corpus/<relative path>`` or ``pydicom/<name>``."""
    try:
        return "corpus/" + path.relative_to(CORPUS_ROOT).as_posix()
    except ValueError:
        import pydicom.data

        base = Path(pydicom.data.__file__).parent / "test_files"
        try:
            return "pydicom/" + path.relative_to(base).as_posix()
        except ValueError:
            return path.name


def all_dicom_files() -> list[Path]:
    return corpus_file_list() + pydicom_file_list()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "dicom_file" in metafunc.fixturenames:
        files = all_dicom_files()
        metafunc.parametrize("dicom_file", files, ids=[file_id(p) for p in files])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if NIGHTLY:
        return
    skip = pytest.mark.skip(reason="nightly-size test: set VEIL_NIGHTLY=1")
    for item in items:
        if "slow" in item.keywords:
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
