"""Output you can certify (issue 13), end to end and as a user would: the public corpus with synthetic
identities planted (tests/support/planted.py), `veil keygen`, `veil run SRC DST --recipe R --key K`, then
`veil verify SRC DST --key K --json`.

- verify passes (exit 0, no error finding; notes allowed) on veil's output for every shipped profile and for
  ps3.15-basic with each shipped option layer on top;
- verify exits 4 on an untouched copy with one finding per planted value, each at the element path it was
  planted in and of its kind;
- verify exits 4 with exactly one finding, naming its element path, when one identity value is put back into
  veil's research output (a description, a nested item, a private element); no report shows a value.

The figures (files, planted values, findings and notes per case) are printed (`pytest -s` or `-rP`); finding
categories are printed by path, kind and whose identity matched, never by value.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
import pytest
from corpus import CORPUS_ROOT
from planted import PlantedCorpus, build_planted_corpus, categorise_finding, element_text
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from veil.recipes import list_recipes

pytestmark = pytest.mark.corpus

EXIT_OK, EXIT_QUARANTINED, EXIT_FINDINGS = 0, 3, 4

_SCRIPT = Path(sys.executable).with_name("veil")
VEIL = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "veil"]

BASE = "ps3.15-basic"
PROFILES = sorted(r.name for r in list_recipes() if r.kind == "profile")
OPTIONS = sorted(r.name for r in list_recipes() if r.kind == "option")
RECIPES = PROFILES + [f"{BASE}+{option}" for option in OPTIONS]


@dataclass
class Outcome:
    """One recipe's `veil run` and `veil verify` of the planted corpus (stderr kept only when it failed)."""

    recipe: str
    dst: Path
    run_rc: int
    run_summary: dict[str, Any] | None = field(repr=False)
    verify_rc: int | None = None
    report: dict[str, Any] | None = field(default=None, repr=False)
    verify_stdout: str = field(default="", repr=False)
    problem: str = field(default="", repr=False)


@dataclass
class Proof:
    root: Path
    src: Path
    key: Path
    planted: PlantedCorpus
    outcomes: dict[str, Outcome]


def veil(*args: str | Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VEIL, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=os.environ.copy()
    )


def scrub(text: str, planted: PlantedCorpus) -> str:
    """``text`` with every planted value blanked (for stderr shown in an assertion message)."""
    for value in sorted(planted.all_values(), key=len, reverse=True):
        if len(value) >= 3:
            text = re.sub(re.escape(value), "***", text, flags=re.IGNORECASE)
    return text


def tail(stderr: str, planted: PlantedCorpus) -> str:
    """The last lines of a command's stderr (where its error is), planted values blanked."""
    return scrub("\n".join(stderr.strip().splitlines()[-6:]), planted)


def recipe_argument(label: str, directory: Path) -> str:
    """A shipped profile by name; ps3.15-basic with one option layer as a recipe file that stacks them."""
    if "+" not in label:
        return label
    base, option = label.split("+", 1)
    path = directory / f"{label}.yml"
    path.write_text(
        f'name: {label}\nversion: "1.0"\nedition: 2026d\ndescription: "{base} with the option {option}"\n'
        f"extends: {base}\noptions: [{option}]\nparameters:\n  date_shift_days: [-3650, -1]\nrules: []\n"
    )
    return str(path)


def run_and_verify(label: str, root: Path, src: Path, key: Path, planted: PlantedCorpus) -> Outcome:
    dst = root / "out" / label
    recipe = recipe_argument(label, root)
    ran = veil("run", src, dst, "--recipe", recipe, "--key", key, "--workers", "1", "--json")
    try:
        summary = json.loads(ran.stdout) if ran.stdout.strip() else None
    except json.JSONDecodeError:
        summary = None
    outcome = Outcome(label, dst, ran.returncode, summary)
    if ran.returncode not in (EXIT_OK, EXIT_QUARANTINED):
        outcome.problem = "veil run: " + tail(ran.stderr, planted)
        return outcome
    checked = veil("verify", src, dst, "--recipe", recipe, "--key", key, "--json")
    outcome.verify_rc = checked.returncode
    outcome.verify_stdout = checked.stdout
    try:
        outcome.report = json.loads(checked.stdout)
    except json.JSONDecodeError:
        problem = tail(checked.stderr, planted)
        outcome.problem = f"veil verify exited {checked.returncode} with no report:\n{problem}"
    return outcome


@pytest.fixture(scope="module")
def proof(tmp_path_factory: pytest.TempPathFactory) -> Proof:
    if not CORPUS_ROOT.is_dir():
        pytest.skip(f"shared corpus not found at {CORPUS_ROOT}")
    root = tmp_path_factory.mktemp("certifiable")
    src, key = root / "src", root / "key"
    planted = build_planted_corpus(src)
    if not planted.files:
        pytest.skip("no corpus file could be planted")
    made = veil("keygen", key)
    assert made.returncode == EXIT_OK, made.stderr
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        futures = {label: pool.submit(run_and_verify, label, root, src, key, planted) for label in RECIPES}
        outcomes = {label: future.result() for label, future in futures.items()}
    by_kind = ", ".join(f"{kind} {n}" for kind, n in sorted(planted.by_kind().items()))
    print(
        f"\ncertifiable: {len(planted.files)} files planted ({planted.skipped} skipped: pydicom cannot read "
        f"or write them), {planted.patients} patients, {len(planted.values)} planted values ({by_kind})"
    )
    return Proof(root, src, key, planted, outcomes)


def verify_report(proof: Proof, dst: Path) -> tuple[int, dict[str, Any], str]:
    """`veil verify SRC DST --key K --json` under research (dciodvfy off: these cases count leak findings);
    its exit code, JSON report and stdout. A verify that gives no report fails the test here."""
    checked = veil("verify", proof.src, dst, "--key", proof.key, "--json", "--dciodvfy-sample", "0")
    try:
        report = json.loads(checked.stdout)
    except json.JSONDecodeError:
        problem = tail(checked.stderr, proof.planted)
        pytest.fail(f"veil verify exited {checked.returncode} with no report:\n{problem}")
    return checked.returncode, report, checked.stdout


# -- reading a report --


def file_of(masked: str, planted: PlantedCorpus) -> str:
    """The planted file a finding names (verify masks identifying values in file names too)."""
    rels = {f.rel for f in planted.files}
    if masked in rels:
        return masked
    same = [
        r
        for r in rels
        if len(r) == len(masked) and all(m in ("*", c) for m, c in zip(masked, r, strict=True))
    ]
    return same[0] if len(same) == 1 else masked


def path_shape(path: str) -> str:
    """An element path without item numbers: the attribute, wherever it sits."""
    return re.sub(r"\[\d+\]", "[n]", path)


def describe(findings: list[dict[str, Any]], dst: Path, planted: PlantedCorpus) -> Counter[tuple[str, ...]]:
    """Leak findings counted by (whose value matched, attribute, path, kind, verify's detail with patient
    numbers left out); other findings by (category, attribute, detail)."""
    patient_of = {f.rel: f.patient for f in planted.files}
    datasets: dict[str, pydicom.Dataset | None] = {}
    out: Counter[tuple[str, ...]] = Counter()
    for finding in findings:
        if finding["category"] != "leak":
            attribute = finding["keyword"] or path_shape(finding["path"])
            out[(finding["category"], attribute, finding["detail"])] += 1
            continue
        rel = file_of(finding["file"], planted)
        if rel not in datasets:
            try:
                datasets[rel] = pydicom.dcmread(dst / rel, force=True)
            except Exception:
                datasets[rel] = None
        ds = datasets[rel]
        if not re.match(r"\([0-9A-Fa-f]{4},", finding["path"]):
            category = "outside any element: " + ("file name" if "file name" in finding["path"] else "bytes")
        else:
            text = element_text(ds, finding["path"]) if ds is not None else None
            category = categorise_finding(finding, text, planted, patient_of.get(rel))
        attribute = finding["keyword"] or path_shape(finding["path"])
        detail = re.sub(r"patients? \d+(, \d+)*", "patient N", finding["detail"])
        out[(category, attribute, path_shape(finding["path"]), finding["kind"], detail)] += 1
    return out


def lines(counter: Counter[tuple[str, ...]]) -> str:
    return "\n".join(f"  {n:4d}  {' | '.join(key)}" for key, n in counter.most_common())


def shown_values(text: str, planted: PlantedCorpus) -> int:
    """How many planted values (whole values, and name parts of 5 letters or more) ``text`` shows."""
    words: set[str] = set()
    for value in planted.values:
        words.add(value.value.lower())
        if value.kind == "name":
            words.update(p.lower() for p in re.split(r"[\^ ]+", value.value) if len(p) >= 5)
    folded = text.lower()
    return sum(1 for w in words if re.search(r"(?<![a-z0-9])" + re.escape(w) + r"(?![a-z0-9])", folded))


# -- a. veil's own output passes, for every shipped recipe --


@pytest.mark.parametrize("label", RECIPES)
def test_verify_passes_on_veils_own_output_of_the_planted_corpus(proof: Proof, label: str) -> None:
    outcome = proof.outcomes[label]
    run_rc = outcome.run_rc
    assert run_rc in (EXIT_OK, EXIT_QUARANTINED), f"{label}: veil run exited {run_rc}\n{outcome.problem}"
    assert outcome.report is not None, f"{label}: {outcome.problem}"
    report = outcome.report
    errors, notes = report["findings"], report["notes_findings"]
    quarantined = (outcome.run_summary or {}).get("this_run", {}).get("quarantined", "?")
    print(
        f"\ncertifiable [{label}]: run exit {outcome.run_rc} ({quarantined} quarantined), verify exit "
        f"{outcome.verify_rc}: {len(errors)} error findings, {len(notes)} notes"
    )
    if errors:
        print(lines(describe(errors, outcome.dst, proof.planted)))
    shown = shown_values(outcome.verify_stdout, proof.planted)
    assert shown == 0, f"{label}: the report shows {shown} planted values"
    rc = outcome.verify_rc
    assert rc == EXIT_OK and not errors, (
        f"{label}: verify exit {rc}, {len(errors)} error findings "
        "(match | attribute | path | kind | verify says):\n"
        + lines(describe(errors, outcome.dst, proof.planted))
    )


# -- b. an untouched copy: one finding per planted value --


@pytest.fixture(scope="module")
def untouched(proof: Proof) -> dict[str, Any]:
    copy = proof.root / "untouched"
    shutil.copytree(proof.src, copy)
    rc, report, stdout = verify_report(proof, copy)
    return {"rc": rc, "report": report, "stdout": stdout}


def planted_paths(
    proof: Proof, report: dict[str, Any]
) -> tuple[dict[tuple[str, str], list[str]], Counter[tuple[str, str]]]:
    """Error leak findings' kinds by (file, path), and planted values counted by (file, path)."""
    found: dict[tuple[str, str], list[str]] = {}
    for finding in report["findings"]:
        if finding["category"] == "leak":
            where = (file_of(finding["file"], proof.planted), finding["path"])
            found.setdefault(where, []).append(finding["kind"])
    planted = Counter((v.file, v.path) for v in proof.planted.values)
    return found, planted


def test_verify_of_an_untouched_copy_finds_every_planted_value(
    proof: Proof, untouched: dict[str, Any]
) -> None:
    report = untouched["report"]
    found, _ = planted_paths(proof, report)
    missed = Counter(
        (v.keyword or "private", path_shape(v.path), v.kind)
        for v in proof.planted.values
        if not any(v.kind in kinds.split(", ") for kinds in found.get((v.file, v.path), []))
    )
    print(
        f"\ncertifiable [untouched copy]: verify exit {untouched['rc']}, {len(report['findings'])} error "
        f"findings ({report['counts'].get('findings_by_category')}), {len(report['notes_findings'])} notes; "
        f"{len(proof.planted.values) - sum(missed.values())} of {len(proof.planted.values)} planted values "
        "found"
    )
    assert untouched["rc"] == EXIT_FINDINGS
    assert shown_values(untouched["stdout"], proof.planted) == 0, "the report shows a planted value"
    assert not missed, "planted values verify did not find (attribute | path | kind):\n" + lines(
        Counter({k: n for k, n in missed.items()})
    )


def test_verify_of_an_untouched_copy_gives_one_finding_per_planted_value(
    proof: Proof, untouched: dict[str, Any]
) -> None:
    found, planted = planted_paths(proof, untouched["report"])
    keyword = {(v.file, v.path): v.keyword or "private" for v in proof.planted.values}
    wrong = Counter(
        (keyword[where], path_shape(where[1]), f"{n} planted, {len(found.get(where, []))} findings")
        for where, n in planted.items()
        if len(found.get(where, [])) != n
    )
    at_planted = sum(len(found.get(where, [])) for where in planted)
    print(
        f"\ncertifiable [untouched copy]: {sum(planted.values())} planted values at {len(planted)} element "
        f"paths, {at_planted} error findings at those paths"
    )
    assert not wrong, "element paths where the findings are not one per planted value:\n" + lines(wrong)


# -- c. one identity value put back into veil's research output --


PUT_BACK = ("description", "nested item", "private element")


def put_back(case: str, ds: pydicom.Dataset, proof: Proof, rel: str) -> tuple[str, str]:
    """Writes one identity value of the file's patient into ``ds``; returns (element path, kind)."""
    identity = proof.planted.identity_of(rel)
    if case == "description":
        ds.StudyDescription = f"{str(ds.get('StudyDescription', '') or 'CT CHEST')[:40]} {identity.family}"
        return "(0008,1030)", "name"
    if case == "nested item":
        items = ds.get("RequestAttributesSequence")
        if not items:
            ds.RequestAttributesSequence = Sequence([Dataset()])
            items = ds.RequestAttributesSequence
        items[0].RequestedProcedureDescription = f"MR KNEE {identity.patient_id}"
        return "(0040,0275)[0](0032,1060)", "patient ID"
    block = ds.private_block(0x0013, "VEIL PUT BACK", create=True)
    block.add_new(0x01, "LO", f"{identity.family}^{identity.given[:1]}")
    tag = block.get_tag(0x01)
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})", "name"


@pytest.mark.parametrize("case", PUT_BACK)
def test_one_identity_value_put_back_is_the_one_finding(proof: Proof, case: str) -> None:
    research = proof.outcomes["research"]
    run_rc = research.run_rc
    assert run_rc in (EXIT_OK, EXIT_QUARANTINED), f"research: veil run exited {run_rc}\n{research.problem}"
    files = sorted(proof.planted.files, key=lambda f: f.rel)
    rel = next(f.rel for f in files if (research.dst / f.rel).is_file())
    target = proof.root / f"put-back-{case.replace(' ', '-')}"
    shutil.copytree(research.dst, target)
    ds = pydicom.dcmread(target / rel)
    path, kind = put_back(case, ds, proof, rel)
    ds.save_as(target / rel, enforce_file_format=True)

    rc, report, stdout = verify_report(proof, target)
    errors = report["findings"]
    here = [f for f in errors if file_of(f["file"], proof.planted) == rel and f["path"] == path]
    print(
        f"\ncertifiable [put back: {case}]: verify exit {rc}, {len(errors)} error findings "
        f"({len(here)} at the element put back), {len(report['notes_findings'])} notes"
    )
    assert rc == EXIT_FINDINGS
    assert shown_values(stdout, proof.planted) == 0, "the report shows a planted value"
    assert any(f["category"] == "leak" and kind in f["kind"].split(", ") for f in here), (
        f"no {kind} finding at the element path put back; findings:\n"
        + lines(describe(errors, target, proof.planted))
    )
    assert len(errors) == 1, (
        f"{len(errors)} error findings, {len(here)} at the element put back "
        "(match | attribute | path | kind | verify says):\n" + lines(describe(errors, target, proof.planted))
    )
