"""``veil pull`` from a real Orthanc (C-FIND + C-MOVE, C-GET, QIDO-RS + WADO-RS) with the same outputs as
``veil run`` on the same files; a pull the PACS refuses goes on where it stopped; ``veil push`` by STOW-RS into
Orthanc's DICOMweb plugin."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from net_study import PATIENT, write_study
from orthanc import Orthanc, free_port

import veil
from veil.cli.main import main
from veil.keys import generate_key_file

PULL_AE = "VEILPULL"


def outputs(dst: Path) -> dict[str, bytes]:
    """Output bytes by their path relative to ``dst`` (the audit folder left out)."""
    return {str(p.relative_to(dst)): p.read_bytes() for p in dst.rglob("*.dcm") if ".veil" not in p.parts}


@pytest.fixture
def pacs(tmp_path: Path, clean_orthancs: tuple[Orthanc, Orthanc]) -> dict[str, object]:
    """The source Orthanc holding two studies of two patients; veil's pull AE registered at a free port; the
    ``veil run`` outputs of the first study with the same key and recipe."""
    source, _ = clean_orthancs
    move_port = free_port()
    source.set_modality("veilpull", PULL_AE, move_port)
    wanted = write_study(tmp_path / "wanted", 5, patient_id="PAT-5531")
    other = write_study(tmp_path / "other", 3, patient_id="PAT-9000")
    for f in wanted + other:
        source.upload(f)
    key = tmp_path / "project.key"
    generate_key_file(key)
    veil.deidentify(tmp_path / "wanted", tmp_path / "expected", recipe="research", key=key, workers=1,
                    layout="study")
    (tmp_path / "patients.txt").write_text("PAT-5531\n")
    return {"source": source, "move_port": move_port, "key": key, "expected": outputs(tmp_path / "expected"),
            "study": str(pydicom.dcmread(wanted[0]).StudyInstanceUID)}


def pull_args(tmp: Path, pacs: dict[str, object], *extra: str) -> list[str]:
    return ["pull", str(tmp / "dst"), "--key", str(pacs["key"]), "--recipe", "research", "--workers", "1",
            "--calling-ae", PULL_AE, *extra]


def dimse(pacs: dict[str, object]) -> list[str]:
    source = pacs["source"]
    assert isinstance(source, Orthanc)
    return ["--from", f"{source.aet}@127.0.0.1:{source.dicom_port}"]


def test_pull_by_c_move_is_veil_run_of_the_same_files(tmp_path: Path, pacs: dict[str, object]) -> None:
    args = pull_args(tmp_path, pacs, *dimse(pacs), "--move-port", str(pacs["move_port"]), "--patients",
                     str(tmp_path / "patients.txt"))
    assert main(args) == 0
    assert outputs(tmp_path / "dst") == pacs["expected"], "byte for byte veil run's outputs, the other study not"
    assert not (tmp_path / ".dst.pull-work").exists(), "the retrieved originals are gone"
    leaked = [p for p in (tmp_path / "dst").rglob("*") if p.is_file() and PATIENT.encode() in p.read_bytes()]
    assert not leaked
    assert main(args) == 0, "a second pull of the same query: already complete"
    assert main(["pull", str(tmp_path / "x"), *dimse(pacs)]) == 2, "an empty query would pull the whole PACS"
    assert main(["pull", str(tmp_path / "x"), *dimse(pacs), "--dates", "2020"]) == 2, "not a date range"


def test_pull_by_c_get(tmp_path: Path, pacs: dict[str, object]) -> None:
    (tmp_path / "studies.txt").write_text(f"{pacs['study']}\n")
    assert main(pull_args(tmp_path, pacs, *dimse(pacs), "--get", "--studies", str(tmp_path / "studies.txt"))) == 0
    assert outputs(tmp_path / "dst") == pacs["expected"]


def test_pull_by_qido_and_wado_then_stow(tmp_path: Path, pacs: dict[str, object],
                                         clean_orthancs: tuple[Orthanc, Orthanc]) -> None:
    source, target = clean_orthancs
    args = pull_args(tmp_path, pacs, "--qido", f"{source.url}/dicom-web", "--patients", str(tmp_path / "patients.txt"),
                     "--send-stow", f"{target.url}/dicom-web")
    assert main(args) == 0
    assert outputs(tmp_path / "dst") == pacs["expected"]
    sent = {str(pydicom.dcmread(tmp_path / "dst" / name).SOPInstanceUID) for name in outputs(tmp_path / "dst")}
    assert target.sop_uids() == sent, "then sent on by STOW-RS"


def test_a_refused_pull_goes_on_where_it_stopped(tmp_path: Path, pacs: dict[str, object],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    source = pacs["source"]
    assert isinstance(source, Orthanc)
    source.client.delete("/modalities/veilpull")  # the PACS no longer knows veil: C-FIND refused
    args = pull_args(tmp_path, pacs, *dimse(pacs), "--move-port", str(pacs["move_port"]), "--patients",
                     str(tmp_path / "patients.txt"))
    assert main(args) == 1
    assert "rerun to go on" in capsys.readouterr().err
    assert not outputs(tmp_path / "dst")
    source.set_modality("veilpull", PULL_AE, int(str(pacs["move_port"])))
    assert main(args) == 0
    assert outputs(tmp_path / "dst") == pacs["expected"]
    err = capsys.readouterr().err
    assert "PAT-5531" not in err and str(pacs["study"]) not in err, "no identifier printed"


def test_push_by_stow_rs_into_orthanc(tmp_path: Path, clean_orthancs: tuple[Orthanc, Orthanc]) -> None:
    _, target = clean_orthancs
    key = tmp_path / "k.key"
    generate_key_file(key)
    write_study(tmp_path / "src", 4)
    veil.deidentify(tmp_path / "src", tmp_path / "dst", recipe="research", key=key, workers=1)
    sent = {str(pydicom.dcmread(p).SOPInstanceUID) for p in (tmp_path / "dst").rglob("*.dcm")
            if ".veil" not in p.parts}
    assert main(["push", str(tmp_path / "dst"), "--stow", f"{target.url}/dicom-web"]) == 0
    assert target.sop_uids() == sent
    assert main(["push", str(tmp_path / "dst"), "--stow", f"{target.url}/dicom-web"]) == 0  # nothing left to send
    assert main(["push", str(tmp_path / "dst"), "--stow", f"http://127.0.0.1:{free_port()}/dicom-web"]) == 1, \
        "a server that is down: the push says so, and a rerun goes on"


class _EmptyPacs:
    """A source whose queries match nothing."""

    def label(self) -> str:
        return "empty"

    def start(self, sink: object) -> None:
        return None

    def find(self, keys: dict[str, str]) -> list[str]:
        return []

    def retrieve(self, study_uid: str, sink: object) -> int:
        raise AssertionError("nothing to retrieve")

    def close(self) -> None:
        return None


def test_a_pull_without_a_key_leaves_no_digest_of_its_query_in_dst(tmp_path: Path) -> None:
    """Without a key, a digest of the queried patient IDs would be a guessable hash: DST's state holds none,
    and a finished keyless pull cannot be told from another query, so a second one is refused."""
    import json

    from veil.errors import VeilError
    from veil.net.pull import pull
    from veil.net.retrieve import Query

    query = Query(patient_ids=("PAT-5531",))
    dst, work = tmp_path / "dst", tmp_path / "work"
    result = pull(_EmptyPacs(), query, dst, work, recipe="research", key=None)
    assert result.complete and result.studies == 0
    state = json.loads((dst / ".veil" / "pull" / "state.json").read_text())
    assert state["phase"] == "done" and state["query"] == ""
    assert not work.exists(), "WORK (and the keyless digest in it) is removed once DST is complete"
    with pytest.raises(VeilError, match="another query"):
        pull(_EmptyPacs(), query, dst, work, recipe="research", key=None)
