"""The custodian key: an X25519 key pair kept apart from the run key, so that whoever runs veil cannot re-identify.

The run key (:mod:`veil.keys.material`) makes UIDs, pseudonyms and date shifts; it must be on every machine that
de-identifies. What can re-identify (the re-identification table, the change records with original values, the
before-redaction thumbnails, the quarantined originals) is sealed *to the custodian's public key* instead
(:mod:`veil.keys.envelope`): an operator holds the public half only and can seal, never open. The private half
stays with the data custodian, encrypted under a passphrase.

Files (``veil keygen --custodian NAME`` writes both; neither is ever overwritten)::

    NAME.pub   text, mode 0644:   "veil custodian public key v1" / name / key id / x25519 (base64, 32 bytes)
    NAME.key   JSON, mode 0600:   the 32-byte X25519 private key, AES-256-GCM under a key from scrypt
                                  (n=2**15, r=8, p=1, 16-byte salt) of the passphrase; the header fields are
                                  the associated data, so none of them can be altered

The key id is 16 hex digits of a BLAKE3 derivation of the public key (context ``veil 2026-12 custodian key-id``):
it names the key in manifests, sealed parts and error messages, and says nothing of the private key.

Wrapping a data key for the custodian (:meth:`CustodianPublicKey.wrap`): a fresh ephemeral X25519 key pair, the
shared secret through HKDF-SHA256 (salt: ephemeral public | custodian public; info: ``veil custodian wrap v1`` |
context) to an AES-256-GCM key that encrypts the data key. So each sealed part has its own data key, and only
the private key's holder recovers it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3

from veil.errors import KeyError_

__all__ = [
    "CustodianPublicKey",
    "CustodianPrivateKey",
    "PASSPHRASE_ENV",
    "WRAPPED_SIZE",
    "custodian_key_id",
    "generate_custodian",
    "load_custodian_public",
    "load_custodian_private",
    "read_passphrase",
]

PASSPHRASE_ENV = "VEIL_CUSTODIAN_PASSPHRASE"  # for scripts and tests; a person is asked at the terminal
_PUBLIC_HEADER = "veil custodian public key v1"
_PRIVATE_FORMAT = "veil-custodian-private"
_PRIVATE_VERSION = 1
_SCRYPT = {"n": 2**15, "r": 8, "p": 1}  # 32 MiB, ~0.1 s: a passphrase guess costs as much
_KEY_ID_CONTEXT = "veil 2026-12 custodian key-id"
_WRAP_INFO = b"veil custodian wrap v1"
_NONCE = 12
WRAPPED_SIZE = 32 + _NONCE + 32 + 16  # ephemeral public key, nonce, data key, tag
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def custodian_key_id(public: bytes) -> str:
    """The 16-hex-digit id of a custodian public key."""
    return blake3.blake3(public, derive_key_context=_KEY_ID_CONTEXT).digest()[:8].hex()


def _hkdf(shared: bytes, ephemeral: bytes, recipient: bytes, context: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient,
                info=_WRAP_INFO + b"|" + context).derive(shared)


@dataclass(frozen=True)
class CustodianPublicKey:
    """The public half: it seals (wraps data keys) and opens nothing. Safe to give to every operator and worker."""

    name: str
    public: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.public) != 32:
            raise KeyError_(f"a custodian public key is 32 bytes, not {len(self.public)}")

    @property
    def key_id(self) -> str:
        return custodian_key_id(self.public)

    def wrap(self, data_key: bytes, context: bytes) -> bytes:
        """``data_key`` encrypted for the custodian (:data:`WRAPPED_SIZE` bytes), bound to ``context``."""
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        if len(data_key) != 32:
            raise ValueError(f"a data key is 32 bytes, not {len(data_key)}")
        ephemeral = X25519PrivateKey.generate()
        eph_public = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(self.public))
        nonce = os.urandom(_NONCE)
        wrapped = AESGCM(_hkdf(shared, eph_public, self.public, context)).encrypt(nonce, data_key, context)
        return eph_public + nonce + wrapped

    def describe(self) -> dict[str, str]:
        """What a manifest records of it: name and key id (the key itself is public, but not needed there)."""
        return {"name": self.name, "key_id": self.key_id}


@dataclass(frozen=True)
class CustodianPrivateKey:
    """The private half, opened with its passphrase: it unwraps data keys sealed to its public key."""

    name: str
    private: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.private) != 32:
            raise KeyError_(f"a custodian private key is 32 bytes, not {len(self.private)}")

    def public_key(self) -> CustodianPublicKey:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        public = X25519PrivateKey.from_private_bytes(self.private).public_key().public_bytes(
            Encoding.Raw, PublicFormat.Raw)
        return CustodianPublicKey(self.name, public)

    @property
    def key_id(self) -> str:
        return self.public_key().key_id

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """The data key of :meth:`CustodianPublicKey.wrap`; ``KeyError_`` when it was wrapped for another key or
        another context, or altered."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        if len(wrapped) != WRAPPED_SIZE:
            raise KeyError_(f"a wrapped data key is {WRAPPED_SIZE} bytes, not {len(wrapped)}")
        eph_public, nonce, body = wrapped[:32], wrapped[32:32 + _NONCE], wrapped[32 + _NONCE:]
        me = X25519PrivateKey.from_private_bytes(self.private)
        shared = me.exchange(X25519PublicKey.from_public_bytes(eph_public))
        own_public = me.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        try:
            return AESGCM(_hkdf(shared, eph_public, own_public, context)).decrypt(nonce, body, context)
        except InvalidTag:
            raise KeyError_(f"custodian key {self.key_id} cannot open this part: sealed to another custodian key, "
                            f"moved from elsewhere, or altered") from None


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise KeyError_(f"{path}: already exists; veil never overwrites a key") from None
    except OSError as exc:
        raise KeyError_(f"{path}: cannot create key file: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, mode)


def _scrypt(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


def _private_aad(document: dict[str, Any]) -> bytes:
    fields = {k: document[k] for k in ("format", "version", "name", "key_id", "kdf")}
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def generate_custodian(name: str, folder: str | os.PathLike[str], passphrase: str) -> tuple[Path, Path, str]:
    """Writes ``folder/NAME.pub`` (mode 0644) and ``folder/NAME.key`` (mode 0600, under ``passphrase``); refuses
    to overwrite either. Returns (public path, private path, key id)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
        PublicFormat,
    )

    if not _NAME.fullmatch(name):
        raise KeyError_(f"custodian name {name!r}: letters, digits, '.', '_' and '-' only (64 at most)")
    if len(passphrase) < 8:
        raise KeyError_("a custodian passphrase has 8 characters at least")
    folder = Path(folder)
    public_path, private_path = folder / f"{name}.pub", folder / f"{name}.key"
    for existing in (public_path, private_path):
        if existing.exists():
            raise KeyError_(f"{existing}: already exists; veil never overwrites a key")
    private = X25519PrivateKey.generate()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    key_id = custodian_key_id(public)
    salt = os.urandom(16)
    document: dict[str, Any] = {
        "format": _PRIVATE_FORMAT, "version": _PRIVATE_VERSION, "name": name, "key_id": key_id,
        "kdf": {"name": "scrypt", **_SCRYPT, "salt": base64.b64encode(salt).decode()},
    }
    nonce = os.urandom(_NONCE)
    sealed = AESGCM(_scrypt(passphrase, salt, **_SCRYPT)).encrypt(nonce, raw, _private_aad(document))
    document["cipher"] = "AES-256-GCM"
    document["nonce"] = base64.b64encode(nonce).decode()
    document["ciphertext"] = base64.b64encode(sealed).decode()
    _write_new(private_path, (json.dumps(document, indent=2) + "\n").encode(), 0o600)
    text = (f"{_PUBLIC_HEADER}\nname: {name}\nkey-id: {key_id}\n"
            f"x25519: {base64.b64encode(public).decode()}\n")
    try:
        _write_new(public_path, text.encode(), 0o644)
    except BaseException:
        private_path.unlink(missing_ok=True)
        raise
    return public_path, private_path, key_id


def load_custodian_public(path: str | os.PathLike[str]) -> CustodianPublicKey:
    """The public key file written by :func:`generate_custodian`; a private key file given by mistake is
    refused (it must never travel to operators)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyError_(f"{p}: custodian public key not found (the custodian makes it with "
                        f"`veil keygen --custodian NAME`)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyError_(f"{p}: cannot read the custodian public key: {exc}") from None
    if _PRIVATE_FORMAT in text:
        raise KeyError_(f"{p}: this is a custodian PRIVATE key; give operators the .pub file, never this one")
    lines = text.splitlines()
    if not lines or lines[0].strip() != _PUBLIC_HEADER:
        raise KeyError_(f"{p}: not a veil custodian public key")
    fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    try:
        public = base64.b64decode(fields["x25519"], validate=True)
        key = CustodianPublicKey(fields["name"], public)
    except (KeyError, ValueError) as exc:
        raise KeyError_(f"{p}: custodian public key is malformed ({exc})") from None
    if fields.get("key-id") != key.key_id:
        raise KeyError_(f"{p}: custodian public key does not match its key id: altered or damaged")
    return key


def read_passphrase(prompt: str = "custodian passphrase: ", environ: dict[str, str] | None = None) -> str:
    """The passphrase from ``$VEIL_CUSTODIAN_PASSPHRASE``, else asked at the terminal; never echoed or logged."""
    env = os.environ if environ is None else environ
    given = env.get(PASSPHRASE_ENV)
    if given:
        return given
    if not sys.stdin.isatty():
        raise KeyError_(f"the custodian key needs its passphrase: run at a terminal, or set {PASSPHRASE_ENV}")
    import getpass  # only at a terminal (with termios): not at every run's start

    return getpass.getpass(prompt)


def load_custodian_private(path: str | os.PathLike[str], passphrase: str | None = None) -> CustodianPrivateKey:
    """The private key file, opened with ``passphrase`` (default: :func:`read_passphrase`); refuses a file
    readable by others, a wrong passphrase and an altered file, each with its own message."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    p = Path(path)
    try:
        st = p.stat()
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyError_(f"{p}: custodian private key not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyError_(f"{p}: cannot read the custodian private key: {exc}") from None
    if text.startswith(_PUBLIC_HEADER):
        raise KeyError_(f"{p}: this is the custodian PUBLIC key; opening sealed parts needs the private .key file")
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyError_(f"{p}: custodian key file is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
                        f"chmod 600 it")
    try:
        document = json.loads(text)
        if document.get("format") != _PRIVATE_FORMAT:
            raise ValueError("not a veil custodian private key")
        if document.get("version") != _PRIVATE_VERSION:
            raise ValueError(f"format version {document.get('version')}; this veil reads {_PRIVATE_VERSION}")
        kdf = document["kdf"]
        salt = base64.b64decode(kdf["salt"], validate=True)
        nonce = base64.b64decode(document["nonce"], validate=True)
        sealed = base64.b64decode(document["ciphertext"], validate=True)
        n, r, q = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
        if kdf.get("name") != "scrypt" or not 2 <= n <= 2**20 or n & (n - 1) or not (1 <= r <= 32 and 1 <= q <= 16):
            raise ValueError("unsupported key derivation")
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyError_(f"{p}: custodian private key is malformed ({exc})") from None
    secret = passphrase if passphrase is not None else read_passphrase()
    try:
        raw = AESGCM(_scrypt(secret, salt, n, r, q)).decrypt(nonce, sealed, _private_aad(document))
    except InvalidTag:
        raise KeyError_(f"{p}: wrong passphrase for custodian key {document.get('key_id')} "
                        f"(or the file was altered)") from None
    key = CustodianPrivateKey(str(document["name"]), raw)
    if key.key_id != document.get("key_id"):
        raise KeyError_(f"{p}: custodian private key does not match its key id: altered or damaged")
    return key
