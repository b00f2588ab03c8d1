"""The run record: ISO 8601 UTC times in the manifest and on every audit row, operator, host, versions, the
command with its paths digested, the recipe's full resolved text, the sealing mode and custodian, the retention
policy, one entry per invocation (a resume is recorded too)."""

from __future__ import annotations

import getpass
import hashlib
import json
import re
import socket
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from veil import audit, engine
from veil.audit.schema import AUDIT_SCHEMA_VERSION, iso_time, parse_iso_time
from veil.cli.main import EXIT_FATAL, main
from veil.engine.driver import _command_record
from veil.keys import Key
from veil.keys.custodian import generate_custodian
from veil.recipes import compile_recipe, load_recipe
from veil.synth import write_archive

KEY = Key(bytes(range(32)))
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
DIGESTED = re.compile(r"<(src|dst|key|reid-table|files-from|custodian-public|recipe|path):[0-9a-f]{32}>")


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("records") / "Doe^John exports"  # a path that names someone
    write_archive(src, patients=2, studies_per_patient=1, series_per_study=1, instances_per_series=3, seed=7)
    (src / "junk.dcm").write_bytes(b"\x00\x01 not dicom")
    return src


@pytest.fixture(scope="module")
def compiled():  # type: ignore[no-untyped-def]
    return compile_recipe(load_recipe("research"))


@pytest.fixture(scope="module")
def keyless_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A recipe without keyed actions (no UIDs, pseudonyms or shifts): runs without a key."""
    path = tmp_path_factory.mktemp("recipes") / "plain.yml"
    path.write_text('name: plain\nversion: "1"\nedition: 2026d\ndefaults: {public: keep, private: remove}\n'
                    "rules:\n  - {keyword: PatientName, action: empty}\n")
    return path


def _utc_micros(text: str) -> int:
    assert ISO.fullmatch(text), text
    return parse_iso_time(text)


def test_the_manifest_records_who_when_where_what_with_iso_utc_times(archive, compiled, tmp_path) -> None:
    dst = tmp_path / "out"
    before = time.time_ns() // 1000
    command = ("/opt/venv/bin/veil", "run", str(archive), str(dst), "--key", "/home/jdoe/project.key",
               "--workers", "1", "--operator", "alice", "--recipe", "research")
    engine.run(engine.RunOptions(src=str(archive), dst=str(dst), workers=1, operator="alice", command=command),
               compiled, KEY)
    after = time.time_ns() // 1000
    manifest = audit.read_manifest(dst)

    assert manifest["audit_schema_version"] == AUDIT_SCHEMA_VERSION == 2
    started, finished = _utc_micros(manifest["started"]), _utc_micros(manifest["finished"])
    assert before <= started <= finished <= after
    assert manifest["operator"] == "alice" and manifest["host"] == socket.gethostname()
    assert set(manifest["versions"]) == {"veil", "python", "pydicom", "core"}
    assert re.fullmatch(r".+\+sha256\.[0-9a-f]{16}", manifest["versions"]["core"])
    assert manifest["key_id"] == KEY.key_id and manifest["custodian"] is None
    assert manifest["sealing"] == "single-user" and manifest["change_records"] is False
    assert manifest["retention"] == {"quarantine": "keep", "before_images": "keep", "change_records": "keep"}
    # The recipe's full resolved text: its content hash is the hash of what the text says.
    recipe = manifest["recipe"]
    assert recipe["name"] == "research" and recipe["layers"][-1].startswith("research ")
    canonical = yaml.safe_load(recipe["text"])
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(text.encode()).hexdigest() == recipe["hash"] == compiled.recipe.content_hash
    # The command holds no path given, only keyed digests of them.
    record = manifest["command"]
    assert record[:2] == ["veil", "run"]
    assert record[2] == f"<src:{manifest['src_digest']}>" and record[3].startswith("<dst:")
    assert record[4:6] == ["--key", record[5]] and record[5].startswith("<key:")
    assert record[6:] == ["--workers", "1", "--operator", "alice", "--recipe", "research"]
    flat = json.dumps(manifest)
    for given in (str(archive), str(dst), "Doe^John", "jdoe", "/opt/venv", str(tmp_path)):
        assert given not in flat
    assert all(DIGESTED.fullmatch(token) for token in record if token.startswith("<"))
    # One invocation so far.
    (entry,) = manifest["runs"]
    assert entry["run_id"] == manifest["run_id"] and entry["command"] == record and entry["resumed"] is False
    assert entry["started"] == manifest["started"] and entry["finished"] == manifest["finished"]


def test_every_audit_row_carries_its_utc_time(archive, compiled, tmp_path) -> None:
    before = time.time_ns() // 1000
    engine.run(engine.RunOptions(src=str(archive), dst=str(tmp_path / "out"), workers=1), compiled, KEY)
    after = time.time_ns() // 1000
    table = audit.read_audit(tmp_path / "out")
    assert table.schema.field("time").type == pa.timestamp("us", tz="UTC")
    micros = table["time"].cast(pa.int64()).to_pylist()
    assert len(micros) == 7 and all(before <= t <= after for t in micros)
    statuses = table["status"].to_pylist()
    assert statuses.count("quarantined") == 1  # a refused input has its time too


def test_a_part_of_the_first_schema_version_is_redone_on_resume(tmp_path) -> None:
    from veil.audit.write import write_shard

    row = audit.AuditRow("run", 0, "ab" * 16, 1, 1, "a.dcm", "1.2", "CT", "1.3", "1.4", "1.5", "k", "r", "1", "h",
                         "0.1.0", (0,) * len(audit.ACTION_NAMES), False, "written", "", 5, 1)
    part = write_shard(tmp_path, 0, [row])
    assert audit.completed_shards(tmp_path) == {0}
    old = pq.read_table(part).drop_columns(["time"]).replace_schema_metadata({b"veil.audit.schema": b"1"})
    pq.write_table(old, part)
    assert audit.completed_shards(tmp_path) == set()


def test_a_resume_keeps_the_start_and_records_one_more_invocation(archive, compiled, tmp_path) -> None:
    dst = tmp_path / "out"
    options = engine.RunOptions(src=str(archive), dst=str(dst), workers=1, shard_files=2, operator="alice")
    engine.run(options, compiled, KEY)
    first = audit.read_manifest(dst)
    again = engine.RunOptions(src=str(archive), dst=str(dst), workers=1, resume=True, operator="bob",
                              command=("veil", "run", str(archive), str(dst), "--resume"))
    engine.run(again, compiled, KEY)
    manifest = audit.read_manifest(dst)
    assert manifest["run_id"] == first["run_id"] and manifest["started"] == first["started"]
    assert manifest["operator"] == "bob" and _utc_micros(manifest["finished"]) >= _utc_micros(first["finished"])
    assert [r["operator"] for r in manifest["runs"]] == ["alice", "bob"]
    assert [r["resumed"] for r in manifest["runs"]] == [False, True]
    assert "command" not in manifest["runs"][0]  # the API gave none
    assert manifest["runs"][1]["command"][2] == f"<src:{manifest['src_digest']}>"


def test_a_manifest_of_epoch_seconds_becomes_an_invocation_with_iso_times(archive, compiled, tmp_path) -> None:
    dst = tmp_path / "out"
    audit.write_manifest(dst, {"run_id": "ab" * 16, "started": 1.5, "finished": 2.0, "status": "complete"})
    engine.run(engine.RunOptions(src=str(archive), dst=str(dst), workers=1), compiled, KEY)
    runs = audit.read_manifest(dst)["runs"]
    assert runs[0] == {"run_id": "ab" * 16, "started": "1970-01-01T00:00:01.500000Z",
                       "finished": "1970-01-01T00:00:02.000000Z"}
    assert len(runs) == 2


def test_the_operator_defaults_to_the_login_name_and_a_keyless_run_seals_nothing(archive, keyless_recipe,
                                                                                  tmp_path) -> None:
    keyless = compile_recipe(load_recipe(keyless_recipe))
    assert not keyless.recipe.requires_key
    engine.run(engine.RunOptions(src=str(archive), dst=str(tmp_path / "out"), workers=1), keyless, None)
    manifest = audit.read_manifest(tmp_path / "out")
    assert manifest["operator"] == getpass.getuser() and manifest["sealing"] == "none"
    assert manifest["key_id"] is None and "command" not in manifest


def test_change_records_need_a_key_or_a_custodian(archive, keyless_recipe, tmp_path) -> None:
    keyless = compile_recipe(load_recipe(keyless_recipe))
    options = engine.RunOptions(src=str(archive), dst=str(tmp_path / "out"), workers=1, change_records=True)
    with pytest.raises(engine.FatalRunError, match="change records are sealed: give --key or --custodian-public"):
        engine.run(options, keyless, None)


def test_custodian_mode_is_recorded_and_a_resume_must_keep_the_custodian(archive, compiled, tmp_path) -> None:
    public, _private, key_id = generate_custodian("dpo", tmp_path, "a long passphrase")
    other, _, _ = generate_custodian("other", tmp_path, "a long passphrase")
    dst = tmp_path / "out"
    options = engine.RunOptions(src=str(archive), dst=str(dst), workers=1, shard_files=2,
                                custodian_public=str(public), command=("veil", "run", str(archive), str(dst),
                                                                      "--custodian-public", str(public)))
    engine.run(options, compiled, KEY)
    manifest = audit.read_manifest(dst)
    assert manifest["sealing"] == "custodian"
    assert manifest["custodian"] == {"name": "dpo", "key_id": key_id}
    assert manifest["command"][4] == "--custodian-public" and manifest["command"][5].startswith("<custodian-public:")
    for wrong in (None, str(other)):
        resume = engine.RunOptions(src=str(archive), dst=str(dst), workers=1, resume=True, custodian_public=wrong)
        with pytest.raises(engine.FatalRunError, match=f"sealed to custodian key {key_id}"):
            engine.run(resume, compiled, KEY)
    engine.run(engine.RunOptions(src=str(archive), dst=str(dst), workers=1, resume=True,
                                 custodian_public=str(public)), compiled, KEY)
    assert len(audit.read_manifest(dst)["runs"]) == 2


def test_a_single_user_run_cannot_be_resumed_into_custodian_mode(archive, compiled, tmp_path) -> None:
    public, _, _ = generate_custodian("dpo", tmp_path, "a long passphrase")
    dst = tmp_path / "out"
    engine.run(engine.RunOptions(src=str(archive), dst=str(dst), workers=1), compiled, KEY)
    resume = engine.RunOptions(src=str(archive), dst=str(dst), workers=1, resume=True, custodian_public=str(public))
    with pytest.raises(engine.FatalRunError, match="sealed without a custodian key: resume it with no"):
        engine.run(resume, compiled, KEY)


def test_the_command_record_digests_every_value_it_does_not_know_to_be_plain(tmp_path) -> None:
    options = engine.RunOptions(src="/data/Smith^Jane", dst="/out/Smith", files_from="/lists/smith.txt")
    key = b"k" * 32
    record = _command_record(
        ("/usr/bin/veil", "run", "/data/Smith^Jane/", "/out/Smith", "--key=/keys/smith.key", "--files-from",
         "/lists/smith.txt", "--recipe", "/recipes/smith.yml", "--layout", "study", "--resume", "--unknown",
         "Jane"), options, key)
    assert record[:2] == ["veil", "run"]
    assert record[2].startswith("<src:") and record[3].startswith("<dst:")
    assert record[4].startswith("--key=<key:") and record[6].startswith("<files-from:")
    assert record[7:9] == ["--recipe", record[8]] and record[8].startswith("<recipe:")
    assert record[9:13] == ["--layout", "study", "--resume", "--unknown"]
    assert record[13].startswith("<path:")
    assert "Smith" not in json.dumps(record) and "Jane" not in json.dumps(record)
    # A shipped recipe's name is not a path.
    assert _command_record(("veil", "run", "--recipe", "research"), options, key)[2:] == ["--recipe", "research"]


def test_veil_run_records_its_command_as_parsed(archive, tmp_path, monkeypatch) -> None:
    key_file = tmp_path / "run.key"
    key_file.write_bytes(KEY.material)
    key_file.chmod(0o600)
    monkeypatch.delenv("VEIL_KEY", raising=False)
    dst = tmp_path / "out"
    main(["run", str(archive), str(dst), "--key", str(key_file), "--workers", "1", "--operator", "carol",
          "--retention", "quarantine=30d", "--change-records"])
    manifest = audit.read_manifest(dst)
    command = manifest["command"]
    assert command[:2] == ["veil", "run"] and command[2] == f"<src:{manifest['src_digest']}>"
    assert "--change-records" in command and command[command.index("--operator") + 1] == "carol"
    assert command[command.index("--key") + 1].startswith("<key:")
    assert str(tmp_path) not in json.dumps(manifest)
    assert manifest["operator"] == "carol" and manifest["change_records"] is True
    assert manifest["retention"]["quarantine"] == "30d"


def test_veil_run_refuses_change_records_without_a_key(archive, keyless_recipe, tmp_path, monkeypatch,
                                                       capsys) -> None:
    monkeypatch.delenv("VEIL_KEY", raising=False)
    code = main(["run", str(archive), str(tmp_path / "out"), "--recipe", str(keyless_recipe), "--workers", "1",
                 "--change-records"])
    assert code == EXIT_FATAL
    assert "give --key or --custodian-public" in capsys.readouterr().err


def test_iso_times_round_trip_and_refuse_a_time_without_zone() -> None:
    for micros in (0, 1, 1_796_000_000_123_456):
        assert parse_iso_time(iso_time(micros)) == micros
    assert parse_iso_time("2026-12-04T22:15:21.5+01:00") == parse_iso_time("2026-12-04T21:15:21.500000Z")
    with pytest.raises(ValueError, match="no time zone"):
        parse_iso_time("2026-12-04T21:15:21")


def test_the_api_takes_the_same_run_record_options(archive, tmp_path) -> None:
    import veil

    public, _, key_id = generate_custodian("dpo", tmp_path, "a long passphrase")
    dst = tmp_path / "out"
    veil.deidentify(archive, dst, key=KEY, workers=1, operator="api-user", custodian_public=public,
                    change_records=True, retention="quarantine=7d,change_records=365d")
    manifest = audit.read_manifest(dst)
    assert manifest["operator"] == "api-user" and manifest["custodian"]["key_id"] == key_id
    assert manifest["change_records"] is True and "command" not in manifest
    assert manifest["retention"] == {"quarantine": "7d", "before_images": "keep", "change_records": "365d"}
    with pytest.raises(veil.errors.VeilError, match="not an age"):
        veil.deidentify(archive, tmp_path / "other", key=KEY, workers=1, retention="quarantine=soon")
