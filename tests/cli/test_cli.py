"""The `veil` command end to end: synth, keygen, deidentify (exit codes, quarantine), recipes, peek."""

from __future__ import annotations

import json

import pydicom

from veil.cli.main import EXIT_FATAL, EXIT_OK, EXIT_QUARANTINED, main


def test_synth_keygen_deidentify_end_to_end(tmp_path, capsys) -> None:
    src, dst, key = tmp_path / "in", tmp_path / "out", tmp_path / "key"
    assert main(["synth", str(src), "--patients", "2", "--series-per-study", "2", "--instances-per-series", "2"]) == 0
    assert main(["keygen", str(key)]) == EXIT_OK
    assert main(["deidentify", str(src), str(dst), "--recipe", "research", "--key", str(key), "--json"]) == EXIT_OK
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{") :])
    assert summary["written"] == summary["files"] == 8 and summary["quarantined"] == 0
    outputs = sorted(dst.rglob("*.dcm"))
    inputs = sorted(src.rglob("*.dcm"))
    assert [p.relative_to(dst) for p in outputs] == [p.relative_to(src) for p in inputs]
    for before, after in zip(inputs, outputs, strict=True):
        original = pydicom.dcmread(before)
        out_bytes = after.read_bytes()
        for value in (str(original.PatientName).split("^")[0], original.PatientID, original.AccessionNumber):
            assert value.encode() not in out_bytes
        assert pydicom.dcmread(after).PixelData == original.PixelData


def test_deidentify_quarantines_a_bad_file_and_exits_3(tmp_path, capsys) -> None:
    src, dst, key = tmp_path / "in", tmp_path / "out", tmp_path / "key"
    main(["synth", str(src), "--patients", "1"])
    (src / "broken.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x40\x00")
    main(["keygen", str(key)])
    assert main(["deidentify", str(src), str(dst), "--key", str(key)]) == EXIT_QUARANTINED
    err = capsys.readouterr().err
    assert "broken.dcm" in err and not (dst / "broken.dcm").exists()


def test_missing_key_is_a_fatal_error(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("VEIL_KEY", raising=False)
    main(["synth", str(tmp_path / "in"), "--patients", "1"])
    assert main(["deidentify", str(tmp_path / "in"), str(tmp_path / "out"), "--recipe", "research"]) == EXIT_FATAL
    assert "no key" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bad_recipe_is_a_fatal_error_naming_the_line(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("name: bad\nversion: '1'\nedition: 2026d\nrules:\n  - keyword: NoSuchKeyword\n    action: remove\n")
    assert main(["recipe", "check", str(bad)]) == EXIT_FATAL
    err = capsys.readouterr().err
    assert "bad.yml:" in err


def test_recipe_list_and_peek(tmp_path, capsys) -> None:
    assert main(["recipe", "list"]) == EXIT_OK
    listing = capsys.readouterr().out
    assert "ps3.15-basic" in listing and "research" in listing and "hipaa-safe-harbor" in listing
    main(["synth", str(tmp_path / "in"), "--patients", "1"])
    capsys.readouterr()
    assert main(["peek", str(next((tmp_path / "in").rglob("*.dcm")))]) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["modality"] == "CT"
