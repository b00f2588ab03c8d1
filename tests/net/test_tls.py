"""DICOM TLS on both legs against a real Orthanc that speaks TLS only (a test CA; client certificates
required both ways): Orthanc -> veil serve -> Orthanc; a plain association and a TLS client without a
certificate are refused."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import yaml
from net_study import PATIENT, wait_for, write_study
from orthanc import Orthanc, free_port
from tls_ca import ThrowawayCA

from veil.keys import generate_key_file
from veil.net.config import ConfigError, load_config, parse_config
from veil.net.node import Node


@pytest.fixture(scope="module")
def tls_pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Orthanc, ThrowawayCA]]:
    root = tmp_path_factory.mktemp("tls")
    ca = ThrowawayCA(root / "ca")
    cert, key = ca.issue("orthanc")
    pacs = Orthanc(root / "orthanc", "TLSPACS", extra={
        "DicomTlsEnabled": True, "DicomTlsCertificate": str(cert), "DicomTlsPrivateKey": str(key),
        "DicomTlsTrustedCertificates": str(ca.pem), "DicomTlsRemoteCertificateRequired": True})
    try:
        yield pacs, ca
    finally:
        pacs.stop()


def test_tls_on_both_legs(tmp_path: Path, tls_pacs: tuple[Orthanc, ThrowawayCA]) -> None:
    from pynetdicom import AE
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    pacs, ca = tls_pacs
    node_cert, node_key = ca.issue("veil-node")
    generate_key_file(tmp_path / "project.key")
    config = {
        "ae_title": "VEIL", "port": free_port(), "work": str(tmp_path / "work"), "key": str(tmp_path / "project.key"),
        "quiet_seconds": 0.5, "allow": [{"ae_title": "TLSPACS", "host": "127.0.0.1"}],
        "tls": {"cert": str(node_cert), "key": str(node_key), "ca": str(ca.pem), "require_client_cert": True},
        "retry": {"attempts": 3, "first_seconds": 0.3},
        "destinations": [{"name": "back", "type": "dimse", "ae_title": "TLSPACS", "host": "127.0.0.1",
                          "port": pacs.dicom_port,
                          "tls": {"ca": str(ca.pem), "cert": str(node_cert), "key": str(node_key)}}],
    }
    (tmp_path / "node.yml").write_text(yaml.safe_dump(config))
    node = Node(load_config(tmp_path / "node.yml"))
    node.start()
    try:
        pacs.set_modality("veil", "VEIL", node.port, tls=True)
        files = write_study(tmp_path / "study", 4)
        ids = [pacs.upload(f) for f in files]
        originals = {str(pydicom.dcmread(f).SOPInstanceUID) for f in files}
        assert pacs.store_to("veil", ids)["status"] == 200, "Orthanc -> veil over TLS"
        wait_for(lambda: len(pacs.instances()) == 8, what="the de-identified study back over TLS")
        new = [i for i in pacs.instances() if pacs.tags(i)["SOPInstanceUID"] not in originals]
        assert len(new) == 4 and all(PATIENT not in str(pacs.tags(i)) for i in new)

        plain = AE(ae_title="TLSPACS")
        plain.add_requested_context(CTImageStorage)
        assoc = plain.associate("127.0.0.1", node.port, ae_title="VEIL")
        assert not assoc.is_established, "no plain association to a TLS node"
        anonymous = ssl.create_default_context(cafile=str(ca.pem))
        assoc = plain.associate("127.0.0.1", node.port, ae_title="VEIL", tls_args=(anonymous, "127.0.0.1"))
        assert not assoc.is_established, "a TLS client without a certificate is refused"
        assert node.status()["received"] == 4
    finally:
        node.stop()
        pacs.client.delete("/modalities/veil")
        pacs.clear()


def test_tls_configuration_is_checked(tmp_path: Path) -> None:
    base = {"ae_title": "VEIL", "port": 104, "work": str(tmp_path), "allow": [{"ae_title": "PACS"}],
            "destinations": [{"name": "f", "type": "folder", "path": str(tmp_path)}]}
    with pytest.raises(ConfigError, match="tls.cert"):
        parse_config({**base, "tls": {"cert": "missing.pem"}}, tmp_path)
    (tmp_path / "c.pem").write_text("x")
    with pytest.raises(ConfigError, match="require_client_cert needs ca"):
        parse_config({**base, "tls": {"cert": "c.pem", "require_client_cert": True}}, tmp_path)
    with pytest.raises(ConfigError, match="unknown key"):
        parse_config({**base, "tls": {"cert": "c.pem", "verify": False}}, tmp_path)
    config = parse_config({**base, "tls": {"cert": "c.pem"}}, tmp_path)
    assert config.tls is not None and config.tls.cert == tmp_path / "c.pem"
