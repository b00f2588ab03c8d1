"""Counter pseudonyms (``SUBJ-{counter:6}``): numbered by the run's key service in one call per shard, in
every execution mode, kept in the re-identification table, consistent across a killed and resumed run."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pydicom
import pytest
from killing import kill_mid_run
from trees import tree

from veil import audit, engine
from veil.cli.main import EXIT_FATAL, EXIT_OK, main
from veil.engine import local
from veil.errors import KeyError_
from veil.keys import Key, KeyedFunctions
from veil.keys import service as mapping
from veil.keys.reid import journal_dir, read_reid_table
from veil.keys.server import KeyServiceManager
from veil.keys.service import KeyService
from veil.pipeline import CounterLookup, Deidentifier
from veil.recipes import compile_recipe, load_recipe
from veil.synth import write_archive

KEY = Key(bytes(range(32)))
RECIPE = Path(__file__).parents[1] / "data" / "recipes" / "subject-counters.yml"
PATTERN = "SUBJ-{counter:6}"


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("archive") / "in"
    write_archive(src, patients=4, studies_per_patient=1, series_per_study=2, instances_per_series=4, seed=11)
    return src


@pytest.fixture(scope="module")
def compiled():
    return compile_recipe(load_recipe(RECIPE))


def run(src: Path, dst: Path, compiled, **kw) -> engine.RunSummary:
    kw.setdefault("reid_table", str(dst.parent / f"{dst.name}.reid"))
    return engine.run(engine.RunOptions(src=str(src), dst=str(dst), **kw), compiled, KEY)


def counter_rows(table: Path, key: Key = KEY) -> dict[str, str]:
    """original -> number, checking that each original has one number and each number one original."""
    rows = [(new, original) for kind, new, original in read_reid_table(table, key) if kind == "pseudonym"]
    numbers = dict((original, new) for new, original in rows)
    assert len(numbers) == len(rows), "an original with two numbers"
    assert len(set(numbers.values())) == len(rows), "a number with two originals"
    return numbers


def assert_patient_ids_map_back(src: Path, dst: Path, table: Path, key: Key = KEY) -> None:
    numbers = counter_rows(table, key)
    back = {new: original for original, new in numbers.items()}
    for path in sorted(src.rglob("*.dcm")):
        before = pydicom.dcmread(path, stop_before_pixels=True)
        after = pydicom.dcmread(dst / path.relative_to(src), stop_before_pixels=True)
        assert after.PatientID.startswith("SUBJ-") and len(after.PatientID) == 11
        assert back[after.PatientID] == before.PatientID
        assert after.AccessionNumber == numbers[before.AccessionNumber]


def first_listed(src: Path) -> str:
    return next(engine.list_inputs(str(src))).path


# --- recipe ----------------------------------------------------------------------------------------------------


def test_counter_recipe_compiles_to_a_counter_format(compiled) -> None:
    assert compiled.pseudonym_pattern == PATTERN
    assert (compiled.counter.prefix, compiled.counter.width, compiled.counter.suffix) == ("SUBJ-", 6, "")
    assert compile_recipe(load_recipe("research")).counter is None


def test_keyed_functions_refuse_to_make_a_counter_pseudonym() -> None:
    functions = KeyedFunctions(KEY, pseudonym_pattern=PATTERN)
    with pytest.raises(KeyError_, match="key service"):
        functions.pseudonym(b"12345")


# --- the worker side: which values, and a value without a number ---------------------------------------------


def test_collecting_pass_finds_exactly_what_the_rewrite_asks_for(archive, compiled) -> None:
    """Per file: the values the collecting pass lists are those the real rewrite hands its pseudonym function,
    nested and multi-valued elements included (OtherPatientIDs holds two)."""
    functions = KeyedFunctions(KEY)
    asked: list[bytes] = []

    def recording(original: bytes) -> bytes:
        asked.append(original)
        return functions.pseudonym(original)

    for path in sorted(archive.rglob("*.dcm"))[:6]:
        worker = Deidentifier(compiled.plan, functions, compiled.recipe.pixels, recording)  # fresh cache
        asked.clear()
        worker.rewrite(path.read_bytes(), str(path))
        collected = Deidentifier(compiled.plan, functions, compiled.recipe.pixels).pseudonym_values([str(path)])
        assert collected == list(dict.fromkeys(asked)) and len(collected) >= 4


def test_a_value_without_a_number_quarantines_the_file_and_names_no_value(archive, compiled, tmp_path) -> None:
    lookup = CounterLookup()
    worker = Deidentifier(compiled.plan, KeyedFunctions(KEY, pseudonym_pattern=PATTERN), None, lookup)
    path = sorted(archive.rglob("*.dcm"))[0]
    values = worker.pseudonym_values([str(path)])
    lookup.add(values[1:], [b"SUBJ-%06d" % n for n in range(1, len(values))])  # the first one left out
    outcome = worker.deidentify_file(str(path), str(tmp_path / "out.dcm"), reid=True)
    assert outcome.status == "quarantined" and "not numbered by the key service" in outcome.reason
    assert values[0].decode() not in outcome.reason and not (tmp_path / "out.dcm").exists()


# --- one run, each mode ---------------------------------------------------------------------------------------


def test_in_process_run_numbers_in_listing_order_once_per_shard(archive, compiled, tmp_path, monkeypatch) -> None:
    calls: list[tuple[int, int]] = []
    original = KeyService.counter_pseudonyms

    def counting(self, kind, values, prefix, width, suffix="", shard=None):  # type: ignore[no-untyped-def]
        calls.append((shard, len(values)))
        return original(self, kind, values, prefix, width, suffix, shard)

    monkeypatch.setattr(KeyService, "counter_pseudonyms", counting)
    summary = run(archive, tmp_path / "out", compiled, shard_files=5)
    assert summary.mode == "in-process" and summary.written == 32 and summary.quarantined == 0
    shards = [shard for shard, _ in calls]
    assert len(shards) == len(set(shards)) and set(shards) <= set(range(summary.shards)) and 0 in shards
    numbers = counter_rows(tmp_path / "out.reid")
    assert sum(n for _, n in calls) == len(numbers)  # no value asked for twice
    assert sorted(numbers.values()) == [f"SUBJ-{n:06d}" for n in range(1, len(numbers) + 1)]
    first = pydicom.dcmread(first_listed(archive), stop_before_pixels=True)
    # First-seen order: the first listed file's first pseudonymised element is AccessionNumber (0008,0050).
    assert numbers[first.AccessionNumber] == "SUBJ-000001" and numbers[first.PatientID] == "SUBJ-000002"
    assert_patient_ids_map_back(archive, tmp_path / "out", tmp_path / "out.reid")
    assert not journal_dir(tmp_path / "out.reid").exists()


def test_a_worker_that_forgets_numbers_asks_again_for_all_of_a_shard(monkeypatch) -> None:
    from veil import pipeline

    monkeypatch.setattr(pipeline, "_COUNTER_CACHE_LIMIT", 4)
    lookup = CounterLookup()
    lookup.add([b"A", b"B", b"C"], [b"1", b"2", b"3"])
    assert lookup.unknown([b"C", b"D", b"C"]) == [b"D"]  # fits: only the new one
    # B known, E F new: 3 + 2 > 4, so all are forgotten and the shard asks for B again too.
    assert lookup.unknown([b"E", b"B", b"F"]) == [b"E", b"B", b"F"]
    lookup.add([b"E", b"B", b"F"], [b"5", b"2", b"6"])
    assert [lookup(v) for v in (b"E", b"B", b"F")] == [b"5", b"2", b"6"]
    with pytest.raises(KeyError_):
        lookup(b"A")


def _fork_context(monkeypatch) -> None:
    monkeypatch.setattr(local, "_pool_context", lambda: multiprocessing.get_context("fork"))


def test_pool_in_listing_order_writes_what_one_process_writes_with_one_call_per_shard(
    archive, compiled, tmp_path, monkeypatch
) -> None:
    """Shards one at a time on a 2-process pool: the same numbers as in-process, so the same bytes and
    table; the pool processes reach the driver's key service through the manager, one call per shard."""
    log = tmp_path / "calls.log"
    original = KeyService.counter_pseudonyms

    def counting(self, kind, values, prefix, width, suffix="", shard=None):  # type: ignore[no-untyped-def]
        with open(log, "a") as fh:  # runs in the manager's process (forked: it inherits this patch)
            fh.write(f"{os.getpid()} {shard} {len(values)}\n")
        return original(self, kind, values, prefix, width, suffix, shard)

    _fork_context(monkeypatch)
    run(archive, tmp_path / "one", compiled, shard_files=5)
    monkeypatch.setattr(KeyService, "counter_pseudonyms", counting)
    summary = run(archive, tmp_path / "pool", compiled, shard_files=5, workers=2, max_in_flight=1)
    assert summary.mode == "local-pool" and summary.written == 32
    assert tree(tmp_path / "pool") == tree(tmp_path / "one")
    assert sorted(read_reid_table(tmp_path / "pool.reid", KEY)) == sorted(read_reid_table(tmp_path / "one.reid", KEY))
    calls = [line.split() for line in log.read_text().splitlines()]
    shards = [int(shard) for _, shard, _ in calls]
    assert len(shards) == len(set(shards)) and set(shards) <= set(range(summary.shards))
    assert {int(pid) for pid, _, _ in calls} != {os.getpid()}  # served by another process, not this one


@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_concurrent_pool_numbers_each_value_once(archive, compiled, tmp_path, monkeypatch, start_method) -> None:
    monkeypatch.setattr(local, "_pool_context", lambda: _context(start_method))
    summary = run(archive, tmp_path / "pool", compiled, shard_files=3, workers=2)
    assert summary.mode == "local-pool" and summary.written == 32 and summary.quarantined == 0
    one = run(archive, tmp_path / "one", compiled, shard_files=3)
    assert set(counter_rows(tmp_path / "pool.reid")) == set(counter_rows(tmp_path / "one.reid"))
    assert_patient_ids_map_back(archive, tmp_path / "pool", tmp_path / "pool.reid")
    assert one.written == 32


def _context(start_method: str):  # type: ignore[no-untyped-def]
    context = multiprocessing.get_context(start_method)
    if start_method == "forkserver":
        context.set_forkserver_preload(["veil.engine"])
    return context


@pytest.mark.cluster
def test_ray_numbers_through_the_key_actor(archive, compiled, tmp_path) -> None:
    ray = pytest.importorskip("ray")
    run(archive, tmp_path / "one", compiled, shard_files=4)
    try:
        ordered = run(archive, tmp_path / "ray1", compiled, shard_files=4, workers=2, force_ray=True,
                      max_in_flight=1)
        concurrent = run(archive, tmp_path / "ray", compiled, shard_files=4, workers=2, force_ray=True)
    finally:
        ray.shutdown()
    assert ordered.mode == concurrent.mode == "ray-local" and concurrent.written == 32
    assert tree(tmp_path / "ray1") == tree(tmp_path / "one")
    assert sorted(read_reid_table(tmp_path / "ray1.reid", KEY)) == sorted(read_reid_table(tmp_path / "one.reid", KEY))
    assert_patient_ids_map_back(archive, tmp_path / "ray", tmp_path / "ray.reid")


def test_no_counter_pattern_runs_no_collecting_pass_and_no_manager(archive, tmp_path, monkeypatch) -> None:
    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("counter machinery used by a recipe without counters")

    monkeypatch.setattr(Deidentifier, "pseudonym_values", refuse)
    monkeypatch.setattr(KeyServiceManager, "start", refuse)
    _fork_context(monkeypatch)
    research = compile_recipe(load_recipe("research"))
    assert run(archive, tmp_path / "pool", research, shard_files=5, workers=2).written == 32
    assert run(archive, tmp_path / "one", research, shard_files=5).written == 32


# --- the table: refusals, later runs, reidentify -----------------------------------------------------------------


def test_run_without_reid_table_is_fatal_before_any_work(archive, tmp_path, capsys) -> None:
    key = tmp_path / "key"
    main(["keygen", str(key)])
    code = main(["run", str(archive), str(tmp_path / "out"), "--recipe", str(RECIPE), "--key", str(key)])
    assert code == EXIT_FATAL and not (tmp_path / "out").exists()
    err = capsys.readouterr().err
    assert "--reid-table" in err and "resumed runs" in err and "back from a number" in err
    code = main(["deidentify", str(archive), str(tmp_path / "out"), "--recipe", str(RECIPE), "--key", str(key)])
    assert code == EXIT_FATAL and not (tmp_path / "out").exists() and "veil run --reid-table" in capsys.readouterr().err


def test_reidentify_reads_the_counter_rows_back(archive, tmp_path, capsys) -> None:
    key = tmp_path / "key"
    main(["keygen", str(key)])
    table = tmp_path / "t.reid"
    assert main(["run", str(archive), str(tmp_path / "out"), "--recipe", str(RECIPE), "--key", str(key),
                 "--reid-table", str(table)]) == EXIT_OK
    capsys.readouterr()
    assert main(["reidentify", str(table), "--key", str(key), "--value", "SUBJ-000001"]) == EXIT_OK
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    first = pydicom.dcmread(first_listed(archive), stop_before_pixels=True)
    assert ["pseudonym", "SUBJ-000001", first.AccessionNumber] in lines


def test_a_later_run_on_the_same_table_keeps_the_numbers_and_goes_on(archive, compiled, tmp_path) -> None:
    some = tmp_path / "some"
    for entry in list(engine.list_inputs(str(archive)))[-8:]:  # the last patient's: numbered first here
        (some / entry.rel).parent.mkdir(parents=True, exist_ok=True)
        (some / entry.rel).write_bytes(Path(entry.path).read_bytes())
    table = tmp_path / "shared.reid"
    run(some, tmp_path / "first", compiled, reid_table=str(table))
    before = counter_rows(table)
    run(archive, tmp_path / "second", compiled, reid_table=str(table))
    after = counter_rows(table)
    assert all(after[original] == new for original, new in before.items())
    assert sorted(after.values()) == [f"SUBJ-{n:06d}" for n in range(1, len(after) + 1)]
    assert_patient_ids_map_back(archive, tmp_path / "second", table)


def test_a_table_of_another_key_is_refused_before_any_work(archive, compiled, tmp_path) -> None:
    other = KeyService(bytes(32), PATTERN)
    other.counter_pseudonyms("pseudonym", [b"X"], "SUBJ-", 6)
    other.write_reid_table(str(tmp_path / "t.reid"))
    with pytest.raises(KeyError_, match="written with key"):
        run(archive, tmp_path / "out", compiled, reid_table=str(tmp_path / "t.reid"))
    assert not list((tmp_path / "out").rglob("*.dcm"))


# --- a killed driver, resumed -------------------------------------------------------------------------------------


@pytest.mark.kill
@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_mid_run_then_resume_keeps_the_numbering(tmp_path, workers) -> None:
    """The driver killed with SIGKILL mid-run (pool workers and the key-service manager die with it), then
    ``--resume``: the numbers handed out before the kill are kept (they are in the journal), the rest go on.
    In-process the order of first appearance is the listing order, so outputs and table are byte-identical to
    an uninterrupted run; on a pool the order may differ, so each original has one number and back."""
    from veil.keys import load_key

    src = tmp_path / "in"
    write_archive(src, patients=20, series_per_study=2, instances_per_series=10, seed=9)  # 400 files
    key = tmp_path / "key"
    main(["keygen", str(key)])
    base = [sys.executable, "-m", "veil.cli", "run", str(src)]
    opts = ["--recipe", str(RECIPE), "--key", str(key), "--shard-files", "4", "--workers", str(workers)]
    whole = ["--reid-table", str(tmp_path / "whole.reid")]
    killed = ["--reid-table", str(tmp_path / "killed.reid")]
    done = subprocess.run(base + [str(tmp_path / "whole")] + opts + whole, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    kill_mid_run(base + [str(tmp_path / "killed")] + opts + killed, tmp_path / "killed")
    finished = len(audit.completed_shards(tmp_path / "killed"))
    assert 10 <= finished < 100, "the kill must land mid-run"
    journal = journal_dir(tmp_path / "killed.reid")
    assert not (tmp_path / "killed.reid").exists() and list(journal.glob("shard-*.counters.bin"))
    resumed = subprocess.run(base + [str(tmp_path / "killed")] + opts + killed + ["--resume"], capture_output=True)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    project = load_key(key)
    table = audit.read_audit(tmp_path / "killed")
    assert table.num_rows == 400 and len(set(table.column("input_digest").to_pylist())) == 400
    assert not journal.exists()
    killed_numbers = counter_rows(tmp_path / "killed.reid", project)
    whole_numbers = counter_rows(tmp_path / "whole.reid", project)
    assert set(killed_numbers) == set(whole_numbers)
    assert sorted(killed_numbers.values()) == [f"SUBJ-{n:06d}" for n in range(1, len(killed_numbers) + 1)]
    if workers == 1:
        assert tree(tmp_path / "killed") == tree(tmp_path / "whole")
        assert sorted(read_reid_table(tmp_path / "killed.reid", project)) == sorted(
            read_reid_table(tmp_path / "whole.reid", project)
        )
    assert_patient_ids_map_back(src, tmp_path / "killed", tmp_path / "killed.reid", project)
    kinds = Counter(kind for kind, _, _ in read_reid_table(tmp_path / "killed.reid", project))
    assert kinds["SOPInstanceUID"] == 400 and kinds["PatientID"] == 20


def test_service_loads_the_table_and_journal_and_goes_on(tmp_path) -> None:
    table = tmp_path / "t.reid"
    first = KeyService(KEY.material, PATTERN)
    first.set_journal(table)
    assert first.counter_pseudonyms("pseudonym", [b"A", b"B"], "SUBJ-", 6, shard=0) == [b"SUBJ-000001", b"SUBJ-000002"]
    first.write_reid_table(table)  # A, B in the table
    second = KeyService(KEY.material, PATTERN)
    second.set_journal(table)
    second.load_reid(table)
    assert second.counter_pseudonyms("pseudonym", [b"C", b"A "], "SUBJ-", 6, shard=3) == [b"SUBJ-000003", b"SUBJ-000001"]
    # killed here: C is only in the journal
    assert (journal_dir(table) / "shard-00000003.counters.bin").exists()
    third = KeyService(KEY.material, PATTERN)
    third.set_journal(table)
    third.load_reid(table)
    assert third.counter_pseudonyms("pseudonym", [b"D", b"C", b"B"], "SUBJ-", 6, shard=3) == [
        b"SUBJ-000004", b"SUBJ-000003", b"SUBJ-000002"
    ]
    # The shard's part merged the rows of both calls: nothing handed out is lost when a shard runs again.
    part = read_reid_table(journal_dir(table) / "shard-00000003.counters.bin", KEY)
    assert sorted(original for _, _, original in part) == ["A", "B", "C", "D"]
    third.write_reid_table(table)
    assert counter_rows(table) == {"A": "SUBJ-000001", "B": "SUBJ-000002", "C": "SUBJ-000003", "D": "SUBJ-000004"}


def test_counter_outgrows_its_width_then_is_exhausted() -> None:
    service = KeyService(KEY.material, "S{counter:1}")
    values = [b"%d" % n for n in range(9999)]
    out = service.counter_pseudonyms("pseudonym", values[:12], "S", 1)
    assert out[:3] == [b"S1", b"S2", b"S3"] and out[9:12] == [b"S10", b"S11", b"S12"]
    out = service.counter_pseudonyms("pseudonym", values[12:], "S", 1)
    assert out[-1] == b"S9999" and max(len(v) for v in out) == len("S") + 1 + 3
    with pytest.raises(KeyError_, match="exhausted"):
        service.counter_pseudonyms("pseudonym", [b"one more"], "S", 1)


def test_service_pickles_without_its_lock_for_the_pool_manager() -> None:
    import pickle

    service = KeyService(KEY.material, PATTERN)
    service.counter_pseudonyms("pseudonym", [b"A"], "SUBJ-", 6)
    copy = pickle.loads(pickle.dumps(service))
    assert copy.counter_pseudonyms("pseudonym", [b"B", b"A"], "SUBJ-", 6) == [b"SUBJ-000002", b"SUBJ-000001"]
    assert mapping.COUNTER_KIND == "pseudonym"
