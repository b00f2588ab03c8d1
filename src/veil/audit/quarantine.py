"""Quarantine copies of refused inputs (``DST/.veil/quarantine``), each named by the keyed digest of its path.

* single-user mode (and keyless runs): ``{digest}.dcm`` is a clear copy of the input, as veil has always kept
  it for the operator to look at; it is PHI, and ``veil audit --purge`` removes it.
* custodian mode: ``{digest}.dcm.sealed`` is the input sealed to the custodian's public key (one envelope,
  context ``quarantine DIGEST``); no clear copy is ever written, and only the custodian opens it.

Beside each, ``{digest}.json`` holds the digest and the reason only (kept by a purge).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from veil.audit.layout import atomic_file, quarantine_dir
from veil.errors import AuditError

if TYPE_CHECKING:
    from veil.keys.custodian import CustodianPublicKey
    from veil.keys.envelope import Opener

__all__ = ["SEALED_SUFFIX", "quarantine_context", "read_quarantined", "write_sealed_quarantine"]

SEALED_SUFFIX = ".dcm.sealed"
_DIGEST = re.compile(r"[0-9a-f]{32,128}")


def _checked(digest: str) -> str:
    if not _DIGEST.fullmatch(digest):
        raise ValueError("a quarantine digest is 32 to 128 lower-case hex digits")
    return digest


def quarantine_context(digest: str) -> bytes:
    """What a sealed quarantine copy is bound to: its digest, so a copy renamed to another fails to open."""
    return f"quarantine {digest}".encode()


def write_sealed_quarantine(dst: Path | str, digest: str, source: str | os.PathLike[str],
                            custodian: CustodianPublicKey) -> Path:
    """Seals the input at ``source`` to ``custodian`` as ``{digest}.dcm.sealed`` (atomic); returns its path."""
    from veil.keys.envelope import seal_bytes

    final = quarantine_dir(dst) / (_checked(digest) + SEALED_SUFFIX)
    data = Path(source).read_bytes()
    sealed = seal_bytes(data, custodian, quarantine_context(digest))
    with atomic_file(final) as fh:
        fh.write(sealed)
    return final


def read_quarantined(dst: Path | str, digest: str, opener: Opener | None = None) -> bytes:
    """The input refused as ``digest``: the sealed copy opened with ``opener`` (the custodian's private key;
    ``KeyError_`` for another), else the clear copy of a single-user run. ``AuditError`` when there is none
    (not copied, or purged)."""
    from veil.keys.envelope import open_bytes

    folder = quarantine_dir(dst)
    sealed = folder / (_checked(digest) + SEALED_SUFFIX)
    if sealed.exists():
        if opener is None:
            raise AuditError(f"quarantine {digest}: sealed to the custodian; opening it needs the custodian key")
        return open_bytes(sealed.read_bytes(), opener, quarantine_context(digest), f"quarantine {digest}")
    clear = folder / (digest + ".dcm")
    try:
        return clear.read_bytes()
    except FileNotFoundError:
        raise AuditError(f"quarantine {digest}: no copy (not copied, or removed by a purge)") from None
