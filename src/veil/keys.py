"""Key files, key ids, BLAKE3 sub-keys and the keyed functions behind UIDs, pseudonyms and date shifts.

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

__all__ = ["Key", "KeyedFunctions", "CounterFormat", "CounterPseudonymError", "counter_format", "generate_key_file",
           "load_key", "KEY_ENV", "KEY_SIZE", "COUNTER_EXTRA_DIGITS", "COUNTER_MAX_WIDTH"]

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


_UUID_CLEAR = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_UUID_V8_BITS = (0x8 << 76) | (0x2 << 62)
_PATTERN_FIELD = re.compile(r"\{hash(?::(\d+))?\}")
_COUNTER_FIELD = re.compile(r"\{counter(?::(\d+))?\}")
COUNTER_MAX_WIDTH = 12  # {counter:N}: N is the least number of digits, 1 to 12
# A counter outgrows its N digits after 10**N - 1 values; it may grow by this many digits more, and recipes check
# that the longest such value (literal text + N + 3) fits every VR it is written to. The key service refuses to
# hand out a longer number rather than write a value the recipe was not checked for.
COUNTER_EXTRA_DIGITS = 3


class CounterPseudonymError(KeyError_):
    """A counter pseudonym that cannot be made here: no number was handed out for the value (the file is
    quarantined), the counter is exhausted, or the tool has no key service to number values."""


@dataclass(frozen=True)
class CounterFormat:
    """A counter pseudonym pattern such as ``SUBJ-{counter:6}``: literal prefix, least digits, literal suffix."""

    prefix: str
    width: int
    suffix: str = ""

    @property
    def max_digits(self) -> int:
        return self.width + COUNTER_EXTRA_DIGITS

    @property
    def max_length(self) -> int:
        """The longest pseudonym this format can make (what recipes check against the VR limits)."""
        return len(self.prefix) + self.max_digits + len(self.suffix)

    def format(self, number: int) -> bytes:
        """``prefix`` + ``number`` zero-padded to ``width`` + ``suffix``; refuses a number of more digits than
        :attr:`max_digits`."""
        if not 1 <= number < 10**self.max_digits:
            raise CounterPseudonymError(
                f"counter pseudonym {self.pattern!r} is exhausted: number {number} needs more than "
                f"{self.max_digits} digits (widen {{counter:N}})"
            )
        return b"%s%0*d%s" % (self.prefix.encode("ascii"), self.width, number, self.suffix.encode("ascii"))

    def number_of(self, value: bytes) -> int | None:
        """The number inside a pseudonym of this format, or None when ``value`` is not one."""
        prefix, suffix = self.prefix.encode("ascii"), self.suffix.encode("ascii")
        if not (value.startswith(prefix) and value.endswith(suffix)) or len(value) < len(prefix) + len(suffix):
            return None
        digits = value[len(prefix) : len(value) - len(suffix)]
        if not (self.width <= len(digits) <= self.max_digits and digits.isdigit()):
            return None
        if len(digits) > self.width and digits[:1] == b"0":
            return None  # a number that outgrew the width is never zero-padded
        number = int(digits)
        return number if number >= 1 else None

    @property
    def pattern(self) -> str:
        return f"{self.prefix}{{counter:{self.width}}}{self.suffix}"


def counter_format(pattern: str | None) -> CounterFormat | None:
    """The :class:`CounterFormat` of a ``{counter:N}`` pattern, None for a ``{hash}`` pattern (or None).
    Raises ``KeyError_`` for a pattern that mixes the two or holds more than one counter field; recipes
    report the same problems with file and line first (``veil.recipe``)."""
    if pattern is None:
        return None
    fields = list(_COUNTER_FIELD.finditer(pattern))
    if not fields:
        return None
    if len(fields) > 1 or _PATTERN_FIELD.search(pattern):
        raise KeyError_(f"pseudonym pattern {pattern!r}: exactly one {{counter:N}} field and no {{hash}} field")
    field_ = fields[0]
    if field_.group(1) is None or not 1 <= int(field_.group(1)) <= COUNTER_MAX_WIDTH:
        raise KeyError_(f"pseudonym pattern {pattern!r}: write {{counter:N}} with N from 1 to {COUNTER_MAX_WIDTH}")
    return CounterFormat(pattern[: field_.start()], int(field_.group(1)), pattern[field_.end() :])
_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


class KeyedFunctions:
    """The keyed functions a worker needs, made once from the key's sub-keys."""

    def __init__(self, key: Key, *, pseudonym_pattern: str = "{hash:16}", shift_range: tuple[int, int] = (-3650, -1)):
        lo, hi = shift_range
        if lo > hi:
            raise KeyError_(f"date shift range {shift_range} is empty")
        # A counter pattern's numbers come from the run's key service (veil.mapping), never from here.
        self.counter = counter_format(pseudonym_pattern)
        if self.counter is None and not _PATTERN_FIELD.search(pseudonym_pattern):
            raise KeyError_(
                f"pseudonym pattern {pseudonym_pattern!r} has no {{hash}}, {{hash:N}} or {{counter:N}} field"
            )
        self.key_id = key.key_id
        self._uid_key = key.subkey("uid")
        self._id_key = key.subkey("id")
        self._date_key = key.subkey("date")
        self._pattern = pseudonym_pattern
        self._shift_lo = lo
        self._shift_span = hi - lo + 1

    def uid(self, original: bytes) -> bytes:
        """``2.25.`` + the decimal of a version 8 UUID (RFC 9562) made from keyed BLAKE3 of the UID."""
        value = int.from_bytes(blake3.blake3(original, key=self._uid_key).digest(length=16), "big")
        # RFC 9562: version 8 in bits 48-51 (from the most significant), variant 0b10 in bits 64-65.
        value = (value & _UUID_CLEAR) | _UUID_V8_BITS
        return b"2.25.%d" % value

    def pseudonym(self, original: bytes) -> bytes:
        """A keyed hash of an ID formatted to the pattern: ``{hash:N}`` is N base32 characters.

        A counter pattern is refused: its numbers are handed out by the key service of ``veil run`` (which
        keeps them in the re-identification table), and a keyed hash in their place would be a silent change
        of scheme."""
        if self.counter is not None:
            raise CounterPseudonymError(
                f"pseudonym pattern {self.counter.pattern!r} numbers values through the key service of "
                "`veil run --reid-table`; this tool cannot make counter pseudonyms"
            )
        digest = blake3.blake3(original, key=self._id_key).digest(length=40)
        alphabet = "".join(_B32[b & 31] for b in digest)

        def field_(m: re.Match[str]) -> str:
            return alphabet[: int(m.group(1) or 16)]

        return _PATTERN_FIELD.sub(field_, self._pattern).encode("ascii")

    def date_shift(self, patient_id: str | bytes | None) -> int:
        """Whole days to add to every date of this patient, in the configured range (PS3.15 E.3.6)."""
        value = patient_id.encode("utf-8") if isinstance(patient_id, str) else (patient_id or b"")
        digest = blake3.blake3(value.strip(b" \x00"), key=self._date_key).digest(length=8)
        return self._shift_lo + int.from_bytes(digest, "big") % self._shift_span
