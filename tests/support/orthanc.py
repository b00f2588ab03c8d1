"""A real Orthanc (Debian's ``orthanc`` and ``orthanc-dicomweb``) for the network tests: started from a JSON
config with loopback ports and a temporary storage folder, ``RemoteAccessAllowed: false``, the given peers
registered as modalities, ``TCP_NODELAY=1`` in its environment; stopped by its PID."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available() -> bool:
    return os.access(ORTHANC, os.X_OK)


class Orthanc:
    """One Orthanc process; ``modalities`` maps a name to (AE title, port) of peers on 127.0.0.1."""

    def __init__(self, folder: Path, aet: str, modalities: dict[str, tuple[str, int]] | None = None,
                 dicom_port: int | None = None, extra: dict[str, Any] | None = None) -> None:
        self.folder = folder
        self.aet = aet
        self.dicom_port = dicom_port or free_port()
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": aet, "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "storage"),
            "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": aet,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "HttpDescribeErrors": True,
            "DicomCheckCalledAet": True, "DicomAlwaysAllowStore": False, "DicomAlwaysAllowEcho": True,
            "DicomCheckModalityHost": True, "DicomScpTimeout": 30, "StableAge": 1,
            "DicomModalities": {name: [ae, "127.0.0.1", port] for name, (ae, port) in (modalities or {}).items()},
            "Plugins": [DICOMWEB_PLUGIN] if os.path.exists(DICOMWEB_PLUGIN) else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            **(extra or {}),
        }
        self.config_path = folder / "orthanc.json"
        self.config_path.write_text(json.dumps(config, indent=1))
        self.log = open(folder / "orthanc.log", "wb")
        env = {**os.environ, "TCP_NODELAY": "1"}
        self.process = subprocess.Popen([ORTHANC, str(self.config_path)], stdout=self.log, stderr=subprocess.STDOUT,
                                        env=env, cwd=folder)
        self.client = httpx.Client(base_url=self.url, timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.client.get("/system").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Orthanc did not start: {(folder / 'orthanc.log').read_text()[-2000:]}")
            time.sleep(0.1)

    def set_modality(self, name: str, ae: str, port: int, tls: bool = False) -> None:
        body: dict[str, Any] = {"AET": ae, "Host": "127.0.0.1", "Port": port}
        if tls:
            body["UseDicomTls"] = True
        response = self.client.put(f"/modalities/{name}", json=body)
        response.raise_for_status()

    def upload(self, path: Path) -> str:
        response = self.client.post("/instances", content=path.read_bytes())
        response.raise_for_status()
        return str(response.json()["ID"])

    def instances(self) -> list[str]:
        return list(self.client.get("/instances").json())

    def tags(self, instance: str) -> dict[str, Any]:
        return dict(self.client.get(f"/instances/{instance}/simplified-tags").json())

    def sop_uids(self) -> set[str]:
        return {self.tags(i)["SOPInstanceUID"] for i in self.instances()}

    def store_to(self, modality: str, resources: list[str]) -> dict[str, Any]:
        response = self.client.post(f"/modalities/{modality}/store", json={"Resources": resources, "Synchronous": True},
                                    timeout=120)
        return {"status": response.status_code, "body": response.text}

    def clear(self) -> None:
        for instance in self.instances():
            self.client.delete(f"/instances/{instance}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.client.close()
        self.log.close()
