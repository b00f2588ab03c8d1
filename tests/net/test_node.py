"""veil as a DICOM node against real Orthancs: Orthanc -> veil serve -> Orthanc with the same outputs as
``veil run``; unknown callers refused; a malformed dataset refused while the association goes on; a destination
down for a while; ``kill -9`` during receive and during forward, restart, every acknowledged instance delivered
once; ``veil push``; thousands of C-STOREs on one association without an abort."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
import yaml
from net_study import PATIENT, wait_for, write_study
from orthanc import Orthanc, free_port

from veil.keys import generate_key_file
from veil.net.config import load_config
from veil.net.node import Node


def node_config(tmp: Path, source: Orthanc, dest_ae: str, dest_port: int, *, port: int | None = None,
                attempts: int = 8) -> Path:
    key = tmp / "project.key"
    if not key.exists():
        generate_key_file(key)
    config = {
        "ae_title": "VEIL", "host": "127.0.0.1", "port": port or free_port(), "work": str(tmp / "work"),
        "recipe": "research", "key": str(key), "quiet_seconds": 0.5, "health_port": 0,
        "allow": [{"ae_title": source.aet, "host": "127.0.0.1"}, {"ae_title": "SENDER", "host": "127.0.0.1"}],
        "retry": {"attempts": attempts, "first_seconds": 0.3, "max_seconds": 1.0},
        "destinations": [{"name": "research", "type": "dimse", "ae_title": dest_ae, "host": "127.0.0.1",
                          "port": dest_port}],
    }
    path = tmp / "node.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def running(tmp_path: Path, clean_orthancs: tuple[Orthanc, Orthanc]) -> Iterator[tuple[Node, Orthanc, Orthanc]]:
    source, target = clean_orthancs
    node = Node(load_config(node_config(tmp_path, source, target.aet, target.dicom_port)))
    node.start()
    source.set_modality("veil", "VEIL", node.port)
    target.set_modality("veil", "VEIL", 1)  # what Orthanc accepts stores from (host checked, port unused)
    try:
        yield node, source, target
    finally:
        node.stop()


def expected_outputs(files: list[Path], key: Path, tmp: Path) -> dict[str, str]:
    """SOP Instance UID -> Patient ID of ``veil run`` on the same files with the same key and recipe."""
    import veil

    src = tmp / "expected-src"
    src.mkdir()
    for f in files:
        (src / f.name).write_bytes(f.read_bytes())
    veil.deidentify(src, tmp / "expected-dst", recipe="research", key=key, workers=1, layout="study")
    return {str(ds.SOPInstanceUID): str(ds.PatientID) for ds in
            (pydicom.dcmread(p) for p in (tmp / "expected-dst").rglob("*.dcm") if ".veil" not in p.parts)}


def test_orthanc_to_veil_to_orthanc_as_veil_run(running: tuple[Node, Orthanc, Orthanc], tmp_path: Path) -> None:
    node, source, target = running
    files = write_study(tmp_path / "study", 12)
    ids = [source.upload(f) for f in files]
    assert source.store_to("veil", ids)["status"] == 200
    wait_for(lambda: len(target.instances()) == 12, what="12 instances at the destination")
    expected = expected_outputs(files, tmp_path / "project.key", tmp_path)
    delivered = {target.tags(i)["SOPInstanceUID"]: target.tags(i)["PatientID"] for i in target.instances()}
    assert delivered == expected, "the node's outputs are veil run's outputs"
    assert all(PATIENT.split("^")[0] not in str(target.tags(i)) for i in target.instances())
    status = node.status()
    assert status["received"] == 12 and status["forwarded"]["research"] == 12
    wait_for(lambda: node.status()["queues"]["research"]["pending"] == 0, what="the queue to empty")
    assert not list((node.config.work / "spool").rglob("*.dcm")), "no original left in the spool"
    assert list((node.config.work / "audit").iterdir()), "the study's audit is kept"


def test_unknown_caller_refused_and_a_malformed_dataset_refused(running: tuple[Node, Orthanc, Orthanc],
                                                                tmp_path: Path) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    from veil.net.pynetdicom_fixes import apply

    apply()
    node, _, _ = running
    stranger = AE(ae_title="STRANGER")
    stranger.add_requested_context(CTImageStorage)
    assoc = stranger.associate("127.0.0.1", node.port, ae_title="VEIL")
    assert not assoc.is_established and assoc.is_rejected
    good = write_study(tmp_path / "study", 2)
    whole = good[0].read_bytes()
    ds = pydicom.dcmread(good[0])
    bad = tmp_path / "bad.dcm"
    cut = whole.index(b"\x10\x00\x10\x00")  # PatientName: cut the dataset inside its header
    bad.write_bytes(whole[: cut + 6] + b"\xff\xff")
    sender = AE(ae_title="SENDER")
    sender.add_requested_context(CTImageStorage, ds.file_meta.TransferSyntaxUID)
    assoc = sender.associate("127.0.0.1", node.port, ae_title="VEIL")
    assert assoc.is_established
    refused = assoc.send_c_store(bad)
    assert 0xC000 <= int(refused.Status) <= 0xCFFF, "a malformed dataset gets a failure status"
    accepted = assoc.send_c_store(good[1])
    assert int(accepted.Status) == 0, "the association goes on"
    assoc.release()
    assert node.status()["malformed"] == 1 and node.status()["quarantined"] == 1


def test_c_echo_and_one_pseudonym_per_patient_across_studies(running: tuple[Node, Orthanc, Orthanc],
                                                             tmp_path: Path) -> None:
    """C-ECHO answers success; two studies of one patient, sent on separate associations, arrive under one
    pseudonymous Patient ID (the keyed functions), and another patient's under another."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

    from veil.net.pynetdicom_fixes import apply

    apply()
    node, source, target = running
    echo = AE(ae_title="SENDER")
    echo.add_requested_context(Verification)
    assoc = echo.associate("127.0.0.1", node.port, ae_title="VEIL")
    assert assoc.is_established and int(assoc.send_c_echo().Status) == 0
    assoc.release()
    first = write_study(tmp_path / "first", 2, patient_id="PAT-7001")
    second = write_study(tmp_path / "second", 2, patient_id="PAT-7001")
    other = write_study(tmp_path / "other", 2, patient_id="PAT-7002")
    for files in (first, second, other):
        assert source.store_to("veil", [source.upload(f) for f in files])["status"] == 200
    wait_for(lambda: len(target.instances()) == 6, what="three studies at the destination")
    by_study: dict[str, set[str]] = {}
    for instance in target.instances():
        tags = target.tags(instance)
        by_study.setdefault(tags["StudyInstanceUID"], set()).add(tags["PatientID"])
    assert len(by_study) == 3 and all(len(ids) == 1 for ids in by_study.values())
    pseudonyms = sorted(next(iter(ids)) for ids in by_study.values())
    assert len(set(pseudonyms)) == 2, "the same patient's two studies share one pseudonym, the other has its own"
    assert "PAT-7001" not in pseudonyms and "PAT-7002" not in pseudonyms
    status = node.status()
    assert status["failed"] == 0 and status["studies_failed"] == 0 and status["forwarded"]["research"] == 6


def test_an_association_aborted_mid_study(running: tuple[Node, Orthanc, Orthanc], tmp_path: Path) -> None:
    """The sender aborts after 3 of 6 instances: those 3 are kept and delivered once the study is quiet; the
    other 3, sent again on a new association, complete the study at the destination."""
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    from veil.net.pynetdicom_fixes import apply

    apply()
    node, _, target = running
    files = write_study(tmp_path / "study", 6)
    syntax = pydicom.dcmread(files[0]).file_meta.TransferSyntaxUID
    sender = AE(ae_title="SENDER")
    sender.add_requested_context(CTImageStorage, syntax)
    assoc = sender.associate("127.0.0.1", node.port, ae_title="VEIL")
    assert assoc.is_established
    for f in files[:3]:
        assert int(assoc.send_c_store(f).Status) == 0
    assoc.abort()
    wait_for(lambda: len(target.instances()) == 3, what="the 3 instances received before the abort")
    assoc = sender.associate("127.0.0.1", node.port, ae_title="VEIL")
    for f in files[3:]:
        assert int(assoc.send_c_store(f).Status) == 0
    assoc.release()
    wait_for(lambda: len(target.instances()) == 6, what="the whole study")
    assert len({target.tags(i)["StudyInstanceUID"] for i in target.instances()}) == 1, "one study"
    assert node.status()["received"] == 6


def test_a_destination_down_for_a_while(tmp_path: Path, clean_orthancs: tuple[Orthanc, Orthanc]) -> None:
    source, _ = clean_orthancs
    later_port = free_port()
    node = Node(load_config(node_config(tmp_path, source, "LATER", later_port)))
    node.start()
    source.set_modality("veil", "VEIL", node.port)
    later: Orthanc | None = None
    try:
        files = write_study(tmp_path / "study", 5)
        assert source.store_to("veil", [source.upload(f) for f in files])["status"] == 200
        wait_for(lambda: node.status()["queues"]["research"]["pending"] == 1 and any(
            j.attempts >= 1 for j in node.queues["research"].jobs()), what="a failed first attempt")
        later = Orthanc(tmp_path / "later", "LATER", {"veil": ("VEIL", node.port)}, dicom_port=later_port)
        wait_for(lambda: len(later.instances()) == 5, what="delivery once the destination is up")
    finally:
        node.stop()
        if later is not None:
            later.stop()


def _serve(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as err:
        process = subprocess.Popen([sys.executable, "-m", "veil", "serve", "--config", str(config)],
                                   stdout=subprocess.PIPE, stderr=err)
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    assert line.startswith("veil serve:"), log.read_text()
    return process


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


@pytest.mark.kill
def test_kill_9_during_receive_and_during_forward(tmp_path: Path, clean_orthancs: tuple[Orthanc, Orthanc]) -> None:
    source, target = clean_orthancs
    port = free_port()
    config = node_config(tmp_path, source, target.aet, target.dicom_port, port=port)
    source.set_modality("veil", "VEIL", port)
    target.set_modality("veil", "VEIL", 1)
    log = tmp_path / "serve.log"
    files = write_study(tmp_path / "study", 120)
    ids = [source.upload(f) for f in files]
    expected = set(expected_outputs(files, tmp_path / "project.key", tmp_path))

    # 1. Killed while receiving: the sender's store fails part-way; what was acknowledged is spooled.
    process = _serve(config, log)
    import threading

    outcome: dict[str, Any] = {}
    sending = threading.Thread(target=lambda: outcome.update(source.store_to("veil", ids)))
    sending.start()
    wait_for(lambda: len(list((tmp_path / "work" / "spool" / "incoming").rglob("*.dcm"))) >= 10, 30, "receiving")
    _kill(process)
    sending.join()
    # 2. Restarted, the source sends the study again (as a PACS retries); killed again while forwarding.
    process = _serve(config, log)
    assert source.store_to("veil", ids)["status"] == 200
    wait_for(lambda: 0 < len(target.instances()), 60, "forwarding to start")
    _kill(process)
    delivered_before = len(target.instances())
    # 3. Restarted once more: everything acknowledged arrives, once.
    process = _serve(config, log)
    try:
        wait_for(lambda: len(target.instances()) == 120, 90, "all 120 instances at the destination")
        time.sleep(1.0)
        assert len(target.instances()) == 120 and target.sop_uids() == expected
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()
    assert delivered_before <= 120
    assert PATIENT not in log.read_text() and "Brannock" not in log.read_text()


def test_veil_push_is_resumable(tmp_path: Path, clean_orthancs: tuple[Orthanc, Orthanc]) -> None:
    import veil
    from veil.cli.main import main

    _, target = clean_orthancs
    target.set_modality("pusher", "PUSHER", 1)
    key = tmp_path / "k.key"
    generate_key_file(key)
    write_study(tmp_path / "src", 6)
    veil.deidentify(tmp_path / "src", tmp_path / "dst", recipe="research", key=key, workers=1)
    to = f"{target.aet}@127.0.0.1:{target.dicom_port}"
    assert main(["push", str(tmp_path / "dst"), "--to", to, "--calling-ae", "PUSHER"]) == 0
    assert len(target.instances()) == 6
    sent_log = next((tmp_path / "dst" / ".veil" / "push").rglob("push.sent"))
    assert len(sent_log.read_text().splitlines()) == 6
    target.clear()
    assert main(["push", str(tmp_path / "dst"), "--to", to, "--calling-ae", "PUSHER"]) == 0
    assert len(target.instances()) == 0, "a second push sends only what is not there yet"


@pytest.mark.heavy
def test_thousands_of_c_stores_on_one_association_without_an_abort(tmp_path: Path) -> None:
    """3,000 C-STOREs on one association to DCMTK's storescp with TCP_NODELAY on both ends (replies in well
    under a millisecond), as veil's senders make them: every one answered, no abort, no Nagle wait."""
    import shutil

    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    from veil.net.pynetdicom_fixes import apply

    if shutil.which("storescp") is None:
        pytest.skip("no DCMTK storescp (make test installs dcmtk)")
    apply()
    files = write_study(tmp_path / "study", 1)
    ds = pydicom.dcmread(files[0])
    port = free_port()
    sink = subprocess.Popen(["storescp", "--aetitle", "SINK", "--ignore", str(port)],
                            env={**os.environ, "TCP_NODELAY": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        scu = AE(ae_title="SENDER")
        scu.dimse_timeout = 10
        scu.add_requested_context(CTImageStorage, ds.file_meta.TransferSyntaxUID)
        wait_for(lambda: _listening(port), 10, "storescp")
        assoc = scu.associate("127.0.0.1", port, ae_title="SINK")
        assert assoc.is_established
        started = time.monotonic()
        statuses = [int(getattr(assoc.send_c_store(files[0]), "Status", -1)) for _ in range(3000)]
        seconds = time.monotonic() - started
        assert assoc.is_established, "no abort"
        assoc.release()
    finally:
        os.kill(sink.pid, signal.SIGTERM)
        sink.wait(timeout=10)
    assert statuses == [0] * 3000
    assert seconds < 3000 * 0.040, "no 40 ms delayed-ACK wait per store (TCP_NODELAY)"


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_the_reactor_never_takes_a_response_a_send_is_waiting_for() -> None:
    """The race itself, made deterministic: the reactor thread's non-blocking get_msg while a send_*() call has
    paused it (checkpoint cleared) leaves a response to the sender, takes a request, and takes a response when
    no send is waiting."""
    import queue as queue_module
    import threading

    from pynetdicom.dimse import DIMSEServiceProvider
    from pynetdicom.dimse_primitives import C_STORE

    from veil.net.pynetdicom_fixes import apply

    apply()
    results: list[Any] = []

    class Provider(DIMSEServiceProvider):
        assoc: Any = None  # shadows the property: this provider belongs to the thread below
        dimse_timeout: Any = 1

    class Reactor(threading.Thread):
        def __init__(self) -> None:
            super().__init__()
            self._reactor_checkpoint = threading.Event()

        def run(self) -> None:
            provider = Provider.__new__(Provider)
            provider.assoc = self
            provider.msg_queue = queue_module.Queue()
            response, request = C_STORE(), C_STORE()
            response.Status = 0x0000
            provider.msg_queue.put((1, response))
            results.append(provider.get_msg(block=False))  # paused by a sender: left alone
            results.append(provider.msg_queue.qsize())
            provider.msg_queue.queue.clear()
            provider.msg_queue.put((1, request))
            results.append(provider.get_msg(block=False)[1] is request)  # a request: served
            self._reactor_checkpoint.set()
            provider.msg_queue.put((1, response))
            results.append(provider.get_msg(block=False)[1] is response)  # no send waiting: taken

    reactor = Reactor()
    reactor.start()
    reactor.join()
    assert results == [(None, None), 1, True, True]


@pytest.mark.parametrize("status", [0x0000, 0xB000, 0xA700])
def test_the_direct_c_store_response_is_pynetdicoms_encoding(status: int) -> None:
    from pynetdicom.dimse_messages import C_STORE_RSP
    from pynetdicom.dimse_primitives import C_STORE
    from pynetdicom.dsutils import encode

    from veil.net.pynetdicom_fixes import encode_store_response

    primitive = C_STORE()
    primitive.MessageIDBeingRespondedTo, primitive.Status = 65535, status
    primitive.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    for sop in ("1.2.3.4", "1.2.826.0.1.3680043.8.498.12345678901234567890"):  # even and odd lengths
        primitive.AffectedSOPInstanceUID = sop
        message = C_STORE_RSP()
        message.primitive_to_message(primitive)
        assert encode_store_response(primitive) == encode(message.command_set, True, True)
