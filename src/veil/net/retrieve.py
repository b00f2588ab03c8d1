"""Finding and retrieving studies from a PACS for ``veil pull``: C-FIND, then C-MOVE (to a Storage SCP this
process runs) or C-GET (the instances come back on the same association), over DIMSE with pynetdicom; or
QIDO-RS, then WADO-RS, over DICOMweb with httpx.

Every retrieved instance reaches ``sink(data)`` as the encoded bytes the PACS sent (File Meta added for DIMSE),
never decoded: the sink writes it durably before the instance is acknowledged. Errors name the source and the
status, never a value from a query or a dataset.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from veil.errors import VeilError

__all__ = ["DimseSource", "Query", "RetrieveError", "WebSource", "parse_multipart"]

Sink = Callable[[bytes], bool]  # True: stored durably; False: refused (the sender gets a failure status)

_DATES = re.compile(r"(\d{8})?-?(\d{8})?")
# Transfer syntaxes offered for C-GET (each storage class once; 120 classes fit the 128 contexts of an
# association): the uncompressed ones, deflate, RLE and the lossless and lossy JPEG families.
_GET_SYNTAXES = [
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
]


class RetrieveError(VeilError):
    """A query or retrieval the source refused or could not answer; names the source and status only."""


@dataclass(frozen=True)
class Query:
    """Which studies to pull: any of patient IDs, accession numbers or study UIDs (one query each), narrowed by a
    study date range (``YYYYMMDD-YYYYMMDD``, open ends allowed) and modalities (one query each)."""

    patient_ids: tuple[str, ...] = ()
    accessions: tuple[str, ...] = ()
    study_uids: tuple[str, ...] = ()
    dates: str = ""
    modalities: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.dates and (not _DATES.fullmatch(self.dates) or self.dates == "-"):
            raise RetrieveError("a date range is YYYYMMDD, YYYYMMDD-YYYYMMDD, YYYYMMDD- or -YYYYMMDD")
        if not (self.patient_ids or self.accessions or self.study_uids or self.dates or self.modalities):
            raise RetrieveError("a query names patient IDs, accession numbers, study UIDs, dates or modalities "
                                "(an empty one would pull the whole PACS)")

    def matches(self) -> Iterator[dict[str, str]]:
        """The matching keys of each query to send (attribute keyword -> value)."""
        firsts: list[dict[str, str]] = ([{"PatientID": v} for v in self.patient_ids]
                                        + [{"AccessionNumber": v} for v in self.accessions]
                                        + [{"StudyInstanceUID": v} for v in self.study_uids]) or [{}]
        for first in firsts:
            for modality in self.modalities or ("",):
                keys = dict(first)
                if self.dates:
                    keys["StudyDate"] = self.dates
                if modality:
                    keys["ModalitiesInStudy"] = modality
                yield keys


# --- DIMSE -------------------------------------------------------------------------------------------------------


def _status(ds: Any) -> int:
    return int(getattr(ds, "Status", -1)) if ds is not None else -1


class DimseSource:
    """A PACS reached by DIMSE: ``find`` by C-FIND (study root), ``retrieve`` by C-MOVE to ``move_ae`` (the
    Storage SCP started by :meth:`start`) or, with ``get=True``, by C-GET."""

    def __init__(self, ae_title: str, host: str, port: int, calling_ae: str, *, get: bool = False,
                 move_ae: str = "", listen: tuple[str, int] = ("127.0.0.1", 0), tls: ssl.SSLContext | None = None,
                 server_tls: ssl.SSLContext | None = None, timeout: float = 60.0) -> None:
        from veil.net.pynetdicom_fixes import apply

        apply()
        self.ae_title, self.host, self.port, self.calling_ae = ae_title, host, port, calling_ae
        self.get, self.move_ae = get, move_ae or calling_ae
        self.tls, self.server_tls, self.timeout, self.listen_at = tls, server_tls, timeout, listen
        self.port_listening = 0
        self._server: Any = None
        self._sink: Sink | None = None

    def label(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"

    def _ae(self) -> Any:
        from pynetdicom import AE

        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.network_timeout = 30.0
        ae.dimse_timeout = self.timeout
        return ae

    def _associate(self, ae: Any, **kwargs: Any) -> Any:
        tls = (self.tls, self.host) if self.tls is not None else None
        assoc = ae.associate(self.host, self.port, ae_title=self.ae_title, tls_args=tls, **kwargs)
        if not assoc.is_established:
            raise RetrieveError(f"{self.label()}: association refused or unreachable")
        return assoc

    def find(self, keys: dict[str, str]) -> list[str]:
        """The Study Instance UIDs matching ``keys`` (C-FIND at STUDY level)."""
        from pydicom.dataset import Dataset
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as Find  # type: ignore

        ae = self._ae()
        ae.add_requested_context(Find)
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = keys.get("StudyInstanceUID", "")
        for keyword in ("PatientID", "AccessionNumber", "StudyDate", "ModalitiesInStudy"):
            setattr(query, keyword, keys.get(keyword, ""))
        assoc = self._associate(ae)
        found: list[str] = []
        try:
            for status, identifier in assoc.send_c_find(query, Find):
                code = _status(status)
                if code in (0xFF00, 0xFF01):
                    uid = str(getattr(identifier, "StudyInstanceUID", "") or "")
                    if uid:
                        found.append(uid)
                elif code != 0x0000:
                    raise RetrieveError(f"{self.label()}: C-FIND ended with status "
                                        + ("none (aborted or timed out)" if code == -1 else f"0x{code:04X}"))
            assoc.release()
        finally:
            if assoc.is_established:
                assoc.abort()
        return found

    # The Storage SCP that C-MOVE sends to, or the C-STORE handler of a C-GET association.
    def _on_store(self, event: Any) -> int:
        from veil.net.scp import received_bytes

        try:
            data = received_bytes(event)
        except Exception:
            return 0xC000
        sink = self._sink
        if sink is None or not sink(data):
            return 0xA700  # out of resources: nothing written
        return 0x0000

    def start(self, sink: Sink) -> None:
        """For C-MOVE: starts the Storage SCP (AE ``move_ae``, at ``listen``) that the source sends to; only the
        source's AE may store there. For C-GET: nothing to start."""
        from veil.net.scp import start_storage_scp

        self._sink = sink
        if not self.get:
            self._server = start_storage_scp(self.move_ae, [self.ae_title], self.listen_at, self._on_store,
                                             tls=self.server_tls)
            self.port_listening = int(self._server.server_address[1])

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def retrieve(self, study_uid: str, sink: Sink) -> int:
        """Retrieves one study into ``sink``; returns the number of instances the source reported sent."""
        from pydicom.dataset import Dataset

        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study_uid
        ae = self._ae()
        if self.get:
            from pynetdicom import evt
            from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
            from pynetdicom.presentation import StoragePresentationContexts
            from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as Model  # type: ignore

            self._sink = sink
            ae.add_requested_context(Model)
            roles = []
            for context in StoragePresentationContexts:
                ae.add_requested_context(context.abstract_syntax, _GET_SYNTAXES)
                role = SCP_SCU_RoleSelectionNegotiation()
                role.sop_class_uid, role.scu_role, role.scp_role = context.abstract_syntax, False, True
                roles.append(role)
            assoc = self._associate(ae, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, self._on_store)])
            responses = assoc.send_c_get(query, Model)
        else:
            from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as Model  # type: ignore

            if self._server is None:
                raise RetrieveError("C-MOVE needs the Storage SCP started first (start)")
            ae.add_requested_context(Model)
            assoc = self._associate(ae)
            responses = assoc.send_c_move(query, self.move_ae, Model)
        what = "C-GET" if self.get else "C-MOVE"
        final: Any = None
        try:
            for status, _identifier in responses:
                if _status(status) not in (0xFF00,):
                    final = status
            assoc.release()
        finally:
            if assoc.is_established:
                assoc.abort()
        code = _status(final)
        failed = int(getattr(final, "NumberOfFailedSuboperations", 0) or 0) if final is not None else 0
        if code == -1:
            raise RetrieveError(f"{self.label()}: {what} got no final response (aborted or timed out)")
        if code != 0x0000 or failed:
            raise RetrieveError(f"{self.label()}: {what} ended with status 0x{code:04X}, {failed} sub-operations "
                                "failed")
        return int(getattr(final, "NumberOfCompletedSuboperations", 0) or 0)


# --- DICOMweb ----------------------------------------------------------------------------------------------------


def parse_multipart(body: bytes, content_type: str) -> list[bytes]:
    """The bodies of a ``multipart/related`` message (RFC 2046), as WADO-RS answers."""
    match = re.search(r'boundary="?([^";]+)"?', content_type, re.IGNORECASE)
    if match is None:
        raise RetrieveError("WADO-RS: a multipart answer without a boundary")
    delimiter = b"--" + match.group(1).encode()
    parts = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break  # the close delimiter
        head, sep, payload = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise RetrieveError("WADO-RS: a part without headers")
        parts.append(payload[:-2] if payload.endswith(b"\r\n") else payload)
    return parts


class WebSource:
    """A DICOMweb server: ``find`` by QIDO-RS, ``retrieve`` by WADO-RS (series by series, the bytes as stored)."""

    def __init__(self, url: str, *, bearer_env: str = "", basic_user: str = "", basic_password_env: str = "",
                 verify: ssl.SSLContext | bool = True, timeout: float = 120.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        headers = {}
        auth: Any = None
        if bearer_env:
            token = os.environ.get(bearer_env)
            if not token:
                raise RetrieveError(f"${bearer_env} is not set")
            headers["Authorization"] = f"Bearer {token}"
        elif basic_user:
            auth = (basic_user, os.environ.get(basic_password_env, ""))
        self._client = httpx.Client(timeout=timeout, headers=headers, auth=auth, verify=verify)

    def label(self) -> str:
        return self.url

    def start(self, sink: Sink) -> None:
        return None

    def _get(self, path: str, params: dict[str, str] | None = None, accept: str = "application/dicom+json") -> Any:
        import httpx

        try:
            response = self._client.get(f"{self.url}{path}", params=params, headers={"Accept": accept})
        except httpx.HTTPError as exc:
            raise RetrieveError(f"{self.url}: request failed ({type(exc).__name__})") from None
        if response.status_code == 204:
            return None
        if response.status_code != 200:
            raise RetrieveError(f"{self.url}: answered HTTP {response.status_code}")
        return response

    def find(self, keys: dict[str, str]) -> list[str]:
        params = {"includefield": "0020000D", "limit": "100000", **keys}
        response = self._get("/studies", params)
        if response is None:
            return []
        return [str(item["0020000D"]["Value"][0]) for item in response.json()
                if item.get("0020000D", {}).get("Value")]

    def retrieve(self, study_uid: str, sink: Sink) -> int:
        series = self._get(f"/studies/{study_uid}/series", {"includefield": "0020000E"})
        count = 0
        for item in series.json() if series is not None else []:
            uid = item.get("0020000E", {}).get("Value", [""])[0]
            response = self._get(f"/studies/{study_uid}/series/{uid}",
                                 accept='multipart/related; type="application/dicom"; transfer-syntax=*')
            if response is None:
                continue
            for part in parse_multipart(response.content, response.headers.get("content-type", "")):
                if not sink(part):
                    raise RetrieveError(f"{self.url}: an instance could not be stored")
                count += 1
        return count

    def close(self) -> None:
        self._client.close()
