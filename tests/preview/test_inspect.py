"""`veil inspect` and the dry run: every element before and after, the action the rewriter took and the rule
that chose it, on files with sequences and private blocks."""

from __future__ import annotations

import argparse
import json

import pytest

from veil.cli.main import EXIT_FATAL, EXIT_OK, add_parsers
from veil.core.plan import Action, Plan, Rule, explain_rule
from veil.keys import Key, KeyedFunctions
from veil.pipeline import Deidentifier
from veil.preview.inspect import dry_run, inspect_bytes, inspect_file
from veil.recipes import compile_recipe
from veil.synth import instance_bytes, write_archive

RESEARCH = compile_recipe("research")
KEY = KeyedFunctions(Key(bytes(range(32))), **RESEARCH.key_parameters)


def run_proof(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="veil")
    sub = parser.add_subparsers(dest="command", required=True)
    handlers = add_parsers(sub)
    args = parser.parse_args(list(argv))
    return handlers[args.command](args)


@pytest.fixture(scope="module")
def derived_file() -> bytes:
    """A derived image (series 2): Source Image Sequence, nested request attributes, three private blocks."""
    return instance_bytes(patient=0, series=1, instances_per_series=3)


def rows_by_path(inspection) -> dict:
    return {row.path: row for row in inspection.rows}


def test_every_element_has_before_after_action_and_rule(derived_file) -> None:
    result = inspect_bytes(derived_file, RESEARCH, KEY, path="a.dcm")
    rows = rows_by_path(result)
    assert not result.throwaway_key and result.key_id == KEY.key_id
    name = rows["(0010,0010)"]
    assert (name.action, name.rule, name.after) == ("EMPTY", "tag (0010,0010) PatientName", "")
    patient_id = rows["(0010,0020)"]
    assert (
        patient_id.action == "PSEUDO"
        and patient_id.after == KEY.pseudonym(patient_id.before.encode()).decode()
    )
    nested = rows["(0040,0275)[0](0008,0050)"]
    assert (nested.action, nested.rule) == ("PSEUDO", "tag (0008,0050) AccessionNumber")
    deep = rows["(0040,0275)[0](0040,0008)[0](0040,0440)[0](0040,A160)"]
    assert deep.action == "CALL" and deep.keyword == "TextValue" and deep.before != deep.after
    assert rows["(0008,2112)"].action == "RECURSE" and rows["(0008,2112)[0](0008,1155)"].action == "UID"
    private = rows["(0009,1001)"]
    assert (private.action, private.rule, private.present_after) == ("REMOVE", "default private", False)
    inner = rows["(0009,1040)[0](0009,1001)"]
    assert inner.action == "REMOVE" and inner.rule == "removed with its sequence (0009,1040)"
    code = rows["(0008,1032)[0](0008,0100)"]
    assert (code.action, code.rule, code.before, code.after) == (
        "KEEP",
        "tag (0008,0100) CodeValue",  # kept by name: the vr SH rule cleans what no rule names
        "CTABPELC",
        "CTABPELC",
    )
    assert rows["(0028,0010)"].rule == "default public" and rows["(7FE0,0010)"].before.endswith("bytes>")
    marking = rows["(0012,0062)"]
    assert (marking.action, marking.after) == ("REPLACE", "YES") and marking.rule.startswith("inserted")
    assert rows["(0008,1032)"].rule == "VR default SQ"


def test_actions_agree_with_what_the_rewriter_touched(derived_file) -> None:
    result = inspect_bytes(derived_file, RESEARCH, KEY)
    rows = rows_by_path(result)
    touched = Deidentifier(RESEARCH.plan, KEY).rewrite(derived_file).touched()
    assert touched
    for path, action in touched:
        assert rows[path].action == action, path
    for row in result.rows:
        if row.action in ("REMOVE",) and not row.rule.startswith("removed with"):
            assert not row.present_after, row.path
        if row.action == "KEEP" and not row.rule.startswith("copied"):
            assert row.present_after and row.after == row.before, row.path


def test_long_values_are_cut_to_64_characters(derived_file) -> None:
    rows = rows_by_path(inspect_bytes(derived_file, RESEARCH, KEY))
    history = rows["(0010,21B0)"]
    assert len(history.before) == 64 and history.before.endswith("…")


def test_without_a_key_keyed_values_come_from_a_throwaway_key(
    tmp_path, derived_file, monkeypatch, capsys
) -> None:
    monkeypatch.delenv("VEIL_KEY", raising=False)
    path = tmp_path / "a.dcm"
    path.write_bytes(derived_file)
    result = inspect_file(path, "research")
    assert result.throwaway_key and result.key_id is None
    assert run_proof("inspect", str(path), "--recipe", "research", "--json") == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    assert data["throwaway_key"] and any(e["path"] == "(0009,1040)[0](0009,1002)" for e in data["elements"])
    assert run_proof("inspect", str(path), "--recipe", "research") == EXIT_OK
    table = capsys.readouterr().out
    assert "PatientName" in table and "throwaway key" in table


def test_inspect_of_a_broken_file_is_fatal(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x40\x00")
    assert run_proof("inspect", str(bad), "--recipe", "research") == EXIT_FATAL
    assert "bad.dcm" in capsys.readouterr().err


def test_explain_rule_follows_the_plan_lookup_order() -> None:
    plan = Plan(
        tags={0x00100010: Rule(Action.EMPTY)},
        masks=((0xFF00FFFF, 0x60003000, Rule(Action.REMOVE)),),
        private={(0x0019, "ACME", 0x0C): Rule(Action.KEEP)},
        vr_defaults={"PN": Action.REMOVE},
        default_public=Action.KEEP,
        default_private=Action.REMOVE,
    )
    assert explain_rule(plan, 0x00100010, "PN").label == "tag (0010,0010) PatientName"
    assert explain_rule(plan, 0x60023000, "OW").label == "mask (60xx,3000)"
    assert explain_rule(plan, 0x00081050, "PN").label == "VR default PN"
    assert explain_rule(plan, 0x00180050, "DS").label == "default public"
    choice = explain_rule(plan, 0x0019100C, "UN", "ACME")
    assert (choice.rule.action, choice.kind) == (Action.KEEP, "private")
    assert explain_rule(plan, 0x00190010, "LO", "ACME").kind == "private creator"
    assert explain_rule(plan, 0x00190011, "LO", "OTHER").label == "default private"
    assert explain_rule(plan, 0x0019110C, "UN", "OTHER").label == "default private"
    assert explain_rule(plan, 0x00080000, "UL").kind == "group length"


def test_dry_run_counts_rules_and_what_no_rule_names(tmp_path) -> None:
    src = tmp_path / "in"
    write_archive(src, patients=2, series_per_study=2, instances_per_series=3)
    (src / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x40\x00")
    paths = [(p, p.relative_to(src)) for p in sorted(src.rglob("*.dcm"))]
    summary = dry_run(paths, "research", sample=100)
    assert summary.files == 13 and sum(summary.quarantined.values()) == 1
    rules = {label: (action, n) for label, action, n in summary.rules}
    assert rules["tag (0010,0010) PatientName"] == ("EMPTY", 12)
    assert rules["default private"][0] == "REMOVE" and rules["default private"][1] > 12
    creators = {(g, c) for g, c, _, _ in summary.unnamed_private_creators}
    assert creators == {
        ("0009", "VEILSYNTH_GEMS_LIKE"),
        ("0019", "VEILSYNTH_ACQ_PARAMS"),
        ("0029", "VEILSYNTH_CSA_LIKE"),
        ("0029", "VEILSYNTH_MEDCOM_LIKE"),
    }
    unnamed = {t: (a, n) for t, _, _, a, n in summary.unnamed_tags}
    assert unnamed["(0018,0060)"] == ("KEEP", 12)  # KVP: kept by the default
    assert "(0010,0010)" not in unnamed
    assert summary.actions["EMPTY"] > 0 and "rules fired" in summary.format()
    assert json.loads(json.dumps(summary.to_dict()))["files"] == 13
    assert dry_run(iter(paths), compile_recipe("research"), sample=2).files == 2  # lazy listings are fine
