"""Sending de-identified files: to a DICOM AE by C-STORE (pynetdicom, the file's bytes as they are), to a DICOMweb
server by STOW-RS, or into a folder. Each sender takes files one by one and calls ``confirmed(path)`` after the
destination confirmed each; a failure raises :class:`SendError` naming the destination and the status, never a
value from a file."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from veil.errors import VeilError
from veil.net.config import Destination

__all__ = ["SendError", "send_files"]

Confirmed = Callable[[Path], None]
_STOW_BATCH = 32


class SendError(VeilError):
    """A destination that refused or could not be reached; the job is retried later."""


def _header(path: Path) -> tuple[str, str]:
    """(SOP Class UID, transfer syntax) of a file, from the native core's header walk."""
    from veil.core._core import peek

    info = peek(path.read_bytes(), str(path))  # the walk stops before the pixel data
    return str(info.get("sop_class_uid") or ""), str(info.get("transfer_syntax") or "")


def send_dimse(dest: Destination, files: Sequence[Path], confirmed: Confirmed, calling_ae: str,
               timeout: float = 30.0) -> None:
    from pynetdicom import AE
    from pynetdicom.presentation import build_context

    from veil.net.pynetdicom_fixes import apply

    apply()
    pairs = sorted({_header(f) for f in files})
    if len(pairs) > 128:
        raise SendError(f"{dest.name}: more than 128 SOP class / transfer syntax pairs in one study")
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.requested_contexts = [build_context(sop, [ts]) for sop, ts in pairs]
    tls = None
    if dest.tls is not None:
        from veil.net.tls import client_context

        tls = (client_context(dest.tls), dest.host)
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls)
    if not assoc.is_established:
        raise SendError(f"{dest.name}: association to {dest.ae_title} refused or unreachable")
    try:
        for path in files:
            status = assoc.send_c_store(path)
            code = int(getattr(status, "Status", -1)) if status else -1
            if code == -1:
                raise SendError(f"{dest.name}: no C-STORE response (association aborted or timed out)")
            if code != 0 and not 0xB000 <= code <= 0xBFFF:  # success, or a warning (the instance is stored)
                raise SendError(f"{dest.name}: C-STORE failed with status 0x{code:04X}")
            confirmed(path)
        assoc.release()
    finally:
        if assoc.is_established:
            assoc.abort()


def send_stow(dest: Destination, files: Sequence[Path], confirmed: Confirmed, timeout: float = 60.0) -> None:
    import httpx

    headers: dict[str, str] = {"Accept": "application/dicom+json"}
    auth: Any = None
    if dest.bearer_env:
        token = os.environ.get(dest.bearer_env)
        if not token:
            raise SendError(f"{dest.name}: ${dest.bearer_env} is not set")
        headers["Authorization"] = f"Bearer {token}"
    elif dest.basic_user:
        auth = (dest.basic_user, os.environ.get(dest.basic_password_env, ""))
    verify: Any = True
    if dest.tls is not None:
        from veil.net.tls import client_context

        verify = client_context(dest.tls)
    with httpx.Client(timeout=timeout, auth=auth, verify=verify) as client:
        for start in range(0, len(files), _STOW_BATCH):
            batch = files[start:start + _STOW_BATCH]
            boundary = f"veil-{os.urandom(12).hex()}"
            parts = []
            for path in batch:
                parts.append(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
                parts.append(path.read_bytes())
                parts.append(b"\r\n")
            parts.append(f"--{boundary}--\r\n".encode())
            try:
                response = client.post(f"{dest.url}/studies", content=b"".join(parts), headers={
                    **headers, "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'})
            except httpx.HTTPError as exc:
                raise SendError(f"{dest.name}: STOW-RS request failed ({type(exc).__name__})") from None
            if response.status_code not in (200, 202):
                raise SendError(f"{dest.name}: STOW-RS answered HTTP {response.status_code}")
            for path in batch:
                confirmed(path)


def send_folder(dest: Destination, files: Sequence[Path], root: Path, confirmed: Confirmed) -> None:
    from veil.net.spool import fsync_dir, write_durable

    target_root = Path(dest.path)
    for path in files:
        target = target_root / path.relative_to(root)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_durable(target, path.read_bytes(), 0o644)
        except OSError as exc:
            raise SendError(f"{dest.name}: cannot write into the folder ({exc.strerror})") from None
        confirmed(path)
    if files:
        fsync_dir(target_root)


def send_files(dest: Destination, files: Sequence[Path], root: Path, confirmed: Confirmed,
               calling_ae: str = "VEIL") -> None:
    """Sends ``files`` (under ``root``) to ``dest``; ``confirmed`` after each one the destination has."""
    if not files:
        return
    if dest.type == "dimse":
        send_dimse(dest, files, confirmed, calling_ae)
    elif dest.type == "stow":
        send_stow(dest, files, confirmed)
    elif dest.type == "folder":
        send_folder(dest, files, root, confirmed)
    else:  # the configuration checks the type
        raise SendError(f"{dest.name}: unknown destination type {dest.type!r}")
