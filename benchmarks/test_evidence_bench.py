"""What compliance evidence costs a run (issue 15): the same 400 synthetic CT files under ``research`` in this
process, plain, sealed to a custodian key, and sealed with change records (each written file parsed before and
after to record its elements). ``extra_info["files"]`` turns a round into a per-file figure; compare the three
in one run (`make bench`), as the machines are shared and noisy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from veil import engine
from veil.keys import Key
from veil.keys.custodian import generate_custodian
from veil.recipes import compile_recipe
from veil.synth import write_archive

FILES = 400


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Key]:
    root = tmp_path_factory.mktemp("bench-evidence")
    write_archive(root / "in", patients=20, series_per_study=2, instances_per_series=FILES // 40, seed=5)
    public, _private, _ = generate_custodian("bench", root, "a bench passphrase")
    return root, public, Key(b"\x07" * 32)


@pytest.mark.parametrize("evidence", ["plain", "custodian", "custodian+change-records"])
def test_run_with_evidence(benchmark, setting: tuple[Path, Path, Key], evidence: str) -> None:
    root, public, key = setting
    compiled = compile_recipe("research")
    out = root / f"out-{evidence}"

    def run() -> int:
        shutil.rmtree(out, ignore_errors=True)
        options = engine.RunOptions(
            src=str(root / "in"), dst=str(out), workers=1,
            custodian_public=str(public) if evidence != "plain" else None,
            change_records=evidence.endswith("change-records"),
        )
        return engine.run(options, compiled, key).written

    written = benchmark.pedantic(run, rounds=3, iterations=1)
    assert written == FILES
    benchmark.extra_info["files"] = FILES
