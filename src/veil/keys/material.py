"""Key material: key files, key ids and BLAKE3 sub-keys per purpose.

One secret of 32 random bytes per project. Every mapping is a keyed function of the original value, so the
same original gives the same output in every file, shard, run and site that shares the key, with no shared
state. Sub-keys are derived per purpose with BLAKE3's key-derivation mode, so a digest made for one purpose
says nothing about another. The key itself is never logged or written anywhere but its own file.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import blake3

from veil.errors import KeyError_

__all__ = ["Key", "generate_key_file", "load_key", "run_key", "KEY_ENV", "KEY_SIZE"]

KEY_SIZE = 32
KEY_ENV = "VEIL_KEY"  # 64 hex digits: the key material itself, for environments without a key file
_CONTEXT = "veil 2026-11 {purpose}"  # BLAKE3 derive_key contexts are fixed strings per purpose and version


@dataclass(frozen=True)
class Key:
    """Key material and its public id (a digest, never the key); ``repr`` never shows the material."""

    material: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.material) != KEY_SIZE:
            raise KeyError_(f"a veil key is {KEY_SIZE} bytes, not {len(self.material)}")

    @property
    def key_id(self) -> str:
        """A 16-hex-digit id recorded with every output, derived so it cannot be used as any sub-key."""
        return self.subkey("key-id")[:8].hex()

    def subkey(self, purpose: str) -> bytes:
        """The 32-byte sub-key for one purpose (``uid``, ``id``, ``date``, ``audit``, ...)."""
        return blake3.blake3(self.material, derive_key_context=_CONTEXT.format(purpose=purpose)).digest()


def generate_key_file(path: str | os.PathLike[str]) -> Key:
    """Writes 32 random bytes to a new file readable by its owner only (mode 0600); refuses to overwrite."""
    material = os.urandom(KEY_SIZE)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyError_(f"{path}: already exists; veil never overwrites a key") from None
    except OSError as exc:
        raise KeyError_(f"{path}: cannot create key file: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(material)
    os.chmod(path, 0o600)
    return Key(material)


def load_key(path: str | os.PathLike[str] | None = None, *, environ: dict[str, str] | None = None) -> Key:
    """The key from ``path``, or else from ``$VEIL_KEY`` (64 hex digits); refuses unsafe or malformed keys."""
    env = os.environ if environ is None else environ
    if path is None:
        text = env.get(KEY_ENV)
        if not text:
            raise KeyError_(f"no key: give --key KEYFILE or set {KEY_ENV} (create one with `veil keygen KEYFILE`)")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", text.strip()):
            raise KeyError_(f"{KEY_ENV} must hold 64 hexadecimal digits (32 bytes)")
        return Key(bytes.fromhex(text.strip()))
    p = Path(path)
    try:
        st = p.stat()
        data = p.read_bytes()
    except FileNotFoundError:
        raise KeyError_(f"{p}: key file not found (create one with `veil keygen {p}`)") from None
    except OSError as exc:
        raise KeyError_(f"{p}: cannot read key file: {exc.strerror}") from None
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyError_(f"{p}: key file is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); chmod 600 it")
    if len(data) != KEY_SIZE:
        raise KeyError_(f"{p}: a veil key file holds exactly {KEY_SIZE} bytes, this one {len(data)}")
    return Key(data)


def run_key(path: str | os.PathLike[str] | None, *, required: bool) -> Key | None:
    """The key a run uses: the file at ``path``, else ``$VEIL_KEY``, else none where the recipe needs none
    (``required`` false); a recipe with keyed actions and no key anywhere is an error (:func:`load_key`'s)."""
    if path is not None or os.environ.get(KEY_ENV) or required:
        return load_key(path)
    return None
