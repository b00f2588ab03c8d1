"""`veil report`: per instance, every attribute a run changed, its action, rule and final value, and the original
only for the custodian (or, for a single-user run, the run key); equal to `veil inspect` row for row."""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import stat
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from corpus import pydicom_file_list

from veil import audit, engine
from veil.audit.changes import CHANGE_VALUE_LIMIT, audit_seal, originals_path
from veil.cli import report as report_cli
from veil.cli.exits import EXIT_FATAL, EXIT_OK, EXIT_USAGE
from veil.errors import AuditError, KeyError_, VeilError
from veil.keys import Key, KeyedFunctions
from veil.keys.custodian import PASSPHRASE_ENV, generate_custodian, load_custodian_private
from veil.preview.inspect import inspect_file
from veil.preview.report import change_report, parse_selection, report_bytes
from veil.recipes import compile_recipe
from veil.synth import write_archive

KEY = Key(bytes(range(32)))
PASSPHRASE = "correct horse battery"
RESEARCH = compile_recipe("research")
FUNCTIONS = KeyedFunctions(KEY, **RESEARCH.key_parameters)


def veil_report(*argv: str) -> int:
    """``veil report ARGS`` through its own parser, errors mapped as veil.cli.main maps them (the lead registers
    the verb there)."""
    parser = argparse.ArgumentParser(prog="veil")
    report_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", *argv])
    try:
        return report_cli.command(args)
    except VeilError as exc:
        print(f"veil: error: {exc}", file=sys.stderr)
        return EXIT_FATAL


@pytest.fixture(scope="module")
def custodian(tmp_path_factory):
    folder = tmp_path_factory.mktemp("custodian")
    public, private, _ = generate_custodian("officer", folder, PASSPHRASE)
    return public, private


def run(src: Path, dst: Path, custodian_public: Path | None = None, change_records: bool = True) -> None:
    options = engine.RunOptions(src=str(src), dst=str(dst), change_records=change_records,
                                custodian_public=str(custodian_public) if custodian_public else None)
    engine.run(options, RESEARCH, KEY)


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    """Synthetic studies and a few of pydicom's test files (sequences, private blocks, odd encodings)."""
    src = tmp_path_factory.mktemp("archive") / "in"
    write_archive(src, patients=2, studies_per_patient=1, series_per_study=2, instances_per_series=3, seed=11)
    small = [p for p in pydicom_file_list() if p.stat().st_size < 40_000][:16]
    for i, path in enumerate(small):
        shutil.copyfile(path, src / f"pydicom-{i:02d}-{path.name}")
    return src


@pytest.fixture(scope="module")
def sealed(archive, custodian, tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("sealed") / "out"
    run(archive, dst, custodian[0])
    return dst


@pytest.fixture(scope="module")
def single_user(archive, tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("single") / "out"
    run(archive, dst)
    return dst


def test_the_report_of_every_instance_equals_inspect_row_for_row(archive, sealed, custodian) -> None:
    opener = load_custodian_private(custodian[1], PASSPHRASE)
    reports = change_report(sealed, opener, all_rows=True)
    pixels = {r["output_path"]: r["pixel_redaction"] for r in audit.read_audit(sealed).to_pylist()}
    assert len(reports) == sum(r["status"] == "written" for r in audit.read_audit(sealed).to_pylist()) > 12
    for report in reports:
        assert report.originals == "opened" and report.sealing == "custodian"
        expected = inspect_file(archive / report.output_path, RESEARCH, FUNCTIONS, limit=CHANGE_VALUE_LIMIT).rows
        assert len(report.rows) == len(expected), report.output_path
        for e, g in zip(expected, report.rows, strict=True):
            after_checked = not pixels[report.output_path] or e.path not in {"(0012,0064)", "(0028,0004)",
                                                                             "(7FE0,0010)"}
            assert (e.path, e.tag, e.keyword, e.action, e.rule, e.before) == (
                g.path, g.tag, g.keyword, g.action, g.rule, g.before)
            assert not after_checked or (e.after, e.present_after) == (g.after, g.present_after)


def test_by_default_only_changed_rows_and_no_originals_without_the_key(sealed) -> None:
    reports = change_report(sealed)
    assert all(r.originals == "sealed" for r in reports)
    rows = [row for r in reports for row in r.rows]
    assert rows and all(row.action not in ("KEEP", "RECURSE") for row in rows)
    assert all(row.before is None for row in rows)
    assert any(row.keyword == "PatientName" for row in rows)


def test_the_run_key_cannot_open_a_custodian_run_and_the_custodian_key_not_a_single_user_run(
        sealed, single_user, custodian) -> None:
    with pytest.raises(KeyError_, match="custodian key"):
        change_report(sealed, audit_seal(KEY))
    with pytest.raises(KeyError_, match="single-user"):
        change_report(single_user, load_custodian_private(custodian[1], PASSPHRASE))
    opened = change_report(single_user, audit_seal(KEY))
    assert all(r.originals == "opened" and r.sealing == "single-user" for r in opened)
    names = [row for r in opened for row in r.rows if row.keyword == "PatientName"]
    assert names and all(row.before and row.before != row.after for row in names)


def test_selection_by_uid_path_file_and_sample(sealed, tmp_path) -> None:
    every = change_report(sealed)
    first, last = every[0], every[-1]
    by_uid = change_report(sealed, instances=f"{first.sop_instance_uid},{last.output_path}")
    assert [(r.shard, r.row) for r in by_uid] == [(first.shard, first.row), (last.shard, last.row)]
    listing = tmp_path / "sel.txt"
    listing.write_text(f"{last.output_path}\n\n./{first.output_path}\n")
    assert change_report(sealed, instances=f"@{listing}") == by_uid
    # Copies of one input share their new UID: the UID selects every one of them.
    shared = {}
    for r in every:
        shared.setdefault(r.sop_instance_uid, []).append((r.shard, r.row))
    uid, where = max(shared.items(), key=lambda kv: len(kv[1]))
    assert [(r.shard, r.row) for r in change_report(sealed, instances=[uid])] == where
    sample = change_report(sealed, instances="sample:3")
    assert len(sample) == 3 and sample == change_report(sealed, instances=3)
    assert parse_selection("sample:3") == 3
    with pytest.raises(AuditError, match="no change record"):
        change_report(sealed, instances="1.2.3.4.5")
    with pytest.raises(AuditError, match="whole number"):
        parse_selection("sample:x")


def test_a_run_without_change_records_says_how_to_get_them(archive, tmp_path, capsys) -> None:
    run(archive, tmp_path / "out", change_records=False)
    with pytest.raises(AuditError, match="run with --change-records"):
        change_report(tmp_path / "out")
    assert veil_report(str(tmp_path / "out")) == EXIT_FATAL
    assert "--change-records" in capsys.readouterr().err


def test_purged_originals_are_reported_as_purged(archive, custodian, tmp_path) -> None:
    dst = tmp_path / "out"
    run(archive, dst, custodian[0])
    for path in (dst / ".veil" / "audit" / "changes").glob("originals-*.bin"):
        path.unlink()
    reports = change_report(dst, load_custodian_private(custodian[1], PASSPHRASE))
    assert reports and all(r.originals == "purged" for r in reports)
    assert all(row.before is None for r in reports for row in r.rows)
    assert not originals_path(dst, 0).exists()


# --- writers and the command ----------------------------------------------------------------------------------


def test_csv_to_stdout_without_originals(sealed, capsys) -> None:
    assert veil_report(str(sealed), "--format", "csv", "--instances", "sample:2") == EXIT_OK
    captured = capsys.readouterr()
    rows = list(csv.DictReader(io.StringIO(captured.out)))
    assert rows and {r["before"] for r in rows} == {""} and {r["originals"] for r in rows} == {"sealed"}
    assert "--custodian-key" in captured.err


def test_html_with_originals_is_escaped_bannered_private_and_kept_out_of_dst(
        sealed, custodian, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    inside = sealed / "report.html"
    assert veil_report(str(sealed), "--custodian-key", str(custodian[1]), "-o", str(inside)) == EXIT_USAGE
    assert "outside DST" in capsys.readouterr().err and not inside.exists()
    out = tmp_path / "report.html"
    assert veil_report(str(sealed), "--custodian-key", str(custodian[1]), "-o", str(out)) == EXIT_OK
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    page = out.read_text()
    assert "contains original values (PHI)" in page and page.count("<table>") == len(change_report(sealed))
    assert "PHI" in capsys.readouterr().err
    # Every value is escaped: a value with markup in it comes out as text.
    reports = change_report(sealed, instances="sample:1")
    poisoned = [r.__class__(r.output_path, "<script>x</script>", r.shard, r.row, r.originals, r.sealing, r.rows)
                for r in reports]
    assert b"<script>" not in report_bytes(poisoned, "html") and b"&lt;script&gt;" in report_bytes(poisoned, "html")
    # Without originals: no banner.
    assert "contains original values" not in report_bytes(reports, "html").decode()


def test_parquet_needs_an_output_and_holds_originals_with_the_key(single_user, tmp_path, capsys) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY.material)
    key_file.chmod(0o600)
    assert veil_report(str(single_user), "--format", "parquet") == EXIT_USAGE
    out = tmp_path / "changes.parquet"
    assert veil_report(str(single_user), "--key", str(key_file), "--all", "-o", str(out)) == EXIT_OK
    table = pq.read_table(out).to_pylist()
    assert {r["originals"] for r in table} == {"opened"} and all(r["before"] is not None for r in table)
    assert {r["action"] for r in table} >= {"KEEP", "REMOVE"}
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
