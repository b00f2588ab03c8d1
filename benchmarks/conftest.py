"""Shared inputs for the benchmarks: typical synthetic CT instances and the plan the targets name."""

from __future__ import annotations

import pytest

from veil.core.plan import Action, Plan, Rule
from veil.keys import Key, KeyedFunctions
from veil.synth import instance_bytes

# UID remapping, date shifting, pseudonyms, private blocks removed: the work a research recipe does.
BENCH_PLAN = Plan(
    tags={
        0x00100010: Rule(Action.DUMMY),
        0x00100020: Rule(Action.PSEUDO),
        0x00080050: Rule(Action.PSEUDO),
        0x00200010: Rule(Action.PSEUDO),
        0x00101010: Rule(Action.AGE),
        0x00100030: Rule(Action.SHIFT),
        0x00080080: Rule(Action.REMOVE),
        0x00080081: Rule(Action.REMOVE),
        0x00081010: Rule(Action.REMOVE),
        0x00181000: Rule(Action.REMOVE),
    },
    vr_defaults={"SQ": Action.RECURSE, "UI": Action.UID, "DA": Action.SHIFT, "DT": Action.SHIFT,
                 "PN": Action.REMOVE},
    default_public=Action.KEEP,
    default_private=Action.REMOVE,
)


def ct_instances(count: int, rows: int = 64, cols: int = 64) -> list[bytes]:
    """Distinct CT instances of one series (distinct SOP Instance UIDs and references)."""
    return [instance_bytes(modality="CT", rows=rows, cols=cols, seed=7, instance=i, instances_per_series=count)
            for i in range(count)]


@pytest.fixture(scope="session")
def functions() -> KeyedFunctions:
    return KeyedFunctions(Key(bytes(range(32))))


@pytest.fixture(scope="session")
def ct_files() -> list[bytes]:
    return ct_instances(500)
