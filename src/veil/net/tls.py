"""DICOM TLS (PS3.15 B.1, the BCP 195 profiles): the SSL contexts of veil's Storage SCP and of its associations
to other AEs, from PEM files. TLS 1.2 at least; the peer's certificate is always checked against the CA given
(or the system's), and a client certificate is asked for when ``require_client_cert`` is set."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from veil.errors import VeilError

__all__ = ["TlsConfig", "TlsError", "client_context", "server_context"]


class TlsError(VeilError):
    """A certificate, key or CA file that cannot be used; names the file, never its content."""


@dataclass(frozen=True)
class TlsConfig:
    cert: Path | None = None  # this end's certificate chain (PEM)
    key: Path | None = None  # its private key (PEM)
    ca: Path | None = None  # the CA(s) that sign the peers' certificates (PEM); None: the system's
    require_client_cert: bool = False  # server side: refuse clients without a certificate the CA signed


def _load_chain(context: ssl.SSLContext, cert: Path, key: Path | None) -> None:
    try:
        context.load_cert_chain(str(cert), str(key) if key is not None else None)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"{cert}: cannot load the certificate and key ({type(exc).__name__})") from None


def _load_ca(context: ssl.SSLContext, ca: Path | None) -> None:
    try:
        if ca is not None:
            context.load_verify_locations(cafile=str(ca))
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH if context.check_hostname else ssl.Purpose.CLIENT_AUTH)
    except (OSError, ssl.SSLError) as exc:
        raise TlsError(f"{ca}: cannot load the CA certificates ({type(exc).__name__})") from None


def server_context(tls: TlsConfig) -> ssl.SSLContext:
    """The context of a Storage SCP: its certificate, and the clients' checked when required."""
    if tls.cert is None:
        raise TlsError("tls: a listening node needs cert (and key)")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, tls.cert, tls.key)
    if tls.require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        _load_ca(context, tls.ca)
    return context


def client_context(tls: TlsConfig) -> ssl.SSLContext:
    """The context of an association to another AE: its certificate checked against ``ca`` (and its host name),
    this end's certificate presented when given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_ca(context, tls.ca)
    if tls.cert is not None:
        _load_chain(context, tls.cert, tls.key)
    return context
