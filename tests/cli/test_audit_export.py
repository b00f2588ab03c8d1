"""``veil audit DST --json`` / ``--csv`` (the run for other tools), ``--purge`` from the command line, and the
plain summary's run record."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from veil import audit, engine
from veil.audit.schema import AUDIT_COLUMNS, parse_iso_time
from veil.cli.main import EXIT_OK, EXIT_USAGE, main
from veil.keys import Key
from veil.recipes import compile_recipe, load_recipe
from veil.synth import write_archive

KEY = Key(bytes(range(32)))


@pytest.fixture(scope="module")
def dst(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("export")
    src = root / "in"
    write_archive(src, patients=2, studies_per_patient=1, series_per_study=1, instances_per_series=2, seed=3)
    (src / "junk.dcm").write_bytes(b"\x00 not dicom")
    out = root / "out"
    options = engine.RunOptions(src=str(src), dst=str(out), workers=1, shard_files=2, operator="alice",
                                retention={"quarantine": "30d"},
                                command=("veil", "run", str(src), str(out), "--operator", "alice"))
    engine.run(options, compile_recipe(load_recipe("research")), KEY)
    return out


def test_json_exports_the_manifest_the_summary_and_every_instance(dst, capsys) -> None:
    assert main(["audit", str(dst), "--json"]) == EXIT_OK
    document = json.loads(capsys.readouterr().out)
    assert set(document) == {"manifest", "summary", "instances"}
    assert document["manifest"] == audit.read_manifest(dst)
    summary = document["summary"]
    assert (summary["files"], summary["written"], summary["quarantined"], summary["shards"]) == (5, 4, 1, 3)
    assert summary["key_ids"] == [KEY.key_id] and summary["quarantine"][0]["reason"]
    assert summary["due_for_purge"] == {} and summary["purges"] == []
    rows = document["instances"]
    assert len(rows) == 5 and all(list(row) == list(AUDIT_COLUMNS) for row in rows)
    assert all(row["time"].endswith("Z") and parse_iso_time(row["time"]) > 0 for row in rows)
    assert sorted(row["status"] for row in rows) == ["quarantined"] + ["written"] * 4


def test_csv_exports_one_line_per_instance_with_every_column(dst, capsys, tmp_path) -> None:
    assert main(["audit", str(dst), "--csv"]) == EXIT_OK
    lines = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert lines[0] == list(AUDIT_COLUMNS) and len(lines) == 6
    rows = [dict(zip(lines[0], line, strict=True)) for line in lines[1:]]
    assert {row["pixel_redaction"] for row in rows} == {"false"}
    assert all(parse_iso_time(row["time"]) > 0 for row in rows)
    assert sum(int(row["count_uid"]) for row in rows) > 0
    out = tmp_path / "audit.csv"
    assert main(["audit", str(dst), "--csv", "-o", str(out)]) == EXIT_OK
    assert list(csv.reader(out.open())) == lines and capsys.readouterr().out == ""


def test_json_to_a_file(dst, tmp_path, capsys) -> None:
    out = tmp_path / "audit.json"
    assert main(["audit", str(dst), "--json", "--output", str(out)]) == EXIT_OK
    assert len(json.loads(out.read_text())["instances"]) == 5


def test_the_summary_shows_the_run_record(dst, capsys) -> None:
    assert main(["audit", str(dst)]) == EXIT_OK
    text = capsys.readouterr().out
    for expected in ("operator              alice", "sealing               single-user", "invocations (1)",
                     "retention  before_images keep, change_records keep, quarantine 30d",
                     "nothing due for purge under this policy", "versions   core "):
        assert expected in text
    assert str(dst) not in text


@pytest.mark.parametrize("argv, problem", [
    (["--json", "--csv"], "not allowed with argument"),
    (["--purge", "--json"], "--json and --purge do not go together"),
    (["-o", "x.json"], "-o is for --json or --csv"),
    (["--older-than", "3d"], "are for --purge"),
    (["--dry-run"], "are for --purge"),
    (["--purge", "--older-than", "soon"], "not an age"),
])
def test_audit_usage_errors(dst, capsys, argv, problem) -> None:
    try:
        code = main(["audit", str(dst), *argv])
    except SystemExit as exc:  # argparse's own (mutually exclusive options)
        code = int(exc.code or 0)
    assert code == EXIT_USAGE
    assert problem in capsys.readouterr().err


def test_purge_from_the_command_line(tmp_path, dst, capsys) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dst, copy)
    held = sorted(p.name for p in audit.quarantine_dir(copy).iterdir())
    assert [name.rsplit(".", 1)[1] for name in held] == ["dcm", "json"]
    assert main(["audit", str(copy), "--purge", "--older-than", "0d", "--dry-run"]) == EXIT_OK
    assert "would remove" in capsys.readouterr().out
    assert sorted(p.name for p in audit.quarantine_dir(copy).iterdir()) == held
    assert main(["audit", str(copy), "--purge", "--older-than", "0d", "--operator", "dpo"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "removed" in out and "1 quarantined originals" in out
    assert [p.name.rsplit(".", 1)[1] for p in audit.quarantine_dir(copy).iterdir()] == ["json"]
    assert main(["audit", str(copy)]) == EXIT_OK
    assert "purges (1)" in capsys.readouterr().out


def test_run_refuses_a_malformed_retention(tmp_path, capsys) -> None:
    code = main(["run", str(tmp_path), str(tmp_path / "out"), "--retention", "quarantine=soon"])
    assert code == EXIT_USAGE
    assert "--retention" in capsys.readouterr().err
