"""The native batch path of a shard (one call into the core for all its files, the audit kept as columns) gives
what the per-file loop gives: the same outputs, audit rows, quarantine and resume."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from trees import tree

from veil import audit, engine
from veil.audit import AuditColumns, RowContext
from veil.core._core import Rewriter
from veil.engine import sharding
from veil.keys import Key, KeyedFunctions
from veil.recipes import compile_recipe, load_recipe
from veil.synth import write_archive

KEY = Key(bytes(range(32)))
BASIC = "ps3.15-basic"
# Columns that differ between two runs whatever they do: the run, and when and how long each file took.
RUN_COLUMNS = {"run_id", "time", "microseconds"}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """30 synthetic CT files, and inputs the core refuses: not DICOM, empty, truncated, a directory named
    like a file's folder, and a symbolic link out of SRC (refused by the listing)."""
    root = tmp_path_factory.mktemp("batch")
    src = root / "in"
    write_archive(src, patients=3, studies_per_patient=1, series_per_study=2, instances_per_series=5, seed=21)
    one = sorted(src.rglob("*.dcm"))[0]
    (src / "bad").mkdir()
    (src / "bad" / "text.dcm").write_bytes(b"not a DICOM file at all " * 20)
    (src / "bad" / "empty.dcm").write_bytes(b"")
    (src / "bad" / "cut.dcm").write_bytes(one.read_bytes()[:700])
    (root / "outside.dcm").write_bytes(one.read_bytes())
    (src / "bad" / "link.dcm").symlink_to(root / "outside.dcm")
    return src


@pytest.fixture(scope="module")
def basic():
    return compile_recipe(load_recipe(BASIC))




def run(src: Path, dst: Path, compiled, **kw) -> engine.RunSummary:  # type: ignore[no-untyped-def]
    return engine.run(engine.RunOptions(src=str(src), dst=str(dst), **kw), compiled, KEY)


def audit_rows(dst: Path) -> list[dict[str, object]]:
    table = audit.read_audit(dst)
    rows = table.drop_columns(sorted(RUN_COLUMNS)).to_pylist()
    return sorted(rows, key=lambda row: str(row["input_digest"]))


def quarantine(dst: Path) -> dict[str, str]:
    folder = audit.quarantine_dir(dst)
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("atomic", ["shard", "file"])
@pytest.mark.parametrize("workers", [1, 2])
def test_the_batch_path_equals_the_per_file_loop(archive, basic, tmp_path, monkeypatch, atomic, workers) -> None:
    calls: list[int] = []
    real = sharding.Deidentifier.native_files

    def counted(self, srcs, dsts, sizes=None):  # type: ignore[no-untyped-def]
        calls.append(len(srcs))
        return real(self, srcs, dsts, sizes)

    monkeypatch.setattr(sharding.Deidentifier, "native_files", counted)
    batch = run(archive, tmp_path / "batch", basic, shard_files=8, atomic=atomic, workers=workers)
    if workers == 1:
        assert calls and sum(calls) == 30 + 3, "every file the listing accepted went through the batch call"
    monkeypatch.setattr(sharding, "NATIVE_BATCH", False)
    calls.clear()
    loop = run(archive, tmp_path / "loop", basic, shard_files=8, atomic=atomic, workers=workers)
    assert not calls
    assert (batch.files, batch.written, batch.quarantined) == (loop.files, loop.written, loop.quarantined) == (
        34, 30, 4)
    assert batch.input_bytes == loop.input_bytes and batch.output_bytes == loop.output_bytes
    assert batch.tally.reasons == loop.tally.reasons and batch.tally.actions == loop.tally.actions
    assert tree(tmp_path / "batch") == tree(tmp_path / "loop")
    assert len(tree(tmp_path / "batch")) == 30
    assert audit_rows(tmp_path / "batch") == audit_rows(tmp_path / "loop")
    assert quarantine(tmp_path / "batch") == quarantine(tmp_path / "loop")
    assert len(quarantine(tmp_path / "batch")) == 2 * 3, "a copy and its reason per refused file read"
    first = audit.read_audit(tmp_path / "batch")
    assert audit.read_audit(tmp_path / "loop").schema.equals(first.schema, check_metadata=True)
    for shard in audit.completed_shards(tmp_path / "batch"):
        assert (audit.read_actions(tmp_path / "batch", shard) == audit.read_actions(tmp_path / "loop", shard)).all()
    assert not list((tmp_path / "batch").rglob("*.veil-tmp"))


def test_the_core_batch_reports_each_file_as_rewrite_file_does(archive, basic, tmp_path) -> None:
    functions = KeyedFunctions(KEY)
    inputs = sorted(str(p) for p in archive.rglob("*.dcm") if not p.is_symlink())
    one = Rewriter(basic.plan, functions.uid, functions.pseudonym, functions.date_shift)
    many = Rewriter(basic.plan, functions.uid, functions.pseudonym, functions.date_shift)
    singles = []
    for i, path in enumerate(inputs):
        try:
            result, size, written = one.rewrite_file(path, str(tmp_path / "one" / f"{i}.dcm"), 4096)
            singles.append((size, written, result.sop_instance_uid, result.modality, result.counts_row))
        except Exception as exc:  # noqa: BLE001 -- the same exception type is expected from the batch
            singles.append(type(exc))
    # 4096 bytes: the synthetic files (about 12 KB) go through the large-file path inside the batch, the
    # damaged ones through the small-file phases.
    columns = many.rewrite_files(inputs, [str(tmp_path / "many" / f"{i}.dcm") for i in range(len(inputs))], 4096)
    in_bytes, out_bytes, _, sop_instance, _, _, modality, counts, micros, times, failures = columns
    matrix = np.frombuffer(counts, dtype=np.int32).reshape(len(inputs), -1)
    failed = dict(failures)
    assert [index for index, _ in failures] == sorted(failed)
    for i, single in enumerate(singles):
        if isinstance(single, type):
            assert type(failed[i]) is single
            assert not (tmp_path / "many" / f"{i}.dcm").exists()
            continue
        assert (in_bytes[i], out_bytes[i], sop_instance[i], modality[i], tuple(matrix[i])) == single
        assert micros[i] >= 0 and times[i] > 1_700_000_000 * 10**6
        assert (tmp_path / "many" / f"{i}.dcm").read_bytes() == (tmp_path / "one" / f"{i}.dcm").read_bytes()
    assert len(failed) == 3
    with pytest.raises(ValueError, match="outputs"):
        many.rewrite_files(inputs, [], 4096)


@pytest.mark.parametrize("atomic", ["shard", "file"])
def test_a_shard_cut_inside_its_batch_is_redone_on_resume(archive, basic, tmp_path, monkeypatch, atomic) -> None:
    """The run dies inside the core's batch of its third shard, after two outputs written: with
    ``--atomic shard`` under their final names (one then cut short, as a power loss leaves it). The shard has
    no audit part, so the resume redoes it whole: the archive of an uninterrupted run."""
    run(archive, tmp_path / "whole", basic, shard_files=4)
    real = sharding.Deidentifier.native_files
    calls = {"n": 0}

    def dies_in_the_third(self, srcs, dsts, sizes=None):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            real(self, srcs[:2], dsts[:2], sizes and sizes[:2])
            raise KeyboardInterrupt("killed inside the third shard")
        return real(self, srcs, dsts, sizes)

    monkeypatch.setattr(sharding.Deidentifier, "native_files", dies_in_the_third)
    with pytest.raises(KeyboardInterrupt):
        run(archive, tmp_path / "cut", basic, shard_files=4, atomic=atomic)
    monkeypatch.setattr(sharding.Deidentifier, "native_files", real)
    assert len(audit.completed_shards(tmp_path / "cut")) == 2
    done = [p for p in audit.read_audit(tmp_path / "cut").column("output_path").to_pylist() if p]
    left = sorted(set(tree(tmp_path / "cut")) - set(done))
    if atomic == "shard":
        assert len(left) == 2, "the cut shard's two outputs, under their final names"
        half = tmp_path / "cut" / left[0]
        half.write_bytes(half.read_bytes()[:100])
    else:
        assert len(left) == 2, "renamed whole; no temporary file is left"
    summary = run(archive, tmp_path / "cut", basic, resume=True)
    assert summary.shards_resumed == 2
    assert tree(tmp_path / "cut") == tree(tmp_path / "whole")
    for path in (tmp_path / "cut").rglob("*.dcm"):
        if ".veil" not in path.parts:
            pydicom.dcmread(path)
    assert len(audit.read_audit(tmp_path / "cut")) == 34


def test_a_full_disk_inside_the_batch_stops_the_run(archive, basic, tmp_path, monkeypatch) -> None:
    """ENOSPC from the core's batch is not a quarantine: the run stops with its fatal error."""
    real = sharding.Deidentifier.native_files

    def full(self, srcs, dsts, sizes=None):  # type: ignore[no-untyped-def]
        real(self, srcs[:1], dsts[:1], sizes and sizes[:1])
        raise OSError(28, os.strerror(28), dsts[1])

    monkeypatch.setattr(sharding.Deidentifier, "native_files", full)
    with pytest.raises(engine.FatalRunError, match="disk full"):
        run(archive, tmp_path / "out", basic, shard_files=8)
    assert not audit.completed_shards(tmp_path / "out")


def _columns(n: int = 2, **changes: object) -> AuditColumns:
    context = RowContext("run", 0, "key", "r", "1", "h", "v", "/dst/")
    fields: dict[str, object] = dict(
        input_digest=["ab" * 16] * n, input_bytes=[1] * n, output_bytes=[1] * n, output_path=["a.dcm"] * n,
        sop_class_uid=[""] * n, modality=[""] * n, study_instance_uid=[""] * n, series_instance_uid=[""] * n,
        sop_instance_uid=[""] * n, matrix=np.zeros((n, len(audit.ACTION_NAMES)), np.int32),
        pixel_redaction=[False] * n, status=["written"] * n, reason=[""] * n, microseconds=[0] * n, time=[0] * n)
    fields.update(changes)
    return AuditColumns(context, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(("changes", "message"), [
    ({"input_digest": ["ab" * 16, "/src/p/a.dcm"]}, "input_digest"),
    ({"input_digest": ["ab" * 16, "AB" * 16]}, "input_digest"),
    ({"output_path": ["a.dcm", "../escape.dcm"]}, "output_path"),
    ({"output_path": ["/abs.dcm", "a.dcm"]}, "output_path"),
    ({"status": ["written", "maybe"]}, "status"),
    ({"time": [0, -1]}, "time"),
    ({"reason": [""]}, "reason has 1 values"),
    ({"matrix": np.zeros((2, 3), np.int32)}, "counts matrix"),
])
def test_audit_columns_are_validated_as_rows_are(tmp_path, changes, message) -> None:
    columns = _columns(**changes)
    with pytest.raises(ValueError, match=message):
        audit.write_shard(tmp_path, 0, columns)
    assert not audit.completed_shards(tmp_path)


def test_audit_columns_write_the_table_rows_write(tmp_path) -> None:
    columns = _columns(3, output_path=["a.dcm", "", "b/c.dcm"], status=["written", "quarantined", "written"],
                       reason=["", "bad", ""], time=[5, 6, 7],
                       matrix=np.arange(3 * len(audit.ACTION_NAMES), dtype=np.int32).reshape(3, -1))
    rows = [audit.AuditRow("run", 0, columns.input_digest[i], 1, 1, columns.output_path[i], "", "", "", "", "", "key",
                           "r", "1", "h", "v", tuple(int(v) for v in columns.matrix[i]), False, columns.status[i],
                           columns.reason[i], 0, columns.time[i]) for i in range(3)]
    audit.write_shard(tmp_path / "rows", 0, rows)
    audit.write_shard(tmp_path / "columns", 0, columns)
    assert audit.read_audit(tmp_path / "rows").equals(audit.read_audit(tmp_path / "columns"))
    with pytest.raises(ValueError, match="shard 0"):
        audit.write_shard(tmp_path / "other", 1, columns)


@pytest.mark.kill
@pytest.mark.parametrize(("workers", "atomic"), [(1, "shard"), (2, "shard"), (2, "file")])
def test_sigkill_mid_batch_run_then_resume_is_byte_identical(tmp_path, workers, atomic) -> None:
    """``test_sigkill_mid_run_then_resume_is_byte_identical`` (test_engine.py) on the batch path: a recipe
    the core does alone, no re-identification table. The driver is SIGKILLed mid-run, then ``--resume``."""
    import subprocess
    import sys

    from killing import kill_mid_run

    from veil.cli.main import main

    src = tmp_path / "in"
    write_archive(src, patients=40, series_per_study=2, instances_per_series=25, seed=9)  # 2,000 files
    key = tmp_path / "key"
    main(["keygen", str(key)])
    base = [sys.executable, "-m", "veil.cli", "run", str(src)]
    opts = ["--key", str(key), "--recipe", BASIC, "--shard-files", "4", "--workers", str(workers)]
    done = subprocess.run(base + [str(tmp_path / "whole")] + opts, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    kill_mid_run(base + [str(tmp_path / "killed")] + opts + ["--atomic", atomic], tmp_path / "killed")
    finished = len(audit.completed_shards(tmp_path / "killed"))
    assert 10 <= finished < 500, "the kill must land mid-run"
    resumed = subprocess.run(base + [str(tmp_path / "killed")] + opts + ["--resume"], capture_output=True)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert tree(tmp_path / "killed") == tree(tmp_path / "whole")
    assert not list((tmp_path / "killed").rglob("*.veil-tmp"))
    table = audit.read_audit(tmp_path / "killed")
    assert table.num_rows == 2000 and len(set(table.column("input_digest").to_pylist())) == 2000


def test_a_run_reaches_its_first_file_without_numpy_pyarrow_zarr_or_ray(tmp_path) -> None:
    """Start-up: ``veil run`` imports none of the heavy modules before its first file (the audit writers import
    pyarrow and numpy when the first shard's part is written), and pyarrow.compute not at all. A recipe in the
    compiled-recipe cache (the session's, see conftest) is not read with the YAML reader either."""
    import subprocess
    import sys

    from veil.cli.main import main
    from veil.recipes.cache import compiled_recipe

    compiled_recipe(BASIC)  # into the cache the runs below find (VEIL_CACHE_DIR, set for the session)

    src = tmp_path / "in"
    write_archive(src, patients=1, series_per_study=1, instances_per_series=130, seed=3)  # 3 shards: the pool
    key = tmp_path / "key"
    main(["keygen", str(key)])
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys\n"
        "import veil.pipeline as pipeline\n"
        "real = pipeline.Deidentifier.native_files\n"
        "def first(self, *args):\n"
        "    heavy = sorted(m for m in ('numpy', 'pyarrow', 'zarr', 'ray', 'pydicom', 'yaml') if m in sys.modules)\n"
        "    print('HEAVY', heavy, file=sys.stderr)\n"
        "    pipeline.Deidentifier.native_files = real\n"
        "    return real(self, *args)\n"
        "pipeline.Deidentifier.native_files = first\n"
        "import atexit\n"
        "atexit.register(lambda: print('COMPUTE', 'pyarrow.compute' in sys.modules, file=sys.stderr))\n"
        "from veil.cli.main import main\n"
        "sys.exit(main(sys.argv[1:]))\n")
    for workers in ("1", "2"):
        done = subprocess.run([sys.executable, str(probe), "run", str(src), str(tmp_path / f"out{workers}"), "--key",
                               str(key), "--recipe", BASIC, "--workers", workers], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "HEAVY []" in done.stderr, done.stderr[-2000:]
        # Nor pyarrow.compute (46 ms) at all: the audit parts and the run's totals are made without it.
        assert "COMPUTE False" in done.stderr, done.stderr[-2000:]
        assert len(audit.read_audit(tmp_path / f"out{workers}")) == 130


def test_a_shard_of_plain_files_travels_as_columns() -> None:
    import pickle

    from veil.engine.listing import Entry, EntryBlock, pack

    plain = [Entry(f"/src/a/{i}.dcm", f"a/{i}.dcm", 100 + i) for i in range(5)]
    block = pack(plain)
    assert isinstance(block, EntryBlock) and block.prefix == "/src/"
    assert list(block) == plain and block == plain and len(block) == 5
    assert block[2] == plain[2] and block[1:3] == plain[1:3] and block[-1] == plain[-1]
    assert block.paths() == [e.path for e in plain]
    again = pickle.loads(pickle.dumps(block))
    assert again == block and list(again) == plain
    many = [Entry(f"/src/archive/p{i:04d}/s01/i{i:04d}.dcm", f"p{i:04d}/s01/i{i:04d}.dcm", 12_000) for i in range(1000)]
    assert len(pickle.dumps(pack(many))) < len(pickle.dumps(many)) / 2
    # A listing refusal, or paths that are not one prefix + their relative paths, keep the entries as they are.
    refused = [*plain, Entry("/src/b", "b", error="directory loop")]
    assert pack(refused) is refused
    listed = [Entry("/src/a/0.dcm", "a/0.dcm", 1), Entry("/elsewhere/a/1.dcm", "a/1.dcm", 1)]
    assert pack(listed) is listed
    assert pack([]) == []
    with pytest.raises(ValueError, match="sizes"):
        EntryBlock("/src/", ["a"], [])


def test_shards_of_a_walk_are_blocks_and_cut_as_before(archive) -> None:
    from veil.engine.listing import EntryBlock

    listed = list(engine.list_inputs(str(archive)))
    cut = list(engine.shards(iter(listed), 8, 1 << 40))
    assert [number for number, _ in cut] == list(range(len(cut)))
    assert [entry for _, block in cut for entry in block] == listed
    kinds = {type(block) for _, block in cut}
    assert EntryBlock in kinds and list in kinds, "plain shards as blocks, the one with a refusal as a list"
