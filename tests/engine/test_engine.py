"""`veil run`: listing, shards, audit, quarantine, resume after a kill, Ray and in-process alike, faults."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from killing import kill_mid_run
from trees import tree

from veil import audit, engine
from veil.cli.main import EXIT_FATAL, EXIT_OK, EXIT_QUARANTINED, main
from veil.engine import inline, local, sharding
from veil.keys import Key
from veil.recipes import compile_recipe, load_recipe
from veil.synth import write_archive

KEY = Key(bytes(range(32)))


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("archive") / "in"
    write_archive(src, patients=3, studies_per_patient=1, series_per_study=2, instances_per_series=5, seed=5)
    return src


@pytest.fixture(scope="module")
def compiled():
    return compile_recipe(load_recipe("research"))


def run(src: Path, dst: Path, compiled, **kw) -> engine.RunSummary:
    options = engine.RunOptions(src=str(src), dst=str(dst), **kw)
    return engine.run(options, compiled, KEY)


def test_in_process_run_mirrors_the_tree_and_audits_every_file(archive, compiled, tmp_path) -> None:
    summary = run(archive, tmp_path / "out", compiled, shard_files=7)
    assert summary.mode == "in-process"
    assert summary.files == summary.written == 30 and summary.quarantined == 0
    outputs = tree(tmp_path / "out")
    assert sorted(outputs) == sorted(str(p.relative_to(archive)) for p in archive.rglob("*.dcm"))
    table = audit.read_audit(tmp_path / "out")
    assert table.num_rows == 30 and len(audit.completed_shards(tmp_path / "out")) == 5
    assert set(table.column("status").to_pylist()) == {"written"}
    manifest = audit.read_manifest(tmp_path / "out")
    assert manifest["status"] == "complete" and manifest["key_id"] == KEY.key_id
    assert manifest["recipe"]["name"] == "research" and manifest["totals"]["written"] == 30


def test_audit_holds_no_original_identifier(archive, compiled, tmp_path) -> None:
    run(archive, tmp_path / "out", compiled)
    blob = b"".join(p.read_bytes() for p in (tmp_path / "out" / ".veil").rglob("*") if p.is_file())
    for path in archive.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        for value in (ds.PatientID, ds.SOPInstanceUID, ds.StudyInstanceUID, str(ds.PatientName).split("^")[0]):
            assert value.encode() not in blob, value
    assert str(archive).encode() not in blob  # the source path may name a patient


@pytest.mark.cluster
def test_outputs_are_identical_on_ray_and_in_process(archive, compiled, tmp_path, monkeypatch) -> None:
    ray = pytest.importorskip("ray")
    run(archive, tmp_path / "local", compiled, shard_files=4)
    try:
        summary = run(archive, tmp_path / "ray", compiled, shard_files=4, workers=2, force_ray=True)
    finally:
        ray.shutdown()
    assert summary.mode == "ray-local" and summary.written == 30
    assert tree(tmp_path / "ray") == tree(tmp_path / "local")
    assert audit.read_audit(tmp_path / "ray").num_rows == 30


def test_bad_files_are_quarantined_and_the_run_goes_on(archive, tmp_path, capsys) -> None:
    src = tmp_path / "in"
    src.mkdir()
    for i, path in enumerate(sorted(archive.rglob("*.dcm"))[:4]):
        (src / f"ok{i}.dcm").write_bytes(path.read_bytes())
    (src / "truncated.dcm").write_bytes((src / "ok0.dcm").read_bytes()[:700])
    (src / "notes.txt").write_text("not DICOM at all, a note left in the export\n" * 3)
    (src / "outside").symlink_to("/etc/hostname")
    key = tmp_path / "key"
    assert main(["keygen", str(key)]) == EXIT_OK
    code = main(["run", str(src), str(tmp_path / "out"), "--key", str(key), "--json"])
    assert code == EXIT_QUARANTINED
    result = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert result["all_runs"]["written"] == 4 and result["all_runs"]["quarantined"] == 3
    assert result["quarantine_reasons"] == engine.RunTotals.of_audit(tmp_path / "out").reasons  # counted = read
    assert not (tmp_path / "out" / "truncated.dcm").exists() and not (tmp_path / "out" / "notes.txt").exists()
    quarantine = tmp_path / "out" / ".veil" / "quarantine"
    reasons = [json.loads(p.read_text())["reason"] for p in quarantine.glob("*.json")]
    assert len(list(quarantine.glob("*.dcm"))) == 2 and len(reasons) == 2
    assert any("past the end" in r or "truncated" in r for r in reasons)
    assert main(["audit", str(tmp_path / "out")]) == EXIT_OK
    assert "symlink out of SRC" in capsys.readouterr().out


def test_walk_lists_every_kind_of_entry_in_order(tmp_path) -> None:
    """The directory walk (the core's scan_directory, then Python's rules): files with their sizes in sorted
    order, depth first; links inside SRC followed, a dangling one and a FIFO recorded; .veil* left out."""
    src = tmp_path / "in"
    (src / "b" / "deep").mkdir(parents=True)
    (src / "a.dcm").write_bytes(b"x" * 10)
    (src / "b" / "c.dcm").write_bytes(b"y" * 20)
    (src / "b" / "deep" / "d.dcm").write_bytes(b"z" * 30)
    (src / "b" / "e.dcm").write_bytes(b"")
    (src / "link-to-file.dcm").symlink_to(src / "b" / "c.dcm")
    (src / "link-to-dir").symlink_to(src / "b" / "deep")
    (src / "dangling.dcm").symlink_to(src / "gone.dcm")
    (src / ".veil-state").write_text("not an input")
    os.mkfifo(src / "pipe")
    got = [(e.rel, e.size, e.error) for e in engine.list_inputs(str(src))]
    assert got == [
        ("a.dcm", 10, ""),
        ("b/c.dcm", 20, ""),
        ("b/deep/d.dcm", 30, ""),
        ("b/e.dcm", 0, ""),
        ("dangling.dcm", 0, "vanished before it was read"),
        ("link-to-dir/d.dcm", 30, ""),
        ("link-to-file.dcm", 20, ""),
        ("pipe", 0, "not a regular file"),
    ]
    assert [e.path for e in engine.list_inputs(str(src))][:2] == [str(src / "a.dcm"), str(src / "b" / "c.dcm")]


def test_the_veil_program_ends_a_local_run_with_its_status_and_all_its_output(archive, tmp_path) -> None:
    """The installed ``veil`` ends a local run without the interpreter's teardown (os._exit): its exit status,
    its whole JSON summary on a pipe, the manifest and the audit must all be there."""
    import shutil

    program = shutil.which("veil", path=os.path.dirname(sys.executable))
    if program is None:
        pytest.skip("the veil program is not installed beside this Python")
    src = tmp_path / "in"
    shutil.copytree(archive, src)
    (src / "bad.dcm").write_bytes(b"not DICOM")
    key = tmp_path / "key"
    assert main(["keygen", str(key)]) == EXIT_OK
    for workers in ("1", "2"):
        dst = tmp_path / f"out{workers}"
        done = subprocess.run([program, "run", str(src), str(dst), "--key", str(key), "--json", "--workers",
                               workers, "--shard-files", "8"], capture_output=True, text=True, timeout=120)
        assert done.returncode == EXIT_QUARANTINED, done.stderr
        result = json.loads(done.stdout)
        assert result["this_run"]["written"] == 30 and result["this_run"]["quarantined"] == 1
        assert audit.read_manifest(dst)["status"] == "complete"
        assert audit.read_audit(dst).num_rows == 31
        plain = subprocess.run([program, "run", str(src), str(tmp_path / f"plain{workers}"), "--key", str(key),
                                "--workers", workers], capture_output=True, text=True, timeout=120)
        assert plain.returncode == EXIT_QUARANTINED
        assert plain.stdout.rstrip().endswith(f"(veil audit {tmp_path / f'plain{workers}'})")


def test_directory_loop_is_recorded_not_followed(tmp_path, archive) -> None:
    src = tmp_path / "in"
    (src / "a").mkdir(parents=True)
    (src / "a" / "x.dcm").write_bytes(next(archive.rglob("*.dcm")).read_bytes())
    (src / "a" / "loop").symlink_to(src)
    entries = list(engine.list_inputs(str(src)))
    assert [e.rel for e in entries if not e.error] == ["a/x.dcm"]
    assert [e.error for e in entries if e.error] == ["directory loop"]


def test_resume_after_a_crash_gives_the_same_archive(archive, compiled, tmp_path, monkeypatch) -> None:
    run(archive, tmp_path / "whole", compiled, shard_files=3)
    real = engine.process_shard
    calls = {"n": 0}

    def dies_on_the_fifth(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt("driver killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(inline, "process_shard", dies_on_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        run(archive, tmp_path / "resumed", compiled, shard_files=3)
    monkeypatch.setattr(inline, "process_shard", real)
    assert len(audit.completed_shards(tmp_path / "resumed")) == 4
    summary = run(archive, tmp_path / "resumed", compiled, resume=True)
    assert summary.shards_resumed == 4 and summary.shards == 6
    assert tree(tmp_path / "resumed") == tree(tmp_path / "whole")
    table = audit.read_audit(tmp_path / "resumed")
    assert table.num_rows == 30 and len(set(table.column("input_digest").to_pylist())) == 30


@pytest.mark.parametrize("atomic", ["shard", "file"])
def test_a_shard_whose_outputs_were_not_all_written_is_redone_on_resume(archive, compiled, tmp_path, monkeypatch,
                                                                        atomic) -> None:
    """The run dies inside its third shard, after two of its three outputs: with --atomic shard they are there
    under their final names (one of them then cut short, as a power loss leaves it), with --atomic file as
    temporary files. The shard has no audit part, so the resume redoes it whole: the same archive."""
    run(archive, tmp_path / "whole", compiled, shard_files=3)
    real = sharding.Deidentifier.process
    calls = {"n": 0}

    def dies_on_the_ninth(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 9:
            raise KeyboardInterrupt("killed inside the third shard")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(sharding.Deidentifier, "process", dies_on_the_ninth)
    with pytest.raises(KeyboardInterrupt):
        run(archive, tmp_path / "cut", compiled, shard_files=3, atomic=atomic)
    monkeypatch.setattr(sharding.Deidentifier, "process", real)
    manifest = json.loads((tmp_path / "cut" / ".veil" / "manifest.json").read_text())
    assert manifest["atomic"] == atomic
    assert len(audit.completed_shards(tmp_path / "cut")) == 2
    finals = tree(tmp_path / "cut")
    if atomic == "shard":
        assert len(finals) == 8, "six outputs of done shards, two of the cut one under their final names"
        partial = sorted(set(finals) - set(_done_outputs(tmp_path / "cut")))
        assert len(partial) == 2
        half = tmp_path / "cut" / partial[0]
        half.write_bytes(half.read_bytes()[:100])
    else:
        assert len(finals) == 8, "whole files only: each one appears whole or not at all"
    with pytest.raises(engine.FatalRunError, match="--atomic"):
        run(archive, tmp_path / "cut", compiled, resume=True, atomic="file" if atomic == "shard" else "shard")
    summary = run(archive, tmp_path / "cut", compiled, resume=True)
    assert summary.shards_resumed == 2
    assert tree(tmp_path / "cut") == tree(tmp_path / "whole")
    assert not list((tmp_path / "cut").rglob("*.veil-tmp"))


def _done_outputs(dst: Path) -> list[str]:
    return [p for p in audit.read_audit(dst).column("output_path").to_pylist() if p]


def test_a_new_dst_is_written_shard_atomic_and_synced(archive, compiled, tmp_path, monkeypatch) -> None:
    synced: list[str] = []
    monkeypatch.setattr(sharding, "sync_filesystem", lambda path: synced.append(str(path)))
    summary = run(archive, tmp_path / "new", compiled, shard_files=10)
    assert json.loads((tmp_path / "new" / ".veil" / "manifest.json").read_text())["atomic"] == "shard"
    assert synced == [str(tmp_path / "new")] * summary.shards, "one sync per shard, before its audit part"
    run(archive, tmp_path / "new", compiled, shard_files=10)  # a run into a DST written before: renamed files
    assert json.loads((tmp_path / "new" / ".veil" / "manifest.json").read_text())["atomic"] == "file"
    with pytest.raises(engine.FatalRunError, match="--atomic is one of"):
        run(archive, tmp_path / "other", compiled, atomic="directory")


def test_sync_filesystem_syncs_and_names_a_missing_path(tmp_path) -> None:
    from veil.system import sync_filesystem

    sync_filesystem(tmp_path)
    with pytest.raises(FileNotFoundError):
        sync_filesystem(tmp_path / "missing")


def _entries(n: int):  # type: ignore[no-untyped-def]
    return (engine.Entry(f"/src/{i}.dcm", f"{i}.dcm", 100) for i in range(n))


def test_a_small_job_on_several_workers_is_cut_into_about_eight_shards_each() -> None:
    for n, workers, expected in ((2000, 2, 125), (100, 2, 64), (3000, 4, 94), (2000, 1, 1024), (10, 2, 64)):
        size, entries = engine.choose_shard_files(_entries(n), workers)
        assert size == expected, (n, workers)
        assert [e.rel for e in entries] == [f"{i}.dcm" for i in range(n)]  # nothing lost to the look-ahead
    # A job that runs past the look-ahead keeps the full size, and its listing stays lazy past it.
    consumed = []

    def listing():  # type: ignore[no-untyped-def]
        for entry in _entries(10**6):
            consumed.append(entry)
            yield entry

    size, entries = engine.choose_shard_files(listing(), 2)
    assert size == engine.SHARD_FILES and len(consumed) == 4 * engine.SHARD_FILES
    assert next(entries).rel == "0.dcm" and sum(1 for _ in entries) == 10**6 - 1


def test_the_chosen_shard_size_is_kept_by_a_resume_on_other_workers(archive, compiled, tmp_path, monkeypatch) -> None:
    import shutil

    monkeypatch.setattr(sharding, "MIN_SHARD_FILES", 2)
    whole = run(archive, tmp_path / "whole", compiled, workers=2)
    assert whole.shards == 15 and audit.read_manifest(tmp_path / "whole")["shard_files"] == 2  # 30 files / 16
    # As if the run had stopped before its last five shards: their parts and outputs gone.
    shutil.copytree(tmp_path / "whole", tmp_path / "resumed")
    table = audit.read_audit(tmp_path / "resumed", ["shard", "output_path"]).to_pylist()
    for row in table:
        if row["shard"] >= 10:
            (tmp_path / "resumed" / row["output_path"]).unlink()
    for shard in range(10, 15):
        audit.part_path(tmp_path / "resumed", shard).unlink()
    # One worker would choose full-size shards; the resume keeps the manifest's.
    summary = run(archive, tmp_path / "resumed", compiled, workers=1, resume=True)
    assert summary.shards_resumed == 10 and summary.shards == 5 and summary.written == 10
    assert tree(tmp_path / "resumed") == tree(tmp_path / "whole")
    digests = audit.read_audit(tmp_path / "resumed").column("input_digest").to_pylist()
    assert len(digests) == len(set(digests)) == 30


@pytest.mark.kill
@pytest.mark.parametrize(("workers", "atomic"), [(1, "shard"), (2, "shard"), (1, "file"), (2, "file")])
def test_sigkill_mid_run_then_resume_is_byte_identical(tmp_path, workers, atomic) -> None:
    """The driver killed with SIGKILL mid-run (its pool workers die with it), then ``--resume``: the same
    outputs, one audit row per input, and a re-identification table with every row of an uninterrupted run."""
    from veil.keys import load_key
    from veil.keys.reid import journal_dir, read_reid_table

    src = tmp_path / "in"
    write_archive(src, patients=20, series_per_study=2, instances_per_series=10, seed=9)  # 400 files
    key = tmp_path / "key"
    main(["keygen", str(key)])
    base = [sys.executable, "-m", "veil.cli", "run", str(src)]
    opts = ["--key", str(key), "--shard-files", "4", "--workers", str(workers)]
    whole = ["--reid-table", str(tmp_path / "whole.reid")]
    first = ["--atomic", atomic]  # the resume takes the mode from the manifest
    killed = ["--reid-table", str(tmp_path / "killed.reid")]
    done = subprocess.run(base + [str(tmp_path / "whole")] + opts + whole, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    kill_mid_run(base + [str(tmp_path / "killed")] + opts + killed + first, tmp_path / "killed")
    finished = len(audit.completed_shards(tmp_path / "killed"))
    assert 10 <= finished < 100, "the kill must land mid-run"
    assert not (tmp_path / "killed.reid").exists() and journal_dir(tmp_path / "killed.reid").is_dir()
    # What a kill can leave half-written (names as audit._atomic_file and mapping._write_atomic make them).
    (tmp_path / "killed" / ".veil" / "audit" / ".part-00000099.parquet.4242-0123456789ab.tmp").write_bytes(b"PAR1 half")
    (journal_dir(tmp_path / "killed.reid") / ".shard-00000099.bin.x1y2.tmp").write_bytes(b"half")
    missing = subprocess.run(base + [str(tmp_path / "killed")] + opts + ["--resume"], capture_output=True)
    assert missing.returncode == EXIT_FATAL and b"--reid-table" in missing.stderr
    resumed = subprocess.run(base + [str(tmp_path / "killed")] + opts + killed + ["--resume"], capture_output=True)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert tree(tmp_path / "killed") == tree(tmp_path / "whole")
    assert not list((tmp_path / "killed").rglob("*.veil-tmp"))
    table = audit.read_audit(tmp_path / "killed")
    assert table.num_rows == 400 and len(set(table.column("input_digest").to_pylist())) == 400
    project = load_key(key)
    rows = read_reid_table(tmp_path / "killed.reid", project)
    assert sorted(rows) == sorted(read_reid_table(tmp_path / "whole.reid", project))
    assert sum(1 for kind, _, _ in rows if kind == "SOPInstanceUID") == 400
    assert not journal_dir(tmp_path / "killed.reid").exists()
    assert not list((tmp_path / "killed" / ".veil").rglob("*.tmp"))


def test_study_layout_names_outputs_by_new_uids(archive, compiled, tmp_path) -> None:
    run(archive, tmp_path / "out", compiled, layout="study")
    outputs = sorted((tmp_path / "out").glob("*/*/*.dcm"))
    assert len(outputs) == 30
    for path in outputs[:5]:
        ds = pydicom.dcmread(path)
        assert path.parts[-3:] == (ds.StudyInstanceUID, ds.SeriesInstanceUID, f"{ds.SOPInstanceUID}.dcm")


def test_files_from_listing(archive, compiled, tmp_path) -> None:
    listing = tmp_path / "list.txt"
    chosen = sorted(str(p.relative_to(archive)) for p in archive.rglob("*.dcm"))[:7]
    listing.write_text("\n".join(chosen) + "\n")
    summary = run(archive, tmp_path / "out", compiled, files_from=str(listing))
    assert summary.written == 7 and sorted(tree(tmp_path / "out")) == chosen


def test_files_from_listing_records_what_cannot_be_read(tmp_path) -> None:
    """Every kind of listed path: inside (relative, absolute, through an in-SRC symlinked folder), and each
    way of pointing outside SRC or at nothing, recorded with its reason."""
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "one.dcm").write_bytes(b"x" * 10)
    (src / "b").symlink_to(src / "a")  # a folder link that stays inside SRC
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.dcm").write_bytes(b"y" * 5)
    (src / "out-link").symlink_to(outside)  # a folder link out of SRC
    (src / "a" / "file-link.dcm").symlink_to(outside / "secret.dcm")  # a file link out of SRC
    (src / "a" / "inner-link.dcm").symlink_to(src / "a" / "one.dcm")  # a file link inside SRC
    lines = ["a/one.dcm", str(src / "a" / "one.dcm"), "b/one.dcm", "", "../outside/secret.dcm",
             str(outside / "secret.dcm"), "out-link/secret.dcm", "a/file-link.dcm", "a/inner-link.dcm",
             "a/missing.dcm", "a"]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(lines) + "\n")
    got = [(e.rel, e.size, e.error) for e in engine.list_inputs(str(src), str(listing))]
    assert got == [
        ("a/one.dcm", 10, ""),
        ("a/one.dcm", 10, ""),
        ("b/one.dcm", 10, ""),
        ("secret.dcm", 0, "listed path is outside SRC"),
        ("secret.dcm", 0, "listed path is outside SRC"),
        ("secret.dcm", 0, "listed path is outside SRC"),
        ("a/file-link.dcm", 0, "symlink out of SRC"),
        ("a/inner-link.dcm", 10, ""),
        ("a/missing.dcm", 0, "vanished before it was read"),
        ("a", 0, "not a regular file"),
    ]


def test_reid_table_is_encrypted_apart_and_reads_back_with_the_key(archive, tmp_path, capsys) -> None:
    key = tmp_path / "key"
    main(["keygen", str(key)])
    out = tmp_path / "out"
    assert main(["run", str(archive), str(out), "--key", str(key), "--reid-table", str(out / "reid.bin")]) \
        == EXIT_FATAL  # never inside DST
    capsys.readouterr()
    table = tmp_path / "reid.bin"
    assert main(["run", str(archive), str(out), "--key", str(key), "--reid-table", str(table)]) == EXIT_OK
    original = pydicom.dcmread(next(archive.rglob("*.dcm")))
    assert original.PatientID.encode() not in table.read_bytes()
    capsys.readouterr()
    assert main(["reidentify", str(table), "--key", str(key)]) == EXIT_OK
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert ["PatientID", "", original.PatientID] in [[k, "", o] for k, _, o in rows]


def test_disk_full_stops_the_run_and_leaves_no_partial_output(archive, compiled, tmp_path, monkeypatch) -> None:
    import veil.pipeline as pipeline

    real = pipeline._write_all
    written = {"n": 0}

    def fills_up(fd, data):  # type: ignore[no-untyped-def]
        written["n"] += 1
        if written["n"] > 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    real_v = pipeline._writev_all

    def fills_up_v(fd, parts):  # type: ignore[no-untyped-def]
        written["n"] += 1
        if written["n"] > 6:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_v(fd, parts)

    monkeypatch.setattr(pipeline, "_write_all", fills_up)
    monkeypatch.setattr(pipeline, "_writev_all", fills_up_v)
    with pytest.raises(engine.FatalRunError, match="disk full"):
        run(archive, tmp_path / "out", compiled)
    leftovers = [p for p in (tmp_path / "out").rglob("*") if p.is_file() and p.suffix in (".dcm", "") and
                 ".veil" not in p.parts]
    for path in leftovers:
        pydicom.dcmread(path)  # every output present is whole
    assert not list((tmp_path / "out").rglob("*.veil-tmp"))


def test_unwritable_destination_is_fatal_before_any_work(archive, tmp_path, capsys) -> None:
    key = tmp_path / "key"
    main(["keygen", str(key)])
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["run", str(archive), str(blocker / "out"), "--key", str(key)]) == EXIT_FATAL
    assert "cannot write" in capsys.readouterr().err


def test_dry_run_reports_rules_and_writes_nothing(archive, tmp_path, capsys) -> None:
    key = tmp_path / "key"
    main(["keygen", str(key)])
    capsys.readouterr()
    out = tmp_path / "out"
    assert main(["run", str(archive), str(out), "--key", str(key), "--dry-run", "--sample", "3"]) == EXIT_OK
    text = capsys.readouterr().out
    assert "dry run: 3 files" in text and "SOPInstanceUID" in text
    assert not out.exists()


# --- one machine, several worker processes -------------------------------------------------------------------


def test_local_pool_writes_what_one_process_writes(archive, tmp_path) -> None:
    """``--workers 2`` on this machine (no Ray): the same outputs, audit rows and re-identification table."""
    basic = compile_recipe(load_recipe("ps3.15-basic"))  # the native small-file path
    for name, recipe in (("research", compile_recipe(load_recipe("research"))), ("basic", basic)):
        one = run(archive, tmp_path / name / "one", recipe, shard_files=4,
                  reid_table=str(tmp_path / name / "one.reid"))
        pool = run(archive, tmp_path / name / "pool", recipe, shard_files=4, workers=2,
                   reid_table=str(tmp_path / name / "pool.reid"))
        assert one.mode == "in-process" and pool.mode == "local-pool"
        # A fresh run's totals (counted as it went) are what its audit holds.
        assert pool.totals == engine.RunTotals.of_audit(tmp_path / name / "pool")
        assert one.totals == engine.RunTotals.of_audit(tmp_path / name / "one")
        assert pool.written == 30 and pool.shards == 8
        assert tree(tmp_path / name / "pool") == tree(tmp_path / name / "one")
        columns = ["input_digest", "output_path", "sop_instance_uid", "study_instance_uid", "modality", "status"]
        a = audit.read_audit(tmp_path / name / "one", columns).sort_by("input_digest")
        b = audit.read_audit(tmp_path / name / "pool", columns).sort_by("input_digest")
        assert a.equals(b) and a.num_rows == 30
        from veil.keys.reid import read_reid_table

        rows = read_reid_table(str(tmp_path / name / "pool.reid"), KEY.material)
        assert sorted(rows) == sorted(read_reid_table(str(tmp_path / name / "one.reid"), KEY.material))
        assert any(kind == "SOPInstanceUID" for kind, _, _ in rows)


def _dies_once(number, entries):  # type: ignore[no-untyped-def]
    """A pool shard whose worker process is killed the first time it runs shard 2 (a marker file says so)."""
    marker = Path(os.environ["VEIL_TEST_MARKER"])
    if number == 2 and not marker.exists():
        marker.write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    return engine._REAL_POOL_SHARD(number, entries)  # type: ignore[attr-defined]


@pytest.mark.kill
def test_local_pool_survives_a_killed_worker(archive, compiled, tmp_path, monkeypatch) -> None:
    run(archive, tmp_path / "whole", compiled, shard_files=4)
    monkeypatch.setenv("VEIL_TEST_MARKER", str(tmp_path / "marker"))
    monkeypatch.setattr(engine, "_REAL_POOL_SHARD", local._pool_shard, raising=False)
    monkeypatch.setattr(local, "_pool_shard", _dies_once)
    monkeypatch.setattr(local, "_pool_context", lambda: __import__("multiprocessing").get_context("fork"))
    summary = run(archive, tmp_path / "pool", compiled, shard_files=4, workers=2)
    assert (tmp_path / "marker").exists()  # a worker did die
    assert summary.written == 30 and summary.shards == 8
    assert tree(tmp_path / "pool") == tree(tmp_path / "whole")
    table = audit.read_audit(tmp_path / "pool")
    assert table.num_rows == 30 and len(set(table.column("input_digest").to_pylist())) == 30
    assert not list((tmp_path / "pool").rglob("*.veil-tmp"))


def _always_dies(number, entries):  # type: ignore[no-untyped-def]
    if number == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return engine._REAL_POOL_SHARD(number, entries)  # type: ignore[attr-defined]


@pytest.mark.kill
def test_local_pool_stops_on_a_shard_that_keeps_killing_its_worker(archive, compiled, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(engine, "_REAL_POOL_SHARD", local._pool_shard, raising=False)
    monkeypatch.setattr(local, "_pool_shard", _always_dies)
    monkeypatch.setattr(local, "_pool_context", lambda: __import__("multiprocessing").get_context("fork"))
    with pytest.raises(engine.FatalRunError, match="shard 1: its worker process died on each of 3 tries"):
        run(archive, tmp_path / "pool", compiled, shard_files=4, workers=2)


@pytest.fixture
def small_filesystem(tmp_path):  # type: ignore[no-untyped-def]
    """A real 160 KiB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.parametrize("recipe_name,workers,mapped", [
    ("ps3.15-basic", 1, False), ("research", 1, False), ("ps3.15-basic", 2, False), ("ps3.15-basic", 1, True),
])
def test_disk_full_on_a_real_filesystem(archive, small_filesystem, recipe_name, workers, mapped, monkeypatch) -> None:
    """A destination that really fills up (no mocks): the run stops with a clear error, every output left is
    whole, no temporary file is left, and a resume elsewhere is not needed to trust what is there. ``mapped``:
    every input takes the core's path for large files (mapped, the pixels copied by the kernel)."""
    if mapped:
        from veil import pipeline

        monkeypatch.setattr(pipeline, "SMALL_FILE", 0)
    recipe = compile_recipe(load_recipe(recipe_name))
    total = sum(p.stat().st_size for p in archive.rglob("*.dcm"))
    assert total > 160 * 1024  # the archive cannot fit
    with pytest.raises(engine.FatalRunError, match="disk full"):
        run(archive, small_filesystem / "out", recipe, shard_files=4, workers=workers)
    outputs = [p for p in (small_filesystem / "out").rglob("*.dcm") if ".veil" not in p.parts]
    for path in outputs:
        pydicom.dcmread(path)  # every output present is whole
    assert not list((small_filesystem / "out").rglob("*.veil-tmp"))


def _sum_of_squares(number: int, values: list[int]) -> tuple[int, int]:
    return number, sum(v * v for v in values)


@pytest.mark.parametrize("kind", ["inline", "local"])
def test_every_executor_runs_each_task_once_and_yields_its_result(kind) -> None:
    """The executor contract: each task's function run on its arguments, every result yielded once (the
    inline executor in task order), the listing pulled lazily, at most ``limit`` tasks in flight."""
    import multiprocessing

    pulled: list[int] = []

    def tasks():  # type: ignore[no-untyped-def]
        for n in range(12):
            pulled.append(n)
            yield n, list(range(n))

    if kind == "inline":
        executor = engine.InlineExecutor(_sum_of_squares)
    else:
        executor = engine.LocalPoolExecutor(_sum_of_squares, 2, context=multiprocessing.get_context("fork"),
                                            max_in_flight=3)
    with executor:
        results = []
        for result in executor.run(tasks()):
            results.append(result)
            in_flight = executor.in_flight
            assert in_flight is None or in_flight <= 3
            assert len(pulled) <= len(results) + (in_flight or 0) + 1
    expected = [(n, sum(v * v for v in range(n))) for n in range(12)]
    assert (results if kind == "inline" else sorted(results)) == expected


@pytest.mark.parametrize("name", ["ps3.15-basic", "research", "hipaa-safe-harbor"])
def test_the_manifest_recipe_text_is_pyyamls_own(name: str) -> None:
    """The manifest's resolved recipe is written with libyaml's emitter where there is one: the same text as
    PyYAML's pure-Python emitter."""
    import yaml

    from veil.recipes.cache import recipe_text

    compiled = compile_recipe(name)
    expected = yaml.safe_dump(compiled.recipe.canonical(), sort_keys=False, allow_unicode=True, width=120,
                              default_flow_style=None)
    assert recipe_text(compiled) == expected
    assert yaml.safe_load(expected) == compiled.recipe.canonical()
