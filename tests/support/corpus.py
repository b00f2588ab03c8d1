"""Where the test DICOM files come from: the public corpus beside the repository (``../shared/corpus/public``,
optional: its tests skip cleanly when it is absent) and pydicom's own test files."""

from __future__ import annotations

from pathlib import Path

CORPUS_ROOT = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "public"


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
