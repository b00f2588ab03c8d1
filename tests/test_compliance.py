"""Compliance evidence end to end (issue 15), as a privacy officer and an operator would use it:

the custodian makes a key pair; the operator runs with the public half, change records and an operator name;
then nothing under DST holds an input's identifier in clear (every byte of every file is searched), the run
key cannot open what was sealed, the custodian's private key can, the manifest answers who, when, how and with
which recipe, the change report shows originals only to the custodian, and a purge removes exactly the
PHI-bearing parts and records itself.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
import pytest

from veil.core.identity import identity_from_dataset

_SCRIPT = Path(sys.executable).with_name("veil")
VEIL = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "veil"]
PASSPHRASE = "a custodian's long passphrase"
OPERATOR = "officer-7"
EXIT_OK, EXIT_FATAL, EXIT_QUARANTINED = 0, 1, 3


def veil(*args: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None,
         stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    environment.pop("VEIL_KEY", None)
    return subprocess.run([*VEIL, *map(str, args)], capture_output=True, text=True, env=environment, cwd=cwd,
                          input=stdin, timeout=600)


def _burned_in_files(folder: Path, count: int) -> list[Path]:
    """A few images with burned-in text (tests/support/burned_in.py), so the run seals before-thumbnails."""
    sys.path.insert(0, str(Path(__file__).parent / "support"))
    try:
        import burned_in
    finally:
        sys.path.pop(0)
    made = folder / "made"
    cases = burned_in.write_set(made)
    chosen = [made / c.name for c in cases if c.modality in ("CT", "MR") and c.labels][:count]
    return chosen


class Sealed:
    """One sealed run and what the test needs to judge it (built once for the module)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.src = root / "archive-of-smith-john"  # a folder name a person might give: must not reach DST
        self.dst = root / "deidentified"
        self.keys = root / "keys"
        self.table = root / "reid" / "table.bin"
        self.env = {"VEIL_CUSTODIAN_PASSPHRASE": PASSPHRASE}


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Sealed:
    run = Sealed(tmp_path_factory.mktemp("compliance"))
    run.keys.mkdir()
    run.table.parent.mkdir()
    assert veil("synth", run.src / "synth", "--patients", "2", "--series-per-study", "2",
                "--instances-per-series", "2").returncode == EXIT_OK
    burned = run.src / "burned"
    burned.mkdir()
    for path in _burned_in_files(run.root, 2):
        shutil.copy(path, burned / path.name)
    shutil.rmtree(run.root / "made")
    first = sorted((run.src / "synth").rglob("*.dcm"))[0]
    bad = run.src / "bad"
    bad.mkdir()
    (bad / "truncated.dcm").write_bytes(first.read_bytes()[:700])  # headers with identifiers, then cut
    assert veil("keygen", run.keys / "run.key").returncode == EXIT_OK
    made = veil("keygen", "--custodian", "officer", "--dir", run.keys, env=run.env)
    assert made.returncode == EXIT_OK, made.stderr
    result = veil("run", run.src, run.dst, "--recipe", "research", "--key", run.keys / "run.key",
                  "--custodian-public", run.keys / "officer.pub", "--change-records", "--reid-table", run.table,
                  "--operator", OPERATOR, "--layout", "study", "--workers", "1", "--json",
                  "--retention", "quarantine=30d,before_images=30d,change_records=0d")
    assert result.returncode == EXIT_QUARANTINED, result.stderr
    run.summary = json.loads(result.stdout)  # type: ignore[attr-defined]
    return run


def _identifiers(src: Path) -> dict[bytes, str]:
    """Every identity value of every input (the model verify and the cleaner use) and its instance UIDs, as
    bytes -> kind; short values (a sex, a two-letter code) are left out: they match by chance anywhere."""
    found: dict[bytes, str] = {}
    for path in sorted(src.rglob("*.dcm")):
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception:
            continue
        for kind, value in identity_from_dataset(ds).values:
            if len(value) >= 6:
                found[value] = kind
        for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            value = str(ds.get(keyword, "") or "").encode()
            if len(value) >= 6:
                found[value] = keyword
    return found


def test_nothing_under_dst_holds_an_input_identifier(sealed: Sealed) -> None:
    identifiers = _identifiers(sealed.src)
    assert len(identifiers) > 20
    files = [p for p in sealed.dst.rglob("*") if p.is_file()]
    veil_files = [p for p in files if ".veil" in p.relative_to(sealed.dst).parts]
    assert any(p.name.endswith(".dcm.sealed") for p in veil_files), "the quarantined original is sealed"
    assert not any(p.suffix == ".dcm" for p in veil_files), "no clear copy of a quarantined original"
    assert any("changes" in p.parts for p in veil_files), "change records were written"
    assert any("pixels.zarr" in p.parts for p in veil_files), "before-thumbnails were written"
    leaks = []
    for path in files:
        data = path.read_bytes()
        leaks.extend((str(path.relative_to(sealed.dst)), kind) for value, kind in identifiers.items()
                     if value in data)
        name = str(path.relative_to(sealed.dst)).encode()
        leaks.extend((str(path.relative_to(sealed.dst)), f"{kind} in the path") for value, kind in
                     identifiers.items() if value in name)
    assert not leaks  # (file, kind) only: never a value
    assert b"smith" not in (sealed.dst / ".veil" / "manifest.json").read_bytes().lower()


def test_the_run_key_cannot_reidentify_the_custodian_can(sealed: Sealed) -> None:
    refused = veil("reidentify", sealed.table, "--key", sealed.keys / "run.key")
    assert refused.returncode == EXIT_FATAL
    assert "custodian" in refused.stderr and refused.stdout == ""
    opened = veil("reidentify", sealed.table, "--custodian-key", sealed.keys / "officer.key", "--json",
                  env=sealed.env)
    assert opened.returncode == EXIT_OK, opened.stderr
    rows = json.loads(opened.stdout)
    originals = {row["original"].encode() for row in rows if isinstance(row["original"], str)}
    assert originals & set(_identifiers(sealed.src)), "the table maps back to the inputs' identifiers"
    wrong = veil("reidentify", sealed.table, "--custodian-key", sealed.keys / "officer.key",
                 env={"VEIL_CUSTODIAN_PASSPHRASE": "not the passphrase"})
    assert wrong.returncode == EXIT_FATAL and "passphrase" in wrong.stderr


def _iso_utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert moment.tzinfo is not None and moment.utcoffset() == UTC.utcoffset(moment)
    return moment


def test_the_manifest_answers_who_when_how_and_which_recipe(sealed: Sealed) -> None:
    exported = veil("audit", sealed.dst, "--json")
    assert exported.returncode == EXIT_OK, exported.stderr
    document = json.loads(exported.stdout)
    manifest: dict[str, Any] = document["manifest"]
    assert manifest["operator"] == OPERATOR
    assert _iso_utc(manifest["started"]) <= _iso_utc(manifest["finished"])
    assert manifest["sealing"] == "custodian"
    custodian_pub = (sealed.keys / "officer.pub").read_text()
    assert manifest["custodian"]["key_id"] in custodian_pub
    assert manifest["recipe"]["name"] == "research" and "text" in manifest["recipe"]
    assert "actions" in manifest["recipe"]["text"] or "rules" in manifest["recipe"]["text"]
    command = manifest["command"]
    joined = " ".join(command)
    for path in (sealed.src, sealed.dst, sealed.keys / "run.key", sealed.keys / "officer.pub", sealed.table):
        assert str(path) not in joined and path.name not in command
    assert "smith" not in joined
    assert "--change-records" in command and "--operator" in command
    instances = document["instances"]
    assert len(instances) == sealed.summary["this_run"]["files"]  # type: ignore[attr-defined]
    for row in instances:
        _iso_utc(row["time"])
    table = list(csv.DictReader(io.StringIO(veil("audit", sealed.dst, "--csv").stdout)))
    assert len(table) == len(instances) and {"time", "status", "input_digest"} <= set(table[0])


def test_the_change_report_shows_originals_only_to_the_custodian(sealed: Sealed) -> None:
    identifiers = set(_identifiers(sealed.src))
    plain = veil("report", sealed.dst, "--format", "csv")
    assert plain.returncode == EXIT_OK, plain.stderr
    assert plain.stdout.count("\n") > 10
    assert not [value for value in identifiers if value in plain.stdout.encode()]
    with_run_key = veil("report", sealed.dst, "--format", "csv", "--key", sealed.keys / "run.key")
    assert with_run_key.returncode == EXIT_FATAL and "custodian" in with_run_key.stderr
    out = sealed.root / "officer-report.csv"
    opened = veil("report", sealed.dst, "--format", "csv", "--custodian-key", sealed.keys / "officer.key",
                  "-o", out, env=sealed.env)
    assert opened.returncode == EXIT_OK, opened.stderr
    assert out.stat().st_mode & 0o077 == 0
    text = out.read_bytes()
    assert [value for value in identifiers if value in text], "originals are shown to the custodian"
    inside = veil("report", sealed.dst, "--format", "csv", "--custodian-key", sealed.keys / "officer.key",
                  "-o", sealed.dst / "report.csv", env=sealed.env)
    assert inside.returncode != EXIT_OK and not (sealed.dst / "report.csv").exists()


def test_before_images_open_for_the_custodian_only(sealed: Sealed) -> None:
    from PIL import Image

    after_only = veil("audit", sealed.dst, "--review", sealed.root / "review-plain")
    assert after_only.returncode == EXIT_OK, after_only.stderr
    refused = veil("audit", sealed.dst, "--review", sealed.root / "review-runkey", "--key", sealed.keys / "run.key")
    assert refused.returncode == EXIT_FATAL and "custodian" in refused.stderr
    opened = veil("audit", sealed.dst, "--review", sealed.root / "review-custodian", "--custodian-key",
                  sealed.keys / "officer.key", env=sealed.env)
    assert opened.returncode == EXIT_OK, opened.stderr
    plain = sorted((sealed.root / "review-plain").glob("*.png"))
    both = sorted((sealed.root / "review-custodian").glob("*.png"))
    assert plain and [p.name for p in plain] == [p.name for p in both]
    for a, b in zip(plain, both, strict=True):
        assert Image.open(b).width > Image.open(a).width  # before | after, side by side


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_purge_removes_exactly_the_phi_bearing_parts_and_records_itself(sealed: Sealed) -> None:
    before = _tree(sealed.dst)
    dry = veil("audit", sealed.dst, "--purge", "--older-than", "0d", "--dry-run", "--operator", OPERATOR)
    assert dry.returncode == EXIT_OK, dry.stderr
    assert _tree(sealed.dst) == before
    # The run's own policy: change-record originals after 0 days, the rest after 30: only the originals go.
    first = veil("audit", sealed.dst, "--purge", "--operator", OPERATOR)
    assert first.returncode == EXIT_OK, first.stderr
    gone = before - _tree(sealed.dst)
    assert gone and all(Path(p).name.startswith("originals-") and Path(p).suffix == ".bin" for p in gone), gone
    # An explicit limit for the rest: the sealed quarantined original and the sealed before-thumbnails go.
    second = veil("audit", sealed.dst, "--purge", "--older-than", "0d", "--operator", OPERATOR)
    assert second.returncode == EXIT_OK, second.stderr
    after = _tree(sealed.dst)
    gone = before - after - gone
    assert any(p.endswith(".dcm.sealed") for p in gone)
    assert any("pixels.zarr" in p and "before_sealed" in p for p in gone)
    assert all(p.endswith(".dcm.sealed") or ("pixels.zarr" in p and "before_sealed" in p) for p in gone), gone
    kept = {p for p in after if p.startswith(".veil/audit/part-") or p.startswith(".veil/quarantine/")
            or p.startswith(".veil/audit/changes/part-")}
    assert any(p.endswith(".json") for p in kept), "the quarantine reasons stay"
    assert len([p for p in kept if p.startswith(".veil/audit/part-")]) == len(
        [p for p in before if p.startswith(".veil/audit/part-")])
    assert not any(p.endswith(".dcm") for p in before - after), "outputs are never purged"
    records = [json.loads(line) for line in (sealed.dst / ".veil" / "purges.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["operator"] == OPERATOR for r in records)
    for record in records:
        _iso_utc(record["time"])
    shown = json.loads(veil("audit", sealed.dst, "--json").stdout)
    assert "purge" in json.dumps(shown["summary"]).lower()
    report = veil("report", sealed.dst, "--format", "csv", "--custodian-key", sealed.keys / "officer.key",
                  "-o", sealed.root / "after-purge.csv", env=sealed.env)
    assert report.returncode == EXIT_OK, report.stderr
    text = (sealed.root / "after-purge.csv").read_bytes()
    assert not [value for value in _identifiers(sealed.src) if value in text], "the originals are gone"
