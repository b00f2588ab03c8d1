"""Sealed parts: one envelope format for everything veil stores that could re-identify someone.

Two ways to seal, chosen per run:

* **custodian** (``veil run --custodian-public NAME.pub``): a fresh 32-byte data key per part, wrapped for the
  custodian's X25519 public key (:class:`~veil.keys.custodian.CustodianPublicKey`); the run key cannot open it,
  only the custodian's private key can.
* **single-user** (symmetric, the default without a custodian key): AES-256-GCM under a sub-key of the run key
  for the part's purpose. Whoever runs veil with that key can open these parts: fit for one person who is
  operator and custodian at once, and named so in the manifest (``sealing: single-user``).

Envelope bytes::

    b"VEILSEAL" | version (1) | mode (1 byte: 1 single-user, 2 custodian) | key id (8 bytes: run key or
    custodian key) | [custodian: wrapped data key, WRAPPED_SIZE bytes] | nonce (12) | AES-256-GCM(payload) + tag

The associated data is the header (every byte before the nonce) and the part's ``context`` (what it is and where
it belongs: ``b"reid-table"``, ``b"change-records RUN shard N"``...), so a part moved to another place, or its
header altered, fails to open. The data key is wrapped under the same context.

A :class:`SealTarget` seals; it is picklable and holds no secret that opens a custodian part, so workers get it.
Opening takes a :class:`SymmetricSeal` (single-user) or a
:class:`~veil.keys.custodian.CustodianPrivateKey`; the wrong one gets a ``KeyError_`` saying which key is needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import blake3

from veil.errors import AuditError, KeyError_
from veil.keys.custodian import WRAPPED_SIZE, CustodianPrivateKey, CustodianPublicKey
from veil.keys.material import Key

__all__ = [
    "MAGIC",
    "MODE_SINGLE_USER",
    "MODE_CUSTODIAN",
    "AUDIT_PARTS",
    "SealTarget",
    "SymmetricSeal",
    "Opener",
    "envelope_info",
    "is_envelope",
    "audit_parts_seal",
    "open_bytes",
    "seal_bytes",
    "symmetric_seal",
]

MAGIC = b"VEILSEAL"
_VERSION = 1
MODE_SINGLE_USER = 1
MODE_CUSTODIAN = 2
_NONCE = 12
_TAG = 16
_HEAD = len(MAGIC) + 1 + 1 + 8
_SYMMETRIC_CONTEXT = "veil 2026-12 sealed part {purpose}"


@dataclass(frozen=True)
class SymmetricSeal:
    """Single-user sealing: a 32-byte AES key for one purpose and the id of the run key it comes from."""

    key_id: str
    aes_key: bytes = field(repr=False)
    purpose: str = ""

    def __post_init__(self) -> None:
        if len(self.aes_key) != 32:
            raise ValueError(f"a sealing key is 32 bytes, not {len(self.aes_key)}")


def symmetric_seal(key: Key | bytes, purpose: str, key_id: str | None = None) -> SymmetricSeal:
    """The single-user seal of ``purpose`` from a run key (or from a 32-byte sub-key, such as the audit sub-key
    a worker holds, with ``key_id`` the run key's id): a BLAKE3 derivation per purpose."""
    if isinstance(key, Key):
        base, kid = key.subkey("sealed-parts"), key.key_id
    else:
        if key_id is None:
            raise ValueError("a sub-key needs the run key's id")
        base, kid = bytes(key), key_id
    aes = blake3.blake3(base, derive_key_context=_SYMMETRIC_CONTEXT.format(purpose=purpose)).digest()
    return SymmetricSeal(kid, aes, purpose)


AUDIT_PARTS = "audit-parts"


def audit_parts_seal(key: Key) -> SymmetricSeal:
    """The single-user seal of a run's audit parts (change-record originals, quarantined originals): derived
    from the run key's ``audit`` sub-key, which the workers hold (they never get the run key). The driver seals
    with it and every reader opens with it; build it only here, so both derive the same key."""
    return symmetric_seal(key.subkey("audit"), AUDIT_PARTS, key.key_id)


SealTarget = SymmetricSeal | CustodianPublicKey
Opener = SymmetricSeal | CustodianPrivateKey


def _mode_of(target: SealTarget) -> int:
    return MODE_CUSTODIAN if isinstance(target, CustodianPublicKey) else MODE_SINGLE_USER


def seal_bytes(payload: bytes, target: SealTarget, context: bytes) -> bytes:
    """``payload`` sealed to ``target`` and bound to ``context`` (see the module docstring)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    mode = _mode_of(target)
    header = MAGIC + bytes([_VERSION, mode]) + bytes.fromhex(target.key_id)
    if isinstance(target, CustodianPublicKey):
        data_key = AESGCM.generate_key(bit_length=256)
        header += target.wrap(data_key, context)
    else:
        data_key = target.aes_key
    nonce = os.urandom(_NONCE)
    return header + nonce + AESGCM(data_key).encrypt(nonce, payload, header + b"|" + context)


def is_envelope(blob: bytes) -> bool:
    return blob[: len(MAGIC)] == MAGIC


def envelope_info(blob: bytes, where: str = "sealed part") -> tuple[str, str]:
    """(``"single-user"`` or ``"custodian"``, key id) of an envelope, without opening it."""
    if not is_envelope(blob) or len(blob) < _HEAD + _NONCE + _TAG:
        raise AuditError(f"{where}: not a veil sealed part, or truncated")
    if blob[len(MAGIC)] != _VERSION:
        raise AuditError(f"{where}: sealed part format {blob[len(MAGIC)]}; this veil reads {_VERSION}")
    mode = blob[len(MAGIC) + 1]
    if mode not in (MODE_SINGLE_USER, MODE_CUSTODIAN):
        raise AuditError(f"{where}: sealed part of unknown mode {mode}")
    return ("custodian" if mode == MODE_CUSTODIAN else "single-user"), blob[len(MAGIC) + 2:_HEAD].hex()


def open_bytes(blob: bytes, opener: Opener, context: bytes, where: str = "sealed part") -> bytes:
    """The payload of an envelope. ``KeyError_`` when ``opener`` is not the key it was sealed to (the message
    names the key needed); ``AuditError`` when the part is altered, damaged or moved from another place."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    mode, key_id = envelope_info(blob, where)
    if mode == "custodian":
        if not isinstance(opener, CustodianPrivateKey):
            raise KeyError_(f"{where}: sealed to custodian key {key_id}; only that custodian's private key opens "
                            f"it (the run key cannot)")
        if opener.key_id != key_id:
            raise KeyError_(f"{where}: sealed to custodian key {key_id}, not {opener.key_id}")
        end = _HEAD + WRAPPED_SIZE
        if len(blob) < end + _NONCE + _TAG:
            raise AuditError(f"{where}: sealed part is truncated")
        try:
            data_key = opener.unwrap(blob[_HEAD:end], context)
        except KeyError_:
            raise AuditError(f"{where}: sealed part fails authentication: altered, damaged or moved from "
                             f"another place") from None
    else:
        if not isinstance(opener, SymmetricSeal):
            raise KeyError_(f"{where}: sealed in single-user mode with run key {key_id}; open it with that key")
        if opener.key_id != key_id:
            raise KeyError_(f"{where}: sealed with run key {key_id}, not {opener.key_id}")
        end, data_key = _HEAD, opener.aes_key
    header, nonce = blob[:end], blob[end:end + _NONCE]
    try:
        return AESGCM(data_key).decrypt(nonce, blob[end + _NONCE:], header + b"|" + context)
    except InvalidTag:
        raise AuditError(f"{where}: sealed part fails authentication: altered, damaged, moved from another "
                         f"place, or sealed for another purpose") from None
