"""Operating a running node: ``veil serve trigger`` completes a study before its quiet period (and needs the
control token), ``veil serve dead | retry | drop`` handle the dead letters of a destination that failed."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from net_study import wait_for, write_study

from veil.cli.main import main
from veil.keys import generate_key_file
from veil.net.config import load_config
from veil.net.node import Node


def send(port: int, files: list[Path]) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    from veil.net.pynetdicom_fixes import apply

    apply()
    ae = AE(ae_title="SENDER")
    ae.add_requested_context(CTImageStorage, "1.2.840.10008.1.2.1")
    assoc = ae.associate("127.0.0.1", port, ae_title="VEIL")
    assert assoc.is_established
    for f in files:
        assert int(assoc.send_c_store(f).Status) == 0
    assoc.release()


def outputs(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.dcm") if ".veil" not in p.parts] if folder.exists() else []


def make_node(tmp: Path, quiet: float, out: Path) -> tuple[Node, Path]:
    generate_key_file(tmp / "k.key")
    config = {"ae_title": "VEIL", "port": 0, "work": str(tmp / "work"), "key": str(tmp / "k.key"),
              "quiet_seconds": quiet, "allow": [{"ae_title": "SENDER", "host": "127.0.0.1"}],
              "retry": {"attempts": 1, "first_seconds": 0.1},
              "destinations": [{"name": "folder", "type": "folder", "path": str(out)}]}
    (tmp / "node.yml").write_text(yaml.safe_dump(config))
    node = Node(load_config(tmp / "node.yml"))
    node.start()
    return node, tmp / "node.yml"


def test_trigger_completes_a_study_now(tmp_path: Path) -> None:
    node, config = make_node(tmp_path, 3600, tmp_path / "out")
    try:
        send(node.port, write_study(tmp_path / "study", 3))
        request = urllib.request.Request(f"http://127.0.0.1:{node.health_port}/trigger", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401, "no trigger without the control token"
        refused.value.close()
        assert not outputs(tmp_path / "out") and node.status()["studies_receiving"] == 1
        assert main(["serve", "trigger", "--config", str(config)]) == 0
        wait_for(lambda: len(outputs(tmp_path / "out")) == 3, what="the triggered study delivered")
    finally:
        node.stop()


def test_dead_letters_listed_retried_and_dropped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.write_text("a file where the destination folder should be")  # every delivery fails
    node, config = make_node(tmp_path, 0.2, out)
    try:
        send(node.port, write_study(tmp_path / "one", 2))
        send(node.port, write_study(tmp_path / "two", 3))
        wait_for(lambda: node.status()["queues"]["folder"]["dead"] == 2, what="two dead letters")
        capsys.readouterr()
        assert main(["serve", "dead", "--config", str(config)]) == 0
        dead = json.loads(capsys.readouterr().out)
        assert [d["attempts"] for d in dead] == [1, 1] and all("cannot write" in d["error"] for d in dead)
        assert main(["serve", "retry", "--config", str(config)]) == 2, "--study or --all"
        assert main(["serve", "drop", "--config", str(config), "--study", "0" * 40]) == 1
        out.unlink()
        assert main(["serve", "retry", "--config", str(config), "--study", dead[0]["study"]]) == 0
        wait_for(lambda: len(outputs(out)) in (2, 3) and node.status()["queues"]["folder"]["pending"] == 0,
                 what="the retried study delivered")
        delivered = len(outputs(out))
        assert main(["serve", "drop", "--config", str(config), "--all"]) == 0
        work = tmp_path / "work"
        assert node.status()["queues"]["folder"] == {"pending": 0, "done": 0, "dead": 0}
        assert not any((work / "out").iterdir()), "a dropped study's outputs are gone"
        assert len(list((work / "audit").iterdir())) == 2, "both audits kept"
        assert len(outputs(out)) == delivered
    finally:
        node.stop()
