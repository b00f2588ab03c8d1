"""The core's batch (``Rewriter.rewrite_files``) reads and writes by name in each file's folder, held open while
the batch is in it, and reads a file whose listed size it is given without an ``fstat``: whatever the listing
said, and whatever happens to a folder during the batch, each output is what ``rewrite_file`` writes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from veil.core._core import Rewriter
from veil.errors import MalformedDicom
from veil.keys import Key, KeyedFunctions
from veil.recipes import compile_recipe, load_recipe
from veil.synth import write_archive

KEY = Key(bytes(range(32)))


@pytest.fixture(scope="module")
def plan():  # type: ignore[no-untyped-def]
    return compile_recipe(load_recipe("ps3.15-basic")).plan


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> list[Path]:
    """72 synthetic files (about 12 KB each) in 6 series folders."""
    src = tmp_path_factory.mktemp("batch-io") / "in"
    write_archive(src, patients=3, studies_per_patient=1, series_per_study=2, instances_per_series=12, seed=5)
    return sorted(src.rglob("*.dcm"))


def rewriter(plan, uid=None) -> Rewriter:  # type: ignore[no-untyped-def]
    functions = KeyedFunctions(KEY)
    return Rewriter(plan, uid or functions.uid, functions.pseudonym, functions.date_shift)


def reference(plan, path: Path, out: Path, limit: int) -> bytes:  # type: ignore[no-untyped-def]
    rewriter(plan).rewrite_file(str(path), str(out), limit)
    return out.read_bytes()


def test_a_listed_size_that_is_wrong_still_gives_the_file_as_it_is(plan, inputs, tmp_path) -> None:
    """The listing's size is a hint: a file that grew since (to under the limit or over it) is sized and read
    again, one that shrank is parsed as it is, one now empty or now a folder is refused, as unlisted."""
    files = [inputs[0], inputs[1], inputs[2], inputs[3], inputs[4]]
    real = [p.stat().st_size for p in files]
    listed = [real[0], real[1] - 100, 1000, real[3] + 500, real[4]]
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    folder = tmp_path / "now-a-folder.dcm"
    folder.mkdir()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(inputs[5].read_bytes()[:3000])  # listed whole, read cut: parsed as it is, and refused
    srcs = [*files, empty, folder, cut]
    sizes = [*listed, 700, 4096, inputs[5].stat().st_size]
    limit = 20000
    outs = [tmp_path / "out" / f"{i}.dcm" for i in range(len(srcs))]
    columns = rewriter(plan).rewrite_files([str(p) for p in srcs], [str(p) for p in outs], limit, False, sizes)
    in_bytes, out_bytes, failures = columns[0], columns[1], dict(columns[10])
    for i in range(len(files)):
        assert outs[i].read_bytes() == reference(plan, files[i], tmp_path / "ref" / f"{i}.dcm", limit)
        assert (in_bytes[i], out_bytes[i]) == (real[i], outs[i].stat().st_size)
    assert isinstance(failures[5], MalformedDicom) and failures[5].reason == "empty file"
    assert isinstance(failures[6], OSError)
    assert isinstance(failures[7], MalformedDicom)
    assert sorted(failures) == [5, 6, 7]
    assert not any(outs[i].exists() for i in (5, 6, 7))


def test_a_file_grown_past_the_limit_since_it_was_listed_is_done_whole(plan, inputs, tmp_path) -> None:
    limit = 8000  # the files are about 12 KB: listed at 1,000 bytes, read as large files
    out = tmp_path / "out" / "0.dcm"
    columns = rewriter(plan).rewrite_files([str(inputs[0])], [str(out)], limit, True, [1000])
    assert not columns[10]
    assert out.read_bytes() == reference(plan, inputs[0], tmp_path / "ref.dcm", limit)
    assert columns[0] == [inputs[0].stat().st_size]


@pytest.mark.parametrize("direct", [False, True])
def test_folders_change_from_file_to_file_and_one_removed_mid_batch_is_made_again(plan, inputs, tmp_path,
                                                                                  direct) -> None:
    """Inputs taken from their folders in turn (each file in another folder than the last), outputs written
    to three folders; after the first phase's outputs are written, a UID lookup of the next phase removes the
    folder they are in (the batch still holds it open): its later outputs are written in a folder made again."""
    by_folder: dict[Path, list[Path]] = {}
    for path in inputs:
        by_folder.setdefault(path.parent, []).append(path)
    columns_of = list(by_folder.values())
    srcs = [column[i] for i in range(12) for column in columns_of]  # a, b, c, ..., a, b, c, ...
    out = tmp_path / "out"
    dsts = [out / ("first" if i < 68 else "second" if i % 2 else "first/deeper") / f"{i}.dcm"
            for i in range(len(srcs))]
    functions = KeyedFunctions(KEY)
    removed: list[int] = []

    def uid(value: bytes) -> bytes:
        if not removed and (out / "first" / "63.dcm").exists():
            shutil.rmtree(out / "first")
            removed.append(len(list(out.rglob("*.dcm"))))
        return functions.uid(value)

    columns = rewriter(plan, uid).rewrite_files([str(p) for p in srcs], [str(p) for p in dsts], 20000, direct,
                                                [p.stat().st_size for p in srcs])
    assert not columns[10]
    assert removed == [0], "the folder was removed, with the first phase's outputs in it, during the batch"
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.dcm"))
    expected = sorted(p.relative_to(out).as_posix() for p in dsts[64:])
    assert written == expected
    for i in range(64, len(srcs)):
        assert dsts[i].read_bytes() == reference(plan, srcs[i], tmp_path / "ref" / f"{i}.dcm", 20000)
    assert not list(out.rglob("*.veil-tmp"))
    matrix = np.frombuffer(columns[7], dtype=np.int32).reshape(len(srcs), -1)
    assert (matrix.sum(axis=1) > 0).all()


def test_sizes_must_match_the_inputs(plan, inputs, tmp_path) -> None:
    with pytest.raises(ValueError, match="sizes"):
        rewriter(plan).rewrite_files([str(inputs[0])], [str(tmp_path / "0.dcm")], 20000, False, [1, 2])
    assert not (tmp_path / "0.dcm").exists()
