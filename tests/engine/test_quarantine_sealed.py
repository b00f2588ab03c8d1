"""Quarantine copies: in custodian mode the refused input is sealed to the custodian (never a clear copy) and
opens with the private key only; in single-user mode the clear copy is kept, as before."""

from __future__ import annotations

import pytest

from veil import audit, engine
from veil.audit.changes import audit_seal
from veil.audit.quarantine import read_quarantined
from veil.errors import AuditError, KeyError_
from veil.keys import Key
from veil.keys.custodian import generate_custodian, load_custodian_private
from veil.recipes import compile_recipe
from veil.synth import write_archive

KEY = Key(bytes(range(32)))
PASSPHRASE = "correct horse battery"
BAD = b"DICM? no: PatientName=DOE^JOHN PatientID=12345678 " * 40


@pytest.fixture()
def inputs(tmp_path):
    src = tmp_path / "in"
    write_archive(src, patients=1, studies_per_patient=1, series_per_study=1, instances_per_series=2, seed=4)
    (src / "refused.dcm").write_bytes(BAD)
    return src


def run(src, dst, custodian_public=None, **kw) -> str:
    options = engine.RunOptions(src=str(src), dst=str(dst), custodian_public=custodian_public, **kw)
    summary = engine.run(options, compile_recipe("research"), KEY)
    assert summary.quarantined == 1
    (digest,) = [r["input_digest"] for r in audit.read_audit(dst).to_pylist() if r["status"] == "quarantined"]
    return digest


def test_custodian_mode_seals_the_quarantine_copy_and_keeps_no_clear_one(inputs, tmp_path) -> None:
    public, private, _ = generate_custodian("officer", tmp_path, PASSPHRASE)
    dst = tmp_path / "out"
    digest = run(inputs, dst, str(public))
    folder = audit.quarantine_dir(dst)
    assert sorted(p.name for p in folder.iterdir()) == [f"{digest}.dcm.sealed", f"{digest}.json"]
    sealed = (folder / f"{digest}.dcm.sealed").read_bytes()
    assert b"DOE^JOHN" not in sealed and b"12345678" not in sealed
    assert read_quarantined(dst, digest, load_custodian_private(private, PASSPHRASE)) == BAD
    with pytest.raises(KeyError_, match="custodian key"):
        read_quarantined(dst, digest, audit_seal(KEY))  # the run key cannot open it
    with pytest.raises(AuditError, match="custodian"):
        read_quarantined(dst, digest)
    # Renamed to another digest, it no longer opens.
    other = "0" * 64
    (folder / f"{other}.dcm.sealed").write_bytes(sealed)
    with pytest.raises(AuditError, match="fails authentication"):
        read_quarantined(dst, other, load_custodian_private(private, PASSPHRASE))


def test_single_user_mode_keeps_the_clear_copy(inputs, tmp_path) -> None:
    dst = tmp_path / "out"
    digest = run(inputs, dst)
    folder = audit.quarantine_dir(dst)
    assert sorted(p.name for p in folder.iterdir()) == [f"{digest}.dcm", f"{digest}.json"]
    assert read_quarantined(dst, digest) == BAD == read_quarantined(dst, digest, audit_seal(KEY))


def test_no_copy_reads_as_an_error_and_digests_are_checked(inputs, tmp_path) -> None:
    dst = tmp_path / "out"
    digest = run(inputs, dst, quarantine_copy=False)
    with pytest.raises(AuditError, match="no copy"):
        read_quarantined(dst, digest)
    with pytest.raises(ValueError, match="hex"):
        read_quarantined(dst, "../../etc/passwd")
