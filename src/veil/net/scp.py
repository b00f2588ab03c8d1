"""The Storage SCP that both ``veil serve`` and ``veil pull`` (the destination of a C-MOVE) run: every storage
SOP class in every transfer syntax, only the calling AEs named, the called AE checked, large PDUs, optional
DICOM TLS; each received data set handed over as a Part 10 file without being decoded."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["MAX_PDU", "received_bytes", "start_storage_scp"]

# The largest P-DATA PDU the SCP accepts: an instance of a few hundred KB arrives in one or a few PDUs instead
# of dozens of pynetdicom's default 16 KB (each PDU costs a trip through pynetdicom's state machine).
MAX_PDU = 4 * 1024 * 1024


def received_bytes(event: Any) -> bytes:
    """A received C-STORE data set as a Part 10 file: a File Meta group from the request and the presentation
    context (the native core's writer: pydicom's costs more than the rest of the receive), then the bytes as
    the peer sent them."""
    from veil.core._core import build_meta

    request = event.request
    meta = build_meta(str(request.AffectedSOPClassUID), str(request.AffectedSOPInstanceUID),
                      str(event.context.transfer_syntax))
    return meta + event.encoded_dataset(include_meta=False)


def start_storage_scp(ae_title: str, calling_aes: Iterable[str], address: tuple[str, int],
                      on_store: Callable[[Any], int], *, tls: ssl.SSLContext | None = None,
                      verification: bool = False, max_associations: int | None = None) -> Any:
    """Starts the SCP (not blocking) and returns pynetdicom's server; ``server.server_address[1]`` is its port."""
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
    from pynetdicom.presentation import AllStoragePresentationContexts

    from veil.net.pynetdicom_fixes import apply

    apply()
    ae = AE(ae_title=ae_title)
    ae.require_calling_aet = list(calling_aes)
    ae.require_called_aet = True
    ae.maximum_pdu_size = MAX_PDU
    if max_associations is not None:
        ae.maximum_associations = max_associations
    for context in AllStoragePresentationContexts:
        if context.abstract_syntax is not None:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    if verification:
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        ae.add_supported_context(Verification)
    return ae.start_server(address, block=False, ssl_context=tls, evt_handlers=[(evt.EVT_C_STORE, on_store)])
